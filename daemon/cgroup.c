/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>

#include "cgroup.h"
#include "config.h"
#include "fileio.h"
#include "util.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

/* How the kernel names a kernfs node in a file handle (FILEID_KERNFS): by
 * its 64-bit id, which for a cgroup is the cgroup id. */
#define HANDLE_TYPE_KERNFS 0xfe

/* What systemd hands to the owner of a delegated subtree: moving processes
 * and threads, and enabling controllers for its children. */
static const char *const delegated_files[] = {
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
};

/* Below a delegated leaf the kernel allows ControlGroupMaxDepth= levels;
 * the margin covers a leaf delegated inside another one. Past it the walk
 * gives up rather than hold an fd per level without bound. */
#define TREE_DEPTH_MAX (2 * CONFIG_CGROUP_DEPTH_MAX)

/* A killed cgroup's members, read at once. More are killed on the next
 * pass: teardown repeats until the cgroup is empty. */
#define KILL_BATCH_MAX 4096

void cgroup_mount_done(CgroupMount *m) {
        closep(&m->fd);
        m->fd = -EBADF;
        free(m->path);
        m->path = NULL;
}

void cgroup_info_done(CgroupInfo *info) {
        free(info->path);
        info->path = NULL;
}

/* mountinfo writes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s) {
        char *w = s;

        for (const char *p = s; *p;)
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
                    p[3] >= '0' && p[3] <= '7') {
                        *w++ = (char) ((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
                        p += 4;
                } else
                        *w++ = *p++;
        *w = '\0';
}

static int check_cgroup2(int fd) {
        struct statfs sfs;

        if (fstatfs(fd, &sfs) < 0)
                return -errno;
        return (unsigned long) sfs.f_type == CGROUP2_SUPER_MAGIC ? 0 : -EMEDIUMTYPE;
}

int cgroup_get_id(int fd, uint64_t *ret) {
        struct {
                struct file_handle fh;
                /* cppcheck-suppress unusedStructMember ; room for fh's flexible f_handle[] */
                uint8_t space[MAX_HANDLE_SZ];
        } h = { .fh.handle_bytes = MAX_HANDLE_SZ };
        uint64_t id;
        int mnt_id;

        if (name_to_handle_at(fd, "", &h.fh, &mnt_id, AT_EMPTY_PATH) < 0)
                return -errno;
        if (h.fh.handle_type != HANDLE_TYPE_KERNFS || h.fh.handle_bytes != sizeof(id))
                return -EOPNOTSUPP;
        memcpy(&id, h.fh.f_handle, sizeof(id));
        *ret = id;
        return 0;
}

static int open_mount(const char *path, CgroupMount *ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *copy = NULL;
        struct stat st;
        uint64_t id;
        int r;

        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* Another file system mounted over it would be found here instead. */
        r = check_cgroup2(fd);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        r = cgroup_get_id(fd, &id);
        if (r < 0)
                return r;
        copy = strdup(path);
        if (!copy)
                return -ENOMEM;

        *ret = (CgroupMount) { .fd = TAKE_FD(fd), .dev = st.st_dev, .root_id = id, .path = TAKE_PTR(copy) };
        return 0;
}

int cgroup_mount_find(CgroupMount *ret) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t size = 0;

        f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return -errno;

        /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS" */
        while (getline(&line, &size, f) > 0) {
                char *field[6], *fstype = NULL, *save = NULL;
                unsigned n = 0;

                for (char *p = strtok_r(line, " \n", &save); p; p = strtok_r(NULL, " \n", &save)) {
                        if (n < ELEMENTSOF(field)) {
                                field[n++] = p;
                                continue;
                        }
                        if (strcmp(p, "-") == 0) {
                                fstype = strtok_r(NULL, " \n", &save);
                                break;
                        }
                }
                if (n < ELEMENTSOF(field) || !fstype || strcmp(fstype, "cgroup2") != 0)
                        continue;
                unescape_octal(field[3]);
                unescape_octal(field[4]);
                /* A bind mount of a subtree would make every path relative to it. */
                if (strcmp(field[3], "/") != 0)
                        continue;
                /* One that cannot be opened (covered, or gone meanwhile): the next may do. */
                if (open_mount(field[4], ret) >= 0)
                        return 0;
        }
        return -ENOENT;
}

int cgroup_open_id(const CgroupMount *m, uint64_t id, int *ret_fd) {
        struct {
                struct file_handle fh;
                /* cppcheck-suppress unusedStructMember ; room for fh's flexible f_handle[] */
                uint8_t space[sizeof(uint64_t)];
        } h = { .fh.handle_bytes = sizeof(uint64_t), .fh.handle_type = HANDLE_TYPE_KERNFS };
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        uint64_t actual;
        int r;

        memcpy(h.fh.f_handle, &id, sizeof(id));
        fd = open_by_handle_at(m->fd, &h.fh, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ESTALE : -errno;

        /* Whatever the handle opened, only a cgroup2 directory of our mount
         * is acted on. */
        r = check_cgroup2(fd);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode) || st.st_dev != m->dev)
                return -EMEDIUMTYPE;
        r = cgroup_get_id(fd, &actual);
        if (r < 0)
                return r;
        if (actual != id)
                return -EMEDIUMTYPE;

        *ret_fd = TAKE_FD(fd);
        return 0;
}

static bool cgroup_exists(int fd) {
        /* A removed cgroup's directory has no files any more. */
        return faccessat(fd, "cgroup.procs", F_OK, 0) >= 0 || errno != ENOENT;
}

/* Where the cgroup is below the mount, from the kernel's name for our fd. */
static int cgroup_path(const CgroupMount *m, int fd, char **ret) {
        char proc[64], link[PATH_MAX + 1];
        size_t prefix = strcmp(m->path, "/") == 0 ? 0 : strlen(m->path);
        ssize_t n;

        if (!cgroup_exists(fd))
                return -ESTALE;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        n = readlink(proc, link, sizeof(link));
        if (n < 0)
                return -errno;
        if ((size_t) n >= sizeof(link))
                return -ENAMETOOLONG;
        link[n] = '\0';
        if (strncmp(link, m->path, prefix) != 0 || (link[prefix] != '/' && link[prefix] != '\0'))
                return -EXDEV;

        *ret = strdup(link[prefix] ? link + prefix : "/");
        return *ret ? 0 : -ENOMEM;
}

int cgroup_inspect(const CgroupMount *m, int fd, CgroupInfo *ret, int *ret_fd) {
        _cleanup_close_ int own = -EBADF;
        _cleanup_free_ char *path = NULL;
        struct stat st;
        uint64_t id;
        int r;

        /* fstatfs first: what anything else says depends on what the fd is. */
        r = check_cgroup2(fd);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        r = cgroup_get_id(fd, &id);
        if (r < 0)
                return r;

        /* Reopened through our mount: from here on nothing depends on how
         * the client opened it (O_PATH, another mount, another mount
         * namespace). */
        r = cgroup_open_id(m, id, &own);
        if (r < 0)
                return r;
        if (fstat(own, &st) < 0)
                return -errno;
        r = cgroup_path(m, own, &path);
        if (r < 0)
                return r;

        *ret = (CgroupInfo) {
                .id = id,
                .uid = st.st_uid,
                .gid = st.st_gid,
                .mode = st.st_mode & 07777,
                .path = TAKE_PTR(path),
        };
        *ret_fd = TAKE_FD(own);
        return 0;
}

static int read_attr(int dir_fd, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        n = read_full(fd, buf, size - 1);
        if (n < 0)
                return (int) n;
        buf[n] = '\0';
        return 0;
}

static int write_attr(int dir_fd, const char *name, const char *value) {
        _cleanup_close_ int fd = -EBADF;
        size_t n = strlen(value);
        ssize_t k;

        fd = openat(dir_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        k = write(fd, value, n);
        if (k < 0)
                return -errno;
        return (size_t) k == n ? 0 : -EIO;
}

/* The number after "key " in a flat keyed file (cgroup.events, cgroup.stat). */
static int read_key(int dir_fd, const char *file, const char *key, uint64_t *ret) {
        char buf[4096];
        size_t klen = strlen(key);
        int r;

        r = read_attr(dir_fd, file, buf, sizeof(buf));
        if (r < 0)
                return r;
        for (const char *p = buf; *p; p += strcspn(p, "\n"), p += *p == '\n') {
                uint32_t v;

                if (strncmp(p, key, klen) != 0 || p[klen] != ' ')
                        continue;
                if (parse_decimal_u32(p + klen + 1, strcspn(p + klen + 1, "\n"), &v) < 0)
                        return -EBADMSG;
                *ret = v;
                return 0;
        }
        return -EBADMSG;
}

int cgroup_is_empty_leaf(int fd) {
        uint64_t populated, descendants;
        int r;

        /* populated covers the whole subtree; nr_descendants counts live
         * children, populated or not (dying ones are on their way out). */
        r = read_key(fd, "cgroup.events", "populated", &populated);
        if (r >= 0)
                r = read_key(fd, "cgroup.stat", "nr_descendants", &descendants);
        if (r < 0)
                return r;
        return populated == 0 && descendants == 0;
}

int cgroup_open_child(int parent_fd, const char *name, int *ret_fd, uint64_t *ret_id, uid_t *ret_uid) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        uint64_t id;
        int r;

        fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = check_cgroup2(fd);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        r = cgroup_get_id(fd, &id);
        if (r < 0)
                return r;

        if (ret_id)
                *ret_id = id;
        if (ret_uid)
                *ret_uid = st.st_uid;
        if (ret_fd)
                *ret_fd = TAKE_FD(fd);
        return 0;
}

int cgroup_make_leaf(int parent_fd, const char *name, int *ret_fd, uint64_t *ret_id) {
        _cleanup_close_ int fd = -EBADF;
        uint64_t id;
        uid_t uid;
        int r;

        if (mkdirat(parent_fd, name, 0755) < 0)
                return -errno;
        r = cgroup_open_child(parent_fd, name, &fd, &id, &uid);
        if (r < 0)
                return r;
        /* The parent's owner may replace what we made in between: only one
         * made by us (root) is taken. */
        if (uid != 0)
                return -EEXIST;

        *ret_fd = TAKE_FD(fd);
        *ret_id = id;
        return 0;
}

static int chown_attr(int dir_fd, const char *name, uid_t uid, gid_t gid, mode_t mode) {
        _cleanup_close_ int fd = -EBADF;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0)
                return -errno;
        return 0;
}

int cgroup_delegate(int fd, uid_t uid, gid_t gid, const CgroupLimits *limits) {
        char value[16];
        int r;

        /* Limits first: the moment the leaf is theirs, its owner may create
         * children, and a limit lowered later does not remove any. */
        snprintf(value, sizeof(value), "%" PRIu32, limits->max_descendants);
        r = write_attr(fd, "cgroup.max.descendants", value);
        if (r < 0)
                return r;
        snprintf(value, sizeof(value), "%" PRIu32, limits->max_depth);
        r = write_attr(fd, "cgroup.max.depth", value);
        if (r < 0)
                return r;

        /* Explicit modes: an as-is leaf may have come with its files made
         * writable for others. */
        for (size_t i = 0; i < ELEMENTSOF(delegated_files); i++) {
                r = chown_attr(fd, delegated_files[i], uid, gid, 0644);
                if (r < 0)
                        return r;
        }
        if (fchown(fd, uid, gid) < 0 || fchmod(fd, 0755) < 0)
                return -errno;
        return 0;
}

int cgroup_undelegate(int fd, uid_t uid, gid_t gid, mode_t dir_mode) {
        int r = 0;

        /* The directory first: no more children for whoever had it. */
        if (fchown(fd, uid, gid) < 0 || fchmod(fd, dir_mode) < 0)
                r = -errno;
        for (size_t i = 0; i < ELEMENTSOF(delegated_files); i++) {
                int k = chown_attr(fd, delegated_files[i], uid, gid, 0644);

                if (r >= 0)
                        r = k;
        }
        return r;
}

/* ---- teardown ----------------------------------------------------------- */

typedef struct Names {
        char **names;
        size_t n;
} Names;

static void names_done(Names *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->names[i]);
        free(l->names);
        *l = (Names) {};
}

/* A snapshot of the entries of a directory (child cgroups only, or every
 * entry): we remove entries while going through them. */
static int list_entries(int fd, bool dirs_only, Names *ret) {
        Names l = {};
        size_t allocated = 0;
        DIR *d;
        int dfd, r = 0;

        dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        d = fdopendir(dfd);
        if (!d) {
                r = -errno;
                close(dfd);
                return r;
        }
        for (;;) {
                struct dirent *de;

                r = read_dir_entry(d, &de);
                if (r <= 0)
                        break;
                if (dirs_only && de->d_type != DT_DIR)
                        continue;
                if (l.n == allocated) {
                        size_t k = allocated ? allocated * 2 : 16;
                        char **p = realloc(l.names, k * sizeof(char *));

                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        l.names = p;
                        allocated = k;
                }
                l.names[l.n] = strdup(de->d_name);
                if (!l.names[l.n]) {
                        r = -ENOMEM;
                        break;
                }
                l.n++;
        }
        closedir(d);
        if (r < 0) {
                names_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}

/* A failure to report: hard errors win over -EBUSY, which only says "not yet". */
static void keep_error(int *ret, int r) {
        if (r < 0 && (*ret >= 0 || *ret == -EBUSY))
                *ret = r;
}

static int read_pids(int dir_fd, pid_t *pids, size_t max, size_t *ret_n) {
        _cleanup_fclose_ FILE *f = NULL;
        char line[32];
        size_t n = 0;
        int fd;

        fd = openat(dir_fd, "cgroup.procs", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        f = fdopen(fd, "re");
        if (!f) {
                close(fd);
                return -ENOMEM;
        }
        while (n < max && fgets(line, sizeof(line), f)) {
                uint32_t pid;

                if (parse_decimal_u32(line, strcspn(line, "\n"), &pid) >= 0 && pid > 0 && pid <= INT_MAX)
                        pids[n++] = (pid_t) pid;
        }
        *ret_n = n;
        return 0;
}

static bool pid_listed(const pid_t *pids, size_t n, pid_t pid) {
        for (size_t i = 0; i < n; i++)
                if (pids[i] == pid)
                        return true;
        return false;
}

/* SIGKILL to every member of one cgroup, without cgroup.kill. A pid read
 * from cgroup.procs may belong to another process by the time it is
 * signalled: each is pinned with a pidfd first and signalled only if the
 * cgroup still lists it then (one pid names one live process at a time).
 *
 * Without pidfds nothing is killed: these are other people's processes,
 * which may exit and be reaped between the read and a kill(pid), and no
 * re-check of /proc/<pid>/cgroup closes that window. A stray SIGKILL to an
 * unrelated process is worse than a cgroup that stays until its processes
 * leave (it is handed to root meanwhile), so -EOPNOTSUPP is reported. */
static int kill_members(int fd) {
        _cleanup_free_ pid_t *before = NULL, *after = NULL;
        _cleanup_free_ int *pidfds = NULL;
        size_t n_before = 0, n_after = 0;
        int r;

        if (!pidfd_supported())
                return -EOPNOTSUPP;

        before = calloc(KILL_BATCH_MAX, sizeof(pid_t));
        after = calloc(KILL_BATCH_MAX, sizeof(pid_t));
        pidfds = calloc(KILL_BATCH_MAX, sizeof(int));
        if (!before || !after || !pidfds)
                return -ENOMEM;

        r = read_pids(fd, before, KILL_BATCH_MAX, &n_before);
        if (r < 0 || n_before == 0)
                return r;
        for (size_t i = 0; i < n_before; i++)
                pidfds[i] = (int) syscall(SYS_pidfd_open, before[i], 0);
        r = read_pids(fd, after, KILL_BATCH_MAX, &n_after);
        for (size_t i = 0; i < n_before; i++) {
                if (pidfds[i] < 0)
                        continue;
                if (r >= 0 && pid_listed(after, n_after, before[i]))
                        (void) syscall(SYS_pidfd_send_signal, pidfds[i], SIGKILL, NULL, 0);
                close(pidfds[i]);
        }
        return r;
}

/* NOLINTNEXTLINE(misc-no-recursion): depth stops at TREE_DEPTH_MAX. */
static int kill_tree(int fd, unsigned depth) {
        _cleanup_(names_done) Names children = {};
        int ret, r;

        if (depth > TREE_DEPTH_MAX)
                return -ELOOP;
        ret = kill_members(fd);
        r = list_entries(fd, true, &children);
        if (r < 0)
                return r;
        for (size_t i = 0; i < children.n; i++) {
                _cleanup_close_ int child = openat(fd, children.names[i],
                                                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                if (child < 0) {
                        if (errno != ENOENT)
                                keep_error(&ret, -errno);
                        continue;
                }
                keep_error(&ret, kill_tree(child, depth + 1));
        }
        return ret;
}

/* NOLINTNEXTLINE(misc-no-recursion): depth stops at TREE_DEPTH_MAX. */
static int remove_children(int fd, unsigned depth, unsigned *removed) {
        _cleanup_(names_done) Names children = {};
        int ret = 0, r;

        if (depth > TREE_DEPTH_MAX)
                return -ELOOP;
        r = list_entries(fd, true, &children);
        if (r < 0)
                return r;
        for (size_t i = 0; i < children.n; i++) {
                _cleanup_close_ int child = openat(fd, children.names[i],
                                                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                if (child < 0) {
                        if (errno != ENOENT)
                                keep_error(&ret, -errno);
                        continue;
                }
                /* Children first: a cgroup with children cannot be removed. */
                r = remove_children(child, depth + 1, removed);
                keep_error(&ret, r);
                if (r < 0)
                        continue;
                if (unlinkat(fd, children.names[i], AT_REMOVEDIR) >= 0)
                        (*removed)++;
                else if (errno != ENOENT)
                        keep_error(&ret, -errno);
        }
        return ret;
}

/* Remove the cgroup fd is itself, by its name in its parent. */
static int remove_self(int fd) {
        _cleanup_close_ int parent = -EBADF;
        char proc[64], link[PATH_MAX + 1];
        struct stat self, parent_st, entry;
        const char *name;
        ssize_t n;

        if (fstat(fd, &self) < 0)
                return -errno;
        parent = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0)
                return -errno;
        /* The root of the mount has no parent on cgroup2: never remove it. */
        if (fstat(parent, &parent_st) < 0)
                return -errno;
        if (parent_st.st_dev != self.st_dev || parent_st.st_ino == self.st_ino)
                return -EPERM;

        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        n = readlink(proc, link, sizeof(link));
        if (n < 0)
                return -errno;
        if ((size_t) n >= sizeof(link))
                return -ENAMETOOLONG;
        link[n] = '\0';
        name = strrchr(link, '/');
        name = name ? name + 1 : link;

        /* The name must still be this cgroup (a removed one reads
         * "... (deleted)", which names nothing). */
        if (fstatat(parent, name, &entry, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (entry.st_ino != self.st_ino)
                return 0;
        if (unlinkat(parent, name, AT_REMOVEDIR) < 0)
                return errno == ENOENT ? 0 : -errno;
        return 1;
}

int cgroup_remove_tree(int fd, bool use_kill_file, unsigned *ret_removed) {
        unsigned removed = 0;
        int killed = 0, r;

        *ret_removed = 0;
        if (!cgroup_exists(fd))
                return 0;

        /* cgroup.kill (Linux 5.14) also catches what forks meanwhile. What
         * a failed kill leaves shows up as -EBUSY below. */
        r = use_kill_file ? write_attr(fd, "cgroup.kill", "1") : -ENOENT;
        if (r < 0)
                /* An older kernel, or a threaded cgroup: one by one. */
                killed = kill_tree(fd, 0);

        r = remove_children(fd, 0, &removed);
        if (r >= 0) {
                r = remove_self(fd);
                if (r > 0)
                        removed++;
        }
        *ret_removed = removed;
        if (r == -EBUSY || r == -ENOTEMPTY)
                /* Nothing could kill what is left: waiting would not help. */
                return killed == -EOPNOTSUPP ? -EOPNOTSUPP : -EBUSY;
        return r < 0 ? r : 0;
}

/* NOLINTNEXTLINE(misc-no-recursion): depth stops at TREE_DEPTH_MAX. */
static int disown_tree(int fd, unsigned depth) {
        _cleanup_(names_done) Names entries = {};
        int ret = 0, r;

        if (depth > TREE_DEPTH_MAX)
                return -ELOOP;
        r = list_entries(fd, false, &entries);
        if (r < 0)
                return r;
        for (size_t i = 0; i < entries.n; i++) {
                _cleanup_close_ int child = openat(fd, entries.names[i],
                                                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                if (child >= 0) {
                        keep_error(&ret, disown_tree(child, depth + 1));
                        continue;
                }
                /* Not a directory: a file of this cgroup. Some cannot be
                 * opened for reading (cgroup.kill), so no fd of its own. */
                if (fchownat(fd, entries.names[i], 0, 0, AT_SYMLINK_NOFOLLOW) < 0 && errno != ENOENT)
                        keep_error(&ret, -errno);
        }
        if (fchown(fd, 0, 0) < 0)
                keep_error(&ret, -errno);
        return ret;
}

int cgroup_disown_tree(int fd) {
        return disown_tree(fd, 0);
}
