/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The manager owns every resource of the daemon and is where D-Bus calls turn
 * into work: it validates arguments, reserves names, quota and namespace ids,
 * asks polkit, and then drives the allocation through the allocator, the
 * registry, the tracker and the userns helper, in the contract's order.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "allocator.h"
#include "claims.h"
#include "hashmap.h"
#include "log.h"
#include "manager.h"
#include "names.h"
#include "polkit.h"
#include "registry.h"
#include "track.h"
#include "userns.h"
#include "util.h"

#define BUS_NAME "org.freedesktop.NamespaceResource1"
#define MANAGER_PATH "/org/freedesktop/NamespaceResource1"
#define MANAGER_IFACE "org.freedesktop.NamespaceResource1.Manager"
#define USERNS_PATH_PREFIX "/org/freedesktop/NamespaceResource1/userns"
#define USERNS_IFACE "org.freedesktop.NamespaceResource1.UserNamespace"
#define ERROR_PREFIX "org.freedesktop.NamespaceResource1.Error."

#define ALLOCATE_MANGLE_NAME (UINT64_C(1) << 0)
#define ALLOCATE_SELF (UINT64_C(1) << 1)
#define ALLOCATE_MAP_CALLER (UINT64_C(1) << 2)
#define ALLOCATE_FLAGS_ALL (ALLOCATE_MANGLE_NAME | ALLOCATE_SELF | ALLOCATE_MAP_CALLER)

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
 * still opens is polled briefly instead of trusting the event. */
#define RECHECK_USEC (2ULL * 1000ULL)
#define RECHECK_TRIES 500u
#define RECHECK_ACCURACY_USEC 100u
/* Polling and the NSS index promise short delays: not sd-event's default 250 ms slack. */
#define TIMER_ACCURACY_USEC (5ULL * 1000ULL)

typedef struct Namespace {
        Manager *manager;
        NsEntry e;
        char path[sizeof(USERNS_PATH_PREFIX) + 21];
        unsigned rechecks;      /* liveness checks left while a suspect */
        uint64_t event_usec;    /* CLOCK_MONOTONIC of its teardown event */
} Namespace;

typedef enum RequestKind {
        REQUEST_ALLOCATE,
        REQUEST_REGISTER,
} RequestKind;

typedef struct CallQueue {
        unsigned max;
        unsigned n;
        struct Request *head, *tail;
        bool dispatching;
} CallQueue;

typedef struct Request {
        Manager *manager;
        RequestKind kind;
        sd_bus_message *message;
        uint64_t flags;
        char given_name[NAME_MAX_LEN + 1];
        uint32_t size;
        uint32_t target;
        int userns_fd;
        UsernsInfo info;
        uid_t caller;
        gid_t caller_gid;
        NsEntry entry;

        bool id_reserved;
        bool name_reserved;
        bool counted_for_caller;
        bool charged;
        bool range_taken;
        bool saved;
        bool tracked;

        /* Waiting for, or holding, a slot of an outgoing call queue. */
        struct CallQueue *queue;
        void (*bus_call)(struct Request *req);
        struct Request *queue_prev, *queue_next;
        bool queued;
        bool holds_bus_slot;
        /* In its caller's arrival queue until identified. */
        struct Request *sender_next;
        bool in_sender_queue;
        bool identified;
        int identify_error;
        sd_bus_slot *uid_slot;
        PolkitCall *polkit;
        Helper helper;
        sd_event_source *helper_io;
        sd_event_source *helper_timeout;
} Request;

struct Manager {
        sd_event *event;
        sd_bus *bus;
        Config config;
        char *state_dir;
        char *bpf_dir;

        Allocator *allocator;
        Registry *registry;
        Tracker *tracker;
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
        CallQueue polkit_calls;
        CallQueue lookup_calls;
        unsigned n_requests;

        uint64_t own_userns_id;
        int nsfs_fd;            /* our own user namespace: any nsfs fd opens handles */

        sd_event_source *sweep_timer;
        sd_event_source *recheck_timer;
        sd_event_source *claims_timer;
        sd_event_source *claims_watch;
        sd_event_source *index_timer;
        sd_bus_slot *manager_slot, *userns_slot, *enumerator_slot, *object_manager_slot;

        HelperMode helper_mode;
        const char *restriction;        /* what is in effect */
        bool warned_permissive;
        char *fault_kill_after_map;     /* test-only fault injection, by final name */
        char *fault_helper_stop;
        bool fault_no_bpf;
};

typedef struct CallerUid {
        uid_t uid;
        char name[];
} CallerUid;

static const char *const kind_action[] = {
        [REQUEST_ALLOCATE] = NSRESD_ACTION_PREFIX "allocate-user-range",
        [REQUEST_REGISTER] = NSRESD_ACTION_PREFIX "register-user-namespace",
};

static uint64_t now_realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static uint64_t now_monotonic_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static bool entry_is_transient(const NsEntry *e) {
        return e->kind == NS_KIND_TRANSIENT;
}

/* ---- caller request counting ------------------------------------------- */

static unsigned caller_requests(Manager *m, uid_t uid) {
        return (unsigned) (uintptr_t) hashmap_get_u64(m->requests_per_caller, uid);
}

static int caller_requests_add(Manager *m, uid_t uid, int delta) {
        unsigned n = caller_requests(m, uid) + delta;

        hashmap_remove_u64(m->requests_per_caller, uid);
        if (n == 0)
                return 0;
        return hashmap_put_u64(m->requests_per_caller, uid, (void *) (uintptr_t) n);
}

/* ---- namespaces --------------------------------------------------------- */

static void manager_index_dirty(Manager *m);

static Namespace *namespace_new(Manager *m, const NsEntry *e) {
        Namespace *ns = calloc(1, sizeof(*ns));

        if (!ns)
                return NULL;
        ns->manager = m;
        ns->e = *e;
        snprintf(ns->path, sizeof(ns->path), USERNS_PATH_PREFIX "/%" PRIu64, e->id);
        return ns;
}

static int namespace_index(Manager *m, Namespace *ns) {
        int r;

        r = hashmap_put_u64(m->by_id, ns->e.id, ns);
        if (r < 0)
                return r;
        r = hashmap_put_string(m->by_name, ns->e.name, ns);
        if (r < 0) {
                hashmap_remove_u64(m->by_id, ns->e.id);
                return r;
        }
        /* Inodes are reused quickly; the index is for display lookups only,
         * and the newest namespace wins. */
        hashmap_remove_u64(m->by_inode, ns->e.inode);
        (void) hashmap_put_u64(m->by_inode, ns->e.inode, ns);
        return 0;
}

static void namespace_unindex(Manager *m, Namespace *ns) {
        hashmap_remove_u64(m->by_id, ns->e.id);
        hashmap_remove_string(m->by_name, ns->e.name);
        if (hashmap_get_u64(m->by_inode, ns->e.inode) == ns)
                hashmap_remove_u64(m->by_inode, ns->e.inode);
}

static void emit_manager_counts(Manager *m) {
        if (m->bus)
                (void) sd_bus_emit_properties_changed(m->bus, MANAGER_PATH, MANAGER_IFACE,
                                                      "FreeRanges", "Namespaces", NULL);
}

static void namespace_release(Manager *m, Namespace *ns, const char *why) {
        int r;

        log_info("Releasing namespace '%s' (id %" PRIu64 ", uids %" PRIu32 "+%" PRIu32 ", owner %u): %s",
                 ns->e.name, ns->e.id, ns->e.uid_start, ns->e.size, (unsigned) ns->e.owner, why);

        if (m->bus) {
                /* ObjectManager needs the object to still exist to list its
                 * interfaces in InterfacesRemoved. */
                (void) sd_bus_emit_object_removed(m->bus, ns->path);
                (void) sd_bus_emit_signal(m->bus, MANAGER_PATH, MANAGER_IFACE, "UserNamespaceRemoved",
                                          "osu", ns->path, ns->e.name, (uint32_t) ns->e.owner);
        }

        namespace_unindex(m, ns);
        hashmap_remove_u64(m->suspects, ns->e.id);
        if (m->tracker)
                (void) tracker_remove(m->tracker, ns->e.id);
        r = registry_remove(m->registry, &ns->e);
        if (r < 0)
                log_warning_errno(r, "Failed to remove registry entry of '%s': %m", ns->e.name);
        if (entry_is_transient(&ns->e)) {
                r = allocator_release(m->allocator, ns->e.uid_start, ns->e.size);
                if (r < 0)
                        log_warning_errno(r, "Range %" PRIu32 "+%" PRIu32 " of '%s' was not taken: %m",
                                          ns->e.uid_start, ns->e.size, ns->e.name);
        }
        allocator_owner_uncharge(m->allocator, ns->e.owner);
        free(ns);

        emit_manager_counts(m);
        manager_index_dirty(m);
}

static int namespace_check(Manager *m, Namespace *ns) {
        return userns_is_alive(m->nsfs_fd, ns->e.handle_type, ns->e.handle, ns->e.handle_len);
}

/* Collect first: releasing modifies the map we iterate. */
static int collect_namespaces(Manager *m, Namespace ***ret, size_t *ret_n) {
        size_t n = 0, state = 0, cap = hashmap_size(m->by_id);
        Namespace **list = calloc(cap ? cap : 1, sizeof(Namespace *));
        void *v;

        if (!list)
                return -ENOMEM;
        while (n < cap && hashmap_iterate(m->by_id, &state, &v))
                list[n++] = v;
        *ret = list;
        *ret_n = n;
        return 0;
}

static void manager_sweep(Manager *m, const char *why) {
        _cleanup_free_ Namespace **list = NULL;
        size_t n;

        if (collect_namespaces(m, &list, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++)
                if (namespace_check(m, list[i]) == 0)
                        namespace_release(m, list[i], why);
}

static void recheck_arm(Manager *m) {
        if (sd_event_source_get_enabled(m->recheck_timer, NULL) > 0)
                return;
        (void) sd_event_source_set_time_relative(m->recheck_timer, RECHECK_USEC);
        (void) sd_event_source_set_enabled(m->recheck_timer, SD_EVENT_ONESHOT);
}

static int on_recheck(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        Namespace *list[64];
        size_t n = 0, state = 0;
        void *v;

        (void) s;
        (void) usec;

        /* Suspects are few (namespaces that died in the last moments);
         * checking a bounded batch per tick keeps the loop responsive. */
        while (n < ELEMENTSOF(list) && hashmap_iterate(m->suspects, &state, &v))
                list[n++] = v;
        for (size_t i = 0; i < n; i++) {
                Namespace *ns = list[i];

                if (namespace_check(m, ns) == 0) {
                        log_debug("'%s' proven dead %.1f ms after its teardown event", ns->e.name,
                                  (now_monotonic_usec() - ns->event_usec) / 1000.0);
                        namespace_release(m, ns, "namespace destroyed");
                } else if (--ns->rechecks == 0) {
                        /* Alive after all: an ancestor event for a parent
                         * that still has other children. */
                        hashmap_remove_u64(m->suspects, ns->e.id);
                }
        }
        if (hashmap_size(m->suspects) > 0)
                recheck_arm(m);
        return 0;
}

static void on_teardown_event(uint64_t ns_id, uint64_t inode, void *userdata) {
        Manager *m = userdata;
        Namespace *ns = hashmap_get_u64(m->by_id, ns_id);
        int r;

        if (!ns) {
                log_debug("Teardown event for untracked namespace %" PRIu64 " (inode %" PRIu64 ")", ns_id, inode);
                return;
        }

        r = namespace_check(m, ns);
        if (r == 0) {
                namespace_release(m, ns, "namespace destroyed");
                return;
        }
        /* Still opens: look again shortly instead of trusting the event. */
        ns->rechecks = RECHECK_TRIES;
        ns->event_usec = now_monotonic_usec();
        if (hashmap_put_u64(m->suspects, ns->e.id, ns) == -ENOMEM)
                log_warning("Out of memory queueing '%s' for a liveness check; the periodic sweep will find it", ns->e.name);
        recheck_arm(m);
}

static int on_sweep_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        uint64_t period = m->tracker ? BACKSTOP_SWEEP_USEC : POLL_INTERVAL_USEC;

        (void) usec;

        if (m->tracker && tracker_drops(m->tracker) > 0) {
                log_warning("Teardown events were lost (ring buffer full): checking every namespace");
                tracker_reset_drops(m->tracker);
        }
        manager_sweep(m, "namespace destroyed");
        (void) sd_event_source_set_time_relative(s, period);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* ---- NSS index ---------------------------------------------------------- */

static int on_index_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        _cleanup_free_ Namespace **list = NULL;
        _cleanup_free_ const NsEntry **entries = NULL;
        size_t n;
        int r;

        (void) s;
        (void) usec;

        r = collect_namespaces(m, &list, &n);
        if (r < 0)
                return 0;
        entries = calloc(n ? n : 1, sizeof(NsEntry *));
        if (!entries)
                return 0;
        for (size_t i = 0; i < n; i++)
                entries[i] = &list[i]->e;
        r = registry_write_index(m->registry, entries, n);
        if (r < 0)
                log_warning_errno(r, "Failed to write the NSS index: %m");
        return 0;
}

/* Coalesced: under load the index is rewritten at most every INDEX_DELAY_USEC. */
static void manager_index_dirty(Manager *m) {
        int enabled;

        if (!m->index_timer)
                return;
        if (sd_event_source_get_enabled(m->index_timer, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return;
        (void) sd_event_source_set_time_relative(m->index_timer, INDEX_DELAY_USEC);
        (void) sd_event_source_set_enabled(m->index_timer, SD_EVENT_ONESHOT);
}

/* ---- claims ------------------------------------------------------------- */

static int manager_refresh_claims(Manager *m) {
        Claims c = {};
        int r;

        r = claims_collect(&claim_sources_default, &c);
        if (r < 0)
                return log_warning_errno(r, "Failed to gather ids claimed outside nsresd, keeping the old list: %m");

        allocator_exclusions_begin(m->allocator);
        for (size_t i = 0; i < c.n_ranges; i++)
                allocator_exclude(m->allocator, c.ranges[i].start, c.ranges[i].count);
        allocator_exclusions_end(m->allocator);

        claims_done(&m->claims);
        m->claims = c;
        emit_manager_counts(m);
        return 0;
}

static int on_claims_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        (void) usec;
        (void) manager_refresh_claims(m);
        (void) sd_event_source_set_time_relative(s, CLAIMS_REFRESH_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_etc_changed(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        Manager *m = userdata;
        static const char *const watched[] = { "passwd", "group", "subuid", "subgid" };

        (void) s;
        if (ev->len == 0)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(watched); i++)
                if (strcmp(ev->name, watched[i]) == 0) {
                        log_debug("/etc/%s changed, refreshing claimed ids", ev->name);
                        (void) manager_refresh_claims(m);
                        break;
                }
        return 0;
}

/* ---- requests ----------------------------------------------------------- */

/* ---- outgoing bus calls ------------------------------------------------ */

static void call_queue_dispatch(CallQueue *q) {
        /* Starting a call may fail a request, which frees its slot and
         * lands here again: the outer loop carries on instead. */
        if (q->dispatching)
                return;
        q->dispatching = true;
        while (q->n < q->max && q->head) {
                Request *req = q->head;

                q->head = req->queue_next;
                if (q->head)
                        q->head->queue_prev = NULL;
                else
                        q->tail = NULL;
                req->queue_next = req->queue_prev = NULL;
                req->queued = false;

                req->holds_bus_slot = true;
                q->n++;
                req->bus_call(req);
        }
        q->dispatching = false;
}

static void request_bus_call(Request *req, CallQueue *q, void (*call)(Request *req)) {
        req->queue = q;
        req->bus_call = call;
        req->queued = true;
        req->queue_prev = q->tail;
        if (q->tail)
                q->tail->queue_next = req;
        else
                q->head = req;
        q->tail = req;
        call_queue_dispatch(q);
}

static void request_bus_call_done(Request *req) {
        CallQueue *q = req->queue;

        if (!q)
                return;
        if (req->queued) {
                if (req->queue_prev)
                        req->queue_prev->queue_next = req->queue_next;
                else
                        q->head = req->queue_next;
                if (req->queue_next)
                        req->queue_next->queue_prev = req->queue_prev;
                else
                        q->tail = req->queue_prev;
                req->queue_next = req->queue_prev = NULL;
                req->queued = false;
        }
        req->queue = NULL;
        if (req->holds_bus_slot) {
                req->holds_bus_slot = false;
                q->n--;
                call_queue_dispatch(q);
        }
}

static void caller_uids_clear(Manager *m) {
        size_t state = 0;
        void *v;

        while (hashmap_iterate(m->caller_uids, &state, &v))
                free(v);
        hashmap_free(m->caller_uids);
        m->caller_uids = NULL;
}

static void caller_uid_remember(Manager *m, const char *name, uid_t uid) {
        CallerUid *c;

        if (!m->caller_uids || hashmap_size(m->caller_uids) >= MAX_CACHED_CALLERS) {
                caller_uids_clear(m);
                m->caller_uids = hashmap_new_string();
                if (!m->caller_uids)
                        return;
        }
        c = malloc(sizeof(CallerUid) + strlen(name) + 1);
        if (!c)
                return;
        c->uid = uid;
        strcpy(c->name, name);
        if (hashmap_put_string(m->caller_uids, c->name, c) < 0)
                free(c);
}

static void sender_queue_unlink(Request *req);

static Request *request_free(Request *req) {
        Manager *m;

        if (!req)
                return NULL;
        m = req->manager;

        /* Rollback of everything before any map was written; a request that
         * wrote a map became a Namespace and cleared these flags. */
        if (req->tracked && m->tracker)
                (void) tracker_remove(m->tracker, req->entry.id);
        if (req->saved)
                (void) registry_remove(m->registry, &req->entry);
        if (req->range_taken)
                (void) allocator_release(m->allocator, req->entry.uid_start, req->entry.size);
        if (req->charged)
                allocator_owner_uncharge(m->allocator, req->entry.owner);
        if (req->name_reserved)
                hashmap_remove_string(m->pending_names, req->entry.name);
        if (req->id_reserved)
                hashmap_remove_u64(m->pending_ids, req->info.id);
        if (req->counted_for_caller)
                (void) caller_requests_add(m, req->caller, -1);
        m->n_requests--;

        sd_bus_slot_unref(req->uid_slot);
        polkit_cancel(req->polkit);
        request_bus_call_done(req);
        if (req->in_sender_queue)
                sender_queue_unlink(req);

        helper_kill(&req->helper);
        sd_event_source_disable_unref(req->helper_io);
        sd_event_source_disable_unref(req->helper_timeout);
        if (req->helper.pidfd >= 0)
                close(req->helper.pidfd);

        if (req->userns_fd >= 0)
                close(req->userns_fd);
        sd_bus_message_unref(req->message);
        free(req);
        return NULL;
}

static void request_freep(Request **req) {
        request_free(*req);
}

static void request_fail(Request *req, const char *name, const char *format, ...) __attribute__((format(printf, 3, 4)));
static void request_fail(Request *req, const char *name, const char *format, ...) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        va_list ap;

        va_start(ap, format);
        (void) sd_bus_error_setfv(&error, name, format, ap);
        va_end(ap);

        log_info("Request for '%s' from uid %u failed: %s",
                 req->entry.name[0] ? req->entry.name : req->given_name, (unsigned) req->caller, error.message);
        if (req->message)
                (void) sd_bus_reply_method_error(req->message, &error);
        request_free(req);
}

static void request_fail_errno(Request *req, int r, const char *what) {
        request_fail(req, SD_BUS_ERROR_FAILED, "%s: %s", what, strerror(-r));
}

static void request_complete(Request *req) {
        Manager *m = req->manager;
        Namespace *ns;
        int r;

        /* The helper is a process of the namespace: end it before the caller
         * hears back, so the caller's last process really is the last. */
        helper_kill(&req->helper);

        req->entry.pending = false;
        r = registry_save(m->registry, &req->entry);
        if (r < 0)
                /* The pending file stays and says the same range: a restart
                 * finishes it. Not a reason to fail a call whose maps exist. */
                log_warning_errno(r, "Failed to mark registry entry of '%s' complete: %m", req->entry.name);

        ns = namespace_new(m, &req->entry);
        if (!ns || namespace_index(m, ns) < 0) {
                /* Out of memory with maps written: keep the range reserved
                 * (the registry still has it) and fail the call. */
                free(ns);
                log_error("Out of memory publishing '%s', its range stays reserved until restart", req->entry.name);
                req->saved = req->range_taken = req->charged = req->tracked = false;
                request_fail(req, SD_BUS_ERROR_NO_MEMORY, "Out of memory");
                return;
        }

        /* Ownership of range, quota, registry file and tracking moves to ns. */
        req->saved = req->range_taken = req->charged = req->tracked = false;

        log_info("Namespace '%s' (id %" PRIu64 ", owner %u): %s %" PRIu32 "+%" PRIu32 " at %" PRIu32 "%s",
                 ns->e.name, ns->e.id, (unsigned) ns->e.owner, ns_kind_to_string(ns->e.kind),
                 ns->e.uid_start, ns->e.size, ns->e.target, ns->e.map_caller ? ", caller mapped" : "");

        if (req->kind == REQUEST_ALLOCATE)
                r = sd_bus_reply_method_return(req->message, "osuu", ns->path, ns->e.name,
                                               ns->e.uid_start, ns->e.gid_start);
        else
                r = sd_bus_reply_method_return(req->message, "os", ns->path, ns->e.name);
        if (r < 0)
                log_debug("Caller of '%s' went away before the reply", ns->e.name);

        (void) sd_bus_emit_object_added(m->bus, ns->path);
        (void) sd_bus_emit_signal(m->bus, MANAGER_PATH, MANAGER_IFACE, "UserNamespaceNew",
                                  "osu", ns->path, ns->e.name, (uint32_t) ns->e.owner);
        emit_manager_counts(m);
        manager_index_dirty(m);
        request_free(req);
}

static bool fault_matches(const char *fault, const char *name) {
        return fault && strcmp(fault, name) == 0;
}

static int format_maps(const Request *req, char *uid_map, char *gid_map, size_t size) {
        const NsEntry *e = &req->entry;
        int a, b;

        a = snprintf(uid_map, size, "%" PRIu32 " %" PRIu32 " %" PRIu32 "\n", e->target, e->uid_start, e->size);
        b = snprintf(gid_map, size, "%" PRIu32 " %" PRIu32 " %" PRIu32 "\n", e->target, e->gid_start, e->size);
        if (e->map_caller) {
                a += snprintf(uid_map + a, size - a, "%" PRIu32 " %u 1\n", e->target + e->size, (unsigned) e->caller_uid);
                b += snprintf(gid_map + b, size - b, "%" PRIu32 " %u 1\n", e->target + e->size, (unsigned) e->caller_gid);
        }
        return (size_t) a < size && (size_t) b < size ? 0 : -ENOBUFS;
}

/* The helper sits in the namespace: check the maps are what the request
 * expects, then write them. Everything here is synchronous and short. */
static void request_map(Request *req) {
        Manager *m = req->manager;
        char path[64], uid_map[128], gid_map[128], text[512];
        MapExtent ext[2];
        int r, n;

        snprintf(path, sizeof(path), "/proc/%d", (int) req->helper.pid);
        /* The helper is our unreaped child: this pid cannot be recycled. */
        _cleanup_close_ int procfd = open(path, O_DIRECTORY | O_CLOEXEC | O_PATH);
        if (procfd < 0)
                return request_fail_errno(req, -errno, "Failed to open the helper's /proc entry");

        if (req->kind == REQUEST_REGISTER) {
                MapExtent g[2];
                int ng;

                r = proc_read_file(procfd, "uid_map", text, sizeof(text));
                n = r < 0 ? r : map_parse(text, ext, 2);
                r = proc_read_file(procfd, "gid_map", text, sizeof(text));
                ng = r < 0 ? r : map_parse(text, g, 2);
                if (n < 0 || ng < 0)
                        return request_fail_errno(req, n < 0 ? n : ng, "Failed to read the namespace's maps");
                if (n != 1 || ext[0].outside != req->caller || ext[0].count != 1 ||
                    ng != 1 || g[0].outside != req->caller_gid || g[0].count != 1)
                        return request_fail(req, SD_BUS_ERROR_INVALID_ARGS,
                                            "Only a namespace that maps exactly your own uid %u and gid %u (one line each, count 1) can be registered",
                                            (unsigned) req->caller, (unsigned) req->caller_gid);
                r = proc_read_file(procfd, "setgroups", text, sizeof(text));
                if (r < 0)
                        return request_fail_errno(req, r, "Failed to read the namespace's setgroups");
                if (strncmp(text, "deny", 4) != 0)
                        return request_fail(req, SD_BUS_ERROR_INVALID_ARGS,
                                            "A registered namespace must have setgroups denied (write 'deny' to /proc/PID/setgroups before gid_map)");
                req->entry.target = ext[0].inside;
                return request_complete(req);
        }

        for (unsigned i = 0; i < 2; i++) {
                r = proc_read_file(procfd, i == 0 ? "uid_map" : "gid_map", text, sizeof(text));
                if (r < 0)
                        return request_fail_errno(req, r, "Failed to read the namespace's maps");
                if (r > 0)
                        return request_fail(req, ERROR_PREFIX "AlreadyMapped",
                                            "The user namespace already has a %s: pass a freshly created one with empty maps",
                                            i == 0 ? "uid_map" : "gid_map");
        }

        r = format_maps(req, uid_map, gid_map, sizeof(uid_map));
        if (r < 0)
                return request_fail_errno(req, r, "Failed to format maps");

        /* Anything that maps real ids of the caller must not let the
         * namespace drop supplementary groups: that could bypass negative
         * group permissions. Transient ids are the namespace's own. */
        if (req->entry.kind == NS_KIND_SELF || req->entry.map_caller) {
                r = proc_write_file(procfd, "setgroups", "deny");
                if (r < 0)
                        return request_fail_errno(req, r, "Failed to deny setgroups");
        }

        r = proc_write_file(procfd, "uid_map", uid_map);
        if (r == -EPERM)
                /* Someone wrote a map between our check and our write. */
                return request_fail(req, ERROR_PREFIX "AlreadyMapped",
                                    "The user namespace was mapped by someone else while it was being allocated");
        if (r < 0)
                return request_fail_errno(req, r, "Failed to write uid_map");

        /* The uid_map cannot be unwritten: from here on the range belongs to
         * this namespace until it is proven dead, whatever else fails. */
        r = proc_write_file(procfd, "gid_map", gid_map);
        if (r < 0) {
                log_error_errno(r, "Failed to write gid_map of '%s' after its uid_map: %m", req->entry.name);
                request_complete(req);
                return;
        }

        if (fault_matches(m->fault_kill_after_map, req->entry.name)) {
                log_notice("Fault injection: killing the daemon after writing the maps of '%s'", req->entry.name);
                raise(SIGKILL);
        }

        request_complete(req);
}

static int on_helper_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Request *req = userdata;
        int buf = 0;
        ssize_t k;

        (void) s;
        (void) revents;

        k = recv(fd, &buf, sizeof(buf), MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        req->helper_io = sd_event_source_disable_unref(req->helper_io);
        if (k == 1) {
                request_map(req);
                return 0;
        }
        if (k == (ssize_t) sizeof(int))
                request_fail_errno(req, -buf, "Failed to join the user namespace");
        else
                request_fail(req, SD_BUS_ERROR_FAILED, "The helper that joins the user namespace died");
        return 0;
}

static int on_helper_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Request *req = userdata;

        (void) s;
        (void) usec;
        request_fail(req, SD_BUS_ERROR_TIMEOUT,
                     "Timed out waiting for the helper in the user namespace (was it stopped?)");
        return 0;
}

/* Helpers outlive their requests by a moment: the loop reaps them here. A
 * request learns of an early death from its socket, not from this. */
typedef struct HelperWatch {
        sd_event_source *source;
        Helper helper;          /* only .stack is ours */
} HelperWatch;

static void helper_watch_free(HelperWatch *w) {
        sd_event_source_unref(w->source);
        helper_free_stack(&w->helper);
        free(w);
}

static int on_helper_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Manager *m = userdata;
        HelperWatch *w = hashmap_remove_u64(m->helpers, (uint64_t) si->si_pid);

        (void) s;
        /* Exited, so nothing runs on its stack any more. */
        if (w)
                helper_watch_free(w);
        return 0;
}

/* Takes over the helper's stack. */
static int manager_watch_helper(Manager *m, Helper *h) {
        HelperWatch *w;
        int fd, r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        /* The source gets its own pidfd: the request closes its copy when it
         * is done, which may be before or after the helper is reaped. */
        fd = fcntl(h->pidfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
                free(w);
                return -errno;
        }
        r = sd_event_add_child_pidfd(m->event, &w->source, fd, WEXITED, on_helper_exit, m);
        if (r < 0) {
                close(fd);
                free(w);
                return r;
        }
        (void) sd_event_source_set_child_pidfd_own(w->source, true);
        r = hashmap_put_u64(m->helpers, (uint64_t) h->pid, w);
        if (r < 0) {
                sd_event_source_unref(w->source);
                free(w);
                return r;
        }
        w->helper.stack = TAKE_PTR(h->stack);
        return 0;
}

static void request_spawn_helper(Request *req) {
        Manager *m = req->manager;
        int r;

        r = helper_spawn(req->userns_fd, m->helper_mode, fault_matches(m->fault_helper_stop, req->entry.name),
                         &req->helper);
        if (r < 0)
                return request_fail_errno(req, r, "Failed to start the helper");
        r = manager_watch_helper(m, &req->helper);
        if (r < 0) {
                /* Nobody would reap it: do it now. */
                helper_kill(&req->helper);
                (void) waitpid(req->helper.pid, NULL, 0);
                helper_free_stack(&req->helper);
                return request_fail_errno(req, r, "Failed to watch the helper");
        }
        /* The helper has its own copy; keeping ours would keep the namespace
         * alive after the caller lets go of it. */
        req->userns_fd = (close(req->userns_fd), -1);

        r = sd_event_add_io(m->event, &req->helper_io, req->helper.sock, EPOLLIN, on_helper_io, req);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &req->helper_timeout, CLOCK_MONOTONIC,
                                               HELPER_TIMEOUT_USEC, 0, on_helper_timeout, req);
        if (r < 0)
                return request_fail_errno(req, r, "Failed to watch the helper");
}

/* Step 2 of the contract: polkit said yes. Pick the range and make it
 * crash-safe before any map is written. */
static void request_commit(Request *req) {
        Manager *m = req->manager;
        NsEntry *e = &req->entry;
        int r;

        if (e->kind == NS_KIND_TRANSIENT) {
                r = allocator_take(m->allocator, req->size, e->id, &e->uid_start);
                if (r == -ENOSPC)
                        return request_fail(req, ERROR_PREFIX "NoRangeAvailable",
                                            "No free range of %" PRIu32 " ids is left in the pool", req->size);
                if (r < 0)
                        return request_fail_errno(req, r, "Failed to allocate a range");
                e->gid_start = e->uid_start;
                req->range_taken = true;
        }

        r = registry_save(m->registry, e);
        if (r < 0)
                return request_fail_errno(req, r, "Failed to write the registry entry");
        req->saved = true;

        if (m->tracker) {
                r = tracker_add(m->tracker, e->id);
                if (r < 0)
                        return request_fail_errno(req, r, "Failed to track the namespace");
                req->tracked = true;
        }

        request_spawn_helper(req);
}

static void on_polkit(PolkitResult result, const sd_bus_error *error, void *userdata) {
        Request *req = userdata;
        bool others = req->info.owner != req->caller;
        char what[96];

        req->polkit = NULL;
        request_bus_call_done(req);

        if (others)
                snprintf(what, sizeof(what), "act on a user namespace that belongs to uid %u", (unsigned) req->info.owner);
        else
                snprintf(what, sizeof(what), "%s",
                         req->kind == REQUEST_ALLOCATE ? "allocate a user namespace range" : "register a user namespace");

        switch (result) {
        case POLKIT_ALLOWED:
                return request_commit(req);
        case POLKIT_CHALLENGE:
                /* With interaction allowed polkit already tried to ask: no
                 * agent could. Retrying would not help, so it is a denial. */
                if (sd_bus_message_get_allow_interactive_authorization(req->message) > 0)
                        return request_fail(req, SD_BUS_ERROR_ACCESS_DENIED,
                                            "Authentication is required to %s, and no polkit agent could ask for it", what);
                return request_fail(req, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                    "Authentication is required to %s: call again allowing interactive authorization", what);
        case POLKIT_DENIED:
                if (others)
                        return request_fail(req, ERROR_PREFIX "NotOwner",
                                            "The user namespace belongs to uid %u, not to you (uid %u)",
                                            (unsigned) req->info.owner, (unsigned) req->caller);
                return request_fail(req, SD_BUS_ERROR_ACCESS_DENIED, "Not authorized to %s", what);
        case POLKIT_FAILED:
        default:
                return request_fail(req, SD_BUS_ERROR_ACCESS_DENIED,
                                    "Could not check authorization to %s with polkit: %s", what,
                                    error && error->message ? error->message : "no answer");
        }
}

static void request_ask_polkit(Request *req);

/* The caller's uid is known: apply limits, make reservations, ask polkit. */
static void request_authorize(Request *req) {
        Manager *m = req->manager;
        NsEntry *e = &req->entry;
        int r;

        if (caller_requests(m, req->caller) >= m->config.max_requests_per_owner)
                return request_fail(req, ERROR_PREFIX "TooManyRequests",
                                    "You have %u requests in flight already, the limit is %u: wait for them to finish",
                                    caller_requests(m, req->caller), m->config.max_requests_per_owner);
        r = caller_requests_add(m, req->caller, +1);
        if (r < 0)
                return request_fail_errno(req, r, "Failed to count the request");
        req->counted_for_caller = true;

        /* The range belongs to whoever owns the namespace (root or a manager
         * may act on others' namespaces). */
        e->owner = req->info.owner;
        name_qualify(e->owner, req->given_name, e->name);

        if (hashmap_get_string(m->by_name, e->name) || hashmap_get_string(m->pending_names, e->name))
                return request_fail(req, ERROR_PREFIX "NameExists",
                                    "The name '%s' is already in use: pick another one", e->name);

        r = allocator_owner_charge(m->allocator, e->owner);
        if (r == -EUSERS)
                return request_fail(req, ERROR_PREFIX "TooManyNamespaces",
                                    "uid %u already holds %u namespaces, the limit is %u",
                                    (unsigned) e->owner, allocator_owner_count(m->allocator, e->owner),
                                    m->config.max_namespaces_per_owner);
        if (r < 0)
                return request_fail_errno(req, r, "Failed to charge the namespace to its owner");
        req->charged = true;

        r = hashmap_put_string(m->pending_names, e->name, req);
        if (r < 0)
                return request_fail_errno(req, r, "Failed to reserve the name");
        req->name_reserved = true;

        if (e->kind != NS_KIND_TRANSIENT || e->map_caller) {
                r = claims_user_gid(&m->claims, req->caller, &req->caller_gid);
                if (r < 0) {
                        (void) manager_refresh_claims(m);
                        r = claims_user_gid(&m->claims, req->caller, &req->caller_gid);
                }
                if (r < 0)
                        return request_fail(req, SD_BUS_ERROR_FAILED,
                                            "uid %u has no user database entry, so its primary group is unknown",
                                            (unsigned) req->caller);
                e->caller_uid = req->caller;
                e->caller_gid = req->caller_gid;
                if (e->kind != NS_KIND_TRANSIENT) {
                        e->uid_start = req->caller;
                        e->gid_start = req->caller_gid;
                }
        }

        /* Root is always authorized; asking polkit would only cost time. */
        if (req->caller == 0)
                return request_commit(req);

        request_bus_call(req, &m->polkit_calls, request_ask_polkit);
}

static void request_ask_polkit(Request *req) {
        Manager *m = req->manager;
        NsEntry *e = &req->entry;
        char size_str[16];
        int r;

        const char *action = req->info.owner != req->caller ? NSRESD_ACTION_PREFIX "manage" : kind_action[req->kind];
        snprintf(size_str, sizeof(size_str), "%" PRIu32, req->size);
        const char *details[] = {
                "name", e->name,
                "size", size_str,
                "kind", ns_kind_to_string(e->kind),
                NULL,
        };

        r = polkit_check_async(m->bus, sd_bus_message_get_sender(req->message), action, details,
                               sd_bus_message_get_allow_interactive_authorization(req->message) > 0,
                               on_polkit, req, &req->polkit);
        if (r < 0)
                return request_fail_errno(req, r, "Failed to ask polkit");
}

/* A caller's requests are authorized in the order they arrived, whichever
 * learns its uid first (the cache answers at once, the bus later): limits
 * then refuse the last ones, not arbitrary ones. */
typedef struct SenderQueue {
        Request *head, *tail;
        char sender[];
} SenderQueue;

static int sender_queue_push(Request *req) {
        Manager *m = req->manager;
        const char *sender = sd_bus_message_get_sender(req->message);
        SenderQueue *q = hashmap_get_string(m->identifying, sender);

        if (!q) {
                q = calloc(1, sizeof(SenderQueue) + strlen(sender) + 1);
                if (!q)
                        return -ENOMEM;
                strcpy(q->sender, sender);
                if (hashmap_put_string(m->identifying, q->sender, q) < 0) {
                        free(q);
                        return -ENOMEM;
                }
        }
        if (q->tail)
                q->tail->sender_next = req;
        else
                q->head = req;
        q->tail = req;
        req->in_sender_queue = true;
        return 0;
}

static void sender_queue_unlink(Request *req) {
        Manager *m = req->manager;
        SenderQueue *q = hashmap_get_string(m->identifying, sd_bus_message_get_sender(req->message));
        Request *prev = NULL;

        if (!q)
                return;
        for (Request *i = q->head; i; prev = i, i = i->sender_next) {
                if (i != req)
                        continue;
                if (prev)
                        prev->sender_next = req->sender_next;
                else
                        q->head = req->sender_next;
                if (q->tail == req)
                        q->tail = prev;
                break;
        }
        req->sender_next = NULL;
        req->in_sender_queue = false;
        if (!q->head) {
                hashmap_remove_string(m->identifying, q->sender);
                free(q);
        }
}

static void sender_queue_advance(Manager *m, const char *sender) {
        char name[256];

        /* The string may belong to a message that a failing request frees. */
        snprintf(name, sizeof(name), "%s", sender);
        for (;;) {
                SenderQueue *q = hashmap_get_string(m->identifying, name);
                Request *req = q ? q->head : NULL;

                if (!req || !req->identified)
                        return;
                sender_queue_unlink(req);
                if (req->identify_error < 0)
                        request_fail(req, SD_BUS_ERROR_FAILED, "Could not identify the caller: %s",
                                     strerror(-req->identify_error));
                else
                        request_authorize(req);
        }
}

static void request_identified(Request *req, uid_t uid, int error) {
        char name[256];

        snprintf(name, sizeof(name), "%s", sd_bus_message_get_sender(req->message));
        req->caller = uid;
        req->identify_error = error;
        req->identified = true;
        sender_queue_advance(req->manager, name);
}

static int on_caller_uid(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Request *req = userdata;
        uint32_t uid = (uint32_t) -1;
        int r;

        (void) ret_error;
        req->uid_slot = sd_bus_slot_unref(req->uid_slot);
        request_bus_call_done(req);

        if (sd_bus_message_is_method_error(reply, NULL))
                r = -sd_bus_message_get_errno(reply) ?: -EIO;
        else
                r = sd_bus_message_read(reply, "u", &uid);
        if (r >= 0) {
                r = 0;
                caller_uid_remember(req->manager, sd_bus_message_get_sender(req->message), uid);
        }
        request_identified(req, uid, r);
        return 0;
}

static void request_ask_caller_uid(Request *req) {
        const CallerUid *c = hashmap_get_string(req->manager->caller_uids, sd_bus_message_get_sender(req->message));
        int r;

        /* Another request of the same caller may have learnt it meanwhile. */
        if (c) {
                request_bus_call_done(req);
                return request_identified(req, c->uid, 0);
        }

        r = sd_bus_call_method_async(req->manager->bus, &req->uid_slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "GetConnectionUnixUser", on_caller_uid, req,
                                     "s", sd_bus_message_get_sender(req->message));
        if (r < 0) {
                request_bus_call_done(req);
                request_identified(req, (uid_t) -1, r);
        }
}

static void request_identify_caller(Request *req) {
        const CallerUid *c = hashmap_get_string(req->manager->caller_uids, sd_bus_message_get_sender(req->message));
        int r;

        r = sender_queue_push(req);
        if (r < 0)
                return request_fail_errno(req, r, "Could not queue the request");
        if (c)
                return request_identified(req, c->uid, 0);
        request_bus_call(req, &req->manager->lookup_calls, request_ask_caller_uid);
}

/* Common start of Allocate and Register: check the fd by what it is, reserve
 * its id, then learn who the caller is (asynchronously: the bus daemon
 * answers, we do not block on it). */
static int request_start(Manager *m, sd_bus_message *message, RequestKind kind, const char *given_name,
                         int fd, NsKind ns_kind, uint32_t size, uint32_t target, uint64_t flags,
                         sd_bus_error *error) {
        _cleanup_(request_freep) Request *req = NULL;
        int r;

        if (m->n_requests >= MAX_REQUESTS_TOTAL)
                return sd_bus_error_setf(error, ERROR_PREFIX "TooManyRequests",
                                         "The service has %u requests in flight, try again shortly", m->n_requests);

        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        req->manager = m;
        m->n_requests++;
        req->kind = kind;
        req->userns_fd = -1;
        req->helper = (Helper) { .pid = 0, .pidfd = -1, .sock = -1, .stack = NULL };
        req->message = sd_bus_message_ref(message);
        req->caller = (uid_t) -1;
        req->size = size;
        req->target = target;
        req->flags = flags;
        snprintf(req->given_name, sizeof(req->given_name), "%s", given_name);

        r = userns_inspect(fd, m->own_userns_id, &req->info);
        if (r == -EMEDIUMTYPE)
                return sd_bus_error_set(error, ERROR_PREFIX "NotAUserNamespace",
                                        "The file descriptor is not a user namespace (pass an fd of /proc/PID/ns/user)");
        if (r == -ECHILD)
                return sd_bus_error_set(error, ERROR_PREFIX "BadNesting",
                                        "The user namespace is not a direct child of the service's own user namespace");
        if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Failed to inspect the user namespace: %m");

        if (hashmap_get_u64(m->by_id, req->info.id) || hashmap_get_u64(m->pending_ids, req->info.id))
                return sd_bus_error_setf(error, ERROR_PREFIX "UserNamespaceExists",
                                         "This user namespace (id %" PRIu64 ") is already registered with the service",
                                         req->info.id);
        r = hashmap_put_u64(m->pending_ids, req->info.id, req);
        if (r < 0)
                return r;
        req->id_reserved = true;

        req->userns_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (req->userns_fd < 0)
                return -errno;

        NsEntry *e = &req->entry;
        e->id = req->info.id;
        e->inode = req->info.inode;
        e->kind = ns_kind;
        e->size = req->size;
        e->target = req->target;
        e->map_caller = req->flags & ALLOCATE_MAP_CALLER;
        e->pending = true;
        e->created_usec = now_realtime_usec();
        e->handle_type = req->info.handle_type;
        e->handle_len = req->info.handle_len;
        memcpy(e->handle, req->info.handle, req->info.handle_len);

        /* From here on the request answers the call itself, now or later. */
        request_identify_caller(TAKE_PTR(req));
        return 1;
}

static int check_name(const char *name, bool mangle, char ret[static NAME_MAX_LEN + 1], sd_bus_error *error) {
        if (name_is_valid(name)) {
                snprintf(ret, NAME_MAX_LEN + 1, "%s", name);
                return 0;
        }
        if (mangle && name_mangle(name, ret) >= 0)
                return 0;
        return sd_bus_error_setf(error, ERROR_PREFIX "InvalidName",
                                 "Invalid name: use 1-%d characters of A-Z, a-z, 0-9, '_' and '-', not starting with '-'%s",
                                 NAME_MAX_LEN, mangle ? "" : " (or set the MANGLE_NAME flag)");
}

static int method_allocate(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        uint32_t size, target;
        uint64_t flags;
        char valid_name[NAME_MAX_LEN + 1];
        int fd, r;

        r = sd_bus_message_read(message, "suuht", &name, &size, &target, &fd, &flags);
        if (r < 0)
                return r;

        if (flags & ~ALLOCATE_FLAGS_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown flags 0x%" PRIx64, flags & ~ALLOCATE_FLAGS_ALL);
        if ((flags & ALLOCATE_SELF) && (flags & ALLOCATE_MAP_CALLER))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "SELF already maps only your own ids: MAP_CALLER cannot be combined with it");
        if (size != 1 && size != ALLOCATOR_BLOCK_SIZE)
                return sd_bus_error_setf(error, ERROR_PREFIX "InvalidSize",
                                         "Size %" PRIu32 " is not supported: use 65536, or 1", size);
        if ((flags & ALLOCATE_SELF) && size != 1)
                return sd_bus_error_set(error, ERROR_PREFIX "InvalidSize",
                                        "SELF maps exactly one id: the size must be 1");
        /* 4294967295 is never a valid id; with MAP_CALLER one more id follows the range. */
        if ((uint64_t) target + size + !!(flags & ALLOCATE_MAP_CALLER) > UINT32_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Target %" PRIu32 " is too high: the mapped ids would reach past 4294967294", target);

        r = check_name(name, flags & ALLOCATE_MANGLE_NAME, valid_name, error);
        if (r < 0)
                return r;

        if (!(flags & ALLOCATE_SELF) && m->config.restriction != RESTRICTION_OFF &&
            strcmp(m->restriction, "enforcing") != 0) {
                if (m->config.restriction == RESTRICTION_ENFORCE)
                        return sd_bus_error_set(error, ERROR_PREFIX "NotSupported",
                                                "Transient ranges are refused: the BPF LSM restriction that keeps their ids off "
                                                "persistent filesystems is not active on this system (boot with 'bpf' in lsm=, "
                                                "or set Restriction=permissive in nsresd.conf to allocate without it). "
                                                "SELF allocations still work.");
                if (!m->warned_permissive) {
                        log_warning("Restriction=permissive: allocating transient ranges without the BPF LSM restriction");
                        m->warned_permissive = true;
                }
        }

        r = request_start(m, message, REQUEST_ALLOCATE, valid_name, fd,
                          (flags & ALLOCATE_SELF) ? NS_KIND_SELF : NS_KIND_TRANSIENT,
                          size, target, flags, error);
        return r;
}

static int method_register(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        uint64_t flags;
        char valid_name[NAME_MAX_LEN + 1];
        int fd, r;

        r = sd_bus_message_read(message, "sht", &name, &fd, &flags);
        if (r < 0)
                return r;
        if (flags != 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%" PRIx64, flags);
        r = check_name(name, false, valid_name, error);
        if (r < 0)
                return r;

        return request_start(m, message, REQUEST_REGISTER, valid_name, fd, NS_KIND_REGISTERED,
                             1, 0, 0, error);
}

static int method_list(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        uint64_t flags;
        size_t state = 0;
        void *v;
        int r;

        r = sd_bus_message_read(message, "t", &flags);
        if (r < 0)
                return r;
        if (flags != 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%" PRIx64, flags);

        r = sd_bus_message_new_method_return(message, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ostuuuu)");
        if (r < 0)
                return r;
        while (hashmap_iterate(m->by_id, &state, &v)) {
                const Namespace *ns = v;

                r = sd_bus_message_append(reply, "(ostuuuu)", ns->path, ns->e.name, ns->e.id,
                                          (uint32_t) ns->e.owner, ns->e.uid_start, ns->e.size, ns->e.target);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_get_by_uid(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        uint32_t uid;
        uint64_t flags, id;
        const Namespace *ns;
        int r;

        r = sd_bus_message_read(message, "ut", &uid, &flags);
        if (r < 0)
                return r;
        if (flags != 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%" PRIx64, flags);

        /* Only transient ranges are in the allocator: SELF and registered
         * namespaces map ids that belong to their owner, not to them. */
        r = allocator_lookup(m->allocator, uid, &id, NULL, NULL);
        ns = r >= 0 ? hashmap_get_u64(m->by_id, id) : NULL;
        if (!ns)
                return sd_bus_error_setf(error, ERROR_PREFIX "NotRegistered",
                                         "No namespace holds uid %" PRIu32 " in a transient range", uid);
        return sd_bus_reply_method_return(message, "o", ns->path);
}

/* ---- properties --------------------------------------------------------- */

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) bus; (void) path; (void) interface; (void) property; (void) userdata; (void) error;
        return sd_bus_message_append(reply, "s", NSRESD_VERSION);
}

static int property_get_restriction(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        (void) bus; (void) path; (void) interface; (void) property; (void) error;
        return sd_bus_message_append(reply, "s", m->restriction);
}

static int property_get_tracking(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        (void) bus; (void) path; (void) interface; (void) property; (void) error;
        return sd_bus_message_append(reply, "s", m->tracker ? "bpf" : "polling");
}

static int property_get_counts(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        (void) bus; (void) path; (void) interface; (void) error;
        if (strcmp(property, "FreeRanges") == 0)
                return sd_bus_message_append(reply, "u", (uint32_t) allocator_free_blocks(m->allocator));
        return sd_bus_message_append(reply, "u", (uint32_t) hashmap_size(m->by_id));
}

static int property_get_ns_name(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Namespace *ns = userdata;
        (void) bus; (void) path; (void) interface; (void) property; (void) error;
        return sd_bus_message_append(reply, "s", ns->e.name);
}

static int property_get_ns_kind(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Namespace *ns = userdata;
        (void) bus; (void) path; (void) interface; (void) property; (void) error;
        return sd_bus_message_append(reply, "s", ns_kind_to_string(ns->e.kind));
}

static int property_get_ns_uid(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Namespace *ns = userdata;
        (void) bus; (void) path; (void) interface; (void) property; (void) error;
        return sd_bus_message_append(reply, "u", (uint32_t) ns->e.owner);
}

static int property_get_empty_strv(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) bus; (void) path; (void) interface; (void) property; (void) userdata; (void) error;
        /* Delegated cgroups and links are not handed out yet. */
        return sd_bus_message_append(reply, "as", 0);
}

static int property_get_empty_u64v(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) bus; (void) path; (void) interface; (void) property; (void) userdata; (void) error;
        return sd_bus_message_append(reply, "at", 0);
}

static int property_get_false(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) bus; (void) path; (void) interface; (void) property; (void) userdata; (void) error;
        return sd_bus_message_append(reply, "b", 0);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Restriction", "s", property_get_restriction, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("TeardownTracking", "s", property_get_tracking, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("RangeStart", "u", NULL, offsetof(Manager, config.range_start), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("RangeEnd", "u", NULL, offsetof(Manager, config.range_end), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("FreeRanges", "u", property_get_counts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Namespaces", "u", property_get_counts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("AllocateUserRange",
                                SD_BUS_ARGS("s", name, "u", size, "u", target, "h", userns, "t", flags),
                                SD_BUS_RESULT("o", namespace, "s", name, "u", uid_start, "u", gid_start),
                                method_allocate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RegisterUserNamespace",
                                SD_BUS_ARGS("s", name, "h", userns, "t", flags),
                                SD_BUS_RESULT("o", namespace, "s", name),
                                method_register, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListUserNamespaces",
                                SD_BUS_ARGS("t", flags),
                                SD_BUS_RESULT("a(ostuuuu)", namespaces),
                                method_list, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetUserNamespaceByUid",
                                SD_BUS_ARGS("u", uid, "t", flags),
                                SD_BUS_RESULT("o", namespace),
                                method_get_by_uid, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("UserNamespaceNew", SD_BUS_ARGS("o", namespace, "s", name, "u", owner), 0),
        SD_BUS_SIGNAL_WITH_ARGS("UserNamespaceRemoved", SD_BUS_ARGS("o", namespace, "s", name, "u", owner), 0),
        SD_BUS_VTABLE_END,
};

static const sd_bus_vtable userns_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", property_get_ns_name, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Owner", "u", property_get_ns_uid, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Id", "t", NULL, offsetof(Namespace, e.id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Inode", "t", NULL, offsetof(Namespace, e.inode), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("UidStart", "u", NULL, offsetof(Namespace, e.uid_start), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("GidStart", "u", NULL, offsetof(Namespace, e.gid_start), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Size", "u", NULL, offsetof(Namespace, e.size), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Target", "u", NULL, offsetof(Namespace, e.target), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Kind", "s", property_get_ns_kind, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Created", "t", NULL, offsetof(Namespace, e.created_usec), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ControlGroups", "as", property_get_empty_strv, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("NetworkInterfaces", "as", property_get_empty_strv, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Mounts", "at", property_get_empty_u64v, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BpfDelegated", "b", property_get_false, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};

static int userns_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                       void **ret_found, sd_bus_error *error) {
        Manager *m = userdata;
        const char *p;
        char *end;
        uint64_t id;
        Namespace *ns;

        (void) bus; (void) interface; (void) error;

        if (strncmp(path, USERNS_PATH_PREFIX "/", sizeof(USERNS_PATH_PREFIX)) != 0)
                return 0;
        p = path + sizeof(USERNS_PATH_PREFIX);
        if (*p < '0' || *p > '9')
                return 0;
        errno = 0;
        id = strtoull(p, &end, 10);
        if (errno != 0 || *end != 0)
                return 0;
        ns = hashmap_get_u64(m->by_id, id);
        if (!ns)
                return 0;
        *ret_found = ns;
        return 1;
}

static int userns_enumerate(sd_bus *bus, const char *path, void *userdata, char ***ret_nodes, sd_bus_error *error) {
        Manager *m = userdata;
        size_t n = 0, state = 0;
        char **nodes;
        void *v;

        (void) bus; (void) path; (void) error;

        nodes = calloc(hashmap_size(m->by_id) + 1, sizeof(char *));
        if (!nodes)
                return -ENOMEM;
        while (hashmap_iterate(m->by_id, &state, &v)) {
                nodes[n] = strdup(((Namespace *) v)->path);
                if (!nodes[n]) {
                        for (size_t i = 0; i < n; i++)
                                free(nodes[i]);
                        free(nodes);
                        return -ENOMEM;
                }
                n++;
        }
        *ret_nodes = nodes;
        return 0;
}

/* ---- start-up ----------------------------------------------------------- */

static void on_registry_entry(const NsEntry *e, void *userdata) {
        Manager *m = userdata;
        Namespace *ns;
        int r;

        if (hashmap_get_u64(m->by_id, e->id) || hashmap_get_string(m->by_name, e->name)) {
                log_error("Registry entry '%s' (id %" PRIu64 ") duplicates another, ignoring it", e->name, e->id);
                return;
        }
        if (entry_is_transient(e)) {
                r = allocator_mark(m->allocator, e->uid_start, e->size, e->id);
                if (r < 0) {
                        log_error_errno(r, "Registry entry '%s' claims range %" PRIu32 "+%" PRIu32 " that cannot be reserved, ignoring it: %m",
                                        e->name, e->uid_start, e->size);
                        return;
                }
        }
        ns = namespace_new(m, e);
        if (!ns || namespace_index(m, ns) < 0) {
                free(ns);
                log_error("Out of memory loading '%s'", e->name);
                return;
        }
        /* Counted even past the limit (it may have been lowered): these exist. */
        if (allocator_owner_charge_force(m->allocator, e->owner) < 0)
                log_error("Out of memory counting '%s' for its owner", e->name);
}

static void on_registry_corrupt(const char *file, uint32_t uid_start, uint32_t size, void *userdata) {
        Manager *m = userdata;
        int r;

        if (size == 0) {
                log_error("Registry file '%s' is corrupt and names no range; quarantined", file);
                return;
        }
        /* We cannot tell whether the namespace lives: never hand the range out again this boot. */
        r = allocator_mark(m->allocator, uid_start, size, 0);
        if (r < 0 && r != -ERANGE && r != -EBUSY)
                log_error_errno(r, "Failed to keep range %" PRIu32 "+%" PRIu32 " of corrupt '%s' reserved: %m",
                                uid_start, size, file);
        log_error("Registry file '%s' is corrupt; quarantined, range %" PRIu32 "+%" PRIu32 " stays reserved",
                  file, uid_start, size);
}

/* Did the maps of this namespace get written by us? Only then does the range
 * carry ids that are in use; an entry whose maps show none of its ids was
 * never mapped and can be released. Negative: cannot tell. */
static int pending_was_mapped(Manager *m, const NsEntry *e) {
        char uid_map[512], gid_map[512];
        MapExtent ext[8];
        int fd, n, r;

        fd = userns_open_handle(m->nsfs_fd, e->handle_type, e->handle, e->handle_len);
        if (fd < 0)
                return fd;
        r = userns_read_maps(fd, 1000000, uid_map, gid_map, sizeof(uid_map));
        close(fd);
        if (r < 0)
                return r;

        n = map_parse(uid_map, ext, (int) ELEMENTSOF(ext));
        if (n < 0)
                return n;
        for (int i = 0; i < n; i++)
                if (ext[i].outside == e->uid_start && ext[i].count == e->size)
                        return 1;
        /* No uid map of ours; a gid_map is only written after it. */
        return 0;
}

/* Entries found pending were interrupted between "pending" and "complete".
 * The same rule as for a failing call: whatever carries our map keeps its
 * range until it is proven dead, whatever does not is released. */
static void finish_pending(Manager *m) {
        _cleanup_free_ Namespace **list = NULL;
        size_t n;

        if (collect_namespaces(m, &list, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                Namespace *ns = list[i];
                int r;

                if (!ns->e.pending)
                        continue;
                r = pending_was_mapped(m, &ns->e);
                if (r == -ESTALE) {
                        namespace_release(m, ns, "interrupted allocation, namespace gone");
                        continue;
                }
                if (r == 0) {
                        namespace_release(m, ns, "interrupted allocation, no map was written");
                        continue;
                }
                if (r < 0)
                        log_warning_errno(r, "Cannot read the maps of interrupted allocation '%s', keeping its range: %m",
                                          ns->e.name);
                else
                        log_notice("Interrupted allocation of '%s' completed: its map is in place", ns->e.name);
                ns->e.pending = false;
                r = registry_save(m->registry, &ns->e);
                if (r < 0)
                        log_warning_errno(r, "Failed to complete registry entry '%s': %m", ns->e.name);
        }
}

static void parse_faults(Manager *m) {
        const char *f = getenv("NSRESD_FAULT");
        _cleanup_free_ char *copy = NULL;
        char *save = NULL;

        if (!f || !*f)
                return;
        copy = strdup(f);
        if (!copy)
                return;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (strncmp(t, "kill-after-map:", 15) == 0)
                        m->fault_kill_after_map = strdup(t + 15);
                else if (strncmp(t, "helper-stop:", 12) == 0)
                        m->fault_helper_stop = strdup(t + 12);
                else if (strcmp(t, "no-bpf") == 0)
                        m->fault_no_bpf = true;
                else
                        log_warning("Unknown fault '%s' in NSRESD_FAULT", t);
        }
        log_warning("Fault injection enabled: %s", f);
}

static void manager_choose_helper_mode(Manager *m) {
        const char *env = getenv("NSRESD_HELPER");
        char buf[16] = "";
        _cleanup_fclose_ FILE *f = NULL;

        m->helper_mode = HELPER_FORK;
        if (env && strcmp(env, "fork") == 0) {
                log_info("Map helpers are forked (NSRESD_HELPER=fork)");
                return;
        }
        if (!helper_can_share_memory())
                return;
        /* A helper sharing our memory lives in the caller's namespace; only
         * an undumpable mm keeps the caller from tracing it, and where
         * suid_dumpable is not 0 credential changes can make it dumpable. */
        f = fopen("/proc/sys/fs/suid_dumpable", "re");
        if (!f || !fgets(buf, sizeof(buf), f) || buf[0] != '0') {
                log_info("fs.suid_dumpable is not 0: map helpers are forked");
                return;
        }
        if (prctl(PR_SET_DUMPABLE, 0) < 0) {
                log_warning_errno(errno, "Cannot make the daemon undumpable, map helpers are forked: %m");
                return;
        }
        m->helper_mode = HELPER_CLONE_VM;
        log_debug("Map helpers share the daemon's memory (clone(CLONE_VM))");
}

int manager_new(sd_event *event, const Config *config, const ManagerPaths *paths, Manager **ret) {
        Manager *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->config = *config;
        m->nsfs_fd = -1;
        m->state_dir = strdup(paths->state_dir);
        m->bpf_dir = strdup(paths->bpf_dir);
        m->by_id = hashmap_new_u64();
        m->by_inode = hashmap_new_u64();
        m->by_name = hashmap_new_string();
        m->pending_ids = hashmap_new_u64();
        m->pending_names = hashmap_new_string();
        m->requests_per_caller = hashmap_new_u64();
        m->polkit_calls.max = MAX_POLKIT_CALLS;
        m->lookup_calls.max = MAX_LOOKUP_CALLS;
        m->helpers = hashmap_new_u64();
        m->suspects = hashmap_new_u64();
        m->identifying = hashmap_new_string();
        if (!m->helpers || !m->suspects || !m->identifying || !m->state_dir || !m->bpf_dir || !m->by_id || !m->by_inode || !m->by_name ||
            !m->pending_ids || !m->pending_names || !m->requests_per_caller) {
                manager_free(m);
                return -ENOMEM;
        }

        /* There is no LSM loader in this build: the restriction is never in effect. */
        m->restriction = config->restriction == RESTRICTION_OFF ? "off" : "unavailable";

        r = allocator_new(&(AllocatorConfig) {
                                .range_start = config->range_start,
                                .range_end = config->range_end,
                                .single_start = config->single_range_start,
                                .single_end = config->single_range_end,
                                .max_per_owner = config->max_namespaces_per_owner,
                        }, &m->allocator);
        if (r < 0) {
                manager_free(m);
                return r;
        }

        parse_faults(m);
        *ret = m;
        return 0;
}

int manager_start(Manager *m) {
        int r;

        m->nsfs_fd = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
        if (m->nsfs_fd < 0)
                return log_error_errno(errno, "Failed to open our own user namespace: %m");
        r = userns_get_id(m->nsfs_fd, &m->own_userns_id);
        if (r < 0)
                return log_error_errno(r, "This kernel has no namespace ids (NS_GET_ID, Linux 6.18+): %m");

        r = manager_refresh_claims(m);
        if (r < 0)
                return r;

        manager_choose_helper_mode(m);

        r = sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the system bus: %m");
        /* Without the bus there is nothing to serve; state survives on disk. */
        r = sd_bus_set_exit_on_disconnect(m->bus, true);
        if (r >= 0)
                r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");

        r = sd_bus_add_object_vtable(m->bus, &m->manager_slot, MANAGER_PATH, MANAGER_IFACE, manager_vtable, m);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(m->bus, &m->userns_slot, USERNS_PATH_PREFIX, USERNS_IFACE,
                                               userns_vtable, userns_find, m);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(m->bus, &m->enumerator_slot, USERNS_PATH_PREFIX, userns_enumerate, m);
        if (r >= 0)
                r = sd_bus_add_object_manager(m->bus, &m->object_manager_slot, MANAGER_PATH);
        if (r < 0)
                return log_error_errno(r, "Failed to register bus objects: %m");

        r = registry_open(m->state_dir, &m->registry);
        if (r < 0)
                return log_error_errno(r, "Failed to open the registry under '%s': %m", m->state_dir);
        r = registry_load(m->registry, &(RegistryLoadCallbacks) {
                                  .entry = on_registry_entry,
                                  .corrupt = on_registry_corrupt,
                          }, m);
        if (r < 0)
                return log_error_errno(r, "Failed to load the registry: %m");

        /* Before the tracker: draining old events may already queue suspects.
         * sd-event's default accuracy (250 ms) would dominate teardown latency. */
        r = sd_event_add_time_relative(m->event, &m->recheck_timer, CLOCK_MONOTONIC, RECHECK_USEC,
                                       RECHECK_ACCURACY_USEC, on_recheck, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->recheck_timer, SD_EVENT_OFF);
        if (r < 0)
                return log_error_errno(r, "Failed to set up timers: %m");

        r = m->fault_no_bpf ? -EOPNOTSUPP : tracker_open(m->event, m->bpf_dir, on_teardown_event, m, &m->tracker);
        if (r < 0) {
                log_warning_errno(r, "BPF teardown tracking unavailable, polling every second instead: %m");
                m->tracker = NULL;
        } else {
                size_t state = 0;
                void *v;

                while (hashmap_iterate(m->by_id, &state, &v)) {
                        r = tracker_add(m->tracker, ((Namespace *) v)->e.id);
                        if (r < 0)
                                log_warning_errno(r, "Failed to track '%s': %m", ((Namespace *) v)->e.name);
                }
                /* Events from while we were down. */
                (void) tracker_drain(m->tracker);
                if (tracker_drops(m->tracker) > 0) {
                        log_warning("Teardown events were lost while the service was down");
                        tracker_reset_drops(m->tracker);
                }
        }

        finish_pending(m);
        /* Every entry is proven alive or dead now, events or not. */
        manager_sweep(m, "namespace destroyed while the service was down");

        r = sd_event_add_time_relative(m->event, &m->sweep_timer, CLOCK_MONOTONIC,
                                       m->tracker ? BACKSTOP_SWEEP_USEC : POLL_INTERVAL_USEC, TIMER_ACCURACY_USEC,
                                       on_sweep_timer, m);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &m->claims_timer, CLOCK_MONOTONIC, CLAIMS_REFRESH_USEC, 0,
                                               on_claims_timer, m);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &m->index_timer, CLOCK_MONOTONIC, 0, TIMER_ACCURACY_USEC,
                                               on_index_timer, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up timers: %m");
        r = sd_event_add_inotify(m->event, &m->claims_watch, "/etc",
                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE, on_etc_changed, m);
        if (r < 0)
                log_warning_errno(r, "Cannot watch /etc for user database changes, refreshing once a minute only: %m");

        r = sd_bus_request_name(m->bus, BUS_NAME, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to acquire bus name " BUS_NAME ": %m");

        log_info("Ready: %zu namespaces, %u free ranges, teardown tracking %s, restriction %s",
                 hashmap_size(m->by_id), allocator_free_blocks(m->allocator),
                 m->tracker ? "bpf" : "polling", m->restriction);
        return 0;
}

Manager *manager_free(Manager *m) {
        size_t state = 0;
        void *v;

        if (!m)
                return NULL;

        /* Requests in flight have written no map (that happens within one
         * callback), so they roll back completely. */
        while (hashmap_size(m->pending_ids) > 0) {
                state = 0;
                if (!hashmap_iterate(m->pending_ids, &state, &v))
                        break;
                Request *req = v;
                sd_bus_message_unref(TAKE_PTR(req->message));
                request_free(req);
        }

        state = 0;
        while (hashmap_iterate(m->by_id, &state, &v))
                free(v);
        /* Kill and reap what is left: a helper may run on memory we own. */
        state = 0;
        while (hashmap_iterate(m->helpers, &state, &v)) {
                HelperWatch *w = v;
                pid_t pid = 0;

                if (sd_event_source_get_child_pid(w->source, &pid) >= 0 && pid > 0) {
                        (void) sd_event_source_send_child_signal(w->source, SIGKILL, NULL, 0);
                        (void) waitpid(pid, NULL, 0);
                }
                helper_watch_free(w);
        }

        sd_event_source_disable_unref(m->sweep_timer);
        sd_event_source_disable_unref(m->recheck_timer);
        sd_event_source_disable_unref(m->claims_timer);
        sd_event_source_disable_unref(m->claims_watch);
        sd_event_source_disable_unref(m->index_timer);
        sd_bus_slot_unref(m->manager_slot);
        sd_bus_slot_unref(m->userns_slot);
        sd_bus_slot_unref(m->enumerator_slot);
        sd_bus_slot_unref(m->object_manager_slot);
        sd_bus_flush_close_unref(m->bus);

        tracker_free(m->tracker);
        registry_close(m->registry);
        allocator_free(m->allocator);
        claims_done(&m->claims);
        hashmap_free(m->by_id);
        hashmap_free(m->by_inode);
        hashmap_free(m->by_name);
        hashmap_free(m->pending_ids);
        hashmap_free(m->pending_names);
        hashmap_free(m->requests_per_caller);
        hashmap_free(m->helpers);
        hashmap_free(m->suspects);
        hashmap_free(m->identifying);
        caller_uids_clear(m);
        if (m->nsfs_fd >= 0)
                close(m->nsfs_fd);
        free(m->state_dir);
        free(m->bpf_dir);
        free(m->fault_kill_after_map);
        free(m->fault_helper_stop);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}
