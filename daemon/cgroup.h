/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The one place where nsresd acts on control groups for a client. It finds
 * the cgroup2 mount in /proc/self/mountinfo, inspects a client's cgroup fd by
 * what it is (fstatfs, then fstat), and delegates, kills and removes cgroups
 * through directory fds of its own: never by resolving a path a client could
 * have changed meanwhile.
 *
 * A cgroup is known by its id: the kernfs node id, which is what
 * name_to_handle_at() puts into a cgroup2 file handle (8 bytes) and what
 * fstat() reports as its inode number. The kernel never reuses one while it
 * runs, so a recorded id opens the cgroup it was taken from or nothing.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct CgroupMount {
        int fd;                 /* the root of the hierarchy as mounted */
        dev_t dev;
        uint64_t root_id;
        char *path;             /* where it is mounted, in our mount namespace */
} CgroupMount;

/* The first cgroup2 mount of the whole hierarchy (root "/") that
 * /proc/self/mountinfo lists. -ENOENT if there is none. */
int cgroup_mount_find(CgroupMount *ret);
void cgroup_mount_done(CgroupMount *m);

typedef struct CgroupInfo {
        uint64_t id;
        uid_t uid;
        gid_t gid;
        mode_t mode;
        char *path;             /* relative to the mount: "/a/b" ("/" for its root) */
} CgroupInfo;

void cgroup_info_done(CgroupInfo *info);

/* What a client's fd is. Returns -EMEDIUMTYPE if it is not on cgroup2,
 * -ENOTDIR if it is not a cgroup's directory, -EOPNOTSUPP if the kernel
 * gives no file handle for it; else 0 with *ret filled and *ret_fd our own
 * O_DIRECTORY fd of the same cgroup, opened through the mount. */
int cgroup_inspect(const CgroupMount *m, int fd, CgroupInfo *ret, int *ret_fd);

/* Open a cgroup by id through the mount: -ESTALE once it is gone. Anything
 * that is not a cgroup2 directory of this mount is refused (-EMEDIUMTYPE). */
int cgroup_open_id(const CgroupMount *m, uint64_t id, int *ret_fd);

/* The id of a cgroup directory fd. */
int cgroup_get_id(int fd, uint64_t *ret);

/* The child cgroup `name` of parent_fd: -ENOENT if there is none. ret_fd,
 * ret_id and ret_uid (its owner) may each be NULL. */
int cgroup_open_child(int parent_fd, const char *name, int *ret_fd, uint64_t *ret_id, uid_t *ret_uid);

/* 1 if the cgroup has no processes and no child cgroups, 0 if it has. */
int cgroup_is_empty_leaf(int fd);

/* A new, empty cgroup `name` in the cgroup parent_fd: -EEXIST if the name
 * is taken. *ret_fd is the new one, *ret_id its id. */
int cgroup_make_leaf(int parent_fd, const char *name, int *ret_fd, uint64_t *ret_id);

typedef struct CgroupLimits {
        uint32_t max_descendants;
        uint32_t max_depth;
} CgroupLimits;

/* Hand a leaf to uid/gid as systemd delegates a subtree: the directory
 * (0755) and its cgroup.procs, cgroup.threads and cgroup.subtree_control
 * (0644) become theirs; everything else of the leaf stays as it is, so its
 * limits (set first, from `limits`) are not theirs to change. Idempotent. */
int cgroup_delegate(int fd, uid_t uid, gid_t gid, const CgroupLimits *limits);

/* Give the same directory and files back to uid/gid, the directory with
 * dir_mode: undoes a delegation that failed halfway. */
int cgroup_undelegate(int fd, uid_t uid, gid_t gid, mode_t dir_mode);

/* Kill every process in the subtree (cgroup.kill, or SIGKILL to each member
 * where the kernel has no cgroup.kill or use_kill_file is false), then
 * remove it depth first, the cgroup itself last. Returns 0 when it is gone
 * (also when it was gone before), -EBUSY while killed processes are still
 * on their way out (call again), -EOPNOTSUPP when processes are left that
 * nothing could kill (no cgroup.kill and no pidfds), or another error.
 * *ret_removed counts the cgroups removed. */
int cgroup_remove_tree(int fd, bool use_kill_file, unsigned *ret_removed);

/* Make root the owner of everything in the subtree: what cannot be removed
 * yet must not stay writable by ids that are handed out again. */
int cgroup_disown_tree(int fd);
