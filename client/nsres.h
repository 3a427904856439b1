/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libnsres: what a sandbox tool needs from nsresd, without re-implementing
 * the D-Bus calls and the fd handling. It talks to the service over the
 * system bus (DBUS_SYSTEM_BUS_ADDRESS honoured); every decision (limits,
 * polkit, checks of the namespace) stays the service's.
 *
 * Typical use:
 *
 *     NsresClient *c;
 *     int userns_fd, netns_fd;
 *     NsresResult res;
 *
 *     nsres_client_new(&c);
 *     nsres_userns_create(NSRES_CREATE_NETNS, &userns_fd, &netns_fd);
 *     if (nsres_setup(c, userns_fd, netns_fd, &(NsresRequest) { .name = "build", .size = 65536,
 *                                                               .network = true }, &res) < 0)
 *             fprintf(stderr, "%s\n", nsres_client_error_message(c));
 *     // fork; in the child: setns(userns_fd, CLONE_NEWUSER), setns(netns_fd,
 *     // CLONE_NEWNET), unshare(CLONE_NEWNS), setresuid(0, 0, 0), exec.
 *
 * Functions return 0 (or a positive value where documented) on success and
 * a negative errno on failure. When the service refused a call they return
 * -EREMOTEIO, and the client keeps the error: nsres_client_error() gives its
 * type, nsres_client_error_name() the D-Bus error name and
 * nsres_client_error_message() the service's message, meant for users.
 * A client is not thread-safe; use one per thread.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct NsresClient NsresClient;

/* The service's errors (org.freedesktop.NamespaceResource1.Error.*), the
 * polkit outcomes, and anything else. */
typedef enum NsresError {
        NSRES_ERROR_NONE = 0,
        NSRES_ERROR_OTHER,                      /* a D-Bus error not listed here */
        NSRES_ERROR_NOT_SUPPORTED,
        NSRES_ERROR_INVALID_NAME,
        NSRES_ERROR_INVALID_SIZE,
        NSRES_ERROR_NAME_EXISTS,
        NSRES_ERROR_NOT_A_USER_NAMESPACE,
        NSRES_ERROR_NOT_OWNER,
        NSRES_ERROR_BAD_NESTING,
        NSRES_ERROR_ALREADY_MAPPED,
        NSRES_ERROR_USER_NAMESPACE_EXISTS,
        NSRES_ERROR_NO_RANGE_AVAILABLE,
        NSRES_ERROR_TOO_MANY_NAMESPACES,
        NSRES_ERROR_TOO_MANY_REQUESTS,
        NSRES_ERROR_NOT_REGISTERED,
        NSRES_ERROR_NO_USER_RANGE,
        NSRES_ERROR_NOT_A_CONTROL_GROUP,
        NSRES_ERROR_CONTROL_GROUP_NOT_EMPTY,
        NSRES_ERROR_CONTROL_GROUP_ALREADY_ADDED,
        NSRES_ERROR_TOO_MANY_CONTROL_GROUPS,
        NSRES_ERROR_NOT_A_NETWORK_NAMESPACE,
        NSRES_ERROR_WRONG_NETWORK_NAMESPACE,
        NSRES_ERROR_INVALID_INTERFACE_NAME,
        NSRES_ERROR_TOO_MANY_NETWORK_INTERFACES,
        NSRES_ERROR_NOT_A_MOUNT,
        NSRES_ERROR_BPF_DELEGATION_FAILED,
        NSRES_ERROR_BAD_CONFIGURATION,
        NSRES_ERROR_ACCESS_DENIED,              /* polkit said no */
        NSRES_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
        NSRES_ERROR_INVALID_ARGS,
        NSRES_ERROR_SERVICE_UNKNOWN,            /* nsresd is not running and cannot be started */
        _NSRES_ERROR_MAX,
} NsresError;

/* Connects to the system bus. */
int nsres_client_new(NsresClient **ret);
NsresClient *nsres_client_free(NsresClient *c);
/* Let polkit ask the user (an authentication agent) where a call needs it;
 * off by default, and then such calls fail with
 * NSRES_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED. */
void nsres_client_set_interactive(NsresClient *c, bool interactive);

/* The last refused call's error; NSRES_ERROR_NONE after a success. */
NsresError nsres_client_error(const NsresClient *c);
const char *nsres_client_error_name(const NsresClient *c);    /* NULL after a success */
const char *nsres_client_error_message(const NsresClient *c); /* NULL after a success */
/* The D-Bus name's type, and back ("...Error.NameExists" <-> NSRES_ERROR_NAME_EXISTS). */
NsresError nsres_error_from_name(const char *dbus_error_name);
const char *nsres_error_to_name(NsresError e);

/* An empty user namespace of the caller's, and with NSRES_CREATE_NETNS a
 * network namespace that it owns, both kept alive by the returned fds
 * (close-on-exec) only: the child process that made them has exited and been
 * reaped. The caller may join them with setns() from a single-threaded
 * child. ret_netns_fd may be NULL without the flag. */
#define NSRES_CREATE_NETNS (UINT32_C(1) << 0)
int nsres_userns_create(uint32_t flags, int *ret_userns_fd, int *ret_netns_fd);

/* AllocateUserRange flags. */
#define NSRES_MANGLE_NAME (UINT64_C(1) << 0)
#define NSRES_SELF (UINT64_C(1) << 1)
#define NSRES_MAP_CALLER (UINT64_C(1) << 2)

typedef struct NsresAllocation {
        char *object_path;
        char *name;             /* the final name */
        uint32_t uid_start;
        uint32_t gid_start;
} NsresAllocation;

/* AllocateUserRange: maps the namespace (size 65536, or 1 with NSRES_SELF). */
int nsres_allocate(NsresClient *c, int userns_fd, const char *name, uint32_t size, uint32_t target, uint64_t flags,
                   NsresAllocation *ret);
void nsres_allocation_done(NsresAllocation *a);

/* AddControlGroupToUserNamespace; *ret_path the cgroup's path below the
 * cgroup2 mount. */
#define NSRES_CGROUP_CREATE_CHILD (UINT64_C(1) << 0)
int nsres_add_cgroup(NsresClient *c, int userns_fd, int cgroup_fd, uint64_t flags, char **ret_path);

/* AddNetworkToUserNamespace; ifname NULL or "" for the service's default. */
int nsres_add_network(NsresClient *c, int userns_fd, int netns_fd, const char *ifname, char **ret_host_ifname,
                      char **ret_namespace_ifname);

/* DelegateBpf: NULL-terminated name lists (NULL: none of that kind);
 * *ret_bpffs_fd is the mount's O_PATH fd, close-on-exec, the caller's. */
int nsres_delegate_bpf(NsresClient *c, int userns_fd, const char *const *cmds, const char *const *maps,
                       const char *const *progs, const char *const *attachs, int *ret_bpffs_fd);

/* Allocation and what goes with it, in one call. */
typedef struct NsresRequest {
        const char *name;       /* 1-16 of [A-Za-z0-9_-] */
        uint32_t size;          /* 65536 or 1 */
        uint32_t target;        /* first id inside */
        uint64_t flags;         /* NSRES_SELF, NSRES_MAP_CALLER, NSRES_MANGLE_NAME */
        bool cgroup;            /* a new leaf made in cgroup_fd (CREATE_CHILD) and delegated */
        int cgroup_fd;
        bool network;           /* a veth into netns_fd */
        const char *ifname;     /* its name inside; NULL: the default */
} NsresRequest;

typedef struct NsresResult {
        NsresAllocation allocation;
        char *cgroup_path;      /* NULL without a cgroup */
        char *host_ifname;      /* NULL without network */
        char *namespace_ifname;
} NsresResult;

/* If a step after the allocation fails, the namespace keeps its range
 * (its maps are written) until it is destroyed: close every fd of it. */
int nsres_setup(NsresClient *c, int userns_fd, int netns_fd, const NsresRequest *req, NsresResult *ret);
void nsres_result_done(NsresResult *r);

#ifdef __cplusplus
}
#endif
