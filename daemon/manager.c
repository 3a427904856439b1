/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The manager owns every resource of the daemon: the allocator, the registry,
 * the tracker and the published namespaces. It proves namespaces dead and
 * releases them, keeps the claimed ids and the NSS index current, and starts
 * and stops the service. Calls arrive through manager-bus.c and become work
 * in request.c.
 */

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <time.h>

#include "log.h"
#include "manager-internal.h"
#include "polkit.h"
#include "registry.h"
#include "restrict.h"
#include "state.h"
#include "track.h"
#include "userns.h"
#include "util.h"

static_assert(NS_MOUNTS_MAX == RESTRICT_MAX_MOUNTS, "a namespace's mounts must fit the restriction's map");
static_assert(NS_CGROUPS_MAX >= CONFIG_CONTROL_GROUPS_MAX, "MaxControlGroups= must fit a registry entry");
static_assert(NS_NETIF_NAME_SIZE == NETIF_NAME_SIZE, "a recorded link name must hold any link name");
static_assert((int) NS_NETIF_VETH == (int) NETIF_VETH && (int) NS_NETIF_TAP == (int) NETIF_TAP,
              "recorded link kinds are the network module's");

uint64_t now_realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static uint64_t now_monotonic_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

static bool entry_is_transient(const NsEntry *e) {
        return e->kind == NS_KIND_TRANSIENT;
}

void log_namespace_event(int level, const char *message_id, const NsEntry *e, const char *format, ...) {
        char name[sizeof("NSRESD_NAME=") + QUALIFIED_NAME_MAX], owner[32], kind[32], uid_start[32], gid_start[32],
                size[32], target[32], id[48], inode[48], object[sizeof("NSRESD_OBJECT=" USERNS_PATH_PREFIX) + 24];
        const char *const fields[] = { name, owner, kind, uid_start, gid_start, size, target, id, inode, object };
        va_list ap;

        snprintf(name, sizeof(name), "NSRESD_NAME=%s", e->name);
        snprintf(owner, sizeof(owner), "NSRESD_OWNER=%u", (unsigned) e->owner);
        snprintf(kind, sizeof(kind), "NSRESD_KIND=%s", ns_kind_to_string(e->kind));
        snprintf(uid_start, sizeof(uid_start), "NSRESD_UID_START=%" PRIu32, e->uid_start);
        snprintf(gid_start, sizeof(gid_start), "NSRESD_GID_START=%" PRIu32, e->gid_start);
        snprintf(size, sizeof(size), "NSRESD_SIZE=%" PRIu32, e->size);
        snprintf(target, sizeof(target), "NSRESD_TARGET=%" PRIu32, e->target);
        snprintf(id, sizeof(id), "NSRESD_NS_ID=%" PRIu64, e->id);
        snprintf(inode, sizeof(inode), "NSRESD_NS_INODE=%" PRIu64, e->inode);
        snprintf(object, sizeof(object), "NSRESD_OBJECT=" USERNS_PATH_PREFIX "/%" PRIu64, e->id);

        va_start(ap, format);
        log_structv(level, message_id, fields, ELEMENTSOF(fields), format, ap);
        va_end(ap);
}

/* ---- namespaces --------------------------------------------------------- */

Namespace *namespace_new(Manager *m, const NsEntry *e) {
        Namespace *ns = calloc(1, sizeof(*ns));

        if (!ns)
                return NULL;
        if (ns_entry_copy(&ns->e, e) < 0) {
                free(ns);
                return NULL;
        }
        ns->manager = m;
        snprintf(ns->path, sizeof(ns->path), USERNS_PATH_PREFIX "/%" PRIu64, e->id);
        return ns;
}

Namespace *namespace_free(Namespace *ns) {
        if (!ns)
                return NULL;
        for (unsigned i = 0; i < ns->n_held_mounts; i++)
                closep(&ns->held_mounts[i].fd);
        free(ns->held_mounts);
        ns_entry_done(&ns->e);
        free(ns);
        return NULL;
}

unsigned namespace_n_mounts(const Namespace *ns) {
        return ns->e.n_mounts + ns->n_held_mounts;
}

bool namespace_has_mount(const Namespace *ns, uint64_t mnt_id) {
        if (ns_entry_has_mount(&ns->e, mnt_id))
                return true;
        for (unsigned i = 0; i < ns->n_held_mounts; i++)
                if (ns->held_mounts[i].id == mnt_id)
                        return true;
        return false;
}

static int namespace_hold_mount(Namespace *ns, uint64_t mnt_id, int *fd) {
        HeldMount *p = realloc(ns->held_mounts, (ns->n_held_mounts + 1) * sizeof(HeldMount));

        if (!p)
                return -ENOMEM;
        ns->held_mounts = p;
        ns->held_mounts[ns->n_held_mounts++] = (HeldMount) { .id = mnt_id, .fd = TAKE_FD(*fd) };
        return 0;
}

int namespace_add_mount(Manager *m, Namespace *ns, uint64_t mnt_id, bool unique, int *fd) {
        int r;

        assert(entry_is_transient(&ns->e));

        if (namespace_has_mount(ns, mnt_id))
                return 0;
        if (namespace_n_mounts(ns) >= NS_MOUNTS_MAX)
                return -E2BIG;

        /* Recorded before the restriction allows it: a crash in between
         * leaves a delegation that the next start completes, never one that
         * works without being listed. */
        if (unique) {
                r = ns_entry_add_mount(&ns->e, mnt_id);
                if (r < 0)
                        return r;
                r = registry_save(m->registry, &ns->e);
                if (r < 0) {
                        ns->e.n_mounts--;
                        return r;
                }
        } else {
                r = namespace_hold_mount(ns, mnt_id, fd);
                if (r < 0)
                        return r;
        }

        if (m->restrictor) {
                r = restrictor_add_mount(m->restrictor, ns->e.id, mnt_id);
                if (r < 0) {
                        if (unique) {
                                ns->e.n_mounts--;
                                (void) registry_save(m->registry, &ns->e);
                        } else
                                closep(&ns->held_mounts[--ns->n_held_mounts].fd);
                        return r;
                }
        }

        if (unique)
                log_info("Mount %" PRIu64 " delegated to '%s'", mnt_id, ns->e.name);
        else
                log_info("Mount %" PRIu64 " delegated to '%s'; this kernel has no unique mount ids, so the "
                         "delegation is held only until the service stops", mnt_id, ns->e.name);
        if (m->bus)
                (void) sd_bus_emit_properties_changed(m->bus, ns->path, USERNS_IFACE, "Mounts", NULL);
        return 1;
}

/* ---- BPF token delegation ----------------------------------------------- */

int namespace_add_bpf(Manager *m, Namespace *ns, const BpfDelegation *d) {
        char *names[_BPF_DELEGATE_KIND_MAX] = {};
        uint64_t masks[NS_BPF_MASKS];
        int r;

        if (ns->e.n_bpf >= NS_BPF_MAX)
                return -E2BIG;
        memcpy(masks, ns->e.bpf_masks, sizeof(masks));
        ns->e.n_bpf++;
        for (unsigned k = 0; k < _BPF_DELEGATE_KIND_MAX; k++)
                ns->e.bpf_masks[k] |= d->mask[k];
        r = registry_save(m->registry, &ns->e);
        if (r < 0) {
                ns->e.n_bpf--;
                memcpy(ns->e.bpf_masks, masks, sizeof(masks));
                return r;
        }

        for (unsigned k = 0; k < _BPF_DELEGATE_KIND_MAX; k++)
                names[k] = bpf_delegate_mask_to_string(k, d->mask[k]);
        log_namespace_event(LOG_INFO, MESSAGE_BPF_DELEGATED, &ns->e,
                            "BPF delegated to '%s' (id %" PRIu64 ", owner %u): cmds=%s maps=%s progs=%s attachs=%s",
                            ns->e.name, ns->e.id, (unsigned) ns->e.owner, names[0] ?: "?", names[1] ?: "?",
                            names[2] ?: "?", names[3] ?: "?");
        for (unsigned k = 0; k < _BPF_DELEGATE_KIND_MAX; k++)
                free(names[k]);
        if (m->bus && ns->e.n_bpf == 1)
                (void) sd_bus_emit_properties_changed(m->bus, ns->path, USERNS_IFACE, "BpfDelegated", NULL);
        return 0;
}

/* ---- control groups ----------------------------------------------------- */

int manager_cgroup_mount(Manager *m, const CgroupMount **ret) {
        int r;

        if (m->cgroup_mount.fd < 0) {
                r = cgroup_mount_find(&m->cgroup_mount);
                if (r < 0)
                        return r;
                log_info("Control groups are delegated below the cgroup2 mount on '%s'", m->cgroup_mount.path);
        }
        *ret = &m->cgroup_mount;
        return 0;
}

void namespace_cgroup_leaf_name(const Namespace *ns, char *buf, size_t size) {
        snprintf(buf, size, "nsresd-%s", ns->e.name);
}

static const char *path_last(const char *path) {
        const char *slash = strrchr(path, '/');

        return slash ? slash + 1 : path;
}

/* The record a delegation of `info` to ns will have. */
static int cgroup_record(const Namespace *ns, const CgroupInfo *info, bool create, NsCgroup *ret) {
        char name[sizeof("nsresd-") + QUALIFIED_NAME_MAX];
        char *path;

        if (!create) {
                path = strdup(info->path);
                if (!path)
                        return -ENOMEM;
                *ret = (NsCgroup) { .id = info->id, .pending = true, .path = path };
                return 0;
        }
        namespace_cgroup_leaf_name(ns, name, sizeof(name));
        if (asprintf(&path, "%s/%s", strcmp(info->path, "/") == 0 ? "" : info->path, name) < 0)
                return -ENOMEM;
        /* Its id is known once it is made. */
        *ret = (NsCgroup) { .parent_id = info->id, .created = true, .pending = true, .path = path };
        return 0;
}

int namespace_check_cgroup(Manager *m, const Namespace *ns, int fd, const CgroupInfo *info, bool create) {
        char name[sizeof("nsresd-") + QUALIFIED_NAME_MAX];
        NsCgroup record;
        uint64_t id;
        bool valid;
        int r;

        r = cgroup_record(ns, info, create, &record);
        if (r < 0)
                return r;
        valid = ns_cgroup_is_valid(&record);
        free(record.path);
        if (!valid)
                return -EINVAL;

        if (!create) {
                if (hashmap_get_u64(m->cgroups, info->id))
                        return -EALREADY;
                /* The root always has members, and no cgroup.events to say so. */
                if (info->id == m->cgroup_mount.root_id)
                        return -ENOTEMPTY;
                r = cgroup_is_empty_leaf(fd);
                if (r < 0)
                        return r;
                return r > 0 ? 0 : -ENOTEMPTY;
        }

        namespace_cgroup_leaf_name(ns, name, sizeof(name));
        r = cgroup_open_child(fd, name, NULL, &id, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        return hashmap_get_u64(m->cgroups, id) == ns ? -EALREADY : -EEXIST;
}

int namespace_add_cgroup(Manager *m, Namespace *ns, int fd, const CgroupInfo *info, bool create, char **ret_path) {
        const CgroupLimits limits = {
                .max_descendants = m->config.control_group_max_descendants,
                .max_depth = m->config.control_group_max_depth,
        };
        _cleanup_close_ int leaf_fd = -EBADF;
        _cleanup_free_ char *path = NULL;
        NsCgroup record;
        unsigned index;
        int r;

        assert(entry_is_transient(&ns->e));

        r = namespace_check_cgroup(m, ns, fd, info, create);
        if (r < 0)
                return r;
        if (ns->e.n_cgroups >= m->config.max_control_groups)
                return -E2BIG;

        r = cgroup_record(ns, info, create, &record);
        if (r < 0)
                return r;
        path = record.path;
        /* Recorded before anything is made or chowned: whenever the service
         * dies from here on, the next start finds the record and completes
         * the delegation (the namespace lives) or tears it down (it is gone). */
        r = ns_entry_add_cgroup(&ns->e, &record);
        if (r < 0)
                return r;
        index = ns->e.n_cgroups - 1;
        r = registry_save(m->registry, &ns->e);
        if (r < 0) {
                ns_entry_remove_cgroup(&ns->e, index);
                return r;
        }
        if (fault_matches(m->fault_kill_after_cgroup_record, ns->e.name)) {
                log_notice("Fault injection: killing the daemon after recording control group '%s' of '%s'",
                           path, ns->e.name);
                raise(SIGKILL);
        }

        if (create) {
                uint64_t id;

                /* In the cgroup we verified, by its fd: never by a path. */
                r = cgroup_make_leaf(fd, path_last(path), &leaf_fd, &id);
                if (r < 0)
                        goto fail;
                if (fault_matches(m->fault_kill_after_cgroup_create, ns->e.name)) {
                        log_notice("Fault injection: killing the daemon after making control group '%s' of '%s'",
                                   path, ns->e.name);
                        raise(SIGKILL);
                }
                ns->e.cgroups[index].id = id;
                fd = leaf_fd;
        }

        r = cgroup_delegate(fd, ns->e.uid_start, ns->e.gid_start, &limits);
        if (r < 0) {
                unsigned removed;

                if (create)
                        (void) cgroup_remove_tree(fd, true, &removed);
                else
                        (void) cgroup_undelegate(fd, info->uid, info->gid, info->mode);
                goto fail;
        }

        ns->e.cgroups[index].pending = false;
        if (hashmap_put_u64(m->cgroups, ns->e.cgroups[index].id, ns) < 0)
                log_warning("Out of memory indexing control group '%s' of '%s'", path, ns->e.name);
        r = registry_save(m->registry, &ns->e);
        if (r < 0)
                /* The pending record stays and says the same: a restart completes it. */
                log_warning_errno(r, "Failed to mark control group '%s' of '%s' delegated in the registry: %m",
                                  path, ns->e.name);

        log_info("Control group '%s' (id %" PRIu64 ") %s '%s': owned by %" PRIu32 ":%" PRIu32 " now",
                 path, ns->e.cgroups[index].id, create ? "made for and delegated to" : "delegated to", ns->e.name,
                 ns->e.uid_start, ns->e.gid_start);
        if (m->bus)
                (void) sd_bus_emit_properties_changed(m->bus, ns->path, USERNS_IFACE, "ControlGroups", NULL);
        *ret_path = TAKE_PTR(path);
        return 0;

fail:
        ns_entry_remove_cgroup(&ns->e, index);
        (void) registry_save(m->registry, &ns->e);
        return r;
}

/* ---- network links ------------------------------------------------------ */

unsigned manager_owner_netifs(Manager *m, uid_t uid) {
        return (unsigned) (uintptr_t) hashmap_get_u64(m->netifs_per_owner, uid);
}

int manager_owner_netifs_add(Manager *m, uid_t uid, int delta) {
        unsigned n = manager_owner_netifs(m, uid);

        /* Never below zero, whatever went wrong before. */
        n = delta < 0 && (unsigned) -delta > n ? 0 : n + delta;
        hashmap_remove_u64(m->netifs_per_owner, uid);
        if (n == 0)
                return 0;
        return hashmap_put_u64(m->netifs_per_owner, uid, (void *) (uintptr_t) n);
}

unsigned namespace_n_netifs(const Namespace *ns) {
        return ns->e.n_netifs + ns->netifs_reserved;
}

/* Whether the host has a link that carries this name as its name: the
 * kernel also finds links by their alternative names. */
static bool host_link_exists(const char *host) {
        char name[IF_NAMESIZE];
        unsigned index;

        index = if_nametoindex(host);
        if (index == 0)
                return false;
        return if_indextoname(index, name) && strcmp(name, host) == 0;
}

void namespace_prune_netifs(Manager *m, Namespace *ns) {
        unsigned dropped = 0;
        int r;

        for (unsigned i = 0; i < ns->e.n_netifs;) {
                const NsNetif *n = &ns->e.netifs[i];

                if (host_link_exists(n->host)) {
                        i++;
                        continue;
                }
                log_info("%s '%s' ('%s') of '%s' is gone, forgetting it",
                         n->kind == NS_NETIF_TAP ? "Tap" : "Veth", n->host, n->inside, ns->e.name);
                ns_entry_remove_netif(&ns->e, i);
                dropped++;
        }
        if (dropped == 0)
                return;
        (void) manager_owner_netifs_add(m, ns->e.owner, -(int) dropped);
        r = registry_save(m->registry, &ns->e);
        if (r < 0)
                log_warning_errno(r, "Failed to update the registry entry of '%s': %m", ns->e.name);
        if (m->bus)
                (void) sd_bus_emit_properties_changed(m->bus, ns->path, USERNS_IFACE, "NetworkInterfaces", NULL);
}

/* The first "tapN" no tap of the namespace is labelled with: names stay
 * short and, unlike a counter, do not grow without bound. */
static void tap_label(const Namespace *ns, char ret[static NETIF_NAME_SIZE]) {
        for (unsigned k = 0;; k++) {
                bool taken = false;

                snprintf(ret, NETIF_NAME_SIZE, "tap%u", k);
                for (unsigned i = 0; i < ns->e.n_netifs && !taken; i++)
                        taken = ns->e.netifs[i].kind == NS_NETIF_TAP && strcmp(ns->e.netifs[i].inside, ret) == 0;
                if (!taken)
                        return;
        }
}

int namespace_add_netif(Manager *m, Namespace *ns, NsNetifKind kind, int netns_fd, const char *ifname,
                        char ret_host[static NETIF_NAME_SIZE], char ret_inside[static NETIF_NAME_SIZE],
                        int *ret_tap_fd) {
        _cleanup_close_ int tap_fd = -EBADF;
        char host[NETIF_NAME_SIZE];
        NsNetif record = { .kind = kind };
        int r;

        assert(entry_is_transient(&ns->e));
        assert(m->netif_key_loaded);

        if (ns->e.n_netifs >= m->config.max_network_interfaces || ns->e.n_netifs >= NS_NETIFS_MAX)
                return -E2BIG;

        if (kind == NS_NETIF_TAP)
                tap_label(ns, record.inside);
        else
                snprintf(record.inside, sizeof(record.inside), "%s",
                         ifname && ifname[0] ? ifname : NETIF_DEFAULT_IFNAME);
        r = netif_host_name(m->netif_key, (NetifKind) kind, ns->e.id, ns->e.name, record.inside, record.host);
        if (r < 0)
                return r;
        /* Asked for twice: the link is there already, and it is not to be
         * deleted as the leftover of a failed attempt below. */
        if (ns_entry_find_netif(&ns->e, record.host) >= 0)
                return -EEXIST;

        /* Recorded before the link exists: whenever the service dies from
         * here on, the next start finds the record, and so the link if it
         * was made. A link without a record would outlive the namespace. */
        r = ns_entry_add_netif(&ns->e, &record);
        if (r < 0)
                return r;
        r = registry_save(m->registry, &ns->e);
        if (r < 0) {
                ns_entry_remove_netif(&ns->e, ns->e.n_netifs - 1);
                return r;
        }
        if (fault_matches(m->fault_kill_after_netif_record, ns->e.name)) {
                log_notice("Fault injection: killing the daemon after recording link '%s' of '%s'",
                           record.host, ns->e.name);
                raise(SIGKILL);
        }

        if (kind == NS_NETIF_TAP)
                r = netif_create_tap(&(NetifTapParams) {
                                .key = m->netif_key,
                                .ns_id = ns->e.id,
                                .ns_name = ns->e.name,
                                .label = record.inside,
                                .uid = ns->e.uid_start,
                                .gid = ns->e.gid_start,
                        }, &tap_fd, host);
        else
                r = netif_create_veth(&(NetifVethParams) {
                                .key = m->netif_key,
                                .ns_id = ns->e.id,
                                .ns_name = ns->e.name,
                                .netns_fd = netns_fd,
                                .ifname = record.inside,
                        }, host);
        if (r >= 0 && strcmp(host, record.host) != 0) {
                /* netif_host_name() and the create functions agree by
                 * construction; a link under a name we did not record must
                 * not stay. */
                log_error("Link '%s' of '%s' was created as '%s', deleting it", record.host, ns->e.name, host);
                closep(&tap_fd);
                tap_fd = -EBADF;
                (void) netif_delete(host);
                r = -EIO;
        }
        if (r < 0) {
                /* Nothing is left behind by a failed create. */
                int k = ns_entry_find_netif(&ns->e, record.host);

                if (k >= 0)
                        ns_entry_remove_netif(&ns->e, (unsigned) k);
                (void) registry_save(m->registry, &ns->e);
                return r;
        }

        if (kind == NS_NETIF_TAP)
                log_info("Tap '%s' ('%s') made for '%s', owned by %" PRIu32 ":%" PRIu32,
                         record.host, record.inside, ns->e.name, ns->e.uid_start, ns->e.gid_start);
        else
                log_info("Veth '%s' made for '%s', its peer is '%s' in the namespace's network namespace",
                         record.host, ns->e.name, record.inside);
        if (m->bus)
                (void) sd_bus_emit_properties_changed(m->bus, ns->path, USERNS_IFACE, "NetworkInterfaces", NULL);
        memcpy(ret_host, record.host, NETIF_NAME_SIZE);
        memcpy(ret_inside, record.inside, NETIF_NAME_SIZE);
        if (ret_tap_fd)
                *ret_tap_fd = TAKE_FD(tap_fd);
        return 0;
}

/* A veth goes with its network namespace, which cannot outlive the user
 * namespace that owns it; deleting it here only wins the race with the
 * kernel. A tap lives in the host's network namespace for as long as
 * anyone holds its fd, and is owned by ids that are handed out again now:
 * it must go. */
static void namespace_remove_netifs(Manager *m, Namespace *ns) {
        for (unsigned i = 0; i < ns->e.n_netifs; i++) {
                const NsNetif *n = &ns->e.netifs[i];
                int r;

                r = netif_delete(n->host);
                if (r < 0)
                        log_warning_errno(r, "Failed to delete %s '%s' of '%s': %m",
                                          ns_netif_kind_to_string(n->kind), n->host, ns->e.name);
                else
                        log_info("Deleted %s '%s' ('%s') of '%s' (or it was gone)",
                                 ns_netif_kind_to_string(n->kind), n->host, n->inside, ns->e.name);
        }
        (void) manager_owner_netifs_add(m, ns->e.owner, -(int) ns->e.n_netifs);
}

typedef struct CgroupRemoval {
        uint64_t id;
        unsigned tries;
        char *path;
        char owner[QUALIFIED_NAME_MAX + 1];
} CgroupRemoval;

static void cgroup_removal_free(CgroupRemoval *x) {
        free(x->path);
        free(x);
}

static int on_cgroup_removal_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void cgroup_removal_arm(Manager *m, unsigned tries) {
        uint64_t delay = CGROUP_REMOVAL_MAX_USEC;
        int r;

        if (tries < 20 && (CGROUP_REMOVAL_FIRST_USEC << tries) < CGROUP_REMOVAL_MAX_USEC)
                delay = CGROUP_REMOVAL_FIRST_USEC << tries;
        if (!m->cgroup_removal_timer) {
                r = sd_event_add_time_relative(m->event, &m->cgroup_removal_timer, CLOCK_MONOTONIC, delay,
                                               RECHECK_ACCURACY_USEC, on_cgroup_removal_timer, m);
                if (r < 0)
                        log_warning_errno(r, "Cannot retry removing control groups: %m");
                return;
        }
        (void) sd_event_source_set_time_relative(m->cgroup_removal_timer, delay);
        (void) sd_event_source_set_enabled(m->cgroup_removal_timer, SD_EVENT_ONESHOT);
}

/* 1 when it is gone (or will never be), 0 while its processes are leaving. */
static int cgroup_removal_try(Manager *m, CgroupRemoval *x) {
        _cleanup_close_ int fd = -EBADF;
        const CgroupMount *mount;
        unsigned removed = 0;
        int r;

        r = manager_cgroup_mount(m, &mount);
        if (r >= 0)
                r = cgroup_open_id(mount, x->id, &fd);
        if (r == -ESTALE) {
                log_info("Control group '%s' of '%s' is gone", x->path, x->owner);
                return 1;
        }
        if (r >= 0)
                r = cgroup_remove_tree(fd, !m->fault_no_cgroup_kill, &removed);
        if (r == -EBUSY)
                return 0;
        if (r < 0) {
                log_warning_errno(r, "Failed to remove control group '%s' of '%s', leaving it (owned by root): %m",
                                  x->path, x->owner);
                return 1;
        }
        log_info("Removed control group '%s' of '%s' once its processes had left (cgroups removed: %u)",
                 x->path, x->owner, removed);
        return 1;
}

static int on_cgroup_removal_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        _cleanup_free_ CgroupRemoval **list = NULL;
        size_t n = 0, state = 0;
        unsigned fewest = UINT_MAX;
        void *v;

        (void) s;
        (void) usec;

        list = calloc(hashmap_size(m->cgroup_removals) + 1, sizeof(CgroupRemoval *));
        if (!list) {
                cgroup_removal_arm(m, CGROUP_REMOVAL_TRIES);
                return 0;
        }
        while (hashmap_iterate(m->cgroup_removals, &state, &v))
                list[n++] = v;
        for (size_t i = 0; i < n; i++) {
                CgroupRemoval *x = list[i];

                if (cgroup_removal_try(m, x) == 0 && ++x->tries < CGROUP_REMOVAL_TRIES) {
                        fewest = x->tries < fewest ? x->tries : fewest;
                        continue;
                }
                if (x->tries >= CGROUP_REMOVAL_TRIES)
                        log_warning("Control group '%s' of '%s' still has processes that do not exit after SIGKILL; "
                                    "leaving it, owned by root", x->path, x->owner);
                hashmap_remove_u64(m->cgroup_removals, x->id);
                cgroup_removal_free(x);
        }
        if (hashmap_size(m->cgroup_removals) > 0)
                cgroup_removal_arm(m, fewest);
        return 0;
}

static void cgroup_removal_queue(Manager *m, uint64_t id, const char *path, const char *owner) {
        CgroupRemoval *x;

        if (hashmap_get_u64(m->cgroup_removals, id))
                return;
        x = calloc(1, sizeof(*x));
        if (x)
                x->path = strdup(path);
        if (!x || !x->path || hashmap_put_u64(m->cgroup_removals, id, x) < 0) {
                if (x)
                        cgroup_removal_free(x);
                log_warning("Out of memory: control group '%s' of '%s' is left behind, owned by root", path, owner);
                return;
        }
        x->id = id;
        snprintf(x->owner, sizeof(x->owner), "%s", owner);
        cgroup_removal_arm(m, 0);
}

/* A CREATE_CHILD leaf whose id was not recorded yet (a crash right after
 * making it): found by its name in its parent, and taken only if nsresd
 * made it (root's) or delegated it (the namespace's). 0 if there is none. */
static int open_unrecorded_leaf(Manager *m, const CgroupMount *mount, const NsEntry *e, const NsCgroup *c,
                                int *ret_fd, uint64_t *ret_id) {
        _cleanup_close_ int parent = -EBADF, fd = -EBADF;
        uint64_t id;
        uid_t uid;
        int r;

        r = cgroup_open_id(mount, c->parent_id, &parent);
        if (r == -ESTALE)
                return 0;
        if (r >= 0)
                r = cgroup_open_child(parent, path_last(c->path), &fd, &id, &uid);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if ((uid != 0 && uid != e->uid_start) || hashmap_get_u64(m->cgroups, id)) {
                log_notice("Control group '%s' was not made by nsresd for '%s', leaving it alone", c->path, e->name);
                return 0;
        }
        *ret_fd = TAKE_FD(fd);
        *ret_id = id;
        return 1;
}

/* Kill what is left in a delegated cgroup and remove it, the leaf itself
 * included: as-is leaves too. Such a leaf was empty when it was handed
 * over, everything in it since is the namespace's, and its directory is
 * owned by the namespace's first ids, which are handed out again now; so
 * it must not stay, and giving it back would mean restoring an owner,
 * modes and limits that may have changed meanwhile. Its owner can make it
 * again where it could before. Nothing above the leaf is touched. */
static void namespace_remove_cgroup(Manager *m, const NsEntry *e, const NsCgroup *c) {
        _cleanup_close_ int fd = -EBADF;
        const CgroupMount *mount;
        uint64_t id = c->id;
        unsigned removed = 0;
        int r;

        r = manager_cgroup_mount(m, &mount);
        if (r < 0) {
                log_warning_errno(r, "Cannot remove control group '%s' of '%s' without a cgroup2 mount: %m",
                                  c->path, e->name);
                return;
        }
        if (id == 0) {
                r = open_unrecorded_leaf(m, mount, e, c, &fd, &id);
                if (r == 0) {
                        log_info("Control group '%s' of '%s' was never made", c->path, e->name);
                        return;
                }
        } else
                r = cgroup_open_id(mount, id, &fd);
        if (r == -ESTALE) {
                log_info("Control group '%s' of '%s' is gone already", c->path, e->name);
                return;
        }
        if (r < 0) {
                log_warning_errno(r, "Cannot open control group '%s' (id %" PRIu64 ") of '%s', leaving it: %m",
                                  c->path, id, e->name);
                return;
        }

        r = cgroup_remove_tree(fd, !m->fault_no_cgroup_kill, &removed);
        if (r >= 0) {
                log_info("Removed control group '%s' of '%s' (cgroups removed: %u)", c->path, e->name, removed);
                return;
        }
        if (r != -EBUSY) {
                log_warning_errno(r, "Failed to remove control group '%s' of '%s': %m", c->path, e->name);
                /* What stays must not stay writable by the range. */
                (void) cgroup_disown_tree(fd);
                return;
        }
        /* Killed processes are still leaving. Their cgroups wait for them,
         * owned by root from now on. */
        r = cgroup_disown_tree(fd);
        if (r < 0)
                log_warning_errno(r, "Failed to make root the owner of what is left of control group '%s' of '%s': %m",
                                  c->path, e->name);
        cgroup_removal_queue(m, id, c->path, e->name);
}

static void namespace_remove_cgroups(Manager *m, Namespace *ns) {
        for (unsigned i = 0; i < ns->e.n_cgroups; i++) {
                const NsCgroup *c = &ns->e.cgroups[i];

                if (c->id != 0 && hashmap_get_u64(m->cgroups, c->id) == ns)
                        hashmap_remove_u64(m->cgroups, c->id);
                namespace_remove_cgroup(m, &ns->e, c);
        }
}

/* A delegation the service died in the middle of, in a namespace that
 * lives: the call got no answer, but the record says the cgroup is the
 * namespace's, so it is completed (delegating is idempotent). Returns 1 if
 * it was, 0 if the record is to be dropped (nothing was made, or it is
 * gone), negative to keep it pending. */
static int finish_pending_cgroup(Manager *m, Namespace *ns, NsCgroup *c) {
        const CgroupLimits limits = {
                .max_descendants = m->config.control_group_max_descendants,
                .max_depth = m->config.control_group_max_depth,
        };
        _cleanup_close_ int fd = -EBADF;
        const CgroupMount *mount;
        uint64_t id = c->id;
        int r;

        r = manager_cgroup_mount(m, &mount);
        if (r < 0)
                return log_warning_errno(r, "Cannot complete the delegation of control group '%s' to '%s' "
                                         "without a cgroup2 mount: %m", c->path, ns->e.name);
        if (id == 0) {
                r = open_unrecorded_leaf(m, mount, &ns->e, c, &fd, &id);
                if (r == 0)
                        return 0;
        } else
                r = cgroup_open_id(mount, id, &fd);
        if (r == -ESTALE)
                return 0;
        if (r < 0)
                return log_warning_errno(r, "Cannot open control group '%s' of '%s' to complete its delegation: %m",
                                         c->path, ns->e.name);
        if (hashmap_get_u64(m->cgroups, id) && hashmap_get_u64(m->cgroups, id) != ns)
                return 0;

        r = cgroup_delegate(fd, ns->e.uid_start, ns->e.gid_start, &limits);
        if (r < 0)
                return log_warning_errno(r, "Failed to complete the delegation of control group '%s' to '%s': %m",
                                         c->path, ns->e.name);
        c->id = id;
        c->pending = false;
        if (hashmap_put_u64(m->cgroups, id, ns) < 0)
                log_warning("Out of memory indexing control group '%s' of '%s'", c->path, ns->e.name);
        log_notice("Interrupted delegation of control group '%s' to '%s' completed", c->path, ns->e.name);
        return 1;
}

int namespace_index(Manager *m, Namespace *ns) {
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

void emit_manager_counts(Manager *m) {
        if (m->bus)
                (void) sd_bus_emit_properties_changed(m->bus, MANAGER_PATH, MANAGER_IFACE,
                                                      "FreeRanges", "Namespaces", NULL);
}

static void namespace_release(Manager *m, Namespace *ns, const char *why) {
        int r;

        log_namespace_event(LOG_INFO, MESSAGE_NAMESPACE_RELEASED, &ns->e,
                            "Releasing namespace '%s' (%s, id %" PRIu64 ", uids %" PRIu32 "+%" PRIu32 ", owner %u): %s",
                            ns->e.name, ns_kind_to_string(ns->e.kind), ns->e.id, ns->e.uid_start, ns->e.size,
                            (unsigned) ns->e.owner, why);

        if (m->bus) {
                /* ObjectManager needs the object to still exist to list its
                 * interfaces in InterfacesRemoved. */
                (void) sd_bus_emit_object_removed(m->bus, ns->path);
                (void) sd_bus_emit_signal(m->bus, MANAGER_PATH, MANAGER_IFACE, "UserNamespaceRemoved",
                                          "osu", ns->path, ns->e.name, (uint32_t) ns->e.owner);
        }

        namespace_unindex(m, ns);
        hashmap_remove_u64(m->suspects, ns->e.id);
        /* Before the range is free again: their directories are its ids'. */
        namespace_remove_cgroups(m, ns);
        namespace_remove_netifs(m, ns);
        if (m->tracker)
                (void) tracker_remove(m->tracker, ns->e.id);
        /* Proven dead (or never mapped): nothing can write with its ids any more. */
        if (m->restrictor && entry_is_transient(&ns->e)) {
                r = restrictor_remove(m->restrictor, ns->e.id);
                if (r < 0)
                        log_warning_errno(r, "Failed to remove '%s' from the restriction: %m", ns->e.name);
        }
        r = registry_remove(m->registry, &ns->e);
        if (r < 0)
                log_warning_errno(r, "Failed to remove registry entry of '%s': %m", ns->e.name);
        if (entry_is_transient(&ns->e) && !allocator_covers(m->allocator, ns->e.uid_start, ns->e.size))
                m->n_outside_pools--;
        else if (entry_is_transient(&ns->e)) {
                r = allocator_release(m->allocator, ns->e.uid_start, ns->e.size);
                if (r < 0)
                        log_warning_errno(r, "Range %" PRIu32 "+%" PRIu32 " of '%s' was not taken: %m",
                                          ns->e.uid_start, ns->e.size, ns->e.name);
        }
        allocator_owner_uncharge(m->allocator, ns->e.owner);
        namespace_free(ns);

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

/* Due at the earliest suspect's next check; `now` when a batch was cut short. */
static void recheck_arm(Manager *m, uint64_t due) {
        (void) sd_event_source_set_time(m->recheck_timer, due);
        (void) sd_event_source_set_enabled(m->recheck_timer, SD_EVENT_ONESHOT);
}

static int on_recheck(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        Namespace *list[RECHECK_BATCH];
        uint64_t now = now_monotonic_usec(), next = UINT64_MAX;
        size_t n = 0, state = 0;
        void *v;

        (void) s;
        (void) usec;

        /* Suspects are few (namespaces that died in the last moments);
         * checking a bounded batch per tick keeps the loop responsive. */
        while (hashmap_iterate(m->suspects, &state, &v)) {
                Namespace *ns = v;

                if (ns->recheck_usec > now)
                        next = min_u64(next, ns->recheck_usec);
                else if (n < ELEMENTSOF(list))
                        list[n++] = ns;
                else
                        next = now;
        }
        for (size_t i = 0; i < n; i++) {
                Namespace *ns = list[i];

                if (namespace_check(m, ns) == 0) {
                        log_debug("'%s' proven dead %.1f ms after its teardown event", ns->e.name,
                                  (now_monotonic_usec() - ns->event_usec) / 1000.0);
                        namespace_release(m, ns, "namespace destroyed");
                } else if (now - ns->event_usec >= RECHECK_WINDOW_USEC) {
                        log_debug("'%s' still lives %.1f s after a teardown event: an ancestor's", ns->e.name,
                                  (now - ns->event_usec) / 1e6);
                        hashmap_remove_u64(m->suspects, ns->e.id);
                } else {
                        ns->recheck_usec = now + ns->recheck_delay;
                        ns->recheck_delay = min_u64(ns->recheck_delay * 2, RECHECK_MAX_USEC);
                        next = min_u64(next, ns->recheck_usec);
                }
        }
        if (next != UINT64_MAX)
                recheck_arm(m, next);
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
        ns->event_usec = now_monotonic_usec();
        ns->recheck_usec = ns->event_usec + RECHECK_FIRST_USEC;
        ns->recheck_delay = RECHECK_FIRST_USEC * 2;
        if (hashmap_put_u64(m->suspects, ns->e.id, ns) == -ENOMEM) {
                log_warning("Out of memory queueing '%s' for a liveness check; the periodic sweep will find it", ns->e.name);
                return;
        }
        /* An earlier suspect's check may be due sooner. */
        if (sd_event_source_get_enabled(m->recheck_timer, NULL) > 0) {
                uint64_t due;

                if (sd_event_source_get_time(m->recheck_timer, &due) >= 0 && due <= ns->recheck_usec)
                        return;
        }
        recheck_arm(m, ns->recheck_usec);
}

/* Reset before the sweep: a drop counted meanwhile is covered by it. */
static void manager_check_drops(Manager *m, const char *what) {
        uint64_t n = tracker_drops(m->tracker);

        if (n == 0)
                return;
        log_warning("%s: %" PRIu64 " lost, checking every namespace", what, n);
        tracker_reset_drops(m->tracker);
        manager_sweep(m, "namespace destroyed, found by a sweep after lost teardown events");
}

static int on_teardown_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        int r;

        (void) fd;
        (void) revents;

        r = tracker_consume(m->tracker);
        if (r < 0) {
                /* The ring stays readable, so retrying would spin; the
                 * backstop sweep still finds every dead namespace. */
                log_warning_errno(r, "Failed to read teardown events, relying on the periodic sweep: %m");
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
                return 0;
        }
        /* Events are dropped only while the ring is full, and a full ring
         * wakes us: looking here finds every loss at the first read after
         * it (after SIGSTOP, say), not at the backstop sweep a minute later. */
        manager_check_drops(m, "Teardown events were lost (ring buffer full)");
        return 0;
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

static void manager_write_index(Manager *m) {
        _cleanup_free_ Namespace **list = NULL;
        _cleanup_free_ const NsEntry **entries = NULL;
        size_t n;
        int r;

        r = collect_namespaces(m, &list, &n);
        if (r < 0)
                return;
        entries = calloc(n ? n : 1, sizeof(NsEntry *));
        if (!entries)
                return;
        for (size_t i = 0; i < n; i++)
                entries[i] = &list[i]->e;
        r = registry_write_index(m->registry, entries, n);
        if (r < 0)
                log_warning_errno(r, "Failed to write the NSS index: %m");
}

static int on_index_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) s;
        (void) usec;
        manager_write_index(userdata);
        return 0;
}

/* A new namespace's names must resolve by the time its caller hears back:
 * its processes may talk to the bus at once, and dbus-daemon refuses uids
 * without a passwd entry. One line is appended; removals are coalesced. */
void manager_index_add(Manager *m, const Namespace *ns) {
        int enabled, r;

        /* With a removal still pending, the range may be the one just freed:
         * its old line must go before the new one is read. */
        if (m->index_timer && sd_event_source_get_enabled(m->index_timer, &enabled) >= 0 && enabled != SD_EVENT_OFF) {
                (void) sd_event_source_set_enabled(m->index_timer, SD_EVENT_OFF);
                manager_write_index(m);
                return;
        }
        r = registry_append_index(m->registry, &ns->e);
        if (r < 0) {
                log_debug("Appending '%s' to the NSS index failed (%s), rewriting it", ns->e.name, strerror(-r));
                manager_write_index(m);
        }
}

/* Coalesced: under load the index is rewritten at most every INDEX_DELAY_USEC. */
void manager_index_dirty(Manager *m) {
        int enabled;

        if (!m->index_timer)
                return;
        if (sd_event_source_get_enabled(m->index_timer, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return;
        (void) sd_event_source_set_time_relative(m->index_timer, INDEX_DELAY_USEC);
        (void) sd_event_source_set_enabled(m->index_timer, SD_EVENT_ONESHOT);
}

/* ---- claims ------------------------------------------------------------- */

int manager_refresh_claims(Manager *m) {
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
        m->claims_refreshed_usec = now_monotonic_usec();
        emit_manager_counts(m);
        return 0;
}

/* Enumerating users can take long (a network directory): on demand at most
 * this often. */
#define CLAIMS_DEMAND_INTERVAL_USEC (5ULL * 1000000ULL)

int manager_refresh_claims_ratelimited(Manager *m) {
        int r;

        if (m->claims_refreshed_usec != 0 &&
            now_monotonic_usec() - m->claims_refreshed_usec < CLAIMS_DEMAND_INTERVAL_USEC)
                return 0;
        r = manager_refresh_claims(m);
        return r < 0 ? r : 1;
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
                if (!allocator_covers(m->allocator, e->uid_start, e->size)) {
                        /* The pools were changed since it was allocated. It
                         * is still tracked, published and released when it
                         * dies; its range cannot be handed out, being
                         * outside the pools. */
                        log_warning("Range %" PRIu32 "+%" PRIu32 " of '%s' is outside the configured pools; it stays "
                                    "reserved until the namespace is gone", e->uid_start, e->size, e->name);
                        m->n_outside_pools++;
                } else {
                        r = allocator_mark(m->allocator, e->uid_start, e->size, e->id);
                        if (r < 0) {
                                log_error_errno(r, "Registry entry '%s' claims range %" PRIu32 "+%" PRIu32
                                                " that cannot be reserved, ignoring it: %m",
                                                e->name, e->uid_start, e->size);
                                return;
                        }
                }
        }
        ns = namespace_new(m, e);
        if (!ns || namespace_index(m, ns) < 0) {
                namespace_free(ns);
                log_error("Out of memory loading '%s'", e->name);
                return;
        }
        for (unsigned i = 0; i < ns->e.n_cgroups; i++) {
                const NsCgroup *c = &ns->e.cgroups[i];

                if (c->id == 0 || c->pending)
                        continue;
                if (hashmap_get_u64(m->cgroups, c->id))
                        log_error("Control group '%s' of '%s' is recorded for another namespace as well",
                                  c->path, e->name);
                else if (hashmap_put_u64(m->cgroups, c->id, ns) < 0)
                        log_error("Out of memory indexing control group '%s' of '%s'", c->path, e->name);
        }
        /* Counted even past the limit (it may have been lowered): these exist. */
        if (allocator_owner_charge_force(m->allocator, e->owner) < 0)
                log_error("Out of memory counting '%s' for its owner", e->name);
        if (manager_owner_netifs_add(m, e->owner, (int) e->n_netifs) < 0)
                log_error("Out of memory counting the links of '%s' for its owner", e->name);
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
                /* Its call got no answer, so it failed; the range is the
                 * namespace's all the same. */
                if (r < 0) {
                        errno = -r;
                        log_namespace_event(LOG_WARNING, MESSAGE_RANGE_KEPT, &ns->e,
                                            "Cannot read the maps of interrupted allocation '%s' (id %" PRIu64
                                            ", owner %u): %m; its range %" PRIu32 "+%" PRIu32 " stays reserved",
                                            ns->e.name, ns->e.id, (unsigned) ns->e.owner, ns->e.uid_start, ns->e.size);
                } else
                        log_namespace_event(LOG_NOTICE, MESSAGE_RANGE_KEPT, &ns->e,
                                            "Interrupted allocation of '%s' (id %" PRIu64 ", owner %u) completed: its "
                                            "map is in place, so range %" PRIu32 "+%" PRIu32 " stays reserved",
                                            ns->e.name, ns->e.id, (unsigned) ns->e.owner, ns->e.uid_start, ns->e.size);
                ns->e.pending = false;
                r = registry_save(m->registry, &ns->e);
                if (r < 0)
                        log_warning_errno(r, "Failed to complete registry entry '%s': %m", ns->e.name);
        }
}

/* Runs after the sweep: every namespace left lives. */
static void finish_pending_cgroups(Manager *m) {
        _cleanup_free_ Namespace **list = NULL;
        size_t n;

        if (collect_namespaces(m, &list, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                Namespace *ns = list[i];
                bool changed = false;
                int r;

                for (unsigned k = 0; k < ns->e.n_cgroups;) {
                        NsCgroup *c = &ns->e.cgroups[k];

                        if (!c->pending) {
                                k++;
                                continue;
                        }
                        r = finish_pending_cgroup(m, ns, c);
                        if (r == 0) {
                                log_notice("Dropping the record of control group '%s' of '%s': the delegation "
                                           "was interrupted before anything was made, or it is gone",
                                           c->path, ns->e.name);
                                ns_entry_remove_cgroup(&ns->e, k);
                        } else
                                k++;
                        changed = changed || r >= 0;
                }
                if (!changed)
                        continue;
                r = registry_save(m->registry, &ns->e);
                if (r < 0)
                        log_warning_errno(r, "Failed to update the registry entry of '%s': %m", ns->e.name);
        }
}

/* Runs after the sweep: every namespace left lives. A record whose link
 * does not exist is dropped: the service died between recording and
 * creating it (that call got no answer, so nobody expects the link), or
 * the link went away by itself (a tap whose fd was closed, a veth whose
 * network namespace died). Creating the link now instead would hand the
 * namespace a link that nobody asked for any more, and a tap needs a
 * caller to take its fd. */
static void finish_pending_netifs(Manager *m) {
        _cleanup_free_ Namespace **list = NULL;
        size_t n;

        if (collect_namespaces(m, &list, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++)
                namespace_prune_netifs(m, list[i]);
}

static bool namespace_is_known(uint64_t ns_id, void *userdata) {
        Manager *m = userdata;

        return hashmap_get_u64(m->by_id, ns_id) != NULL;
}

static bool namespace_is_restricted(uint64_t ns_id, void *userdata) {
        Manager *m = userdata;
        Namespace *ns = hashmap_get_u64(m->by_id, ns_id);

        return ns && entry_is_transient(&ns->e);
}

static void restrictor_freep(Restrictor **rs) {
        restrictor_free(*rs);
}

/* The maps are filled from the registry before the new programs attach:
 * every transient namespace stays restricted across a restart, by the old
 * programs until ours take over. SELF and registered namespaces map only
 * their owner's ids, so nothing restricts them. */
static int restriction_load(Manager *m, char **ret_reason) {
        _cleanup_(restrictor_freep) Restrictor *rs = NULL;
        const struct restrict_pool pools[] = {
                { .start = m->config.range_start, .size = m->config.range_end - m->config.range_start + 1 },
                { .start = m->config.single_range_start,
                  .size = m->config.single_range_end - m->config.single_range_start + 1 },
        };
        uint64_t stats[_RESTRICT_STAT_MAX];
        size_t state = 0;
        void *v;
        int r;

        r = restrictor_probe(ret_reason);
        if (r < 0)
                return r;
        r = restrictor_open(m->bpf_dir, pools, ELEMENTSOF(pools), &rs, ret_reason);
        if (r < 0)
                return r;

        while (hashmap_iterate(m->by_id, &state, &v)) {
                const NsEntry *e = &((Namespace *) v)->e;

                if (!entry_is_transient(e))
                        continue;
                r = restrictor_add(rs, e->id, e->uid_start, e->size);
                if (r >= 0)
                        r = restrictor_forget_mounts(rs, e->id);
                for (unsigned i = 0; r >= 0 && i < e->n_mounts; i++)
                        r = restrictor_add_mount(rs, e->id, e->mounts[i]);
                if (r < 0) {
                        errno = -r;
                        if (asprintf(ret_reason, "Cannot restrict namespace '%s': %m", e->name) < 0)
                                *ret_reason = NULL;
                        return r;
                }
        }
        r = restrictor_prune(rs, namespace_is_restricted, m);
        if (r < 0) {
                errno = -r;
                if (asprintf(ret_reason, "Cannot drop stale entries from the restriction: %m") < 0)
                        *ret_reason = NULL;
                return r;
        }
        if (r > 0)
                log_info("Dropped %d restriction entries of namespaces the registry does not know", r);

        r = restrictor_attach(rs, ret_reason);
        if (r < 0)
                return r;

        if (restrictor_stats(rs, stats) >= 0)
                log_info("Restriction enforcing: its hooks ran %" PRIu64 " times, %" PRIu64 " of them in "
                         "restricted namespaces, and refused %" PRIu64 " writes",
                         stats[RESTRICT_STAT_CALLS], stats[RESTRICT_STAT_CHECKED], stats[RESTRICT_STAT_DENIED]);
        m->restrictor = TAKE_PTR(rs);
        return 0;
}

static void manager_setup_restriction(Manager *m) {
        _cleanup_free_ char *reason = NULL;
        int r;

        if (m->config.restriction == RESTRICTION_OFF) {
                /* What an earlier run pinned would go on enforcing. */
                r = restrictor_unpin(m->bpf_dir);
                if (r < 0)
                        log_warning_errno(r, "Restriction=off, but the restriction pinned under '%s' could not be removed: %m",
                                          m->bpf_dir);
                m->restriction = "off";
                return;
        }

        if (m->fault_no_bpf) {
                r = -EOPNOTSUPP;
                reason = strdup("The restriction is disabled for testing (NSRESD_FAULT=no-bpf)");
        } else
                r = restriction_load(m, &reason);
        if (r >= 0) {
                m->restriction = "enforcing";
                return;
        }

        m->restriction = "unavailable";
        if (!reason) {
                errno = -r;
                if (asprintf(&reason, "Cannot load the BPF LSM restriction: %m") < 0)
                        reason = NULL;
        }
        free(m->restriction_reason);
        m->restriction_reason = TAKE_PTR(reason);
        if (m->config.restriction == RESTRICTION_PERMISSIVE)
                log_warning("The BPF LSM restriction is unavailable. %s. Restriction=permissive: transient "
                            "ranges are handed out without it",
                            m->restriction_reason ?: "Out of memory");
        else
                log_warning("The BPF LSM restriction is unavailable. %s. Restriction=enforce: transient ranges "
                            "are refused until it is available; SELF allocations and registrations still work",
                            m->restriction_reason ?: "Out of memory");
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
                else if (strncmp(t, "kill-after-cgroup-record:", 25) == 0)
                        m->fault_kill_after_cgroup_record = strdup(t + 25);
                else if (strncmp(t, "kill-after-cgroup-create:", 25) == 0)
                        m->fault_kill_after_cgroup_create = strdup(t + 25);
                else if (strncmp(t, "kill-after-netif-record:", 24) == 0)
                        m->fault_kill_after_netif_record = strdup(t + 24);
                else if (strcmp(t, "no-bpf") == 0)
                        m->fault_no_bpf = true;
                else if (strcmp(t, "no-cgroup-kill") == 0)
                        m->fault_no_cgroup_kill = true;
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
        /* Probed once, here, for every later helper and cgroup kill. */
        if (pidfd_supported())
                log_debug("Helpers are watched and signalled through pidfds");
        else
                log_debug("No pidfds (pidfd_open() fails): helpers are watched and signalled by pid, "
                          "and control groups are not emptied where cgroup.kill is missing");
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
        m->state_lock_fd = -EBADF;
        m->cgroup_mount.fd = -EBADF;
        m->config_path = strdup(paths->config);
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
        m->cgroups = hashmap_new_u64();
        m->cgroup_removals = hashmap_new_u64();
        m->netifs_per_owner = hashmap_new_u64();
        if (!m->netifs_per_owner ||
            !m->helpers || !m->suspects || !m->identifying || !m->config_path || !m->state_dir || !m->bpf_dir || !m->by_id || !m->by_inode || !m->by_name ||
            !m->pending_ids || !m->pending_names || !m->requests_per_caller || !m->cgroups || !m->cgroup_removals) {
                manager_free(m);
                return -ENOMEM;
        }

        /* Until manager_start() has loaded it. */
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

        r = registry_open(m->state_dir, &m->registry);
        if (r < 0)
                return log_error_errno(r, "Failed to open the registry under '%s': %m", m->state_dir);
        /* Before anything else is touched: two daemons on one registry would
         * each release what the other one hands out. */
        r = state_lock(m->state_dir, &m->state_lock_fd);
        if (r == -EBUSY)
                return log_error_errno(r, "Another nsresd runs on '%s' (it holds the directory's lock)", m->state_dir);
        if (r < 0)
                return log_error_errno(r, "Failed to lock '%s': %m", m->state_dir);

        r = manager_refresh_claims(m);
        if (r < 0)
                return r;

        {
                const CgroupMount *mount;

                /* Without one there is nothing to delegate; it is looked for again on demand. */
                r = manager_cgroup_mount(m, &mount);
                if (r < 0)
                        log_info("No cgroup2 mount found: control groups cannot be delegated until one is mounted");
        }

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

        r = manager_bus_register(m);
        if (r < 0)
                return log_error_errno(r, "Failed to register bus objects: %m");

        /* Without the key no host name can be computed; everything else works. */
        r = netif_key_load(m->state_dir, m->netif_key);
        if (r < 0)
                log_warning_errno(r, "Failed to load or create the key for link names in '%s', network links "
                                  "cannot be made: %m", m->state_dir);
        else
                m->netif_key_loaded = true;

        r = registry_load(m->registry, &(RegistryLoadCallbacks) {
                                  .entry = on_registry_entry,
                                  .corrupt = on_registry_corrupt,
                          }, m);
        if (r < 0)
                return log_error_errno(r, "Failed to load the registry: %m");

        /* Before the tracker: draining old events may already queue suspects.
         * sd-event's default accuracy (250 ms) would dominate teardown latency. */
        r = sd_event_add_time_relative(m->event, &m->recheck_timer, CLOCK_MONOTONIC, RECHECK_FIRST_USEC,
                                       RECHECK_ACCURACY_USEC, on_recheck, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->recheck_timer, SD_EVENT_OFF);
        if (r < 0)
                return log_error_errno(r, "Failed to set up timers: %m");

        r = m->fault_no_bpf ? -EOPNOTSUPP :
                tracker_open(m->bpf_dir, m->config.teardown_ring_buffer_size, on_teardown_event, m, &m->tracker);
        if (r >= 0) {
                r = sd_event_add_io(m->event, &m->teardown_source, tracker_fd(m->tracker), EPOLLIN, on_teardown_io, m);
                if (r >= 0)
                        (void) sd_event_source_set_description(m->teardown_source, "teardown-events");
                else
                        m->tracker = tracker_free(m->tracker);
        }
        if (r < 0) {
                log_warning_errno(r, "BPF teardown tracking unavailable, polling every second instead: %m");
                m->tracker = NULL;
        } else {
                size_t state = 0;
                uint64_t drops;
                void *v;

                while (hashmap_iterate(m->by_id, &state, &v)) {
                        r = tracker_add(m->tracker, ((Namespace *) v)->e.id);
                        if (r < 0)
                                log_warning_errno(r, "Failed to track '%s': %m", ((Namespace *) v)->e.name);
                }
                r = tracker_prune(m->tracker, namespace_is_known, m);
                if (r > 0)
                        log_info("Dropped %d stale teardown tracking entries", r);
                /* Events from while we were down. */
                (void) tracker_consume(m->tracker);
                drops = tracker_drops(m->tracker);
                if (drops > 0) {
                        /* The sweep below checks every namespace anyway. */
                        log_warning("Teardown events were lost while the service was down or stopped (ring "
                                    "buffer full): %" PRIu64 " lost, checking every namespace", drops);
                        tracker_reset_drops(m->tracker);
                }
        }

        /* Before anything is released: a namespace released now leaves the
         * restriction as well. */
        manager_setup_restriction(m);

        finish_pending(m);
        /* Every entry is proven alive or dead now, events or not. */
        manager_sweep(m, "namespace destroyed while the service was down");
        finish_pending_cgroups(m);
        finish_pending_netifs(m);

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
                request_abandon(v);
        }

        state = 0;
        while (hashmap_iterate(m->by_id, &state, &v)) {
                Namespace *ns = v;

                /* A reusable id may name another mount once we let go of it. */
                if (ns->n_held_mounts > 0)
                        log_notice("Dropping the %u mounts delegated to '%s' by reusable ids: they are not kept "
                                   "across a restart, delegate them again", ns->n_held_mounts, ns->e.name);
                namespace_free(ns);
        }
        manager_reap_helpers(m);

        /* One last try for cgroups whose processes were still leaving. */
        state = 0;
        while (hashmap_iterate(m->cgroup_removals, &state, &v)) {
                CgroupRemoval *x = v;

                if (cgroup_removal_try(m, x) == 0)
                        log_warning("Control group '%s' of '%s' still has processes after SIGKILL; leaving it, "
                                    "owned by root", x->path, x->owner);
                cgroup_removal_free(x);
        }

        sd_event_source_disable_unref(m->sweep_timer);
        sd_event_source_disable_unref(m->recheck_timer);
        sd_event_source_disable_unref(m->claims_timer);
        sd_event_source_disable_unref(m->claims_watch);
        sd_event_source_disable_unref(m->index_timer);
        sd_event_source_disable_unref(m->cgroup_removal_timer);
        sd_bus_slot_unref(m->manager_slot);
        sd_bus_slot_unref(m->userns_slot);
        sd_bus_slot_unref(m->enumerator_slot);
        sd_bus_slot_unref(m->object_manager_slot);
        sd_bus_slot_unref(m->object_filter_slot);
        sd_bus_flush_close_unref(m->bus);

        sd_event_source_disable_unref(m->teardown_source);
        tracker_free(m->tracker);
        /* Its pins stay: the restriction goes on while the service is down. */
        restrictor_free(m->restrictor);
        free(m->restriction_reason);
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
        hashmap_free(m->cgroups);
        hashmap_free(m->cgroup_removals);
        hashmap_free(m->netifs_per_owner);
        cgroup_mount_done(&m->cgroup_mount);
        caller_uids_clear(m);
        if (m->nsfs_fd >= 0)
                close(m->nsfs_fd);
        closep(&m->state_lock_fd);
        free(m->config_path);
        free(m->state_dir);
        free(m->bpf_dir);
        free(m->fault_kill_after_map);
        free(m->fault_helper_stop);
        free(m->fault_kill_after_cgroup_record);
        free(m->fault_kill_after_cgroup_create);
        free(m->fault_kill_after_netif_record);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}


/* ---- reload ------------------------------------------------------------- */

/* Restriction= changed: off loads nothing and removes what is pinned, the
 * other two load it as at start (permissive and enforce differ only in
 * what a call does while it is unavailable). */
static void manager_reload_restriction(Manager *m, RestrictionMode old) {
        const char *before = m->restriction;
        int r;

        if ((old == RESTRICTION_OFF) == (m->config.restriction == RESTRICTION_OFF))
                return;

        if (m->config.restriction == RESTRICTION_OFF) {
                m->restrictor = restrictor_free(m->restrictor);
                manager_setup_restriction(m);
        } else {
                manager_setup_restriction(m);
                /* Allocations between polkit's answer and their map are not
                 * namespaces yet, and their ids must not run unrestricted. */
                if (m->restrictor) {
                        r = requests_join_restriction(m);
                        if (r < 0)
                                log_warning_errno(r, "Failed to add allocations in flight to the restriction: %m");
                }
        }
        m->warned_permissive = false;
        if (m->bus && strcmp(before, m->restriction) != 0)
                (void) sd_bus_emit_properties_changed(m->bus, MANAGER_PATH, MANAGER_IFACE, "Restriction", NULL);
}

int manager_reload(Manager *m, char **ret_error) {
        _cleanup_free_ char *error = NULL, *changes = NULL;
        RestrictionMode old_restriction = m->config.restriction;
        char path_field[sizeof("NSRESD_CONFIG=") + PATH_MAX];
        const char *const fields[] = { path_field };
        bool pool_kept = false;
        Config c;
        int r;

        config_defaults(&c);
        r = config_load(&c, m->config_path, &error);
        if (r < 0) {
                if (!error) {
                        errno = -r;
                        if (asprintf(&error, "%s: %m", m->config_path) < 0)
                                return log_error_errno(r, "Reloading the configuration failed: %m");
                }
                log_error("Reloading the configuration failed, the running one stays: %s", error);
                if (ret_error)
                        *ret_error = TAKE_PTR(error);
                return r;
        }

        /* The allocator's pools are bitmaps over the ranges it was made
         * with, built before the registry is loaded into them; rebuilding
         * them under live requests is not worth its risk. The pools change
         * at the next start, which keeps namespaces outside the new pools
         * until they are gone. */
        if (config_pool_differs(&m->config, &c)) {
                pool_kept = true;
                c.range_start = m->config.range_start;
                c.range_end = m->config.range_end;
                c.single_range_start = m->config.single_range_start;
                c.single_range_end = m->config.single_range_end;
                memcpy(c.pool_origin, m->config.pool_origin, sizeof(c.pool_origin));
        }

        changes = config_describe_changes(&m->config, &c);
        m->config = c;
        allocator_set_max_per_owner(m->allocator, c.max_namespaces_per_owner);
        manager_reload_restriction(m, old_restriction);

        if (pool_kept)
                log_warning("The pool (RangeStart=, RangeEnd=, SingleRangeStart=, SingleRangeEnd=) changed in '%s': "
                            "it stays %" PRIu32 "-%" PRIu32 " and %" PRIu32 "-%" PRIu32 " while the service runs; "
                            "restart it to apply the new one", m->config_path, m->config.range_start,
                            m->config.range_end, m->config.single_range_start, m->config.single_range_end);
        snprintf(path_field, sizeof(path_field), "NSRESD_CONFIG=%s", m->config_path);
        log_struct(LOG_INFO, MESSAGE_CONFIG_RELOADED, fields, ELEMENTSOF(fields),
                   "Configuration reloaded from '%s' and its drop-ins, for new calls: %s%s", m->config_path,
                   changes && changes[0] ? changes : "nothing changed",
                   pool_kept ? " (the pool waits for a restart)" : "");
        return 0;
}
