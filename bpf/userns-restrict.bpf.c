/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Keeps transient ids off filesystems that outlive their namespace: BPF LSM
 * programs on the hooks that give an inode an owner (path_mkdir, path_mknod,
 * path_symlink, path_link, path_chown), that store ids in extended
 * attributes (inode_setxattr, inode_set_acl) and on the creation of a
 * superblock (sb_set_mnt_opts, reached by mount(2) and
 * fsconfig(FSCONFIG_CMD_CREATE) alike, for overlayfs). This file only reads the facts; the decision is
 * restrict_denied() in restrict-policy.h, which the host tests run from a
 * table.
 *
 * Kernel differences are CO-RE flavours: namespace ids (6.18) or inode
 * numbers, vfsmount.mnt_idmap (6.3) or mnt_userns, mount.mnt_id_unique (6.8)
 * or mnt_id, and overlayfs's own structures from its module's BTF.
 */

#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "restrict-policy.h"

#define EPERM 1
#define OVERLAYFS_SUPER_MAGIC 0x794c7630

/* Before 6.3 a mount's idmapping was a user namespace. */
struct vfsmount___mnt_userns {
        struct user_namespace *mnt_userns;
} __attribute__((preserve_access_index));

/* overlayfs is usually a module (flavoured names: some kernels build it in
 * and vmlinux.h then has the real ones): these resolve against its BTF when it is
 * loaded at load time; otherwise bpf_core_type_exists() is false and an
 * overlayfs mount by a tracked task is refused outright. */
struct ovl_layer___nsresd {
        struct vfsmount *mnt;
} __attribute__((preserve_access_index));

struct ovl_fs___nsresd {
        const struct ovl_layer___nsresd *layers;
} __attribute__((preserve_access_index));

/* Tracked namespaces: ns id (inode number on kernels without ns ids) to
 * their range. Only user space writes it. */
struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(map_flags, BPF_F_NO_PREALLOC);
        __uint(max_entries, 65536);
        __type(key, __u64);
        __type(value, struct restrict_ns);
} restricted SEC(".maps");

/* Delegated mounts: namespace key to a set of mount ids (unique ids where
 * the kernel has them). Inner maps are created by user space on the first
 * AddMountToUserNamespace. */
struct {
        __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
        __uint(max_entries, 65536);
        __type(key, __u64);
        __array(values, struct {
                __uint(type, BPF_MAP_TYPE_HASH);
                __uint(max_entries, RESTRICT_MAX_MOUNTS);
                __type(key, __u64);
                __type(value, __u8);
        });
} mounts SEC(".maps");

struct {
        __uint(type, BPF_MAP_TYPE_ARRAY);
        __uint(max_entries, 1);
        __type(key, __u32);
        __type(value, struct restrict_config);
} settings SEC(".maps");

struct {
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
        __uint(max_entries, _RESTRICT_STAT_MAX);
        __type(key, __u32);
        __type(value, __u64);
} stats SEC(".maps");

/* struct restrict_facts is too large for the 512-byte stack. */
struct {
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
        __uint(max_entries, 1);
        __type(key, __u32);
        __type(value, struct restrict_facts);
} scratch SEC(".maps");

static __always_inline void count(__u32 which) {
        __u64 *n;

        n = bpf_map_lookup_elem(&stats, &which);
        if (n)
                *n += 1;        /* per CPU, and LSM programs do not nest on one CPU */
}

static __always_inline __u64 userns_key(const struct user_namespace *ns) {
        if (bpf_core_field_exists(ns->ns.ns_id))
                return BPF_CORE_READ(ns, ns.ns_id);
        return BPF_CORE_READ(ns, ns.inum);
}

/* Finds the nearest tracked namespace at or above the current task's. */
static __always_inline unsigned int find_tracked(struct user_namespace **ret_ns, __u64 *ret_key,
                                                 struct restrict_ns *ret_range) {
        struct task_struct *task = bpf_get_current_task_btf();
        struct user_namespace *ns;

        ns = BPF_CORE_READ(task, cred, user_ns);
        /* Nothing is tracked at the top: the common case costs one read. */
        if (!ns || BPF_CORE_READ(ns, level) == 0)
                return RESTRICT_CHAIN_UNTRACKED;

        for (int i = 0; i < RESTRICT_MAX_CHAIN; i++) {
                struct restrict_ns *range;
                __u64 key;

                if (!ns)
                        return RESTRICT_CHAIN_UNTRACKED;
                key = userns_key(ns);
                range = bpf_map_lookup_elem(&restricted, &key);
                if (range) {
                        *ret_ns = ns;
                        *ret_key = key;
                        *ret_range = *range;
                        return RESTRICT_CHAIN_TRACKED;
                }
                ns = BPF_CORE_READ(ns, parent);
        }
        return ns ? RESTRICT_CHAIN_TOO_DEEP : RESTRICT_CHAIN_UNTRACKED;
}

/* Whether a superblock belongs to `tracked` or a namespace below it. */
static __always_inline unsigned int sb_owned_by(const struct super_block *sb, const struct user_namespace *tracked) {
        struct user_namespace *ns = BPF_CORE_READ(sb, s_user_ns);

        for (int i = 0; i < RESTRICT_MAX_CHAIN; i++) {
                if (!ns)
                        return 0;
                if (ns == tracked)
                        return 1;
                ns = BPF_CORE_READ(ns, parent);
        }
        return 0;
}

static __always_inline void read_idmap(struct restrict_idmap *dst, const struct uid_gid_map *src, unsigned int *out_of_line) {
        unsigned int n = BPF_CORE_READ(src, nr_extents);

        if (n > RESTRICT_MAX_EXTENTS) {
                *out_of_line = 1;
                n = 0;
        }
        dst->nr_extents = n;
        bpf_core_read(&dst->extent, sizeof(dst->extent), &src->extent);
}

static __always_inline __u64 mount_id(const struct vfsmount *mnt) {
        const struct mount *m = (const void *) mnt - bpf_core_field_offset(struct mount, mnt);

        if (bpf_core_field_exists(m->mnt_id_unique))
                return BPF_CORE_READ(m, mnt_id_unique);
        return (__u64) (__u32) BPF_CORE_READ(m, mnt_id);
}

static __always_inline unsigned int mount_delegated(__u64 ns_key, const struct vfsmount *mnt) {
        __u64 id = mount_id(mnt);
        void *inner;

        inner = bpf_map_lookup_elem(&mounts, &ns_key);
        return inner && bpf_map_lookup_elem(inner, &id);
}

/* The mount's idmapping, as a map to apply upwards; none for a mount that is
 * not idmapped. */
static __always_inline void read_mount_idmap(struct restrict_facts *f, const struct vfsmount *mnt,
                                             const struct user_namespace *fs_userns) {
        f->mnt_uid.nr_extents = 0;
        f->mnt_gid.nr_extents = 0;

        if (bpf_core_field_exists(mnt->mnt_idmap)) {
                struct mnt_idmap *idmap = BPF_CORE_READ(mnt, mnt_idmap);

                /* nop_mnt_idmap has no extents: not idmapped. */
                if (!idmap)
                        return;
                read_idmap(&f->mnt_uid, &idmap->uid_map, &f->maps_out_of_line);
                read_idmap(&f->mnt_gid, &idmap->gid_map, &f->maps_out_of_line);
        } else {
                const struct vfsmount___mnt_userns *old = (const void *) mnt;
                struct user_namespace *userns = BPF_CORE_READ(old, mnt_userns);

                /* init_user_ns (not idmapped) maps every id to itself, so it
                 * needs no special case; the superblock's own namespace
                 * means "no idmapping" as well. */
                if (!userns || userns == fs_userns)
                        return;
                read_idmap(&f->mnt_uid, &userns->uid_map, &f->maps_out_of_line);
                read_idmap(&f->mnt_gid, &userns->gid_map, &f->maps_out_of_line);
        }
}

static __always_inline struct restrict_facts *facts_begin(unsigned int op, struct user_namespace **ret_tracked,
                                                          __u64 *ret_key) {
        struct task_struct *task = bpf_get_current_task_btf();
        struct restrict_facts *f;
        __u32 zero = 0;

        count(RESTRICT_STAT_CALLS);

        f = bpf_map_lookup_elem(&scratch, &zero);
        if (!f)
                return NULL;
        __builtin_memset(f, 0, sizeof(*f));
        f->op = op;
        f->chain = find_tracked(ret_tracked, ret_key, &f->ns);
        if (f->chain == RESTRICT_CHAIN_UNTRACKED)
                return f;

        count(RESTRICT_STAT_CHECKED);
        f->fsuid = BPF_CORE_READ(task, cred, fsuid.val);
        f->fsgid = BPF_CORE_READ(task, cred, fsgid.val);
        f->uid = RESTRICT_INVALID_ID;
        f->gid = RESTRICT_INVALID_ID;
        return f;
}

static __always_inline int facts_decide(const struct restrict_facts *f) {
        struct restrict_config *c;
        __u32 zero = 0;

        if (f->chain == RESTRICT_CHAIN_UNTRACKED)
                return 0;
        c = bpf_map_lookup_elem(&settings, &zero);
        if (!c)
                return -EPERM;
        if (restrict_denied(f, c)) {
                count(RESTRICT_STAT_DENIED);
                return -EPERM;
        }
        return 0;
}

/* Fills in what a write through `mnt` would do and decides. */
static __always_inline int check_mount(struct restrict_facts *f, const struct user_namespace *tracked, __u64 key,
                                       const struct vfsmount *mnt) {
        struct super_block *sb;
        struct user_namespace *fs_userns;

        if (f->chain != RESTRICT_CHAIN_TRACKED)
                return facts_decide(f);

        sb = BPF_CORE_READ(mnt, mnt_sb);
        fs_userns = BPF_CORE_READ(sb, s_user_ns);
        f->sb_owned = sb_owned_by(sb, tracked);
        f->delegated = mount_delegated(key, mnt);
        read_mount_idmap(f, mnt, fs_userns);
        f->fs_initial = !fs_userns || BPF_CORE_READ(fs_userns, level) == 0;
        if (!f->fs_initial) {
                read_idmap(&f->fs_uid, &fs_userns->uid_map, &f->maps_out_of_line);
                read_idmap(&f->fs_gid, &fs_userns->gid_map, &f->maps_out_of_line);
        }
        return facts_decide(f);
}

static __always_inline int check_create(const struct path *dir, unsigned int op, const struct inode *linked) {
        struct user_namespace *tracked = NULL;
        struct restrict_facts *f;
        __u64 key = 0;

        f = facts_begin(op, &tracked, &key);
        if (!f)
                return -EPERM;
        if (f->chain == RESTRICT_CHAIN_UNTRACKED)
                return 0;
        if (linked) {
                f->uid = BPF_CORE_READ(linked, i_uid.val);
                f->gid = BPF_CORE_READ(linked, i_gid.val);
        }
        return check_mount(f, tracked, key, BPF_CORE_READ(dir, mnt));
}

SEC("lsm/path_mkdir")
int BPF_PROG(restrict_path_mkdir, const struct path *dir, struct dentry *dentry, umode_t mode, int ret) {
        if (ret != 0)
                return ret;
        return check_create(dir, RESTRICT_OP_CREATE, NULL);
}

SEC("lsm/path_mknod")
int BPF_PROG(restrict_path_mknod, const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev,
             int ret) {
        if (ret != 0)
                return ret;
        return check_create(dir, RESTRICT_OP_CREATE, NULL);
}

SEC("lsm/path_symlink")
int BPF_PROG(restrict_path_symlink, const struct path *dir, struct dentry *dentry, const char *old_name, int ret) {
        if (ret != 0)
                return ret;
        return check_create(dir, RESTRICT_OP_CREATE, NULL);
}

SEC("lsm/path_link")
int BPF_PROG(restrict_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry,
             int ret) {
        if (ret != 0)
                return ret;
        return check_create(new_dir, RESTRICT_OP_LINK, BPF_CORE_READ(old_dentry, d_inode));
}

/* Not BPF_PROG(): it cannot pass the kuid_t/kgid_t structs, which arrive
 * as plain 64-bit context slots. */
SEC("lsm/path_chown")
int restrict_path_chown(unsigned long long *ctx) {
        const struct path *path = (const void *) ctx[0];
        unsigned int uid = (unsigned int) ctx[1], gid = (unsigned int) ctx[2];
        int ret = (int) ctx[3];
        struct user_namespace *tracked = NULL;
        struct restrict_facts *f;
        __u64 key = 0;

        if (ret != 0)
                return ret;

        f = facts_begin(RESTRICT_OP_CHOWN, &tracked, &key);
        if (!f)
                return -EPERM;
        if (f->chain == RESTRICT_CHAIN_UNTRACKED)
                return 0;
        f->uid = uid;
        f->gid = gid;
        return check_mount(f, tracked, key, BPF_CORE_READ(path, mnt));
}

SEC("lsm/sb_set_mnt_opts")
int BPF_PROG(restrict_sb_set_mnt_opts, struct super_block *sb, void *mnt_opts, unsigned long kern_flags,
             unsigned long *set_kern_flags, int ret) {
        struct user_namespace *tracked = NULL;
        struct restrict_facts *f;
        __u64 key = 0;

        if (ret != 0)
                return ret;
        if (BPF_CORE_READ(sb, s_magic) != OVERLAYFS_SUPER_MAGIC)
                return 0;

        f = facts_begin(RESTRICT_OP_MOUNT, &tracked, &key);
        if (!f)
                return -EPERM;
        if (f->chain != RESTRICT_CHAIN_TRACKED)
                return facts_decide(f);

        if (bpf_core_type_exists(struct ovl_fs___nsresd)) {
                const struct ovl_fs___nsresd *ofs = BPF_CORE_READ(sb, s_fs_info);
                struct vfsmount *upper = NULL;

                if (ofs)
                        upper = BPF_CORE_READ(ofs, layers, mnt);
                if (!ofs)
                        f->upper = RESTRICT_UPPER_UNKNOWN;
                else if (!upper)
                        f->upper = RESTRICT_UPPER_NONE;
                else if (sb_owned_by(BPF_CORE_READ(upper, mnt_sb), tracked))
                        f->upper = RESTRICT_UPPER_OWNED;
                else
                        f->upper = RESTRICT_UPPER_PERSISTENT;
        } else
                f->upper = RESTRICT_UPPER_UNKNOWN;

        return facts_decide(f);
}

/* Setting an extended attribute that names ids, on a superblock that is
 * not the namespace's own. */
static __always_inline int check_xattr(const struct dentry *dentry, const char *name) {
        struct user_namespace *tracked = NULL;
        char buf[RESTRICT_XATTR_NAME_MAX] = {};
        struct restrict_facts *f;
        __u64 key = 0;

        f = facts_begin(RESTRICT_OP_XATTR, &tracked, &key);
        if (!f)
                return -EPERM;
        if (f->chain != RESTRICT_CHAIN_TRACKED)
                return facts_decide(f);

        /* A longer name is cut off without its NUL and matches none. */
        if (bpf_probe_read_kernel_str(buf, sizeof(buf), name) < 0)
                return -EPERM;
        f->xattr_names_ids = restrict_xattr_names_ids(buf);
        f->sb_owned = sb_owned_by(BPF_CORE_READ(dentry, d_sb), tracked);
        return facts_decide(f);
}

/* The first argument is a struct user_namespace * before 6.3 and a struct
 * mnt_idmap * since: read the context by position, which did not change. */
SEC("lsm/inode_setxattr")
int restrict_inode_setxattr(unsigned long long *ctx) {
        int ret = (int) ctx[6];

        if (ret != 0)
                return ret;
        return check_xattr((const void *) ctx[1], (const void *) ctx[2]);
}

/* POSIX ACLs stopped going through inode_setxattr in 6.2; the loader leaves
 * this program out on kernels without the hook. */
SEC("lsm/inode_set_acl")
int restrict_inode_set_acl(unsigned long long *ctx) {
        int ret = (int) ctx[4];

        if (ret != 0)
                return ret;
        return check_xattr((const void *) ctx[1], (const void *) ctx[2]);
}

/* bpf_probe_read_kernel() is GPL-only; LGPL-2.1 allows distributing this
 * file under the GPL. */
char LICENSE[] SEC("license") = "GPL";
