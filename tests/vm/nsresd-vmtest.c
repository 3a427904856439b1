/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Runs inside the test guest (see run-vm.py): loads the restriction and the
 * teardown tracker with the daemon's own loaders and BPF objects, builds the
 * filesystems of the case table, and prints one line per case:
 *
 *   CASE <name> <expected> <got>
 *
 * then RESTRICTION <enforcing|unavailable>, BPFOBJ <sha256 of the object it
 * loaded> and PASS or FAIL. The host compares every line with its own table.
 *
 * usage: nsresd-vmtest enforce|control [EXT4-IMAGE]
 *   enforce: the guest booted with bpf in lsm=; control: without it, where
 *   every case the restriction decides must come out the other way.
 *
 * A tracked namespace here is what nsresd makes: a user namespace with the
 * transient range 524288+65536 mapped at 0, plus uid/gid 1000 mapped at
 * 65536 the way MAP_CALLER maps a caller, entered as its root.
 */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/loop.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "restrict.h"
#include "track.h"

#define RANGE_START 524288U
#define RANGE_SIZE 65536U
#define CALLER_ID 1000U                 /* mapped inside at RANGE_SIZE */
#define BPF_DIR "/sys/fs/bpf/nsresd"
#define TEARDOWN_TIMEOUT_MS 20000       /* software emulation is slow */

/* <linux/mount.h> clashes with glibc's <sys/mount.h>; these are stable ABI. */
#define OPEN_TREE_CLONE 1
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define MOUNT_ATTR_IDMAP 0x00100000
#define AT_RECURSIVE 0x8000
#define FSCONFIG_SET_FLAG 0
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6

struct mount_attr_v0 {
        uint64_t attr_set;
        uint64_t attr_clr;
        uint64_t propagation;
        uint64_t userns_fd;
};

enum {
        UNTRACKED       = 1 << 0,       /* a namespace nsresd does not know */
        INIT_NS         = 1 << 1,       /* no namespace at all: the host's root */
        NESTED          = 1 << 2,       /* a user namespace inside the tracked one */
        NEW_MOUNT_NS    = 1 << 3,       /* unshare(CLONE_NEWNS) first */
        NS_TMPFS        = 1 << 4,       /* mount a tmpfs of the namespace on /mnt/ns */
        CALLER_FSID     = 1 << 5,       /* act with fsuid/fsgid of the mapped caller */
        DELEGATE        = 1 << 6,       /* /mnt/deleg is delegated to the namespace */
};

typedef int (*op_fn)(const char *dir, const char *tag);

typedef struct Case {
        const char *name;
        const char *enforce;            /* expected result in each boot */
        const char *control;
        unsigned flags;
        op_fn op;
        const char *dir;
} Case;

static bool enforcing_boot;
static Restrictor *restrictor;
static uint64_t deleg_mount_id;
static unsigned mismatches;

static int errno_or_zero(int r) {
        return r < 0 ? errno : 0;
}

static void path_of(char *buf, size_t size, const char *dir, const char *name) {
        snprintf(buf, size, "%s/%s", dir, name);
}

static int op_mkdir(const char *dir, const char *tag) {
        char p[256];

        path_of(p, sizeof(p), dir, tag);
        return errno_or_zero(mkdir(p, 0755));
}

static int op_create(const char *dir, const char *tag) {
        char p[256];
        int fd;

        path_of(p, sizeof(p), dir, tag);
        fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0)
                return errno;
        close(fd);
        return 0;
}

static int op_symlink(const char *dir, const char *tag) {
        char p[256];

        path_of(p, sizeof(p), dir, tag);
        return errno_or_zero(symlink("linkme", p));
}

static int op_link(const char *dir, const char *tag) {
        char from[256], to[256];

        path_of(from, sizeof(from), dir, "linkme");
        path_of(to, sizeof(to), dir, tag);
        return errno_or_zero(link(from, to));
}

/* To uid/gid 1 of the namespace: transient. */
static int op_chown_transient(const char *dir, const char *tag) {
        char p[256];

        (void) tag;
        path_of(p, sizeof(p), dir, "victim");
        return errno_or_zero(chown(p, 1, 1));
}

/* To the mapped caller's ids: not transient, so harmless anywhere. */
static int op_chown_caller(const char *dir, const char *tag) {
        char p[256];

        (void) tag;
        path_of(p, sizeof(p), dir, "victim-caller");
        return errno_or_zero(chown(p, RANGE_SIZE, RANGE_SIZE));
}

/* An O_TMPFILE never passes path_mknod; only a link makes it last. */
static int op_tmpfile_link(const char *dir, const char *tag) {
        char proc[64], to[256];
        int fd, r;

        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                return errno;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        path_of(to, sizeof(to), dir, tag);
        r = errno_or_zero(linkat(AT_FDCWD, proc, AT_FDCWD, to, AT_SYMLINK_FOLLOW));
        close(fd);
        return r;
}

/* A POSIX ACL granting uid 1 of the namespace (transient) access. */
static int op_setfacl(const char *dir, const char *tag) {
        struct {
                uint32_t version;
                struct {
                        uint16_t tag, perm;
                        uint32_t id;
                } e[5];
        } acl = { 2, {
                { 0x01, 6, UINT32_MAX },        /* owner */
                { 0x02, 6, 1 },                 /* user 1 */
                { 0x04, 4, UINT32_MAX },        /* owning group */
                { 0x10, 6, UINT32_MAX },        /* mask */
                { 0x20, 4, UINT32_MAX },        /* others */
        } };
        char p[256];

        (void) tag;
        path_of(p, sizeof(p), dir, "xattr-target");
        return errno_or_zero(setxattr(p, "system.posix_acl_access", &acl, sizeof(acl), 0));
}

/* A file capability: the kernel stores it with the namespace's root (a
 * transient id) as its root id. */
static int op_setfcap(const char *dir, const char *tag) {
        const uint32_t cap[5] = { 0x02000000, 1U << 10, 0, 0, 0 };     /* v2, CAP_NET_BIND_SERVICE */
        char p[256];

        (void) tag;
        path_of(p, sizeof(p), dir, "xattr-target");
        return errno_or_zero(setxattr(p, "security.capability", cap, sizeof(cap), 0));
}

/* An attribute that names no ids stays allowed. */
static int op_setxattr_user(const char *dir, const char *tag) {
        char p[256];

        (void) tag;
        path_of(p, sizeof(p), dir, "xattr-target");
        return errno_or_zero(setxattr(p, "user.nsresd", "1", 1, 0));
}

static int mount_overlay_legacy(const char *upper_root) {
        char opts[512];

        snprintf(opts, sizeof(opts), "lowerdir=/mnt/host/lower,upperdir=%s/upper,workdir=%s/work,userxattr",
                 upper_root, upper_root);
        return errno_or_zero(mount("overlay", "/mnt/ovl", "overlay", 0, opts));
}

/* overlayfs through mount(2), upper layer under dir. */
static int op_overlay(const char *dir, const char *tag) {
        (void) tag;
        return mount_overlay_legacy(dir);
}

/* The same through fsopen()/fsconfig(), which never calls sb_kern_mount. */
static int op_overlay_fsopen(const char *dir, const char *tag) {
        char upper[256], work[256];
        int fd, r = 0;

        (void) tag;
        path_of(upper, sizeof(upper), dir, "upper");
        path_of(work, sizeof(work), dir, "work");

        fd = (int) syscall(SYS_fsopen, "overlay", 0);
        if (fd < 0)
                return errno;
        if (syscall(SYS_fsconfig, fd, FSCONFIG_SET_STRING, "lowerdir", "/mnt/host/lower", 0) < 0 ||
            syscall(SYS_fsconfig, fd, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0 ||
            syscall(SYS_fsconfig, fd, FSCONFIG_SET_STRING, "workdir", work, 0) < 0 ||
            syscall(SYS_fsconfig, fd, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0 ||
            syscall(SYS_fsconfig, fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                r = errno;
        close(fd);
        return r;
}

static const Case cases[] = {
        /* A tracked namespace on filesystems that outlive it. */
        { "mkdir-host-tmpfs",           "EPERM", "ok", 0, op_mkdir, "/mnt/host" },
        { "create-host-tmpfs",          "EPERM", "ok", 0, op_create, "/mnt/host" },
        { "symlink-host-tmpfs",         "EPERM", "ok", 0, op_symlink, "/mnt/host" },
        { "link-host-tmpfs",            "EPERM", "ok", 0, op_link, "/mnt/host" },
        { "chown-host-tmpfs",           "EPERM", "ok", 0, op_chown_transient, "/mnt/host" },
        { "mkdir-ext4",                 "EPERM", "ok", 0, op_mkdir, "/mnt/ext4/w" },
        { "create-ext4",                "EPERM", "ok", 0, op_create, "/mnt/ext4/w" },
        { "symlink-ext4",               "EPERM", "ok", 0, op_symlink, "/mnt/ext4/w" },
        { "link-ext4",                  "EPERM", "ok", 0, op_link, "/mnt/ext4/w" },
        { "chown-ext4",                 "EPERM", "ok", 0, op_chown_transient, "/mnt/ext4/w" },

        /* Its own tmpfs dies with it. */
        { "mkdir-ns-tmpfs",             "ok", "ok", NEW_MOUNT_NS | NS_TMPFS, op_mkdir, "/mnt/ns" },
        { "create-ns-tmpfs",            "ok", "ok", NEW_MOUNT_NS | NS_TMPFS, op_create, "/mnt/ns" },
        { "symlink-ns-tmpfs",           "ok", "ok", NEW_MOUNT_NS | NS_TMPFS, op_symlink, "/mnt/ns" },
        { "link-ns-tmpfs",              "ok", "ok", NEW_MOUNT_NS | NS_TMPFS, op_link, "/mnt/ns" },
        { "chown-ns-tmpfs",             "ok", "ok", NEW_MOUNT_NS | NS_TMPFS, op_chown_transient, "/mnt/ns" },

        /* ext4 through a mount idmapped so the range is stored as 0-65535. */
        { "mkdir-idmapped-ext4",        "ok", "ok", 0, op_mkdir, "/mnt/idmapped/i" },
        { "create-idmapped-ext4",       "ok", "ok", 0, op_create, "/mnt/idmapped/i" },
        { "symlink-idmapped-ext4",      "ok", "ok", 0, op_symlink, "/mnt/idmapped/i" },
        { "link-idmapped-ext4",         "ok", "ok", 0, op_link, "/mnt/idmapped/i" },

        /* ext4 delegated by mount id, and the same directory through a
         * mount that was not delegated. */
        { "mkdir-delegated",            "ok", "ok", DELEGATE, op_mkdir, "/mnt/deleg" },
        { "create-delegated",           "ok", "ok", DELEGATE, op_create, "/mnt/deleg" },
        { "symlink-delegated",          "ok", "ok", DELEGATE, op_symlink, "/mnt/deleg" },
        { "link-delegated",             "ok", "ok", DELEGATE, op_link, "/mnt/deleg" },
        { "chown-delegated",            "ok", "ok", DELEGATE, op_chown_transient, "/mnt/deleg" },
        { "mkdir-delegated-other-mount", "EPERM", "ok", DELEGATE, op_mkdir, "/mnt/ext4/deleg" },

        /* What is harmless stays allowed. */
        { "mkdir-host-tmpfs-as-caller", "ok", "ok", CALLER_FSID, op_mkdir, "/mnt/host" },
        { "chown-host-tmpfs-to-caller", "ok", "ok", 0, op_chown_caller, "/mnt/host" },

        /* Extended attributes that store ids. */
        { "setfacl-host-tmpfs-as-caller", "EPERM", "ok", CALLER_FSID, op_setfacl, "/mnt/host" },
        { "setfacl-ext4-as-caller",     "EPERM", "ok", CALLER_FSID, op_setfacl, "/mnt/ext4/w" },
        { "setfcap-host-tmpfs",         "EPERM", "ok", 0, op_setfcap, "/mnt/host" },
        { "setfacl-ns-tmpfs",           "ok", "ok", NEW_MOUNT_NS | NS_TMPFS, op_setfacl, "/mnt/ns" },
        { "setfcap-ns-tmpfs",           "ok", "ok", NEW_MOUNT_NS | NS_TMPFS, op_setfcap, "/mnt/ns" },
        { "setxattr-user-ext4-as-caller", "ok", "ok", CALLER_FSID, op_setxattr_user, "/mnt/ext4/w" },

        /* Bypasses. */
        { "unshare-mountns-host-tmpfs", "EPERM", "ok", NEW_MOUNT_NS, op_mkdir, "/mnt/host" },
        { "unshare-mountns-delegated",  "EPERM", "ok", NEW_MOUNT_NS | DELEGATE, op_mkdir, "/mnt/deleg" },
        { "nested-userns-host-tmpfs",   "EPERM", "ok", NESTED, op_mkdir, "/mnt/host" },
        { "nested-userns-ext4",         "EPERM", "ok", NESTED, op_create, "/mnt/ext4/w" },
        { "nested-userns-own-tmpfs",    "ok", "ok", NESTED | NEW_MOUNT_NS | NS_TMPFS, op_mkdir, "/mnt/ns" },
        { "tmpfile-link-host-tmpfs",    "EPERM", "ok", 0, op_tmpfile_link, "/mnt/host" },
        { "overlay-host-upper",         "EPERM", "ok", NEW_MOUNT_NS, op_overlay, "/mnt/ext4" },
        { "overlay-host-upper-fsopen",  "EPERM", "ok", NEW_MOUNT_NS, op_overlay_fsopen, "/mnt/ext4" },
        { "overlay-ns-upper",           "ok", "ok", NEW_MOUNT_NS | NS_TMPFS, op_overlay, "/mnt/ns" },

        /* Outside any tracked namespace nothing changes. */
        { "untracked-userns-host-tmpfs", "ok", "ok", UNTRACKED, op_mkdir, "/mnt/host" },
        { "untracked-userns-ext4",      "ok", "ok", UNTRACKED, op_create, "/mnt/ext4/w" },
        { "init-root-host-tmpfs",       "ok", "ok", INIT_NS, op_mkdir, "/mnt/host" },
        { "init-root-ext4",             "ok", "ok", INIT_NS, op_create, "/mnt/ext4/w" },
};

static const char *result_name(int e) {
        static char buf[32];

        switch (e) {
        case 0: return "ok";
        case EPERM: return "EPERM";
        case EACCES: return "EACCES";
        case EINVAL: return "EINVAL";
        case ENOENT: return "ENOENT";
        case EEXIST: return "EEXIST";
        case EOVERFLOW: return "EOVERFLOW";
        case ENOSYS: return "ENOSYS";
        case ENODEV: return "ENODEV";
        case EOPNOTSUPP: return "EOPNOTSUPP";
        default:
                snprintf(buf, sizeof(buf), "errno-%d", e);
                return buf;
        }
}

static void report(const char *name, const char *expected, const char *got) {
        if (strcmp(expected, got) != 0)
                mismatches++;
        printf("CASE %s %s %s\n", name, expected, got);
        fflush(stdout);
}

static int write_file(const char *path, const char *text) {
        int fd, r = 0;
        size_t len = strlen(text);

        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (write(fd, text, len) != (ssize_t) len)
                r = -errno;
        close(fd);
        return r;
}

static void die(const char *what) {
        printf("SETUP-ERROR %s: %s\n", what, strerror(errno));
        printf("FAIL\n");
        fflush(stdout);
        exit(1);
}

/* Writes the maps of pid's new user namespace as nsresd would. */
static int write_maps(pid_t pid) {
        char path[64], map[128];

        snprintf(map, sizeof(map), "0 %u %u\n%u %u 1\n", RANGE_START, RANGE_SIZE, RANGE_SIZE, CALLER_ID);
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int) pid);
        if (write_file(path, map) < 0)
                return -errno;
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int) pid);
        return write_file(path, map);
}

static uint64_t userns_inode(pid_t pid) {
        char path[64];
        struct stat st;

        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int) pid);
        if (stat(path, &st) < 0)
                return 0;
        return st.st_ino;
}

/* Inside the child, once its maps are written: become the namespace's root
 * (or go one level deeper) and set up what the case needs. */
static int child_enter(unsigned flags) {
        if (!(flags & INIT_NS)) {
                if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0)
                        return errno;
                /* Changing ids made us undumpable, which hands /proc/self
                 * to the host's root: the nested case writes its maps there. */
                if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
                        return errno;
        }

        if (flags & NESTED) {
                if (unshare(CLONE_NEWUSER) < 0)
                        return errno;
                if (write_file("/proc/self/setgroups", "deny") < 0 ||
                    write_file("/proc/self/uid_map", "0 0 1\n") < 0 ||
                    write_file("/proc/self/gid_map", "0 0 1\n") < 0)
                        return errno;
        }

        if (flags & NEW_MOUNT_NS) {
                if (unshare(CLONE_NEWNS) < 0)
                        return errno;
                if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        return errno;
        }

        if (flags & NS_TMPFS) {
                char p[64];
                int fd;

                if (mount("tmpfs", "/mnt/ns", "tmpfs", 0, "mode=0777") < 0)
                        return errno;
                /* What the cases act on, made where it is allowed. */
                fd = open("/mnt/ns/linkme", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
                if (fd < 0)
                        return errno;
                close(fd);
                fd = open("/mnt/ns/victim", O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
                if (fd < 0)
                        return errno;
                close(fd);
                fd = open("/mnt/ns/xattr-target", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
                if (fd < 0)
                        return errno;
                close(fd);
                for (const char *const *d = (const char *const[]) { "upper", "work", NULL }; *d; d++) {
                        snprintf(p, sizeof(p), "/mnt/ns/%s", *d);
                        if (mkdir(p, 0777) < 0)
                                return errno;
                }
        }

        if (flags & CALLER_FSID) {
                (void) setfsgid(RANGE_SIZE);
                (void) setfsuid(RANGE_SIZE);
        }
        return 0;
}

/* Runs one case in a child: returns the errno the operation ended with. */
static int run_in_child(const Case *c, const char *tag) {
        int to_child[2], to_parent[2], status;
        uint64_t key = 0;
        pid_t pid;
        char b = 0;

        if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(to_parent, O_CLOEXEC) < 0)
                die("pipe");

        fflush(stdout);
        pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                int r;

                if (!(c->flags & INIT_NS) && unshare(CLONE_NEWUSER) < 0)
                        _exit(120);
                if (write(to_parent[1], "u", 1) != 1 || read(to_child[0], &b, 1) != 1)
                        _exit(121);
                r = child_enter(c->flags);
                if (r != 0) {
                        printf("SETUP-ERROR %s: entering: %s\n", c->name, strerror(r));
                        fflush(stdout);
                        _exit(122);
                }
                _exit(c->op(c->dir, tag));
        }

        if (read(to_parent[0], &b, 1) != 1)
                die("child did not start");

        if (!(c->flags & (INIT_NS | UNTRACKED)) && restrictor) {
                key = userns_inode(pid);
                if (key == 0 || restrictor_add(restrictor, key, RANGE_START, RANGE_SIZE) < 0)
                        die("restrictor_add");
                if ((c->flags & DELEGATE) && restrictor_add_mount(restrictor, key, deleg_mount_id) < 0)
                        die("restrictor_add_mount");
        }
        /* The restriction holds the namespace before any id is mapped. */
        if (!(c->flags & INIT_NS) && write_maps(pid) < 0)
                die("write maps");
        if (write(to_child[1], "g", 1) != 1)
                die("wake child");

        if (waitpid(pid, &status, 0) < 0)
                die("waitpid");
        if (key != 0)
                (void) restrictor_remove(restrictor, key);
        close(to_child[0]);
        close(to_child[1]);
        close(to_parent[0]);
        close(to_parent[1]);

        if (!WIFEXITED(status))
                return -1;
        if (WEXITSTATUS(status) >= 120)
                return -WEXITSTATUS(status);
        return WEXITSTATUS(status);
}

static void touch(const char *path, uid_t uid, gid_t gid, mode_t mode) {
        int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, mode);

        if (fd < 0 || fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0)
                die(path);
        close(fd);
}

static void mkdir_open(const char *path) {
        if (mkdir(path, 0777) < 0 && errno != EEXIST)
                die(path);
        if (chmod(path, 0777) < 0)
                die(path);
}

/* The files the cases act on, owned by the namespace's root (on disk, or
 * through the idmapping for the idmapped directory) so that the kernel lets
 * it chown them and, with protected_hardlinks, link them. */
static void populate(const char *dir, uid_t owner) {
        char p[256];

        mkdir_open(dir);
        path_of(p, sizeof(p), dir, "linkme");
        touch(p, owner, owner, 0644);
        path_of(p, sizeof(p), dir, "victim");
        touch(p, owner, owner, 0666);
        path_of(p, sizeof(p), dir, "victim-caller");
        touch(p, owner, owner, 0666);
        /* The mapped caller's own file: it may set attributes on it. */
        path_of(p, sizeof(p), dir, "xattr-target");
        touch(p, CALLER_ID, CALLER_ID, 0644);
}

static void setup_loop_ext4(const char *image) {
        char dev[64];
        int ctl, n, loop, img;

        ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        if (ctl < 0)
                die("/dev/loop-control");
        n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0)
                die("LOOP_CTL_GET_FREE");
        snprintf(dev, sizeof(dev), "/dev/loop%d", n);
        loop = open(dev, O_RDWR | O_CLOEXEC);
        img = open(image, O_RDWR | O_CLOEXEC);
        if (loop < 0 || img < 0)
                die("loop device or image");
        if (ioctl(loop, LOOP_SET_FD, img) < 0)
                die("LOOP_SET_FD");
        close(img);
        close(ctl);
        mkdir_open("/mnt/ext4");
        if (mount(dev, "/mnt/ext4", "ext4", 0, NULL) < 0)
                die("mount ext4");
        close(loop);
}

/* A user namespace whose uid_map is the transient range at 0: an idmapped
 * mount through it stores the range as 0-65535. */
static int idmap_userns_fd(void) {
        int p[2], fd;
        pid_t pid;
        char b, path[64], map[64];

        if (pipe2(p, O_CLOEXEC) < 0)
                die("pipe");
        pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                if (unshare(CLONE_NEWUSER) < 0)
                        _exit(1);
                if (write(p[1], "u", 1) != 1)
                        _exit(1);
                pause();
                _exit(0);
        }
        close(p[1]);
        if (read(p[0], &b, 1) != 1)
                die("idmap namespace");
        close(p[0]);
        snprintf(map, sizeof(map), "0 %u %u\n", RANGE_START, RANGE_SIZE);
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int) pid);
        if (write_file(path, map) < 0)
                die("idmap uid_map");
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int) pid);
        if (write_file(path, map) < 0)
                die("idmap gid_map");
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                die("idmap ns fd");
        kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);
        return fd;
}

static void setup_idmapped(void) {
        struct mount_attr_v0 attr = { .attr_set = MOUNT_ATTR_IDMAP };
        int tree, userns;

        userns = idmap_userns_fd();
        attr.userns_fd = (uint64_t) userns;
        tree = (int) syscall(SYS_open_tree, AT_FDCWD, "/mnt/ext4", OPEN_TREE_CLONE | O_CLOEXEC);
        if (tree < 0)
                die("open_tree");
        if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
                die("mount_setattr idmap");
        mkdir_open("/mnt/idmapped");
        if (syscall(SYS_move_mount, tree, "", AT_FDCWD, "/mnt/idmapped", MOVE_MOUNT_F_EMPTY_PATH) < 0)
                die("move_mount");
        close(tree);
        close(userns);
}

static void setup_filesystems(const char *image) {
        int fd;
        bool unique = false;

        mkdir_open("/mnt");
        mkdir_open("/mnt/host");
        if (mount("tmpfs", "/mnt/host", "tmpfs", 0, "mode=0777") < 0)
                die("mount host tmpfs");
        populate("/mnt/host", RANGE_START);
        mkdir_open("/mnt/host/lower");

        /* The guest's init may have mounted it already. */
        if (!getenv("NSRESD_EXT4") || strcmp(getenv("NSRESD_EXT4"), "/mnt/ext4") != 0)
                setup_loop_ext4(image);
        populate("/mnt/ext4/w", RANGE_START);
        populate("/mnt/ext4/i", 0);
        populate("/mnt/ext4/deleg", RANGE_START);
        mkdir_open("/mnt/ext4/upper");
        mkdir_open("/mnt/ext4/work");

        setup_idmapped();

        mkdir_open("/mnt/deleg");
        if (mount("/mnt/ext4/deleg", "/mnt/deleg", NULL, MS_BIND, NULL) < 0)
                die("bind /mnt/deleg");
        fd = open("/mnt/deleg", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || restrictor_mount_id(fd, &deleg_mount_id, &unique) < 0)
                die("mount id of /mnt/deleg");
        close(fd);
        printf("INFO delegated mount id %llu (%s)\n", (unsigned long long) deleg_mount_id,
               unique ? "unique" : "reusable, held");

        mkdir_open("/mnt/ns");
        mkdir_open("/mnt/ovl");
}

/* A tracked namespace's root that makes a directory on the host tmpfs each
 * time it is asked, and answers with the errno. */
typedef struct Resident {
        pid_t pid;
        int ask, answer;
        uint64_t key;
        unsigned n;
} Resident;

static void resident_start(Resident *r) {
        int to_child[2], to_parent[2];
        char b;

        if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(to_parent, O_CLOEXEC) < 0)
                die("pipe");
        fflush(stdout);
        r->pid = fork();
        if (r->pid < 0)
                die("fork");
        if (r->pid == 0) {
                char tag[32];
                unsigned n = 0;

                /* Our copy of the parent's end would keep read() from ever
                 * seeing the end of the conversation. */
                close(to_child[1]);
                close(to_parent[0]);
                if (unshare(CLONE_NEWUSER) < 0 || write(to_parent[1], "u", 1) != 1 ||
                    read(to_child[0], &b, 1) != 1 || child_enter(0) != 0)
                        _exit(1);
                while (read(to_child[0], &b, 1) == 1) {
                        unsigned char e;

                        snprintf(tag, sizeof(tag), "resident-%u", n++);
                        e = (unsigned char) op_mkdir("/mnt/host", tag);
                        if (write(to_parent[1], &e, 1) != 1)
                                break;
                }
                _exit(0);
        }
        close(to_child[0]);
        close(to_parent[1]);
        r->ask = to_child[1];
        r->answer = to_parent[0];
        if (read(r->answer, &b, 1) != 1)
                die("resident did not start");
        r->key = userns_inode(r->pid);
        if (restrictor && restrictor_add(restrictor, r->key, RANGE_START, RANGE_SIZE) < 0)
                die("restrictor_add");
        if (write_maps(r->pid) < 0 || write(r->ask, "g", 1) != 1)
                die("resident maps");
}

static const char *resident_mkdir(Resident *r) {
        unsigned char e;

        if (write(r->ask, "m", 1) != 1 || read(r->answer, &e, 1) != 1)
                return "no-answer";
        return result_name(e);
}

static void resident_stop(Resident *r) {
        close(r->ask);
        close(r->answer);
        (void) waitpid(r->pid, NULL, 0);
}

static uint64_t kept_key;
static bool kept_found;

static bool note_kept(uint64_t key, void *userdata) {
        (void) userdata;
        kept_found = kept_found || key == kept_key;
        return true;
}

/* The service stops and starts again while a tracked namespace lives: the
 * pinned programs go on enforcing in between, the new start finds the
 * namespace in the pinned map, and its own programs take over. */
static void restart_cases(const struct restrict_pool *pools, size_t n_pools) {
        const char *expect = enforcing_boot ? "EPERM" : "ok";
        Resident r = {};
        char *why = NULL;

        resident_start(&r);
        report("restart-before", expect, resident_mkdir(&r));

        restrictor = restrictor_free(restrictor);
        report("restart-while-stopped", expect, resident_mkdir(&r));

        if (enforcing_boot) {
                if (restrictor_open(BPF_DIR, pools, n_pools, &restrictor, &why) < 0 ||
                    restrictor_attach(restrictor, &why) < 0) {
                        printf("INFO restart: %s\n", why);
                        restrictor = restrictor_free(restrictor);
                }
        }
        kept_key = r.key;
        kept_found = false;
        if (restrictor)
                (void) restrictor_prune(restrictor, note_kept, NULL);
        report("restart-keeps-namespace", enforcing_boot ? "yes" : "no", kept_found ? "yes" : "no");
        report("restart-after", expect, resident_mkdir(&r));

        if (restrictor)
                (void) restrictor_remove(restrictor, r.key);
        report("restart-released", "ok", resident_mkdir(&r));
        resident_stop(&r);
        free(why);
}

static void on_teardown(uint64_t ns_id, uint64_t inode, void *userdata) {
        uint64_t *want = userdata;

        (void) ns_id;
        if (inode == want[0])
                want[1] = 1;
}

/* The teardown tracker on this kernel: a tracked namespace whose only
 * process exits and is reaped is reported. */
static const char *tracker_case(void) {
        uint64_t want[2] = {};
        Tracker *t = NULL;
        struct pollfd pfd;
        int p[2], status;
        pid_t pid;
        char b;
        struct timespec start, now;

        if (tracker_open(BPF_DIR, 0, on_teardown, want, &t) < 0)
                return "load-failed";

        if (pipe2(p, O_CLOEXEC) < 0)
                die("pipe");
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                if (unshare(CLONE_NEWUSER) < 0)
                        _exit(1);
                if (write(p[1], "u", 1) != 1 || read(p[0], &b, 1) != 1)
                        _exit(1);
                _exit(0);
        }
        if (read(p[0], &b, 1) != 1)
                die("tracker child");
        want[0] = userns_inode(pid);
        if (want[0] == 0 || tracker_add(t, want[0]) < 0)
                die("tracker_add");
        if (write(p[1], "g", 1) != 1)
                die("tracker child wake");
        close(p[0]);
        close(p[1]);
        (void) waitpid(pid, &status, 0);

        clock_gettime(CLOCK_MONOTONIC, &start);
        pfd = (struct pollfd) { .fd = tracker_fd(t), .events = POLLIN };
        while (!want[1]) {
                long elapsed;

                clock_gettime(CLOCK_MONOTONIC, &now);
                elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
                if (elapsed >= TEARDOWN_TIMEOUT_MS)
                        break;
                (void) poll(&pfd, 1, (int) (TEARDOWN_TIMEOUT_MS - elapsed));
                (void) tracker_consume(t);
        }
        if (want[1]) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                printf("INFO teardown event after %ld ms\n",
                       (long) ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000));
        }
        (void) tracker_remove(t, want[0]);
        tracker_free(t);
        (void) tracker_unpin(BPF_DIR);
        return want[1] ? "ok" : "no-event";
}

static void print_object_hash(void) {
        char cmd[128], line[256];
        const void *obj;
        size_t size;
        FILE *f;

        obj = restrictor_object(&size);
        f = fopen("/tmp/userns-restrict.bpf.o", "we");
        if (!f || fwrite(obj, 1, size, f) != size || fclose(f) != 0)
                die("write object");
        snprintf(cmd, sizeof(cmd), "sha256sum /tmp/userns-restrict.bpf.o");
        f = popen(cmd, "r");
        if (!f || !fgets(line, sizeof(line), f))
                die("sha256sum");
        pclose(f);
        line[strcspn(line, " \n")] = '\0';
        printf("BPFOBJ %s\n", line);
}

int main(int argc, char **argv) {
        const struct restrict_pool pools[] = {
                { RANGE_START, 1879048191U - RANGE_START + 1 },
                { 61184, 65519 - 61184 + 1 },
        };
        char *why = NULL;
        bool enforcing = false;
        int r;

        if (argc < 2 || (strcmp(argv[1], "enforce") != 0 && strcmp(argv[1], "control") != 0)) {
                fprintf(stderr, "usage: %s enforce|control [EXT4-IMAGE]\n", argv[0]);
                return 2;
        }
        enforcing_boot = strcmp(argv[1], "enforce") == 0;
        setvbuf(stdout, NULL, _IOLBF, 0);

        /* The daemon's order: probe, load against the pins, fill, attach. */
        r = restrictor_probe(&why);
        if (r < 0)
                printf("INFO probe: %s\n", why);
        else {
                r = restrictor_open(BPF_DIR, pools, 2, &restrictor, &why);
                if (r >= 0)
                        r = restrictor_attach(restrictor, &why);
                if (r < 0) {
                        printf("INFO load: %s\n", why);
                        restrictor = restrictor_free(restrictor);
                } else
                        enforcing = true;
        }

        /* Without the probe, the check after attaching must still notice
         * programs that never run. */
        if (!enforcing) {
                Restrictor *blind = NULL;

                r = restrictor_open(BPF_DIR, pools, 2, &blind, &why);
                if (r >= 0)
                        r = restrictor_attach(blind, &why);
                printf("INFO attach without probe: %s\n", r < 0 ? why : "enforcing");
                report("lsm-hooks-run", enforcing_boot ? "yes" : "no", r >= 0 ? "yes" : "no");
                restrictor_free(blind);
                (void) restrictor_unpin(BPF_DIR);
        } else
                report("lsm-hooks-run", enforcing_boot ? "yes" : "no", "yes");

        setup_filesystems(argc > 2 ? argv[2] : "/ext4.img");

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const Case *c = &cases[i];
                char tag[64];

                snprintf(tag, sizeof(tag), "t%zu", i);
                r = run_in_child(c, tag);
                report(c->name, enforcing_boot ? c->enforce : c->control,
                       r >= 0 ? result_name(r) : "setup-failed");
        }

        restart_cases(pools, 2);
        report("teardown-tracker", "ok", tracker_case());

        if (restrictor) {
                uint64_t stats[_RESTRICT_STAT_MAX];

                if (restrictor_stats(restrictor, stats) >= 0)
                        printf("INFO hooks: %llu calls, %llu by tracked tasks, %llu denied\n",
                               (unsigned long long) stats[RESTRICT_STAT_CALLS],
                               (unsigned long long) stats[RESTRICT_STAT_CHECKED],
                               (unsigned long long) stats[RESTRICT_STAT_DENIED]);
                restrictor_free(restrictor);
        }
        (void) restrictor_unpin(BPF_DIR);

        printf("RESTRICTION %s\n", enforcing ? "enforcing" : "unavailable");
        print_object_hash();
        if (enforcing != enforcing_boot)
                mismatches++;
        printf("%s\n", mismatches == 0 ? "PASS" : "FAIL");
        free(why);
        return mismatches == 0 ? 0 : 1;
}
