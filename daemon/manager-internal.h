/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the manager's three parts share: manager.c (state, namespaces,
 * teardown, start-up), request.c (an allocation or registration from the
 * call to the written map) and manager-bus.c (the D-Bus surface).
 */

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "allocator.h"
#include "bpftoken.h"
#include "cgroup.h"
#include "claims.h"
#include "config.h"
#include "hashmap.h"
#include "manager.h"
#include "netif.h"
#include "registry.h"
#include "restrict.h"
#include "track.h"
#include "userns.h"

#define BUS_NAME "org.freedesktop.NamespaceResource1"
#define MANAGER_PATH "/org/freedesktop/NamespaceResource1"
#define MANAGER_IFACE "org.freedesktop.NamespaceResource1.Manager"
#define USERNS_PATH_PREFIX "/org/freedesktop/NamespaceResource1/userns"
#define USERNS_IFACE "org.freedesktop.NamespaceResource1.UserNamespace"
#define ERROR_PREFIX "org.freedesktop.NamespaceResource1.Error."

/* MESSAGE_IDs of the journal messages an audit trail is built from; their
 * fields are NSRESD_NAME, NSRESD_OWNER, NSRESD_KIND, NSRESD_UID_START,
 * NSRESD_GID_START, NSRESD_SIZE, NSRESD_TARGET, NSRESD_NS_ID,
 * NSRESD_NS_INODE and NSRESD_OBJECT. */
#define MESSAGE_NAMESPACE_ALLOCATED "9b4762abf6ab42c69d4f93be048a1b2a"
#define MESSAGE_NAMESPACE_RELEASED "7258491f02a840949a2fd3e9654f9334"
#define MESSAGE_RANGE_KEPT "9f1597472e2441c2988630253ec578f5"       /* its call failed after a map was written */
#define MESSAGE_CONFIG_RELOADED "24bf1a0eb12e44b3836b813d3626aeca"
#define MESSAGE_BPF_DELEGATED "f1a5127f5f9f47c99e988b5e2f9025c7"      /* a bpffs with delegate_* was made for it */

#define ALLOCATE_MANGLE_NAME (UINT64_C(1) << 0)
#define ALLOCATE_SELF (UINT64_C(1) << 1)
#define ALLOCATE_MAP_CALLER (UINT64_C(1) << 2)
#define ALLOCATE_FLAGS_ALL (ALLOCATE_MANGLE_NAME | ALLOCATE_SELF | ALLOCATE_MAP_CALLER)

#define ADD_CGROUP_CREATE_CHILD (UINT64_C(1) << 0)
#define ADD_CGROUP_FLAGS_ALL ADD_CGROUP_CREATE_CHILD

/* AddNetworkToUserNamespace and AddTapToUserNamespace take no flags yet. */
#define ADD_NETIF_FLAGS_ALL UINT64_C(0)
/* Reload takes no flags yet. */
#define RELOAD_FLAGS_ALL UINT64_C(0)

/* Requests in flight from all callers together: one per helper process at
 * most, so this also bounds the processes the daemon forks. */
#define MAX_REQUESTS_TOTAL 4096u
/* dbus-daemon lets a connection wait for at most 128 replies on the system
 * bus (max_replies_per_connection); past that our calls would fail. Requests
 * queue for a slot instead. Caller lookups get slots of their own: they are
 * quick, and the per-caller limits that protect polkit need the uid first. */
#define MAX_POLKIT_CALLS 80u
#define MAX_LOOKUP_CALLS 32u
/* Unique names are never reused while the bus runs, so the uid behind one
 * stays true; the cache is only bounded. */
#define MAX_CACHED_CALLERS 4096u
/* A helper only has to join a namespace and wait: a live one that has not
 * reported within this time has been stopped, most likely by the caller. */
#define HELPER_TIMEOUT_USEC (5ULL * 1000000ULL)
#define POLL_INTERVAL_USEC (1ULL * 1000000ULL)
/* With BPF tracking a sweep is only a safety net. */
#define BACKSTOP_SWEEP_USEC (60ULL * 1000000ULL)
#define CLAIMS_REFRESH_USEC (60ULL * 1000000ULL)
#define INDEX_DELAY_USEC (20ULL * 1000ULL)
/* The event fires as free_user_ns() starts; the handle goes stale a moment
 * later, and a parent freed in the same call later still. A namespace that
 * still opens is polled instead of trusting the event: after 2 ms, then
 * twice as long each time up to once a second, for 30 s. A loaded machine
 * can keep the rest of free_user_ns() off the CPU for longer than a fixed
 * burst of polls would last; past the window, the namespace lives (an
 * ancestor's event while it has other children). */
#define RECHECK_FIRST_USEC (2ULL * 1000ULL)
#define RECHECK_MAX_USEC (1ULL * 1000000ULL)
#define RECHECK_WINDOW_USEC (30ULL * 1000000ULL)
#define RECHECK_BATCH 64u
#define RECHECK_ACCURACY_USEC 100u
/* Polling and the NSS index promise short delays: not sd-event's default 250 ms slack. */
#define TIMER_ACCURACY_USEC (5ULL * 1000ULL)
/* A delegated cgroup whose killed processes have not left yet is removed
 * again after 2 ms, then after twice as long each time up to once a second,
 * for about five minutes. */
#define CGROUP_REMOVAL_FIRST_USEC (2ULL * 1000ULL)
#define CGROUP_REMOVAL_MAX_USEC (1ULL * 1000000ULL)
#define CGROUP_REMOVAL_TRIES 310u

/* A mount delegated by its reusable id (a kernel without unique mount ids):
 * while we hold it, no other mount can get that id. */
typedef struct HeldMount {
        uint64_t id;
        int fd;
} HeldMount;

typedef struct Namespace {
        Manager *manager;
        NsEntry e;              /* e.mounts: delegated mounts with unique ids */
        char path[sizeof(USERNS_PATH_PREFIX) + 21];
        uint64_t event_usec;    /* CLOCK_MONOTONIC of its teardown event */
        uint64_t recheck_usec;  /* while a suspect: its next liveness check */
        uint64_t recheck_delay; /* ... and the delay before the one after */
        HeldMount *held_mounts; /* never persisted: they end with the service */
        unsigned n_held_mounts;
        unsigned cgroups_reserved;      /* cgroup slots held by requests in flight */
        unsigned netifs_reserved;       /* link slots held by requests in flight */
        unsigned bpf_reserved;          /* DelegateBpf slots held by requests in flight */
} Namespace;

typedef enum RequestKind {
        REQUEST_ALLOCATE,
        REQUEST_REGISTER,
        REQUEST_ADD_MOUNT,
        REQUEST_ADD_CGROUP,
        REQUEST_ADD_NETIF,
        REQUEST_RELOAD,
        REQUEST_DELEGATE_BPF,
} RequestKind;

typedef struct CallQueue {
        unsigned max;
        unsigned n;
        struct Request *head, *tail;
        bool dispatching;
} CallQueue;

typedef struct Request Request;

struct Manager {
        sd_event *event;
        unsigned n_outside_pools;       /* transient namespaces loaded with ranges the pools do not hold */
        sd_bus *bus;
        Config config;
        char *config_path;
        char *state_dir;
        char *bpf_dir;

        Allocator *allocator;
        Registry *registry;
        Tracker *tracker;
        Restrictor *restrictor; /* loaded and attached: the restriction is enforcing */
        Claims claims;

        Hashmap *by_id;         /* u64 -> Namespace */
        Hashmap *by_inode;      /* u64 -> Namespace */
        Hashmap *by_name;       /* name -> Namespace */
        Hashmap *pending_ids;   /* u64 -> Request */
        Hashmap *pending_names; /* name -> Request */
        Hashmap *requests_per_caller;   /* uid -> count, stored as a pointer */
        Hashmap *helpers;       /* pid -> HelperWatch, until reaped */
        Hashmap *suspects;      /* u64 -> Namespace whose teardown event came before its death */
        Hashmap *caller_uids;   /* unique bus name -> CallerUid */
        Hashmap *identifying;   /* unique bus name -> SenderQueue */
        Hashmap *cgroups;       /* u64 cgroup id -> Namespace it is delegated to */
        Hashmap *cgroup_removals;       /* u64 cgroup id -> CgroupRemoval still to finish */
        Hashmap *netifs_per_owner;      /* uid -> links recorded or being made, stored as a pointer */
        CallQueue polkit_calls;
        CallQueue lookup_calls;
        unsigned n_requests;

        uint64_t own_userns_id;
        int nsfs_fd;            /* our own user namespace: any nsfs fd opens handles */
        int state_lock_fd;      /* holds the state directory's lock while we run */
        CgroupMount cgroup_mount;       /* .fd < 0 until a cgroup2 mount is found */
        uint8_t netif_key[NETIF_KEY_SIZE];
        bool netif_key_loaded;

        sd_event_source *teardown_source;
        sd_event_source *sweep_timer;
        sd_event_source *recheck_timer;
        sd_event_source *claims_timer;
        sd_event_source *claims_watch;
        sd_event_source *index_timer;
        sd_event_source *cgroup_removal_timer;
        uint64_t claims_refreshed_usec;         /* CLOCK_MONOTONIC */
        sd_bus_slot *manager_slot, *userns_slot, *enumerator_slot, *object_manager_slot, *object_filter_slot;

        HelperMode helper_mode;
        const char *restriction;        /* what is in effect */
        char *restriction_reason;       /* why it is not, when it was meant to be */
        bool warned_permissive;
        char *fault_kill_after_map;     /* test-only fault injection, by final name */
        char *fault_helper_stop;
        char *fault_kill_after_cgroup_record;
        char *fault_kill_after_cgroup_create;
        char *fault_kill_after_netif_record;
        bool fault_no_bpf;
        bool fault_no_cgroup_kill;
};

/* Test-only fault injection (NSRESD_FAULT): faults name the namespace they hit by its final name. */
static inline bool fault_matches(const char *fault, const char *name) {
        return fault && strcmp(fault, name) == 0;
}

/* manager.c */
uint64_t now_realtime_usec(void);
/* A structured message about one namespace (MESSAGE_* above), with every
 * field; the text should say the same in words. */
void log_namespace_event(int level, const char *message_id, const NsEntry *e, const char *format, ...)
        __attribute__((format(printf, 4, 5)));
Namespace *namespace_new(Manager *m, const NsEntry *e);
Namespace *namespace_free(Namespace *ns);
int namespace_index(Manager *m, Namespace *ns);
unsigned namespace_n_mounts(const Namespace *ns);
bool namespace_has_mount(const Namespace *ns, uint64_t mnt_id);
/* Delegate a mount: 1 if added, 0 if it already was, -E2BIG past the limit.
 * For a reusable id (!unique) *fd moves into the namespace when added. */
int namespace_add_mount(Manager *m, Namespace *ns, uint64_t mnt_id, bool unique, int *fd);
/* Records a bpffs made for the namespace: -E2BIG past NS_BPF_MAX. */
int namespace_add_bpf(Manager *m, Namespace *ns, const BpfDelegation *d);
/* Where control groups are: found on first use, so that a cgroup2 mount
 * made after the service started is found too. -ENOENT if there is none. */
int manager_cgroup_mount(Manager *m, const CgroupMount **ret);
/* Whether `info` (our fd of it: fd) may be delegated to ns as it is, or
 * (create) have a leaf made in it for ns: 0 if so; -EALREADY if it is (or
 * its leaf for ns is) delegated already, -ENOTEMPTY if it is not an empty
 * leaf, -EEXIST if the leaf's name is taken by a cgroup nsresd did not make
 * for ns. */
int namespace_check_cgroup(Manager *m, const Namespace *ns, int fd, const CgroupInfo *info, bool create);
/* Record, then make (create) and delegate: the same answers, and the path
 * of the delegated leaf in *ret_path. */
int namespace_add_cgroup(Manager *m, Namespace *ns, int fd, const CgroupInfo *info, bool create, char **ret_path);
/* The name of the leaf made for ns with CREATE_CHILD. */
void namespace_cgroup_leaf_name(const Namespace *ns, char *buf, size_t size);
/* Links recorded for, or being made for, namespaces of uid. */
unsigned manager_owner_netifs(Manager *m, uid_t uid);
int manager_owner_netifs_add(Manager *m, uid_t uid, int delta);
/* Links in the namespace, and slots held by calls in flight. */
unsigned namespace_n_netifs(const Namespace *ns);
/* Forget links that no longer exist (a tap whose last fd was closed, a
 * veth whose netns died): they hold no slot. */
void namespace_prune_netifs(Manager *m, Namespace *ns);
/* Record, then create a veth (netns_fd, ifname) or a tap (netns_fd < 0;
 * its fd in *ret_tap_fd). The host name in ret_host, the peer's name or
 * the tap's label in ret_inside. -E2BIG past the namespace's limit,
 * -EEXIST if the name is taken (recorded for ns already, in the netns, or
 * on the host), or what netif_create_*() says. */
int namespace_add_netif(Manager *m, Namespace *ns, NsNetifKind kind, int netns_fd, const char *ifname,
                        char ret_host[static NETIF_NAME_SIZE], char ret_inside[static NETIF_NAME_SIZE],
                        int *ret_tap_fd);
void emit_manager_counts(Manager *m);
void manager_index_dirty(Manager *m);
void manager_index_add(Manager *m, const Namespace *ns);
int manager_refresh_claims(Manager *m);
/* Refresh unless that happened in the last few seconds: > 0 if it ran. */
int manager_refresh_claims_ratelimited(Manager *m);

/* request.c */
int request_start(Manager *m, sd_bus_message *message, RequestKind kind, const char *given_name,
                  int fd, const UsernsInfo *info, NsKind ns_kind, uint32_t size, uint32_t target,
                  uint64_t flags, sd_bus_error *error);
/* AddMountToUserNamespace on a published namespace, once the caller's uid
 * and polkit allow it. mount_fd is duplicated. */
int request_start_add_mount(Manager *m, sd_bus_message *message, const Namespace *ns, int mount_fd,
                            uint64_t mnt_id, bool unique, sd_bus_error *error);
/* AddControlGroupToUserNamespace on an inspected cgroup: takes a cgroup
 * slot of ns at once (the limit holds for calls in flight), and over
 * *cgroup_fd and *info; the cgroup is checked once the caller is known. */
int request_start_add_cgroup(Manager *m, sd_bus_message *message, Namespace *ns, int *cgroup_fd,
                             CgroupInfo *info, bool create, sd_bus_error *error);
/* AddNetworkToUserNamespace (netns_fd >= 0, duplicated) or
 * AddTapToUserNamespace (netns_fd < 0): takes a link slot of ns and of its
 * owner at once, so that the limits hold for calls in flight. */
int request_start_add_netif(Manager *m, sd_bus_message *message, Namespace *ns, int netns_fd, const char *ifname,
                            sd_bus_error *error);
/* Reload: the caller's uid, then polkit (action manage; root always may),
 * then manager_reload(). */
int request_start_reload(Manager *m, sd_bus_message *message, sd_bus_error *error);
/* userns_fd is the caller's, checked to be ns's; it is duplicated. */
int request_start_delegate_bpf(Manager *m, sd_bus_message *message, Namespace *ns, int userns_fd,
                               const BpfDelegation *d, sd_bus_error *error);
/* Put allocations in flight that have taken a range into the restriction
 * just loaded: they are not in the registry's namespaces yet. */
int requests_join_restriction(Manager *m);
/* Drop a request in flight without answering it (the service stops). */
void request_abandon(Request *req);
/* Kill and reap helpers still running: they may run on memory we own. */
void manager_reap_helpers(Manager *m);
void caller_uids_clear(Manager *m);

/* manager-bus.c */
int manager_bus_register(Manager *m);
