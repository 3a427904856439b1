/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The restriction's decision, as plain C: bpf/userns-restrict.bpf.c gathers
 * the facts about one operation from kernel structures and asks
 * restrict_denied(); tests/unit/test-restrict-policy.c asks it the same
 * questions from a table. Nothing here may use anything but plain C types:
 * this header is compiled next to vmlinux.h (BPF) and next to libc (tests
 * and the loader, which shares the map layouts below).
 *
 * The rule: a task whose user namespace is a tracked namespace (one with a
 * transient range) or a descendant of one must not leave an inode owned by a
 * transient id on a filesystem that outlives that namespace. Allowed anyway:
 *   - the superblock belongs to the tracked namespace or a descendant (its
 *     own tmpfs: it dies with the namespace);
 *   - the mount was delegated to the namespace (AddMountToUserNamespace);
 *   - the ids the inode gets on disk are not transient: either the task's
 *     fsuid/fsgid are not (a caller's own uid mapped with MAP_CALLER), or an
 *     idmapped mount maps them out of every transient range.
 * chown(2) to a transient id is judged the same way, by the new owner.
 * Extended attributes that name ids (POSIX ACLs, file capabilities with
 * their root id) are refused unless the superblock is the namespace's own:
 * the inode hooks that see them do not know the mount, so neither a
 * delegation nor an idmapping can be taken into account (fail closed).
 * An overlayfs mounted by such a task is refused unless its upper layer
 * belongs to the namespace: overlayfs writes to its upper layer with
 * kernel-internal calls that never reach the path hooks.
 */

/* The chain from a task's user namespace up to the initial one is at most
 * 33 namespaces long (the kernel refuses to nest deeper than 32 levels). A
 * walk that has not reached the top after this many steps is refused. */
#define RESTRICT_MAX_CHAIN 33

/* Inline extents of a kernel uid_gid_map. Maps with more keep them out of
 * line, where the program does not follow them: writes through a mount
 * idmapped that way are refused unless the mount or its superblock is the
 * namespace's own. */
#define RESTRICT_MAX_EXTENTS 5

/* Transient pools the loader writes into the `config` map. */
#define RESTRICT_MAX_POOLS 4

/* Mounts one namespace can be given (size of its inner map). */
#define RESTRICT_MAX_MOUNTS 1024

#define RESTRICT_INVALID_ID 0xffffffffU

enum {
        RESTRICT_OP_CREATE,     /* mkdir, mknod (and so every O_CREAT), symlink */
        RESTRICT_OP_LINK,       /* a new name for an existing inode */
        RESTRICT_OP_CHOWN,
        RESTRICT_OP_MOUNT,      /* a new overlayfs superblock */
        RESTRICT_OP_XATTR,      /* setting an extended attribute */
        _RESTRICT_OP_MAX,
};

enum {
        RESTRICT_CHAIN_UNTRACKED,       /* no tracked namespace above the task */
        RESTRICT_CHAIN_TRACKED,
        RESTRICT_CHAIN_TOO_DEEP,        /* the walk did not reach the top */
};

enum {
        RESTRICT_UPPER_NONE,            /* read-only overlay: nothing is written */
        RESTRICT_UPPER_OWNED,           /* upper layer on the namespace's own superblock */
        RESTRICT_UPPER_PERSISTENT,
        RESTRICT_UPPER_UNKNOWN,         /* overlayfs internals unreadable: fail closed */
};

/* Counters in the `stats` map, indexed by these. */
enum {
        RESTRICT_STAT_CALLS,            /* hook invocations, tracked or not */
        RESTRICT_STAT_CHECKED,          /* invocations by a tracked task */
        RESTRICT_STAT_DENIED,
        _RESTRICT_STAT_MAX,
};

struct restrict_extent {
        unsigned int first;
        unsigned int lower_first;
        unsigned int count;
};

/* A copy of a kernel struct uid_gid_map's inline part. */
struct restrict_idmap {
        unsigned int nr_extents;
        struct restrict_extent extent[RESTRICT_MAX_EXTENTS];
};

struct restrict_pool {
        unsigned int start;
        unsigned int size;
};

/* `settings` map, one entry, written by the loader before attaching. */
struct restrict_config {
        unsigned int n_pools;
        struct restrict_pool pools[RESTRICT_MAX_POOLS];
};

/* `restricted` map value, keyed by the namespace's id (its inode number on
 * kernels without namespace ids). */
struct restrict_ns {
        unsigned int uid_start;         /* its own range, transient even if */
        unsigned int size;              /* the configured pools change */
};

struct restrict_facts {
        unsigned int op;                /* RESTRICT_OP_* */
        unsigned int chain;             /* RESTRICT_CHAIN_* */
        unsigned int sb_owned;          /* superblock of the target belongs to the namespace */
        unsigned int delegated;         /* target mount is in the namespace's allowlist */
        unsigned int upper;             /* RESTRICT_UPPER_*, for OP_MOUNT */
        unsigned int xattr_names_ids;   /* OP_XATTR: see restrict_xattr_names_ids() */

        unsigned int fsuid, fsgid;      /* the task's, as kernel ids */
        /* OP_LINK: owner of the inode being linked. OP_CHOWN: the new owner as
         * the hook received it, RESTRICT_INVALID_ID for "unchanged". */
        unsigned int uid, gid;

        /* The mount's idmapping; nr_extents == 0 for a mount that is not
         * idmapped. fs_* is the superblock's user namespace map, used only
         * when that namespace is not the initial one (fs_initial == 0). */
        unsigned int maps_out_of_line;      /* a map above has more than RESTRICT_MAX_EXTENTS */
        struct restrict_idmap mnt_uid, mnt_gid;
        unsigned int fs_initial;
        struct restrict_idmap fs_uid, fs_gid;

        struct restrict_ns ns;          /* the tracked namespace's own range */
};

/* Bounded loops with constant trip counts: the verifier on older kernels
 * accepts them, and clang may unroll them. */

static inline unsigned int restrict_map_up(const struct restrict_idmap *m, unsigned int id) {
        for (unsigned int i = 0; i < RESTRICT_MAX_EXTENTS; i++) {
                const struct restrict_extent *e = &m->extent[i];

                if (i >= m->nr_extents)
                        break;
                if (e->count > 0 && id >= e->lower_first && id - e->lower_first < e->count)
                        return e->first + (id - e->lower_first);
        }
        return RESTRICT_INVALID_ID;
}

static inline unsigned int restrict_map_down(const struct restrict_idmap *m, unsigned int id) {
        for (unsigned int i = 0; i < RESTRICT_MAX_EXTENTS; i++) {
                const struct restrict_extent *e = &m->extent[i];

                if (i >= m->nr_extents)
                        break;
                if (e->count > 0 && id >= e->first && id - e->first < e->count)
                        return e->lower_first + (id - e->first);
        }
        return RESTRICT_INVALID_ID;
}

/* The kernel id an inode created through this mount by this fsuid gets, as
 * from_vfsuid() (6.3+) or mapped_kuid_user() (before) computes it: up
 * through the mount's idmapping, then down into the superblock's namespace. */
static inline unsigned int restrict_stored_id(const struct restrict_idmap *mnt, const struct restrict_idmap *fs,
                                              unsigned int fs_initial, unsigned int id) {
        if (mnt->nr_extents == 0)
                return id;
        id = restrict_map_up(mnt, id);
        if (id == RESTRICT_INVALID_ID || fs_initial)
                return id;
        return restrict_map_down(fs, id);
}

static inline int restrict_id_transient(const struct restrict_config *c, const struct restrict_ns *ns, unsigned int id) {
        /* The kernel refuses to create or chown to an unmappable id itself. */
        if (id == RESTRICT_INVALID_ID)
                return 0;
        if (ns->size > 0 && id >= ns->uid_start && id - ns->uid_start < ns->size)
                return 1;
        for (unsigned int i = 0; i < RESTRICT_MAX_POOLS; i++) {
                if (i >= c->n_pools)
                        break;
                if (c->pools[i].size > 0 && id >= c->pools[i].start && id - c->pools[i].start < c->pools[i].size)
                        return 1;
        }
        return 0;
}

/* Longest name restrict_xattr_names_ids() needs to see, with its NUL. */
#define RESTRICT_XATTR_NAME_MAX 32

static inline int restrict_str_eq(const char *a, const char *b) {
        for (unsigned int i = 0; i < RESTRICT_XATTR_NAME_MAX; i++) {
                if (a[i] != b[i])
                        return 0;
                if (a[i] == '\0')
                        return 1;
        }
        return 0;
}

/* Whether an extended attribute stores ids: POSIX ACL entries name users
 * and groups, and a v3 file capability its namespace's root. `name` holds
 * at least RESTRICT_XATTR_NAME_MAX bytes, NUL-terminated within them or cut
 * off (then it is none of these). Written out by hand: BPF has no strcmp. */
static inline int restrict_xattr_names_ids(const char *name) {
        return restrict_str_eq(name, "system.posix_acl_access") ||
               restrict_str_eq(name, "system.posix_acl_default") ||
               restrict_str_eq(name, "security.capability");
}

/* Non-zero: refuse with EPERM. */
static inline int restrict_denied(const struct restrict_facts *f, const struct restrict_config *c) {
        unsigned int uid, gid;

        if (f->chain == RESTRICT_CHAIN_UNTRACKED)
                return 0;
        if (f->chain != RESTRICT_CHAIN_TRACKED)
                return 1;
        if (f->op >= _RESTRICT_OP_MAX)
                return 1;

        if (f->op == RESTRICT_OP_MOUNT)
                return f->upper != RESTRICT_UPPER_NONE && f->upper != RESTRICT_UPPER_OWNED;
        if (f->op == RESTRICT_OP_XATTR)
                return f->xattr_names_ids && !f->sb_owned;

        if (f->sb_owned || f->delegated)
                return 0;
        if (f->maps_out_of_line)
                return 1;

        if (f->op == RESTRICT_OP_CHOWN) {
                /* Depending on the kernel version the hook gets the new owner
                 * before or after the mount's idmapping: both must be
                 * harmless. */
                if (restrict_id_transient(c, &f->ns, f->uid) || restrict_id_transient(c, &f->ns, f->gid))
                        return 1;
                if (f->uid != RESTRICT_INVALID_ID &&
                    restrict_id_transient(c, &f->ns, restrict_stored_id(&f->mnt_uid, &f->fs_uid, f->fs_initial, f->uid)))
                        return 1;
                if (f->gid != RESTRICT_INVALID_ID &&
                    restrict_id_transient(c, &f->ns, restrict_stored_id(&f->mnt_gid, &f->fs_gid, f->fs_initial, f->gid)))
                        return 1;
                return 0;
        }

        /* A link keeps an inode alive under a new name: its owner must be
         * harmless too (an O_TMPFILE made on a persistent filesystem only
         * survives by being linked). */
        if (f->op == RESTRICT_OP_LINK &&
            (restrict_id_transient(c, &f->ns, f->uid) || restrict_id_transient(c, &f->ns, f->gid)))
                return 1;

        uid = restrict_stored_id(&f->mnt_uid, &f->fs_uid, f->fs_initial, f->fsuid);
        gid = restrict_stored_id(&f->mnt_gid, &f->fs_gid, f->fs_initial, f->fsgid);
        return restrict_id_transient(c, &f->ns, uid) || restrict_id_transient(c, &f->ns, gid);
}
