/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libnsres: the calls of org.freedesktop.NamespaceResource1 a sandbox tool
 * makes, and the user namespace it makes them for. */

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "nsres.h"
#include "util.h"

#define SERVICE_NAME "org.freedesktop.NamespaceResource1"
#define MANAGER_PATH "/org/freedesktop/NamespaceResource1"
#define MANAGER_INTERFACE "org.freedesktop.NamespaceResource1.Manager"
#define ERROR_PREFIX "org.freedesktop.NamespaceResource1.Error."

/* Polkit may wait for a person to type a password before the service
 * answers; sd-bus' 25 s default is too short for that. */
#define CALL_TIMEOUT_USEC (UINT64_C(120) * UINT64_C(1000000))

static void *mfree(void *p) {
        free(p);
        return NULL;
}

static int safe_close(int fd) {
        if (fd >= 0)
                close(fd);
        return -1;
}

struct NsresClient {
        sd_bus *bus;
        bool interactive;
        NsresError error;
        char *error_name;
        char *error_message;
};

static const char *const error_names[_NSRES_ERROR_MAX] = {
        [NSRES_ERROR_NOT_SUPPORTED] = ERROR_PREFIX "NotSupported",
        [NSRES_ERROR_INVALID_NAME] = ERROR_PREFIX "InvalidName",
        [NSRES_ERROR_INVALID_SIZE] = ERROR_PREFIX "InvalidSize",
        [NSRES_ERROR_NAME_EXISTS] = ERROR_PREFIX "NameExists",
        [NSRES_ERROR_NOT_A_USER_NAMESPACE] = ERROR_PREFIX "NotAUserNamespace",
        [NSRES_ERROR_NOT_OWNER] = ERROR_PREFIX "NotOwner",
        [NSRES_ERROR_BAD_NESTING] = ERROR_PREFIX "BadNesting",
        [NSRES_ERROR_ALREADY_MAPPED] = ERROR_PREFIX "AlreadyMapped",
        [NSRES_ERROR_USER_NAMESPACE_EXISTS] = ERROR_PREFIX "UserNamespaceExists",
        [NSRES_ERROR_NO_RANGE_AVAILABLE] = ERROR_PREFIX "NoRangeAvailable",
        [NSRES_ERROR_TOO_MANY_NAMESPACES] = ERROR_PREFIX "TooManyNamespaces",
        [NSRES_ERROR_TOO_MANY_REQUESTS] = ERROR_PREFIX "TooManyRequests",
        [NSRES_ERROR_NOT_REGISTERED] = ERROR_PREFIX "NotRegistered",
        [NSRES_ERROR_NO_USER_RANGE] = ERROR_PREFIX "NoUserRange",
        [NSRES_ERROR_NOT_A_CONTROL_GROUP] = ERROR_PREFIX "NotAControlGroup",
        [NSRES_ERROR_CONTROL_GROUP_NOT_EMPTY] = ERROR_PREFIX "ControlGroupNotEmpty",
        [NSRES_ERROR_CONTROL_GROUP_ALREADY_ADDED] = ERROR_PREFIX "ControlGroupAlreadyAdded",
        [NSRES_ERROR_TOO_MANY_CONTROL_GROUPS] = ERROR_PREFIX "TooManyControlGroups",
        [NSRES_ERROR_NOT_A_NETWORK_NAMESPACE] = ERROR_PREFIX "NotANetworkNamespace",
        [NSRES_ERROR_WRONG_NETWORK_NAMESPACE] = ERROR_PREFIX "WrongNetworkNamespace",
        [NSRES_ERROR_INVALID_INTERFACE_NAME] = ERROR_PREFIX "InvalidInterfaceName",
        [NSRES_ERROR_TOO_MANY_NETWORK_INTERFACES] = ERROR_PREFIX "TooManyNetworkInterfaces",
        [NSRES_ERROR_NOT_A_MOUNT] = ERROR_PREFIX "NotAMount",
        [NSRES_ERROR_BPF_DELEGATION_FAILED] = ERROR_PREFIX "BpfDelegationFailed",
        [NSRES_ERROR_BAD_CONFIGURATION] = ERROR_PREFIX "BadConfiguration",
        [NSRES_ERROR_ACCESS_DENIED] = SD_BUS_ERROR_ACCESS_DENIED,
        [NSRES_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED] = SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
        [NSRES_ERROR_INVALID_ARGS] = SD_BUS_ERROR_INVALID_ARGS,
        [NSRES_ERROR_SERVICE_UNKNOWN] = SD_BUS_ERROR_SERVICE_UNKNOWN,
};

NsresError nsres_error_from_name(const char *dbus_error_name) {
        if (!dbus_error_name)
                return NSRES_ERROR_NONE;

        for (size_t e = 0; e < _NSRES_ERROR_MAX; e++)
                if (error_names[e] && strcmp(error_names[e], dbus_error_name) == 0)
                        return (NsresError) e;

        /* The bus' answers when no nsresd runs: nobody has the name, or
         * activating it failed. */
        if (strcmp(dbus_error_name, SD_BUS_ERROR_NAME_HAS_NO_OWNER) == 0 ||
            strncmp(dbus_error_name, "org.freedesktop.DBus.Error.Spawn.", strlen("org.freedesktop.DBus.Error.Spawn.")) == 0)
                return NSRES_ERROR_SERVICE_UNKNOWN;

        return NSRES_ERROR_OTHER;
}

const char *nsres_error_to_name(NsresError e) {
        if ((unsigned) e >= _NSRES_ERROR_MAX)
                return NULL;
        return error_names[e];
}

static void client_clear_error(NsresClient *c) {
        c->error = NSRES_ERROR_NONE;
        c->error_name = mfree(c->error_name);
        c->error_message = mfree(c->error_message);
}

/* Keeps what the bus or the service said. Without memory for the strings the
 * type still holds, which is what callers branch on. */
static int client_set_error(NsresClient *c, const sd_bus_error *error) {
        client_clear_error(c);
        c->error = nsres_error_from_name(error->name);
        c->error_name = strdup(error->name);
        if (error->message)
                c->error_message = strdup(error->message);
        return -EREMOTEIO;
}

int nsres_client_new(NsresClient **ret) {
        _cleanup_free_ NsresClient *c = NULL;
        int r;

        if (!ret)
                return -EINVAL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;

        r = sd_bus_open_system(&c->bus);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

NsresClient *nsres_client_free(NsresClient *c) {
        if (!c)
                return NULL;

        sd_bus_flush_close_unref(c->bus);
        client_clear_error(c);
        free(c);
        return NULL;
}

void nsres_client_set_interactive(NsresClient *c, bool interactive) {
        if (c)
                c->interactive = interactive;
}

NsresError nsres_client_error(const NsresClient *c) {
        return c ? c->error : NSRES_ERROR_NONE;
}

const char *nsres_client_error_name(const NsresClient *c) {
        return c ? c->error_name : NULL;
}

const char *nsres_client_error_message(const NsresClient *c) {
        return c ? c->error_message : NULL;
}

static int client_new_call(NsresClient *c, const char *method, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &m, SERVICE_NAME, MANAGER_PATH, MANAGER_INTERFACE, method);
        if (r < 0)
                return r;
        r = sd_bus_message_set_allow_interactive_authorization(m, c->interactive);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(m);
        return 0;
}

static int client_call(NsresClient *c, sd_bus_message *m, sd_bus_message **ret_reply) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        client_clear_error(c);

        r = sd_bus_call(c->bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return sd_bus_error_is_set(&error) ? client_set_error(c, &error) : r;

        *ret_reply = TAKE_PTR(reply);
        return 0;
}

/* The child's half of nsres_userns_create(): make the namespaces and send
 * their fds, or the errno, to the parent. The child opens them itself, as
 * /proc/self: a parent that changed its ids (a setuid program) is not
 * dumpable, and could not open them as /proc/<child>. Only
 * async-signal-safe calls: the caller may have threads. */
static _Noreturn void userns_child(int sock, int flags) {
        union {
                struct cmsghdr header;
                char buf[CMSG_SPACE(2 * sizeof(int))];
        } control = {};
        int error = 0, fds[2] = { -1, -1 }, n_fds = 0;
        struct iovec iov = { .iov_base = &error, .iov_len = sizeof(error) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        struct cmsghdr *cmsg;

        /* In one call: the network namespace then belongs to the new user
         * namespace, which the service checks before it adds a veth. */
        if (unshare(flags) < 0)
                error = errno;
        if (error == 0 && (fds[n_fds++] = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC)) < 0)
                error = errno;
        if (error == 0 && (flags & CLONE_NEWNET) &&
            (fds[n_fds++] = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
                error = errno;

        if (error == 0) {
                mh.msg_control = control.buf;
                mh.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
                cmsg = CMSG_FIRSTHDR(&mh);
                cmsg->cmsg_level = SOL_SOCKET;
                cmsg->cmsg_type = SCM_RIGHTS;
                cmsg->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
                memcpy(CMSG_DATA(cmsg), fds, n_fds * sizeof(int));
        }
        while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
                if (errno != EINTR)
                        _exit(EXIT_FAILURE);
        _exit(EXIT_SUCCESS);
}

/* The parent's half: the child's errno, or n_fds fds (close-on-exec). */
static int receive_ns_fds(int sock, int *fds, size_t n_fds) {
        union {
                struct cmsghdr header;
                char buf[CMSG_SPACE(2 * sizeof(int))];
        } control = {};
        int error = 0, received[2] = { -1, -1 };
        struct iovec iov = { .iov_base = &error, .iov_len = sizeof(error) };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        size_t n_received = 0;
        struct cmsghdr *cmsg;
        ssize_t n;

        while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0)
                if (errno != EINTR)
                        return -errno;

        for (cmsg = CMSG_FIRSTHDR(&mh); cmsg; cmsg = CMSG_NXTHDR(&mh, cmsg))
                if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
                        n_received = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        if (n_received > ELEMENTSOF(received))
                                n_received = ELEMENTSOF(received);
                        memcpy(received, CMSG_DATA(cmsg), n_received * sizeof(int));
                }

        /* End of file: the child died before it could say anything. */
        /* cppcheck-suppress knownConditionTrueFalse ; recvmsg() fills error through the iovec */
        if (n != (ssize_t) sizeof(error) || error != 0 || n_received != n_fds ||
            (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                for (size_t i = 0; i < n_received; i++)
                        safe_close(received[i]);
                /* cppcheck-suppress knownConditionTrueFalse ; as above */
                return n == (ssize_t) sizeof(error) && error > 0 ? -error : -EIO;
        }

        memcpy(fds, received, n_fds * sizeof(int));
        return 0;
}

int nsres_userns_create(uint32_t flags, int *ret_userns_fd, int *ret_netns_fd) {
        _cleanup_close_ int parent_sock = -1, child_sock = -1;
        bool netns = flags & NSRES_CREATE_NETNS;
        int socks[2], fds[2] = { -1, -1 }, r;
        pid_t child;

        if ((flags & ~NSRES_CREATE_NETNS) || !ret_userns_fd || (netns && !ret_netns_fd))
                return -EINVAL;

        /* Datagrams: the answer and its fds arrive whole, or not at all. */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, socks) < 0)
                return -errno;
        parent_sock = socks[0];
        child_sock = socks[1];

        child = fork();
        if (child < 0)
                return -errno;
        if (child == 0)
                userns_child(child_sock, CLONE_NEWUSER | (netns ? CLONE_NEWNET : 0));

        /* Ours closed, a child that dies early gives end of file. */
        child_sock = safe_close(child_sock);

        r = receive_ns_fds(parent_sock, fds, netns ? 2 : 1);
        /* The fds in flight hold the namespaces; the child has nothing left
         * to do. ECHILD: the caller ignores SIGCHLD and the kernel reaped it. */
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
                ;
        if (r < 0)
                return r;

        *ret_userns_fd = fds[0];
        if (ret_netns_fd)
                *ret_netns_fd = fds[1];
        return 0;
}

int nsres_allocate(NsresClient *c, int userns_fd, const char *name, uint32_t size, uint32_t target, uint64_t flags,
                   NsresAllocation *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ char *path_copy = NULL, *name_copy = NULL;
        const char *path, *final_name;
        uint32_t uid_start, gid_start;
        int r;

        if (!c || userns_fd < 0 || !name || !ret)
                return -EINVAL;

        r = client_new_call(c, "AllocateUserRange", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "suuht", name, size, target, userns_fd, flags);
        if (r < 0)
                return r;
        r = client_call(c, m, &reply);
        if (r < 0)
                return r;

        r = sd_bus_message_read(reply, "osuu", &path, &final_name, &uid_start, &gid_start);
        if (r < 0)
                return r;
        path_copy = strdup(path);
        name_copy = strdup(final_name);
        if (!path_copy || !name_copy)
                return -ENOMEM;

        *ret = (NsresAllocation) {
                .object_path = TAKE_PTR(path_copy),
                .name = TAKE_PTR(name_copy),
                .uid_start = uid_start,
                .gid_start = gid_start,
        };
        return 0;
}

void nsres_allocation_done(NsresAllocation *a) {
        if (!a)
                return;
        a->object_path = mfree(a->object_path);
        a->name = mfree(a->name);
}

int nsres_add_cgroup(NsresClient *c, int userns_fd, int cgroup_fd, uint64_t flags, char **ret_path) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        char *copy;
        int r;

        if (!c || userns_fd < 0 || cgroup_fd < 0)
                return -EINVAL;

        r = client_new_call(c, "AddControlGroupToUserNamespace", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "hht", userns_fd, cgroup_fd, flags);
        if (r < 0)
                return r;
        r = client_call(c, m, &reply);
        if (r < 0)
                return r;

        r = sd_bus_message_read(reply, "s", &path);
        if (r < 0)
                return r;
        if (ret_path) {
                copy = strdup(path);
                if (!copy)
                        return -ENOMEM;
                *ret_path = copy;
        }
        return 0;
}

int nsres_add_network(NsresClient *c, int userns_fd, int netns_fd, const char *ifname, char **ret_host_ifname,
                      char **ret_namespace_ifname) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ char *host_copy = NULL, *inside_copy = NULL;
        const char *host, *inside;
        int r;

        if (!c || userns_fd < 0 || netns_fd < 0)
                return -EINVAL;

        r = client_new_call(c, "AddNetworkToUserNamespace", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "hhst", userns_fd, netns_fd, ifname ?: "", UINT64_C(0));
        if (r < 0)
                return r;
        r = client_call(c, m, &reply);
        if (r < 0)
                return r;

        r = sd_bus_message_read(reply, "ss", &host, &inside);
        if (r < 0)
                return r;
        host_copy = strdup(host);
        inside_copy = strdup(inside);
        if (!host_copy || !inside_copy)
                return -ENOMEM;

        if (ret_host_ifname)
                *ret_host_ifname = TAKE_PTR(host_copy);
        if (ret_namespace_ifname)
                *ret_namespace_ifname = TAKE_PTR(inside_copy);
        return 0;
}

int nsres_delegate_bpf(NsresClient *c, int userns_fd, const char *const *cmds, const char *const *maps,
                       const char *const *progs, const char *const *attachs, int *ret_bpffs_fd) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        static const char *const none[] = { NULL };
        const char *const *lists[] = { cmds, maps, progs, attachs };
        int fd, r;

        if (!c || userns_fd < 0 || !ret_bpffs_fd)
                return -EINVAL;

        r = client_new_call(c, "DelegateBpf", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "h", userns_fd);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(lists); i++)
                r = sd_bus_message_append_strv(m, (char **) (lists[i] ?: none));
        if (r >= 0)
                r = sd_bus_message_append(m, "t", UINT64_C(0));
        if (r < 0)
                return r;
        r = client_call(c, m, &reply);
        if (r < 0)
                return r;

        r = sd_bus_message_read(reply, "h", &fd);
        if (r < 0)
                return r;
        /* The reply owns fd and closes it when it goes. */
        fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;

        *ret_bpffs_fd = fd;
        return 0;
}

int nsres_setup(NsresClient *c, int userns_fd, int netns_fd, const NsresRequest *req, NsresResult *ret) {
        _cleanup_(nsres_result_done) NsresResult result = {};
        int r;

        if (!c || !req || !ret || (req->cgroup && req->cgroup_fd < 0) || (req->network && netns_fd < 0))
                return -EINVAL;

        r = nsres_allocate(c, userns_fd, req->name, req->size, req->target, req->flags, &result.allocation);
        if (r < 0)
                return r;
        if (req->cgroup) {
                r = nsres_add_cgroup(c, userns_fd, req->cgroup_fd, NSRES_CGROUP_CREATE_CHILD, &result.cgroup_path);
                if (r < 0)
                        return r;
        }
        if (req->network) {
                r = nsres_add_network(c, userns_fd, netns_fd, req->ifname, &result.host_ifname,
                                      &result.namespace_ifname);
                if (r < 0)
                        return r;
        }

        *ret = result;
        result = (NsresResult) {};
        return 0;
}

void nsres_result_done(NsresResult *r) {
        if (!r)
                return;
        nsres_allocation_done(&r->allocation);
        r->cgroup_path = mfree(r->cgroup_path);
        r->host_ifname = mfree(r->host_ifname);
        r->namespace_ifname = mfree(r->namespace_ifname);
}
