/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The D-Bus surface: argument checks, method handlers, properties and the
 * per-namespace objects. Work is handed to request.c. */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "manager-internal.h"
#include "names.h"
#include "util.h"

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

/* What a userns fd is, by fstatfs first and nsfs ioctls after it: every
 * method that takes one checks it here. */
static int inspect_userns(Manager *m, int fd, UsernsInfo *ret, sd_bus_error *error) {
        int r;

        r = userns_inspect(fd, m->own_userns_id, ret);
        if (r == -EMEDIUMTYPE)
                return sd_bus_error_set(error, ERROR_PREFIX "NotAUserNamespace",
                                        "The file descriptor is not a user namespace (pass an fd of /proc/PID/ns/user, "
                                        "opened for reading, not with O_PATH)");
        if (r == -ECHILD)
                return sd_bus_error_set(error, ERROR_PREFIX "BadNesting",
                                        "The user namespace is not a direct child of the service's own user namespace");
        if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Failed to inspect the user namespace: %m");
        return 0;
}

/* The published namespace behind a userns fd. */
static int find_namespace_by_fd(Manager *m, int fd, Namespace **ret, sd_bus_error *error) {
        UsernsInfo info;
        Namespace *ns;
        int r;

        r = inspect_userns(m, fd, &info, error);
        if (r < 0)
                return r;
        ns = hashmap_get_u64(m->by_id, info.id);
        if (!ns)
                return sd_bus_error_setf(error, ERROR_PREFIX "NotRegistered",
                                         "This user namespace (id %" PRIu64 ") is not registered with the service: "
                                         "allocate a range for it first", info.id);
        *ret = ns;
        return 0;
}

static int method_allocate(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        uint32_t size, target;
        uint64_t flags;
        char valid_name[NAME_MAX_LEN + 1];
        UsernsInfo info;
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

        if (!(flags & ALLOCATE_SELF) && m->config.restriction != RESTRICTION_OFF && !m->restrictor) {
                if (m->config.restriction == RESTRICTION_ENFORCE)
                        return sd_bus_error_setf(error, ERROR_PREFIX "NotSupported",
                                                 "Transient ranges are refused: the BPF LSM restriction, which keeps their "
                                                 "ids off persistent filesystems, is not in effect. %s. Once that is fixed, "
                                                 "restart nsresd; or set Restriction=permissive in nsresd.conf to allocate "
                                                 "without it. SELF allocations and RegisterUserNamespace still work.",
                                                 m->restriction_reason ?: "It could not be loaded");
                if (!m->warned_permissive) {
                        log_warning("Restriction=permissive: allocating transient ranges without the BPF LSM restriction");
                        m->warned_permissive = true;
                }
        }

        r = inspect_userns(m, fd, &info, error);
        if (r < 0)
                return r;
        return request_start(m, message, REQUEST_ALLOCATE, valid_name, fd, &info,
                             (flags & ALLOCATE_SELF) ? NS_KIND_SELF : NS_KIND_TRANSIENT,
                             size, target, flags, error);
}

static int method_register(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        uint64_t flags;
        char valid_name[NAME_MAX_LEN + 1];
        UsernsInfo info;
        int fd, r;

        r = sd_bus_message_read(message, "sht", &name, &fd, &flags);
        if (r < 0)
                return r;
        if (flags != 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%" PRIx64, flags);
        r = check_name(name, false, valid_name, error);
        if (r < 0)
                return r;

        r = inspect_userns(m, fd, &info, error);
        if (r < 0)
                return r;
        return request_start(m, message, REQUEST_REGISTER, valid_name, fd, &info, NS_KIND_REGISTERED,
                             1, 0, 0, error);
}

static int method_add_mount(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        Namespace *ns = NULL;
        uint64_t flags, mnt_id;
        bool unique;
        int userns_fd, mount_fd, r;

        r = sd_bus_message_read(message, "hht", &userns_fd, &mount_fd, &flags);
        if (r < 0)
                return r;
        if (flags != 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%" PRIx64, flags);

        r = find_namespace_by_fd(m, userns_fd, &ns, error);
        if (r < 0)
                return r;
        /* Only a transient range can be kept off a mount; the ids of SELF
         * and registered namespaces are their owner's and write anywhere
         * their owner may. */
        if (ns->e.kind != NS_KIND_TRANSIENT)
                return sd_bus_error_setf(error, ERROR_PREFIX "NoUserRange",
                                         "User namespace '%s' maps its owner's own ids (kind %s), not a transient "
                                         "range: nothing restricts its writes, so there is no mount to delegate",
                                         ns->e.name, ns_kind_to_string(ns->e.kind));

        r = restrictor_mount_id(mount_fd, &mnt_id, &unique);
        if (r == -EINVAL || r == -EBADF)
                return sd_bus_error_set(error, ERROR_PREFIX "NotAMount",
                                        "The file descriptor is not the root of a mount: pass an fd of the mount's "
                                        "root directory, from open_tree() or from opening the mount point itself");
        if (r == -EOPNOTSUPP)
                return sd_bus_error_set(error, ERROR_PREFIX "NotSupported",
                                        "This kernel does not report mount ids (statx STATX_MNT_ID), so a mount "
                                        "cannot be delegated");
        if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Failed to identify the mount: %m");

        /* Checked again once polkit has answered: calls in flight may fill it. */
        if (!namespace_has_mount(ns, mnt_id) && namespace_n_mounts(ns) >= NS_MOUNTS_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                         "User namespace '%s' has %u mounts already, the limit is %u",
                                         ns->e.name, namespace_n_mounts(ns), NS_MOUNTS_MAX);

        return request_start_add_mount(m, message, ns, mount_fd, mnt_id, unique, error);
}

static int method_add_cgroup(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_(cgroup_info_done) CgroupInfo info = {};
        _cleanup_close_ int fd = -EBADF;
        Manager *m = userdata;
        const CgroupMount *mount;
        Namespace *ns = NULL;
        uint64_t flags;
        int userns_fd, cgroup_fd, r;

        r = sd_bus_message_read(message, "hht", &userns_fd, &cgroup_fd, &flags);
        if (r < 0)
                return r;
        if (flags & ~ADD_CGROUP_FLAGS_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown flags 0x%" PRIx64, flags & ~ADD_CGROUP_FLAGS_ALL);

        r = find_namespace_by_fd(m, userns_fd, &ns, error);
        if (r < 0)
                return r;
        /* A delegated leaf is owned by the namespace's first ids: SELF and
         * registered namespaces have none of their own, only their owner's. */
        if (ns->e.kind != NS_KIND_TRANSIENT)
                return sd_bus_error_setf(error, ERROR_PREFIX "NoUserRange",
                                         "User namespace '%s' maps its owner's own ids (kind %s), not a transient "
                                         "range: there are no ids of its own to own a control group; its owner "
                                         "can use one of their own cgroups directly",
                                         ns->e.name, ns_kind_to_string(ns->e.kind));

        r = manager_cgroup_mount(m, &mount);
        if (r == -ENOENT)
                return sd_bus_error_set(error, ERROR_PREFIX "NotSupported",
                                        "No cgroup2 file system is mounted (none in /proc/self/mountinfo of the "
                                        "service), so no control group can be delegated");
        if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Failed to find the cgroup2 mount: %m");

        r = cgroup_inspect(mount, cgroup_fd, &info, &fd);
        if (r == -EMEDIUMTYPE || r == -ENOTDIR || r == -ESTALE)
                return sd_bus_error_set(error, ERROR_PREFIX "NotAControlGroup",
                                        "The file descriptor is not a control group: pass an fd of a cgroup's "
                                        "directory on the cgroup2 file system (as opened below /sys/fs/cgroup)");
        if (r == -EOPNOTSUPP)
                return sd_bus_error_set(error, ERROR_PREFIX "NotSupported",
                                        "This kernel gives no file handles for control groups, which nsresd "
                                        "needs to find a delegated cgroup again");
        if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Failed to inspect the control group: %m");
        /* Answers and the ControlGroups property quote the path; it is not
         * quoted here, as it may not even be UTF-8. */
        if (!ns_cgroup_path_is_valid(info.path))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The control group's path cannot be recorded: it is longer than %u bytes, "
                                         "contains control characters or is not valid UTF-8", NS_CGROUP_PATH_MAX);

        return request_start_add_cgroup(m, message, ns, &fd, &info, flags & ADD_CGROUP_CREATE_CHILD, error);
}

/* What AddNetworkToUserNamespace and AddTapToUserNamespace check first:
 * the namespace, and that links can be made for it at all. */
static int find_namespace_for_netif(Manager *m, int userns_fd, Namespace **ret, sd_bus_error *error) {
        Namespace *ns = NULL;
        int r;

        r = find_namespace_by_fd(m, userns_fd, &ns, error);
        if (r < 0)
                return r;
        /* A tap is owned by the namespace's first ids, and both kinds count
         * against limits that only transient ranges are given. */
        if (ns->e.kind != NS_KIND_TRANSIENT)
                return sd_bus_error_setf(error, ERROR_PREFIX "NoUserRange",
                                         "User namespace '%s' maps its owner's own ids (kind %s), not a transient "
                                         "range: network interfaces are only made for namespaces with a range of "
                                         "their own", ns->e.name, ns_kind_to_string(ns->e.kind));
        if (!m->netif_key_loaded)
                return sd_bus_error_set(error, ERROR_PREFIX "NotSupported",
                                        "The service could not load the key it names network interfaces with "
                                        "(see its log), so it makes none");
        *ret = ns;
        return 0;
}

static int method_add_network(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        Namespace *ns = NULL;
        const char *ifname;
        uint64_t flags, owner_id;
        int userns_fd, netns_fd, r;

        r = sd_bus_message_read(message, "hhst", &userns_fd, &netns_fd, &ifname, &flags);
        if (r < 0)
                return r;
        if (flags & ~ADD_NETIF_FLAGS_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown flags 0x%" PRIx64, flags & ~ADD_NETIF_FLAGS_ALL);

        r = find_namespace_for_netif(m, userns_fd, &ns, error);
        if (r < 0)
                return r;

        r = netns_get_owner_id(netns_fd, &owner_id);
        if (r == -EMEDIUMTYPE)
                return sd_bus_error_set(error, ERROR_PREFIX "NotANetworkNamespace",
                                        "The file descriptor is not a network namespace (pass an fd of "
                                        "/proc/PID/ns/net, opened for reading, not with O_PATH)");
        if (r == -EXDEV)
                owner_id = 0;
        else if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Failed to inspect the network namespace: %m");
        /* The peer is created inside it with the service's privileges: it
         * must be the namespace's own, not one that some other user
         * namespace (the host's, say) owns. */
        if (owner_id != ns->e.id)
                return sd_bus_error_setf(error, ERROR_PREFIX "WrongNetworkNamespace",
                                         "The network namespace does not belong to user namespace '%s': create it "
                                         "from inside that user namespace (unshare(CLONE_NEWNET) there)",
                                         ns->e.name);

        if (ifname[0] && !netif_name_is_valid(ifname))
                return sd_bus_error_set(error, ERROR_PREFIX "InvalidInterfaceName",
                                        "Invalid interface name: use 1-15 printable ASCII characters without "
                                        "spaces, '/', ':' or '%', and not '.' or '..' (or an empty name for "
                                        "\"" NETIF_DEFAULT_IFNAME "\")");

        return request_start_add_netif(m, message, ns, netns_fd, ifname, error);
}

static int method_add_tap(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        Namespace *ns = NULL;
        uint64_t flags;
        int userns_fd, r;

        r = sd_bus_message_read(message, "ht", &userns_fd, &flags);
        if (r < 0)
                return r;
        if (flags & ~ADD_NETIF_FLAGS_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown flags 0x%" PRIx64, flags & ~ADD_NETIF_FLAGS_ALL);

        r = find_namespace_for_netif(m, userns_fd, &ns, error);
        if (r < 0)
                return r;
        return request_start_add_netif(m, message, ns, -EBADF, NULL, error);
}

/* The kernel's type names are short printable ASCII. Anything else the
 * caller sent (kilobytes, control characters, bytes that a cut would leave
 * invalid UTF-8, which sd-bus refuses to send) is described, not quoted. */
static bool bpf_name_is_quotable(const char *name) {
        size_t n = 0;

        for (const char *p = name; *p; p++)
                if (++n > 64 || (unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                        return false;
        return true;
}

/* Reads one "as" of DelegateBpf. */
static int read_strv(sd_bus_message *message, char ***ret) {
        _cleanup_free_ char **l = NULL;
        size_t n = 0;
        const char *s;
        int r;

        r = sd_bus_message_enter_container(message, 'a', "s");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(message, "s", &s)) > 0) {
                char **p;

                /* More names than any enum of the kernel has is no request. */
                if (n >= 256)
                        return -E2BIG;
                p = realloc(l, (n + 2) * sizeof(char *));
                if (!p)
                        return -ENOMEM;
                l = p;
                /* Points into the message, which outlives the call. */
                l[n++] = (char *) s;
                l[n] = NULL;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(message);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(l);
        return 0;
}

static int method_delegate_bpf(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        char **names[_BPF_DELEGATE_KIND_MAX] = {};
        Manager *m = userdata;
        Namespace *ns = NULL;
        BpfDelegateKind bad_kind = 0;
        const char *bad_name = NULL;
        BpfDelegation d;
        uint64_t flags;
        int userns_fd, r;

        r = sd_bus_message_read(message, "h", &userns_fd);
        for (unsigned k = 0; r >= 0 && k < _BPF_DELEGATE_KIND_MAX; k++)
                r = read_strv(message, &names[k]);
        if (r >= 0)
                r = sd_bus_message_read(message, "t", &flags);
        if (r == -E2BIG)
                r = sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "Too many names");
        if (r < 0)
                goto finish;
        if (flags != 0) {
                r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%" PRIx64, flags);
                goto finish;
        }

        r = bpf_delegation_from_names(names, &d, &bad_kind, &bad_name);
        if (r == -EINVAL) {
                bool quote = bpf_name_is_quotable(bad_name);

                r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                      "Unknown %s name %s%s%s: use the kernel's names without prefix, in lower "
                                      "case (as in 'map_create', 'array', 'socket_filter', "
                                      "'cgroup_inet_ingress'), or 'any'", bpf_delegate_kind_to_string(bad_kind),
                                      quote ? "'" : "", quote ? bad_name : "(too long, or not printable ASCII)",
                                      quote ? "'" : "");
        }
        else if (r < 0)
                r = sd_bus_error_setf(error, ERROR_PREFIX "BpfDelegationFailed",
                                      "The kernel's BPF type information (/sys/kernel/btf/vmlinux) is not "
                                      "available, so the names cannot be checked: %s", strerror(-r));
        if (r < 0)
                goto finish;

        r = find_namespace_by_fd(m, userns_fd, &ns, error);
        if (r < 0)
                goto finish;
        /* Tokens are for a namespace's own ids: a namespace that maps its
         * owner's ids could use one with the owner's identity. */
        if (ns->e.kind != NS_KIND_TRANSIENT) {
                r = sd_bus_error_setf(error, ERROR_PREFIX "NoUserRange",
                                      "User namespace '%s' maps its owner's own ids (kind %s), not a transient "
                                      "range: BPF is only delegated to namespaces with a range of their own",
                                      ns->e.name, ns_kind_to_string(ns->e.kind));
                goto finish;
        }
        r = request_start_delegate_bpf(m, message, ns, userns_fd, &d, error);

finish:
        for (unsigned k = 0; k < _BPF_DELEGATE_KIND_MAX; k++)
                free(names[k]);
        return r;
}

static int method_reload(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        uint64_t flags;
        int r;

        r = sd_bus_message_read(message, "t", &flags);
        if (r < 0)
                return r;
        if (flags & ~RELOAD_FLAGS_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown flags 0x%" PRIx64, flags & ~RELOAD_FLAGS_ALL);
        return request_start_reload(m, message, error);
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
        /* Namespaces from before a change of the pools are not in them. */
        if (!ns && m->n_outside_pools > 0) {
                size_t state = 0;
                void *v;

                while (hashmap_iterate(m->by_id, &state, &v)) {
                        const Namespace *candidate = v;

                        if (candidate->e.kind == NS_KIND_TRANSIENT && uid >= candidate->e.uid_start &&
                            uid - candidate->e.uid_start < candidate->e.size) {
                                ns = candidate;
                                break;
                        }
                }
        }
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

/* ---- per-namespace properties ------------------------------------------- */

static int append_ns_name(sd_bus_message *reply, const Namespace *ns) {
        return sd_bus_message_append_basic(reply, 's', ns->e.name);
}

static int append_ns_owner(sd_bus_message *reply, const Namespace *ns) {
        uint32_t owner = ns->e.owner;

        return sd_bus_message_append_basic(reply, 'u', &owner);
}

static int append_ns_id(sd_bus_message *reply, const Namespace *ns) {
        return sd_bus_message_append_basic(reply, 't', &ns->e.id);
}

static int append_ns_inode(sd_bus_message *reply, const Namespace *ns) {
        return sd_bus_message_append_basic(reply, 't', &ns->e.inode);
}

static int append_ns_uid_start(sd_bus_message *reply, const Namespace *ns) {
        return sd_bus_message_append_basic(reply, 'u', &ns->e.uid_start);
}

static int append_ns_gid_start(sd_bus_message *reply, const Namespace *ns) {
        return sd_bus_message_append_basic(reply, 'u', &ns->e.gid_start);
}

static int append_ns_size(sd_bus_message *reply, const Namespace *ns) {
        return sd_bus_message_append_basic(reply, 'u', &ns->e.size);
}

static int append_ns_target(sd_bus_message *reply, const Namespace *ns) {
        return sd_bus_message_append_basic(reply, 'u', &ns->e.target);
}

static int append_ns_kind(sd_bus_message *reply, const Namespace *ns) {
        return sd_bus_message_append_basic(reply, 's', ns_kind_to_string(ns->e.kind));
}

static int append_ns_created(sd_bus_message *reply, const Namespace *ns) {
        return sd_bus_message_append_basic(reply, 't', &ns->e.created_usec);
}

static int append_ns_cgroups(sd_bus_message *reply, const Namespace *ns) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "s");
        if (r < 0)
                return r;
        for (unsigned i = 0; i < ns->e.n_cgroups; i++) {
                r = sd_bus_message_append_basic(reply, 's', ns->e.cgroups[i].path);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int append_ns_netifs(sd_bus_message *reply, const Namespace *ns) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "s");
        if (r < 0)
                return r;
        for (unsigned i = 0; i < ns->e.n_netifs; i++) {
                r = sd_bus_message_append_basic(reply, 's', ns->e.netifs[i].host);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int append_ns_mounts(sd_bus_message *reply, const Namespace *ns) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "t");
        if (r < 0)
                return r;
        for (unsigned i = 0; i < ns->e.n_mounts; i++) {
                r = sd_bus_message_append_basic(reply, 't', &ns->e.mounts[i]);
                if (r < 0)
                        return r;
        }
        for (unsigned i = 0; i < ns->n_held_mounts; i++) {
                r = sd_bus_message_append_basic(reply, 't', &ns->held_mounts[i].id);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int append_ns_bpf_delegated(sd_bus_message *reply, const Namespace *ns) {
        int delegated = ns->e.n_bpf > 0;

        return sd_bus_message_append_basic(reply, 'b', &delegated);
}

typedef struct NsProperty {
        const char *name;
        const char *signature;
        int (*append)(sd_bus_message *reply, const Namespace *ns);
} NsProperty;

/* Get, GetAll, GetManagedObjects and InterfacesAdded all read a namespace
 * through this table, so they cannot disagree. In the order of
 * userns_vtable, which manager_bus_register() checks. */
static const NsProperty ns_properties[] = {
        { "Name",               "s",  append_ns_name },
        { "Owner",              "u",  append_ns_owner },
        { "Id",                 "t",  append_ns_id },
        { "Inode",              "t",  append_ns_inode },
        { "UidStart",           "u",  append_ns_uid_start },
        { "GidStart",           "u",  append_ns_gid_start },
        { "Size",               "u",  append_ns_size },
        { "Target",             "u",  append_ns_target },
        { "Kind",               "s",  append_ns_kind },
        { "Created",            "t",  append_ns_created },
        { "ControlGroups",      "as", append_ns_cgroups },
        { "NetworkInterfaces",  "as", append_ns_netifs },
        { "Mounts",             "at", append_ns_mounts },
        { "BpfDelegated",       "b",  append_ns_bpf_delegated },
};

static int property_get_ns(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) bus; (void) path; (void) interface; (void) error;

        for (size_t i = 0; i < ELEMENTSOF(ns_properties); i++)
                if (strcmp(ns_properties[i].name, property) == 0)
                        return ns_properties[i].append(reply, userdata);
        return -ENOENT;
}

/* The a{sv} of every property, as GetAll builds it. */
static int append_ns_properties(sd_bus_message *reply, const Namespace *ns) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(ns_properties); i++) {
                const NsProperty *p = &ns_properties[i];

                r = sd_bus_message_open_container(reply, 'e', "sv");
                if (r < 0)
                        return r;
                r = sd_bus_message_append_basic(reply, 's', p->name);
                if (r < 0)
                        return r;
                r = sd_bus_message_open_container(reply, 'v', p->signature);
                if (r < 0)
                        return r;
                r = p->append(reply, ns);
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        /* Restriction= can be turned off and on by a reload. */
        SD_BUS_PROPERTY("Restriction", "s", property_get_restriction, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
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
        SD_BUS_METHOD_WITH_ARGS("AddMountToUserNamespace",
                                SD_BUS_ARGS("h", userns, "h", mount, "t", flags),
                                SD_BUS_NO_RESULT,
                                method_add_mount, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("AddControlGroupToUserNamespace",
                                SD_BUS_ARGS("h", userns, "h", cgroup, "t", flags),
                                SD_BUS_RESULT("s", cgroup_path),
                                method_add_cgroup, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("AddNetworkToUserNamespace",
                                SD_BUS_ARGS("h", userns, "h", netns, "s", namespace_ifname, "t", flags),
                                SD_BUS_RESULT("s", host_ifname, "s", namespace_ifname),
                                method_add_network, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("AddTapToUserNamespace",
                                SD_BUS_ARGS("h", userns, "t", flags),
                                SD_BUS_RESULT("s", host_ifname, "h", tap),
                                method_add_tap, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("DelegateBpf",
                                SD_BUS_ARGS("h", userns, "as", cmds, "as", maps, "as", progs, "as", attachs,
                                            "t", flags),
                                SD_BUS_RESULT("h", bpffs),
                                method_delegate_bpf, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListUserNamespaces",
                                SD_BUS_ARGS("t", flags),
                                SD_BUS_RESULT("a(ostuuuu)", namespaces),
                                method_list, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetUserNamespaceByUid",
                                SD_BUS_ARGS("u", uid, "t", flags),
                                SD_BUS_RESULT("o", namespace),
                                method_get_by_uid, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reload",
                                SD_BUS_ARGS("t", flags),
                                SD_BUS_NO_RESULT,
                                method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("UserNamespaceNew", SD_BUS_ARGS("o", namespace, "s", name, "u", owner), 0),
        SD_BUS_SIGNAL_WITH_ARGS("UserNamespaceRemoved", SD_BUS_ARGS("o", namespace, "s", name, "u", owner), 0),
        SD_BUS_VTABLE_END,
};

static const sd_bus_vtable userns_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Owner", "u", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Id", "t", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Inode", "t", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("UidStart", "u", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("GidStart", "u", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Size", "u", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Target", "u", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Kind", "s", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Created", "t", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ControlGroups", "as", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("NetworkInterfaces", "as", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Mounts", "at", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BpfDelegated", "b", property_get_ns, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
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

static int append_empty_interface(sd_bus_message *reply, const char *interface) {
        int r;

        r = sd_bus_message_open_container(reply, 'e', "sa{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(reply, 's', interface);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

/* sd-bus answers GetManagedObjects by collecting every node path in a set,
 * then resolving each one again through the fallback's find callback and
 * the vtable's getters: with thousands of namespaces that is far too slow.
 * This one pass gives the same reply: each namespace (nothing else lives
 * below the manager's path) with the standard interfaces sd-bus lists for
 * it and its own. sd-bus does not list the manager object itself. */
static int append_managed_object(sd_bus_message *reply, const Namespace *ns) {
        static const char *const standard[] = {
                "org.freedesktop.DBus.Peer",
                "org.freedesktop.DBus.Introspectable",
                "org.freedesktop.DBus.Properties",
        };
        int r;

        r = sd_bus_message_open_container(reply, 'e', "oa{sa{sv}}");
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(reply, 'o', ns->path);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "{sa{sv}}");
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(standard); i++) {
                r = append_empty_interface(reply, standard[i]);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_open_container(reply, 'e', "sa{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(reply, 's', USERNS_IFACE);
        if (r < 0)
                return r;
        r = append_ns_properties(reply, ns);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

/* Runs before sd-bus's own handling of MANAGER_PATH; whatever it leaves
 * (0) sd-bus answers as before, malformed calls of GetManagedObjects too. */
static int manager_object_filter(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        size_t state = 0;
        void *v;
        int r;

        (void) error;

        if (!sd_bus_message_is_method_call(message, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects") ||
            !sd_bus_message_has_signature(message, ""))
                return 0;

        r = sd_bus_message_new_method_return(message, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "{oa{sa{sv}}}");
        if (r < 0)
                return r;
        while (hashmap_iterate(m->by_id, &state, &v)) {
                r = append_managed_object(reply, v);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        r = sd_bus_send(NULL, reply, NULL);
        return r < 0 ? r : 1;
}

/* The getters are looked up by name in ns_properties, and
 * GetManagedObjects walks that table: both must list the same properties. */
static int check_ns_properties(void) {
        size_t n = 0;

        for (const sd_bus_vtable *v = userns_vtable; v->type != _SD_BUS_VTABLE_END; v++) {
                if (v->type != _SD_BUS_VTABLE_PROPERTY && v->type != _SD_BUS_VTABLE_WRITABLE_PROPERTY)
                        continue;
                if (n >= ELEMENTSOF(ns_properties) ||
                    strcmp(v->x.property.member, ns_properties[n].name) != 0 ||
                    strcmp(v->x.property.signature, ns_properties[n].signature) != 0)
                        return -EINVAL;
                n++;
        }
        return n == ELEMENTSOF(ns_properties) ? 0 : -EINVAL;
}

int manager_bus_register(Manager *m) {
        int r;

        r = check_ns_properties();
        if (r < 0)
                return log_error_errno(r, "The UserNamespace properties and their table differ");
        r = sd_bus_add_object_vtable(m->bus, &m->manager_slot, MANAGER_PATH, MANAGER_IFACE, manager_vtable, m);
        if (r < 0)
                return r;
        r = sd_bus_add_object(m->bus, &m->object_filter_slot, MANAGER_PATH, manager_object_filter, m);
        if (r < 0)
                return r;
        r = sd_bus_add_fallback_vtable(m->bus, &m->userns_slot, USERNS_PATH_PREFIX, USERNS_IFACE,
                                       userns_vtable, userns_find, m);
        if (r < 0)
                return r;
        r = sd_bus_add_node_enumerator(m->bus, &m->enumerator_slot, USERNS_PATH_PREFIX, userns_enumerate, m);
        if (r < 0)
                return r;
        /* Still needed: it makes the InterfacesAdded and InterfacesRemoved signals. */
        return sd_bus_add_object_manager(m->bus, &m->object_manager_slot, MANAGER_PATH);
}
