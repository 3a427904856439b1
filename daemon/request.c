/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * One AllocateUserRange or RegisterUserNamespace call, in the contract's
 * order: check the fd, reserve id, name and quota, learn the caller's uid,
 * ask polkit, take the range and write the pending registry entry, the
 * tracker entry and the restriction entry, let a helper join the namespace,
 * write the maps, publish. Everything is asynchronous; every step before a
 * map is written rolls back.
 *
 * AddMountToUserNamespace, AddControlGroupToUserNamespace,
 * AddNetworkToUserNamespace and AddTapToUserNamespace take the same way
 * through the caller's uid and polkit, and then hand the mount, the cgroup
 * or a new link to its (published) namespace. Reload takes it too, with
 * the manage action, and ends in manager_reload().
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "log.h"
#include "manager-internal.h"
#include "names.h"
#include "polkit.h"
#include "util.h"

struct Request {
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
        bool restricted;

        /* REQUEST_ADD_MOUNT: the namespace is entry.id. */
        uint64_t mnt_id;
        bool mnt_unique;
        int mount_fd;

        /* REQUEST_ADD_CGROUP: the namespace is entry.id; cgroup_fd is ours,
         * opened through the cgroup2 mount. */
        int cgroup_fd;
        CgroupInfo cgroup;
        bool cgroup_create;
        bool cgroup_slot;       /* holds one of the namespace's cgroup slots */

        /* REQUEST_ADD_NETIF: the namespace is entry.id; a veth into netns_fd
         * (verified to belong to it), or a tap where netns_fd < 0. */
        int netns_fd;
        char ifname[NETIF_NAME_SIZE];
        bool netif_slot;        /* holds a link slot of the namespace and of its owner */

        /* REQUEST_DELEGATE_BPF: the namespace is entry.id, userns_fd its fd
         * (checked) for the helper. */
        BpfDelegation bpf;
        bool bpf_slot;          /* holds a DelegateBpf slot of the namespace */

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
};

typedef struct CallerUid {
        uid_t uid;
        char name[];
} CallerUid;

static const char *const kind_action[] = {
        [REQUEST_ALLOCATE] = NSRESD_ACTION_PREFIX "allocate-user-range",
        [REQUEST_REGISTER] = NSRESD_ACTION_PREFIX "register-user-namespace",
        [REQUEST_ADD_MOUNT] = NSRESD_ACTION_PREFIX "delegate-mount",
        [REQUEST_ADD_CGROUP] = NSRESD_ACTION_PREFIX "delegate-cgroup",
        [REQUEST_ADD_NETIF] = NSRESD_ACTION_PREFIX "delegate-network-interface",
        [REQUEST_RELOAD] = NSRESD_ACTION_PREFIX "manage",
        [REQUEST_DELEGATE_BPF] = NSRESD_ACTION_PREFIX "delegate-bpf",
};

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

void caller_uids_clear(Manager *m) {
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

/* Whether the helper is still ours to signal or read through /proc/<pid>:
 * its watch reaps it, and a reaped pid may name someone else's process. */
static bool request_helper_unreaped(Request *req) {
        return req->helper.pid > 0 && hashmap_get_u64(req->manager->helpers, (uint64_t) req->helper.pid);
}

static void request_kill_helper(Request *req) {
        /* A pidfd names the helper for good; a bare pid only until reaped. */
        if (req->helper.pidfd < 0 && !request_helper_unreaped(req))
                req->helper.pid = 0;
        helper_kill(&req->helper);
}

static Request *request_free(Request *req) {
        Manager *m;

        if (!req)
                return NULL;
        m = req->manager;

        /* Rollback of everything before any map was written; a request that
         * wrote a map became a Namespace and cleared these flags. */
        if (req->tracked && m->tracker)
                (void) tracker_remove(m->tracker, req->entry.id);
        if (req->restricted && m->restrictor)
                (void) restrictor_remove(m->restrictor, req->entry.id);
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
        if (req->cgroup_slot) {
                Namespace *ns = hashmap_get_u64(m->by_id, req->entry.id);

                /* Gone meanwhile: its slots went with it. */
                if (ns)
                        ns->cgroups_reserved--;
        }
        if (req->netif_slot) {
                Namespace *ns = hashmap_get_u64(m->by_id, req->entry.id);

                if (ns)
                        ns->netifs_reserved--;
                (void) manager_owner_netifs_add(m, req->entry.owner, -1);
        }
        if (req->bpf_slot) {
                Namespace *ns = hashmap_get_u64(m->by_id, req->entry.id);

                if (ns)
                        ns->bpf_reserved--;
        }
        if (req->counted_for_caller)
                (void) caller_requests_add(m, req->caller, -1);
        m->n_requests--;

        sd_bus_slot_unref(req->uid_slot);
        polkit_cancel(req->polkit);
        request_bus_call_done(req);
        if (req->in_sender_queue)
                sender_queue_unlink(req);

        request_kill_helper(req);
        sd_event_source_disable_unref(req->helper_io);
        sd_event_source_disable_unref(req->helper_timeout);
        if (req->helper.pidfd >= 0)
                close(req->helper.pidfd);

        if (req->userns_fd >= 0)
                close(req->userns_fd);
        if (req->mount_fd >= 0)
                close(req->mount_fd);
        if (req->cgroup_fd >= 0)
                close(req->cgroup_fd);
        if (req->netns_fd >= 0)
                close(req->netns_fd);
        cgroup_info_done(&req->cgroup);
        sd_bus_message_unref(req->message);
        free(req);
        return NULL;
}

void request_abandon(Request *req) {
        sd_bus_message_unref(TAKE_PTR(req->message));
        request_free(req);
}

static void request_freep(Request **req) {
        request_free(*req);
}

static void request_fail_error(Request *req, const sd_bus_error *error) {
        log_info("Request for '%s' from uid %u failed: %s",
                 req->entry.name[0] ? req->entry.name : req->given_name, (unsigned) req->caller, error->message);
        if (req->message)
                (void) sd_bus_reply_method_error(req->message, error);
        request_free(req);
}

static void request_fail(Request *req, const char *name, const char *format, ...) __attribute__((format(printf, 3, 4)));
static void request_fail(Request *req, const char *name, const char *format, ...) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        va_list ap;

        va_start(ap, format);
        (void) sd_bus_error_setfv(&error, name, format, ap);
        va_end(ap);

        request_fail_error(req, &error);
}

static void request_fail_errno(Request *req, int r, const char *what) {
        request_fail(req, SD_BUS_ERROR_FAILED, "%s: %s", what, strerror(-r));
}

/* Publish the namespace. With `failure` set the call still fails, but the
 * namespace is published all the same: its uid_map is written, so its range
 * is reserved until it is proven dead, and it is tracked like any other. */
static void request_complete(Request *req, int failure) {
        Manager *m = req->manager;
        Namespace *ns;
        int r;

        /* The helper is a process of the namespace: end it before the caller
         * hears back, so the caller's last process really is the last. */
        request_kill_helper(req);

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
                namespace_free(ns);
                log_namespace_event(LOG_ERR, MESSAGE_RANGE_KEPT, &req->entry,
                                    "Out of memory publishing '%s' (id %" PRIu64 ", owner %u): its map is written, so "
                                    "range %" PRIu32 "+%" PRIu32 " stays reserved until restart",
                                    req->entry.name, req->entry.id, (unsigned) req->entry.owner,
                                    req->entry.uid_start, req->entry.size);
                req->saved = req->range_taken = req->charged = req->tracked = req->restricted = false;
                request_fail(req, SD_BUS_ERROR_NO_MEMORY, "Out of memory");
                return;
        }

        /* Ownership of range, quota, registry file, tracking and restriction moves to ns. */
        req->saved = req->range_taken = req->charged = req->tracked = req->restricted = false;

        if (failure < 0)
                log_namespace_event(LOG_WARNING, MESSAGE_RANGE_KEPT, &ns->e,
                                    "Namespace '%s' (id %" PRIu64 ", owner %u): %s %" PRIu32 "+%" PRIu32 " at %" PRIu32
                                    " stays reserved although its call failed: its uid_map is written",
                                    ns->e.name, ns->e.id, (unsigned) ns->e.owner, ns_kind_to_string(ns->e.kind),
                                    ns->e.uid_start, ns->e.size, ns->e.target);
        else
                log_namespace_event(LOG_INFO, MESSAGE_NAMESPACE_ALLOCATED, &ns->e,
                                    "Namespace '%s' (id %" PRIu64 ", owner %u): %s %" PRIu32 "+%" PRIu32 " at %" PRIu32 "%s",
                                    ns->e.name, ns->e.id, (unsigned) ns->e.owner, ns_kind_to_string(ns->e.kind),
                                    ns->e.uid_start, ns->e.size, ns->e.target,
                                    ns->e.map_caller ? ", caller mapped" : "");

        manager_index_add(m, ns);

        if (failure < 0)
                r = sd_bus_reply_method_errorf(req->message, SD_BUS_ERROR_FAILED,
                                               "Failed to write the gid_map after the uid_map: %s; the namespace "
                                               "keeps its range until it is destroyed", strerror(-failure));
        else if (req->kind == REQUEST_ALLOCATE)
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
        request_free(req);
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

        /* Its watch may have reaped it already (the caller can kill it);
         * while it has not, this pid cannot be recycled. */
        if (!request_helper_unreaped(req))
                return request_fail(req, SD_BUS_ERROR_FAILED, "The helper that joins the user namespace died");
        snprintf(path, sizeof(path), "/proc/%d", (int) req->helper.pid);
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
                return request_complete(req, 0);
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
        /* The kernel says EPERM both when someone wrote a map between our
         * check and our write and when we lack the privilege to write this
         * one: only a map that is there now tells the first. */
        if (r == -EPERM && proc_read_file(procfd, "uid_map", text, sizeof(text)) > 0)
                return request_fail(req, ERROR_PREFIX "AlreadyMapped",
                                    "The user namespace was mapped by someone else while it was being allocated");
        if (r < 0)
                return request_fail_errno(req, r, "Failed to write uid_map");

        /* The uid_map cannot be unwritten: from here on the range belongs to
         * this namespace until it is proven dead, whatever else fails. */
        r = proc_write_file(procfd, "gid_map", gid_map);
        if (r < 0) {
                log_error_errno(r, "Failed to write gid_map of '%s' after its uid_map: %m", req->entry.name);
                return request_complete(req, r);
        }

        if (fault_matches(m->fault_kill_after_map, req->entry.name)) {
                log_notice("Fault injection: killing the daemon after writing the maps of '%s'", req->entry.name);
                raise(SIGKILL);
        }

        request_complete(req, 0);
}

static void request_finish_bpf(Request *req, int fs_fd);

/* One message from the helper: a byte once it is in the namespace (with
 * the bpffs context attached, for DelegateBpf), or an int errno. */
/* NOLINTNEXTLINE(readability-non-const-parameter): recvmsg() writes *buf through the iovec. */
static ssize_t helper_receive(int sock, int *buf, int *ret_fd) {
        union {
                struct cmsghdr header;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(*buf) };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        ssize_t k;

        *ret_fd = -EBADF;
        k = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (k < 0)
                return -errno;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                    cm->cmsg_len == CMSG_LEN(sizeof(int)) && *ret_fd < 0)
                        memcpy(ret_fd, CMSG_DATA(cm), sizeof(int));
        return k;
}

static int on_helper_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Request *req = userdata;
        int buf = 0, passed_fd;
        ssize_t k;

        (void) s;
        (void) revents;

        k = helper_receive(fd, &buf, &passed_fd);
        if (k == -EAGAIN || k == -EINTR)
                return 0;
        req->helper_io = sd_event_source_disable_unref(req->helper_io);
        if (req->kind == REQUEST_DELEGATE_BPF && k == 1) {
                request_finish_bpf(req, passed_fd);
                return 0;
        }
        if (passed_fd >= 0)
                close(passed_fd);
        if (k == 1) {
                request_map(req);
                return 0;
        }
        if (k == (ssize_t) sizeof(int) && req->kind == REQUEST_DELEGATE_BPF)
                request_fail(req, ERROR_PREFIX "BpfDelegationFailed",
                             "Could not open a BPF file system in user namespace '%s': %s (the kernel needs BPF "
                             "tokens, Linux 6.9 or later)", req->entry.name, strerror(-buf));
        else if (k == (ssize_t) sizeof(int))
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

void manager_reap_helpers(Manager *m) {
        size_t state = 0;
        void *v;

        while (hashmap_iterate(m->helpers, &state, &v)) {
                HelperWatch *w = v;
                pid_t pid = 0;

                if (sd_event_source_get_child_pid(w->source, &pid) >= 0 && pid > 0) {
                        (void) sd_event_source_send_child_signal(w->source, SIGKILL, NULL, 0);
                        (void) waitpid(pid, NULL, 0);
                }
                helper_watch_free(w);
        }
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
        if (h->pidfd < 0) {
                /* No pidfds here: the pid is safe, ours and unreaped until
                 * this source reaps it. */
                r = sd_event_add_child(m->event, &w->source, h->pid, WEXITED, on_helper_exit, m);
                if (r < 0) {
                        free(w);
                        return r;
                }
        } else {
                /* The source gets its own pidfd: the request closes its copy
                 * when it is done, which may be before or after the helper
                 * is reaped. */
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
        }
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

        r = helper_spawn(req->userns_fd, m->helper_mode,
                         req->kind == REQUEST_DELEGATE_BPF ? HELPER_MAKE_BPFFS : HELPER_JOIN,
                         fault_matches(m->fault_helper_stop, req->entry.name),
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

/* Polkit said yes to a mount: the namespace may have gone meanwhile, and
 * other calls may have filled its list. */
static void request_commit_mount(Request *req) {
        Manager *m = req->manager;
        Namespace *ns = hashmap_get_u64(m->by_id, req->entry.id);
        int r;

        if (!ns)
                return request_fail(req, ERROR_PREFIX "NotRegistered",
                                    "The user namespace '%s' was destroyed before the mount could be added",
                                    req->entry.name);
        r = namespace_add_mount(m, ns, req->mnt_id, req->mnt_unique, &req->mount_fd);
        if (r == -E2BIG)
                return request_fail(req, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                    "User namespace '%s' has %u mounts already, the limit is %u",
                                    ns->e.name, namespace_n_mounts(ns), NS_MOUNTS_MAX);
        if (r < 0)
                return request_fail_errno(req, r, "Failed to add the mount");

        r = sd_bus_reply_method_return(req->message, "");
        if (r < 0)
                log_debug("Caller of the mount of '%s' went away before the reply", ns->e.name);
        request_free(req);
}

/* The answer to what namespace_check_cgroup() and namespace_add_cgroup()
 * return, in words the caller can act on. */
static int set_cgroup_error(Manager *m, sd_bus_error *error, int r, const Namespace *ns, const CgroupInfo *info,
                            bool create) {
        char leaf[sizeof("nsresd-") + QUALIFIED_NAME_MAX];

        namespace_cgroup_leaf_name(ns, leaf, sizeof(leaf));
        switch (r) {
        case -EALREADY:
                if (create)
                        return sd_bus_error_setf(error, ERROR_PREFIX "ControlGroupAlreadyAdded",
                                                 "User namespace '%s' has its control group '%s' in '%s' already",
                                                 ns->e.name, leaf, info->path);
                return sd_bus_error_setf(error, ERROR_PREFIX "ControlGroupAlreadyAdded",
                                         "The control group '%s' is delegated to a user namespace already", info->path);
        case -ENOTEMPTY:
                return sd_bus_error_setf(error, ERROR_PREFIX "ControlGroupNotEmpty",
                                         "The control group '%s' is not an empty leaf: it has processes or child groups. "
                                         "Pass an empty one, or set the CREATE_CHILD flag to have a new leaf made in it",
                                         info->path);
        case -EEXIST:
                return sd_bus_error_setf(error, SD_BUS_ERROR_FILE_EXISTS,
                                         "A control group '%s' exists in '%s' already, and nsresd did not make it for "
                                         "user namespace '%s': remove it, or delegate another one",
                                         leaf, info->path, ns->e.name);
        case -E2BIG:
                return sd_bus_error_setf(error, ERROR_PREFIX "TooManyControlGroups",
                                         "User namespace '%s' has %u control groups (delegated, or being delegated) "
                                         "already; the limit is %u",
                                         ns->e.name, ns->e.n_cgroups + ns->cgroups_reserved,
                                         m->config.max_control_groups);
        case -EINVAL:
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The control group '%s' cannot be delegated: the path of its leaf would be "
                                         "longer than %u bytes", info->path, NS_CGROUP_PATH_MAX);
        case -ESTALE:
        case -ENOENT:
                return sd_bus_error_setf(error, ERROR_PREFIX "NotAControlGroup",
                                         "The control group '%s' was removed", info->path);
        default:
                return sd_bus_error_set_errnof(error, -r, "Failed to delegate the control group '%s': %m", info->path);
        }
}

/* Polkit said yes to a cgroup: the namespace may have gone meanwhile, and
 * the cgroup may have changed. */
static void request_commit_cgroup(Request *req) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *path = NULL;
        Manager *m = req->manager;
        Namespace *ns = hashmap_get_u64(m->by_id, req->entry.id);
        int r;

        if (!ns)
                return request_fail(req, ERROR_PREFIX "NotRegistered",
                                    "The user namespace '%s' was destroyed before the control group could be added",
                                    req->entry.name);
        /* The slot becomes the cgroup's, or is free again if this fails. */
        ns->cgroups_reserved--;
        req->cgroup_slot = false;
        r = namespace_add_cgroup(m, ns, req->cgroup_fd, &req->cgroup, req->cgroup_create, &path);
        if (r < 0) {
                (void) set_cgroup_error(m, &error, r, ns, &req->cgroup, req->cgroup_create);
                return request_fail_error(req, &error);
        }

        r = sd_bus_reply_method_return(req->message, "s", path);
        if (r < 0)
                log_debug("Caller of the control group of '%s' went away before the reply", ns->e.name);
        request_free(req);
}

static const char *netif_mode(const Request *req) {
        return req->netns_fd >= 0 ? "veth" : "tap";
}

/* The answer to a -E2BIG of the namespace's or the owner's link limit. */
static int set_netif_limit_error(Manager *m, sd_bus_error *error, const Namespace *ns, bool owner) {
        if (owner)
                return sd_bus_error_setf(error, ERROR_PREFIX "TooManyNetworkInterfaces",
                                         "The user namespaces of uid %u have %u network interfaces (made, or being "
                                         "made) already; the limit is %u (MaxNetworkInterfacesPerOwner=)",
                                         (unsigned) ns->e.owner, manager_owner_netifs(m, ns->e.owner),
                                         m->config.max_network_interfaces_per_owner);
        return sd_bus_error_setf(error, ERROR_PREFIX "TooManyNetworkInterfaces",
                                 "User namespace '%s' has %u network interfaces (veth and tap together, made or "
                                 "being made) already; the limit is %u (MaxNetworkInterfaces=)",
                                 ns->e.name, namespace_n_netifs(ns), m->config.max_network_interfaces);
}

/* Polkit said yes to a link: the namespace may have gone meanwhile. */
static void request_commit_netif(Request *req) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_close_ int tap_fd = -EBADF;
        char host[NETIF_NAME_SIZE], inside[NETIF_NAME_SIZE];
        Manager *m = req->manager;
        Namespace *ns = hashmap_get_u64(m->by_id, req->entry.id);
        bool tap = req->netns_fd < 0;
        int r;

        if (!ns)
                return request_fail(req, ERROR_PREFIX "NotRegistered",
                                    "The user namespace '%s' was destroyed before the network interface could be "
                                    "made", req->entry.name);
        /* The slot becomes the link's record (the owner's count stays), or
         * is free again if this fails. */
        ns->netifs_reserved--;
        req->netif_slot = false;
        r = namespace_add_netif(m, ns, tap ? NS_NETIF_TAP : NS_NETIF_VETH, req->netns_fd, req->ifname,
                                host, inside, tap ? &tap_fd : NULL);
        if (r < 0) {
                (void) manager_owner_netifs_add(m, ns->e.owner, -1);
                if (r == -E2BIG)
                        (void) set_netif_limit_error(m, &error, ns, false);
                else if (r == -EEXIST && tap)
                        (void) sd_bus_error_setf(&error, SD_BUS_ERROR_FILE_EXISTS,
                                                 "The host has a link named like the tap of user namespace '%s' "
                                                 "already; try again", ns->e.name);
                else if (r == -EEXIST)
                        (void) sd_bus_error_setf(&error, SD_BUS_ERROR_FILE_EXISTS,
                                                 "The network namespace has an interface '%s' already (or user "
                                                 "namespace '%s' was given one of that name before): pick another "
                                                 "name", req->ifname[0] ? req->ifname : NETIF_DEFAULT_IFNAME,
                                                 ns->e.name);
                else
                        (void) sd_bus_error_setf(&error, SD_BUS_ERROR_FAILED,
                                                 "Failed to make a %s for user namespace '%s': %s",
                                                 netif_mode(req), ns->e.name, strerror(-r));
                return request_fail_error(req, &error);
        }

        if (tap)
                r = sd_bus_reply_method_return(req->message, "sh", host, tap_fd);
        else
                r = sd_bus_reply_method_return(req->message, "ss", host, inside);
        if (r < 0)
                log_debug("Caller of the %s of '%s' went away before the reply", netif_mode(req), ns->e.name);
        /* Our copy of the tap's fd closes here: the device lives as long as
         * the caller holds theirs. */
        request_free(req);
}

/* Polkit said yes: a helper in the namespace opens the file system
 * context (request_finish_bpf() goes on with it). */
static void request_commit_bpf(Request *req) {
        if (!hashmap_get_u64(req->manager->by_id, req->entry.id))
                return request_fail(req, ERROR_PREFIX "NotRegistered",
                                    "The user namespace '%s' was destroyed before BPF could be delegated to it",
                                    req->entry.name);
        request_spawn_helper(req);
}

static void request_finish_bpf(Request *req, int fs_fd) {
        _cleanup_close_ int fs = fs_fd, mount_fd = -EBADF;
        _cleanup_free_ char *reason = NULL;
        Manager *m = req->manager;
        Namespace *ns = hashmap_get_u64(m->by_id, req->entry.id);
        int r;

        /* Done with it: the helper exits by itself, or is killed here. */
        request_kill_helper(req);

        if (!ns)
                return request_fail(req, ERROR_PREFIX "NotRegistered",
                                    "The user namespace '%s' was destroyed before BPF could be delegated to it",
                                    req->entry.name);
        /* From our own helper, but it ran in the caller's namespace. */
        if (fs < 0 || !fd_is_fs_context(fs))
                return request_fail(req, ERROR_PREFIX "BpfDelegationFailed",
                                    "The helper in user namespace '%s' did not pass a file system context",
                                    ns->e.name);

        r = bpffs_make_mount(fs, &req->bpf, ns->e.uid_start, ns->e.gid_start, &mount_fd, &reason);
        if (r < 0)
                return request_fail(req, ERROR_PREFIX "BpfDelegationFailed",
                                    "Could not make a BPF file system for user namespace '%s': %s", ns->e.name,
                                    reason ?: strerror(-r));

        /* The slot becomes the record, or is free again if this fails. */
        ns->bpf_reserved--;
        req->bpf_slot = false;
        /* Recorded before the caller has it; if that fails, closing our fd
         * is all it takes to undo: nobody else holds the mount. */
        r = namespace_add_bpf(m, ns, &req->bpf);
        if (r < 0)
                return request_fail_errno(req, r, "Failed to record the BPF delegation");

        r = sd_bus_reply_method_return(req->message, "h", mount_fd);
        if (r < 0)
                log_debug("Caller of the BPF delegation of '%s' went away before the reply", ns->e.name);
        request_free(req);
}

/* Root, or polkit said yes to manage. */
static void request_commit_reload(Request *req) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = manager_reload(req->manager, &error);
        if (r == -ENOMEM)
                return request_fail_errno(req, r, "Failed to reload the configuration");
        if (r < 0)
                return request_fail(req, ERROR_PREFIX "BadConfiguration",
                                    "The configuration was not reloaded, the running one stays: %s",
                                    error ?: strerror(-r));
        r = sd_bus_reply_method_return(req->message, "");
        if (r < 0)
                log_debug("Caller of Reload went away before the reply");
        request_free(req);
}

/* Step 2 of the contract: polkit said yes. Pick the range and make it
 * crash-safe before any map is written. */
static void request_commit(Request *req) {
        Manager *m = req->manager;
        NsEntry *e = &req->entry;
        int r;

        if (req->kind == REQUEST_ADD_MOUNT)
                return request_commit_mount(req);
        if (req->kind == REQUEST_ADD_CGROUP)
                return request_commit_cgroup(req);
        if (req->kind == REQUEST_ADD_NETIF)
                return request_commit_netif(req);
        if (req->kind == REQUEST_RELOAD)
                return request_commit_reload(req);
        if (req->kind == REQUEST_DELEGATE_BPF)
                return request_commit_bpf(req);

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

        /* Restricted before its map exists: no process ever holds one of
         * these ids unrestricted, not even for a moment. */
        if (e->kind == NS_KIND_TRANSIENT && m->restrictor) {
                r = restrictor_add(m->restrictor, e->id, e->uid_start, e->size);
                if (r < 0 && m->config.restriction == RESTRICTION_ENFORCE)
                        return request_fail(req, SD_BUS_ERROR_FAILED,
                                            "Could not add the namespace to the BPF LSM restriction (%s), which keeps "
                                            "transient ids off persistent filesystems; no range was handed out",
                                            strerror(-r));
                if (r < 0)
                        log_warning_errno(r, "Restriction=permissive: '%s' gets its range although adding it to the "
                                          "restriction failed: %m", e->name);
                else
                        req->restricted = true;
        }

        request_spawn_helper(req);
}

static void on_polkit(PolkitResult result, const sd_bus_error *error, void *userdata) {
        Request *req = userdata;
        bool others = req->kind != REQUEST_RELOAD && req->info.owner != req->caller;
        char what[96];

        req->polkit = NULL;
        request_bus_call_done(req);

        if (others)
                snprintf(what, sizeof(what), "act on a user namespace that belongs to uid %u", (unsigned) req->info.owner);
        else if (req->kind == REQUEST_RELOAD)
                snprintf(what, sizeof(what), "reload the configuration of the user namespace service");
        else if (req->kind == REQUEST_ADD_MOUNT)
                snprintf(what, sizeof(what), "let user namespace '%s' write to a mount", req->entry.name);
        else if (req->kind == REQUEST_ADD_CGROUP)
                snprintf(what, sizeof(what), "delegate a control group to user namespace '%s'", req->entry.name);
        else if (req->kind == REQUEST_ADD_NETIF)
                snprintf(what, sizeof(what), "give user namespace '%s' a %s network interface", req->entry.name,
                         netif_mode(req));
        else if (req->kind == REQUEST_DELEGATE_BPF)
                snprintf(what, sizeof(what), "let user namespace '%s' load BPF programs", req->entry.name);
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

/* Name, quota slot and the caller's group for a new namespace, before
 * polkit is asked. On failure the request keeps what it holds, and
 * request_free() gives it back. */
static int request_reserve(Request *req, sd_bus_error *error) {
        Manager *m = req->manager;
        NsEntry *e = &req->entry;
        int r;

        /* The range belongs to whoever owns the namespace (root or a manager
         * may act on others' namespaces). */
        e->owner = req->info.owner;
        name_qualify(e->owner, req->given_name, e->name);

        if (hashmap_get_string(m->by_name, e->name) || hashmap_get_string(m->pending_names, e->name))
                return sd_bus_error_setf(error, ERROR_PREFIX "NameExists",
                                         "The name '%s' is already in use: pick another one", e->name);

        r = allocator_owner_charge(m->allocator, e->owner);
        if (r == -EUSERS)
                return sd_bus_error_setf(error, ERROR_PREFIX "TooManyNamespaces",
                                         "uid %u already holds %u namespaces, the limit is %u",
                                         (unsigned) e->owner, allocator_owner_count(m->allocator, e->owner),
                                         m->config.max_namespaces_per_owner);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED, "Failed to charge the namespace to its owner: %s",
                                         strerror(-r));
        req->charged = true;

        r = hashmap_put_string(m->pending_names, e->name, req);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED, "Failed to reserve the name: %s", strerror(-r));
        req->name_reserved = true;

        if (e->kind != NS_KIND_TRANSIENT || e->map_caller) {
                r = claims_user_gid(&m->claims, req->caller, &req->caller_gid);
                /* A user added since the last refresh (one not in /etc, which
                 * is watched). Enumerating blocks: rate-limited. */
                if (r < 0 && manager_refresh_claims_ratelimited(m) > 0)
                        r = claims_user_gid(&m->claims, req->caller, &req->caller_gid);
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED,
                                                 "uid %u has no user database entry, so its primary group is unknown",
                                                 (unsigned) req->caller);
                e->caller_uid = req->caller;
                e->caller_gid = req->caller_gid;
                if (e->kind != NS_KIND_TRANSIENT) {
                        e->uid_start = req->caller;
                        e->gid_start = req->caller_gid;
                }
        }
        return 0;
}

/* The caller's uid is known: apply limits, make reservations, ask polkit. */
static void request_authorize(Request *req) {
        Manager *m = req->manager;
        int r;

        if (req->kind == REQUEST_ADD_CGROUP) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                Namespace *ns;

                /* Whoever may act on the namespace, the cgroup must be their
                 * own (only root hands over someone else's): first, so that
                 * nothing else is said about someone else's cgroup. */
                if (req->caller != 0 && req->cgroup.uid != req->caller)
                        return request_fail(req, ERROR_PREFIX "NotOwner",
                                            "The control group '%s' belongs to uid %u, not to you (uid %u): pass "
                                            "one you own", req->cgroup.path, (unsigned) req->cgroup.uid,
                                            (unsigned) req->caller);
                ns = hashmap_get_u64(m->by_id, req->entry.id);
                if (!ns)
                        return request_fail(req, ERROR_PREFIX "NotRegistered",
                                            "The user namespace '%s' was destroyed meanwhile", req->entry.name);
                /* Checked again once polkit has answered: things change meanwhile. */
                r = namespace_check_cgroup(m, ns, req->cgroup_fd, &req->cgroup, req->cgroup_create);
                if (r < 0) {
                        (void) set_cgroup_error(m, &error, r, ns, &req->cgroup, req->cgroup_create);
                        return request_fail_error(req, &error);
                }
        }

        if (caller_requests(m, req->caller) >= m->config.max_requests_per_owner)
                return request_fail(req, ERROR_PREFIX "TooManyRequests",
                                    "You have %u requests in flight already, the limit is %u: wait for them to finish",
                                    caller_requests(m, req->caller), m->config.max_requests_per_owner);
        r = caller_requests_add(m, req->caller, +1);
        if (r < 0)
                return request_fail_errno(req, r, "Failed to count the request");
        req->counted_for_caller = true;

        /* A mount reserves nothing: its namespace exists, and its limit is
         * checked again once polkit has answered. A cgroup took its slot
         * when the call came in. */
        if (req->kind == REQUEST_ALLOCATE || req->kind == REQUEST_REGISTER) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

                r = request_reserve(req, &error);
                if (r < 0)
                        return request_fail_error(req, &error);
        }

        /* Root is always authorized; asking polkit would only cost time. */
        if (req->caller == 0)
                return request_commit(req);

        request_bus_call(req, &m->polkit_calls, request_ask_polkit);
}

static void request_ask_polkit(Request *req) {
        Manager *m = req->manager;
        NsEntry *e = &req->entry;
        char size_str[16], *bpf_names[_BPF_DELEGATE_KIND_MAX] = {};
        int r;

        const char *action = req->info.owner != req->caller ? NSRESD_ACTION_PREFIX "manage" : kind_action[req->kind];
        const char *details[15];
        size_t n = 0;

        /* It concerns no namespace: there is nothing to detail. */
        if (req->kind == REQUEST_RELOAD) {
                r = polkit_check_async(m->bus, sd_bus_message_get_sender(req->message), kind_action[req->kind], NULL,
                                       sd_bus_message_get_allow_interactive_authorization(req->message) > 0,
                                       m->config.polkit_timeout_sec, on_polkit, req, &req->polkit);
                if (r < 0)
                        request_fail_errno(req, r, "Failed to ask polkit");
                return;
        }

        details[n++] = "name";
        details[n++] = e->name;
        /* A mount or a cgroup gives the namespace no ids. */
        if (req->kind == REQUEST_ALLOCATE || req->kind == REQUEST_REGISTER) {
                snprintf(size_str, sizeof(size_str), "%" PRIu32, req->size);
                details[n++] = "size";
                details[n++] = size_str;
        }
        details[n++] = "kind";
        details[n++] = ns_kind_to_string(e->kind);
        if (req->kind == REQUEST_ADD_NETIF) {
                details[n++] = "mode";
                details[n++] = netif_mode(req);
        }
        /* What is delegated, for rules: "any", "" or "map_create:prog_load". */
        if (req->kind == REQUEST_DELEGATE_BPF)
                for (unsigned k = 0; k < _BPF_DELEGATE_KIND_MAX; k++) {
                        bpf_names[k] = bpf_delegate_mask_to_string(k, req->bpf.mask[k]);
                        details[n++] = bpf_delegate_kind_to_string(k);
                        details[n++] = bpf_names[k] ?: "";
                }
        details[n] = NULL;

        r = polkit_check_async(m->bus, sd_bus_message_get_sender(req->message), action, details,
                               sd_bus_message_get_allow_interactive_authorization(req->message) > 0,
                               m->config.polkit_timeout_sec, on_polkit, req, &req->polkit);
        for (unsigned k = 0; k < _BPF_DELEGATE_KIND_MAX; k++)
                free(bpf_names[k]);
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
                r = -(sd_bus_message_get_errno(reply) ?: EIO);
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

static int request_new(Manager *m, sd_bus_message *message, RequestKind kind, Request **ret, sd_bus_error *error) {
        Request *req;

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
        req->mount_fd = -1;
        req->cgroup_fd = -1;
        req->netns_fd = -1;
        req->helper = (Helper) { .pid = 0, .pidfd = -1, .sock = -1, .stack = NULL };
        req->message = sd_bus_message_ref(message);
        req->caller = (uid_t) -1;
        *ret = req;
        return 0;
}

/* Common start of Allocate and Register on a namespace fd the D-Bus layer
 * has inspected: reserve its id, then learn who the caller is
 * (asynchronously: the bus daemon answers, we do not block on it). */
int request_start(Manager *m, sd_bus_message *message, RequestKind kind, const char *given_name,
                  int fd, const UsernsInfo *info, NsKind ns_kind, uint32_t size, uint32_t target,
                  uint64_t flags, sd_bus_error *error) {
        _cleanup_(request_freep) Request *req = NULL;
        int r;

        r = request_new(m, message, kind, &req, error);
        if (r < 0)
                return r;
        req->size = size;
        req->target = target;
        req->flags = flags;
        req->info = *info;
        snprintf(req->given_name, sizeof(req->given_name), "%s", given_name);

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

/* A request about a published namespace (delegations): it carries the
 * namespace's identity, so the owner checks and polkit details work as for
 * an allocation. */
static int request_new_for_namespace(Manager *m, sd_bus_message *message, RequestKind kind, const Namespace *ns,
                                     Request **ret, sd_bus_error *error) {
        Request *req;
        int r;

        r = request_new(m, message, kind, ret, error);
        if (r < 0)
                return r;
        req = *ret;
        req->info.id = ns->e.id;
        req->info.inode = ns->e.inode;
        req->info.owner = ns->e.owner;
        req->entry.id = ns->e.id;
        req->entry.owner = ns->e.owner;
        req->entry.kind = ns->e.kind;
        snprintf(req->entry.name, sizeof(req->entry.name), "%s", ns->e.name);
        return 0;
}

int request_start_add_mount(Manager *m, sd_bus_message *message, const Namespace *ns, int mount_fd,
                            uint64_t mnt_id, bool unique, sd_bus_error *error) {
        _cleanup_(request_freep) Request *req = NULL;
        int r;

        r = request_new_for_namespace(m, message, REQUEST_ADD_MOUNT, ns, &req, error);
        if (r < 0)
                return r;
        req->mnt_id = mnt_id;
        req->mnt_unique = unique;
        /* Held while polkit decides: a reusable id cannot pass to another
         * mount meanwhile. */
        req->mount_fd = fcntl(mount_fd, F_DUPFD_CLOEXEC, 3);
        if (req->mount_fd < 0)
                return -errno;

        request_identify_caller(TAKE_PTR(req));
        return 1;
}

int request_start_add_cgroup(Manager *m, sd_bus_message *message, Namespace *ns, int *cgroup_fd,
                             CgroupInfo *info, bool create, sd_bus_error *error) {
        _cleanup_(request_freep) Request *req = NULL;
        int r;

        /* Slots are counted with the calls in flight: parallel calls cannot
         * pass the limit together. */
        if (ns->e.n_cgroups + ns->cgroups_reserved >= m->config.max_control_groups)
                return set_cgroup_error(m, error, -E2BIG, ns, info, create);

        r = request_new_for_namespace(m, message, REQUEST_ADD_CGROUP, ns, &req, error);
        if (r < 0)
                return r;
        req->cgroup_fd = TAKE_FD(*cgroup_fd);
        req->cgroup = *info;
        info->path = NULL;
        req->cgroup_create = create;
        ns->cgroups_reserved++;
        req->cgroup_slot = true;

        request_identify_caller(TAKE_PTR(req));
        return 1;
}

int request_start_add_netif(Manager *m, sd_bus_message *message, Namespace *ns, int netns_fd, const char *ifname,
                            sd_bus_error *error) {
        _cleanup_(request_freep) Request *req = NULL;
        int r;

        /* Slots are counted with the calls in flight: parallel calls cannot
         * pass the limits together. Links that went away hold none. */
        namespace_prune_netifs(m, ns);
        if (namespace_n_netifs(ns) >= m->config.max_network_interfaces ||
            namespace_n_netifs(ns) >= NS_NETIFS_MAX)
                return set_netif_limit_error(m, error, ns, false);
        if (manager_owner_netifs(m, ns->e.owner) >= m->config.max_network_interfaces_per_owner)
                return set_netif_limit_error(m, error, ns, true);

        r = request_new_for_namespace(m, message, REQUEST_ADD_NETIF, ns, &req, error);
        if (r < 0)
                return r;
        snprintf(req->ifname, sizeof(req->ifname), "%s", ifname ?: "");
        if (netns_fd >= 0) {
                req->netns_fd = fcntl(netns_fd, F_DUPFD_CLOEXEC, 3);
                if (req->netns_fd < 0)
                        return -errno;
        }
        r = manager_owner_netifs_add(m, ns->e.owner, +1);
        if (r < 0)
                return r;
        ns->netifs_reserved++;
        req->netif_slot = true;

        request_identify_caller(TAKE_PTR(req));
        return 1;
}

int request_start_reload(Manager *m, sd_bus_message *message, sd_bus_error *error) {
        _cleanup_(request_freep) Request *req = NULL;
        int r;

        r = request_new(m, message, REQUEST_RELOAD, &req, error);
        if (r < 0)
                return r;
        /* What the request's log lines name it by. */
        snprintf(req->given_name, sizeof(req->given_name), "Reload");

        request_identify_caller(TAKE_PTR(req));
        return 1;
}

int request_start_delegate_bpf(Manager *m, sd_bus_message *message, Namespace *ns, int userns_fd,
                               const BpfDelegation *d, sd_bus_error *error) {
        _cleanup_(request_freep) Request *req = NULL;
        int r;

        /* Slots are counted with the calls in flight: parallel calls cannot
         * pass the limit together. */
        if (ns->e.n_bpf + ns->bpf_reserved >= m->config.max_bpf_delegations ||
            ns->e.n_bpf + ns->bpf_reserved >= NS_BPF_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                         "User namespace '%s' has %u BPF file systems already, the limit is %u",
                                         ns->e.name, ns->e.n_bpf, m->config.max_bpf_delegations);

        r = request_new_for_namespace(m, message, REQUEST_DELEGATE_BPF, ns, &req, error);
        if (r < 0)
                return r;
        req->bpf = *d;
        /* The helper joins it; held until then, like an allocation's. */
        req->userns_fd = fcntl(userns_fd, F_DUPFD_CLOEXEC, 3);
        if (req->userns_fd < 0)
                return -errno;
        ns->bpf_reserved++;
        req->bpf_slot = true;

        request_identify_caller(TAKE_PTR(req));
        return 1;
}

int requests_join_restriction(Manager *m) {
        size_t state = 0;
        void *v;
        int ret = 0;

        while (hashmap_iterate(m->pending_ids, &state, &v)) {
                Request *req = v;
                int r;

                if (!req->range_taken || req->restricted || req->entry.kind != NS_KIND_TRANSIENT)
                        continue;
                r = restrictor_add(m->restrictor, req->entry.id, req->entry.uid_start, req->entry.size);
                if (r < 0) {
                        if (ret == 0)
                                ret = r;
                        continue;
                }
                req->restricted = true;
        }
        return ret;
}
