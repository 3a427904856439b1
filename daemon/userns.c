/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#include "userns.h"
#include "util.h"

int userns_get_id(int fd, uint64_t *ret) {
        uint64_t id = 0;

        if (ioctl(fd, NS_GET_ID, &id) < 0)
                return -errno;
        *ret = id;
        return 0;
}

/* fstatfs first: nsfs ioctl numbers mean something else to other files (a
 * tty, a socket), so never ioctl an fd we have not typed. An O_PATH fd of an
 * nsfs file is typed as nsfs too, but no ioctl works on it: it names a
 * namespace without being a handle of it. */
static int fd_check_nsfs(int fd) {
        struct statfs sfs;
        int flags;

        if (fstatfs(fd, &sfs) < 0)
                return -errno;
        if ((unsigned long) sfs.f_type != NSFS_MAGIC)
                return -EMEDIUMTYPE;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if (flags & O_PATH)
                return -EMEDIUMTYPE;
        return 0;
}

int netns_get_owner_id(int fd, uint64_t *ret_owner_id) {
        _cleanup_close_ int owner = -EBADF;
        int type, r;

        r = fd_check_nsfs(fd);
        if (r < 0)
                return r;
        type = ioctl(fd, NS_GET_NSTYPE);
        if (type < 0)
                return -errno;
        if (type != CLONE_NEWNET)
                return -EMEDIUMTYPE;

        owner = ioctl(fd, NS_GET_USERNS);
        if (owner < 0)
                return errno == EPERM ? -EXDEV : -errno;
        return userns_get_id(owner, ret_owner_id);
}

int userns_inspect(int fd, uint64_t parent_id, UsernsInfo *ret) {
        struct stat st;
        UsernsInfo info = {};
        /* Set although the ioctl writes it: NS_GET_OWNER_UID does not encode
         * its argument, so valgrind cannot know the kernel filled it in. */
        uid_t owner = (uid_t) -1;
        int type, r;

        r = fd_check_nsfs(fd);
        if (r < 0)
                return r;

        type = ioctl(fd, NS_GET_NSTYPE);
        if (type < 0)
                return -errno;
        if (type != CLONE_NEWUSER)
                return -EMEDIUMTYPE;

        if (ioctl(fd, NS_GET_OWNER_UID, &owner) < 0)
                return -errno;

        _cleanup_close_ int parent = ioctl(fd, NS_GET_PARENT);
        if (parent < 0)
                /* EPERM: the parent lies outside our own namespace. */
                return errno == EPERM ? -ECHILD : -errno;
        uint64_t actual_parent = 0;
        r = userns_get_id(parent, &actual_parent);
        if (r < 0)
                return r;
        if (actual_parent != parent_id)
                return -ECHILD;

        r = userns_get_id(fd, &info.id);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;

        struct {
                struct file_handle fh;
                /* cppcheck-suppress unusedStructMember ; room for fh's flexible f_handle[] */
                uint8_t space[NS_HANDLE_MAX];
        } h = { .fh.handle_bytes = NS_HANDLE_MAX };
        int mnt_id;
        if (name_to_handle_at(fd, "", &h.fh, &mnt_id, AT_EMPTY_PATH) < 0)
                return -errno;

        info.inode = st.st_ino;
        info.owner = owner;
        info.handle_type = h.fh.handle_type;
        info.handle_len = h.fh.handle_bytes;
        memcpy(info.handle, h.fh.f_handle, h.fh.handle_bytes);
        *ret = info;
        return 0;
}

int userns_open_handle(int nsfs_fd, int handle_type, const uint8_t *handle, unsigned handle_len) {
        struct {
                struct file_handle fh;
                /* cppcheck-suppress unusedStructMember ; room for fh's flexible f_handle[] */
                uint8_t space[NS_HANDLE_MAX];
        } h;
        int fd;

        if (handle_len == 0 || handle_len > NS_HANDLE_MAX)
                return -EINVAL;
        h.fh.handle_bytes = handle_len;
        h.fh.handle_type = handle_type;
        memcpy(h.fh.f_handle, handle, handle_len);

        fd = open_by_handle_at(nsfs_fd, &h.fh, O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int userns_is_alive(int nsfs_fd, int handle_type, const uint8_t *handle, unsigned handle_len) {
        int fd = userns_open_handle(nsfs_fd, handle_type, handle, handle_len);

        /* ESTALE is the kernel saying the namespace is gone: the only proof
         * of death we accept. Anything else leaves the range reserved. */
        if (fd == -ESTALE)
                return 0;
        if (fd < 0)
                return fd;
        close(fd);
        return 1;
}

/*
 * The helper's code runs in a child that may share our memory
 * (clone(CLONE_VM)): there errno and glibc's per-thread state are ours, so
 * it makes raw system calls only and never returns into libc.
 */
#if defined(__x86_64__)
#define HAVE_RAW_SYSCALLS 1
static inline long raw_syscall(long n, long a, long b, long c) {
        long ret;

        __asm__ volatile ("syscall"
                          : "=a" (ret)
                          : "a" (n), "D" (a), "S" (b), "d" (c)
                          : "rcx", "r11", "memory");
        return ret;
}
#elif defined(__aarch64__)
#define HAVE_RAW_SYSCALLS 1
static inline long raw_syscall(long n, long a, long b, long c) {
        register long x8 __asm__("x8") = n;
        register long x0 __asm__("x0") = a;
        register long x1 __asm__("x1") = b;
        register long x2 __asm__("x2") = c;

        __asm__ volatile ("svc 0" : "+r" (x0) : "r" (x8), "r" (x1), "r" (x2) : "memory");
        return x0;
}
#else
#define HAVE_RAW_SYSCALLS 0
static inline long raw_syscall(long n, long a, long b, long c) {
        long r = syscall(n, a, b, c);
        return r < 0 ? -errno : r;
}
#endif

/* 16 KiB would do; the helper's frames are tiny. */
#define HELPER_STACK_SIZE ((size_t) 64 * 1024)

typedef struct HelperArgs {
        int userns_fd;
        int sock;
        pid_t parent;
        HelperTask task;
        bool stop_before_ready;
} HelperArgs;

static _Noreturn void helper_exit(int status) {
        for (;;)
                raw_syscall(SYS_exit, status, 0, 0);
}

static _Noreturn void helper_fail(int sock, long r) {
        int e = (int) -r;

        raw_syscall(SYS_write, sock, (long) &e, sizeof(e));
        helper_exit(EXIT_FAILURE);
}

/* In a mount namespace of the user namespace's own (fsopen() wants
 * CAP_SYS_ADMIN over the mount namespace's owner), a bpffs context: its
 * superblock will belong to this user namespace. The fd goes to the daemon
 * with one byte; then we are done. */
static _Noreturn void helper_make_bpffs(int sock) {
        union {
                struct cmsghdr header;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        char c = 0;
        struct iovec iov = { .iov_base = &c, .iov_len = 1 };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        struct cmsghdr *cm = &control.header;
        long r, fd;

        r = raw_syscall(SYS_unshare, CLONE_NEWNS, 0, 0);
        if (r < 0)
                helper_fail(sock, r);
        fd = raw_syscall(SYS_fsopen, (long) "bpf", FSOPEN_CLOEXEC, 0);
        if (fd < 0)
                helper_fail(sock, fd);

        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        *(int *) (void *) CMSG_DATA(cm) = (int) fd;
        r = raw_syscall(SYS_sendmsg, sock, (long) &mh, 0);
        helper_exit(r == 1 ? EXIT_SUCCESS : EXIT_FAILURE);
}

static int helper_main(void *p) {
        const HelperArgs *a = p;
        char c = 0;
        long r;

        /* Dies with the daemon; and not dumpable, because after setns() the
         * caller holds every capability in our user namespace and could
         * otherwise ptrace us (and this process still carries root's
         * credentials for DAC checks). */
        if (raw_syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0) < 0 ||
            raw_syscall(SYS_getppid, 0, 0, 0) != a->parent)
                helper_exit(EXIT_FAILURE);
        if (raw_syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0) < 0)
                helper_exit(EXIT_FAILURE);

        /* Nothing of the daemon's may reach the caller's namespace, not even
         * its stdio: close every fd but these two, wherever they are. */
        unsigned lo = (unsigned) (a->userns_fd < a->sock ? a->userns_fd : a->sock);
        unsigned hi = (unsigned) (a->userns_fd < a->sock ? a->sock : a->userns_fd);
        if ((lo > 0 && raw_syscall(SYS_close_range, 0, lo - 1, 0) < 0) ||
            (hi > lo + 1 && raw_syscall(SYS_close_range, lo + 1, hi - 1, 0) < 0) ||
            raw_syscall(SYS_close_range, hi + 1, ~0u, 0) < 0)
                helper_exit(EXIT_FAILURE);

        r = raw_syscall(SYS_setns, a->userns_fd, CLONE_NEWUSER, 0);
        if (r < 0)
                helper_fail(a->sock, r);
        raw_syscall(SYS_close, a->userns_fd, 0, 0);

        if (a->stop_before_ready)
                raw_syscall(SYS_kill, raw_syscall(SYS_getpid, 0, 0, 0), SIGSTOP, 0);

        if (a->task == HELPER_MAKE_BPFFS)
                helper_make_bpffs(a->sock);

        if (raw_syscall(SYS_write, a->sock, (long) &c, 1) != 1)
                helper_exit(EXIT_FAILURE);
        /* Wait for the daemon to be done with our /proc entry. */
        raw_syscall(SYS_read, a->sock, (long) &c, 1);
        helper_exit(EXIT_SUCCESS);
}

bool helper_can_share_memory(void) {
        return HAVE_RAW_SYSCALLS;
}

int helper_spawn(int userns_fd, HelperMode mode, HelperTask task, bool stop_before_ready, Helper *ret) {
        _cleanup_close_ int ours = -1, theirs = -1;
        int pair[2], pidfd = -1;
        void *stack = NULL;
        HelperArgs *args;
        pid_t pid;

        if (mode == HELPER_CLONE_VM && !HAVE_RAW_SYSCALLS)
                return -EOPNOTSUPP;

        /* Blocking on their side: the helper waits for us to close ours. */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
                return -errno;
        ours = pair[0];
        theirs = pair[1];
        if (fcntl(ours, F_SETFL, O_NONBLOCK) < 0)
                return -errno;

        /* The arguments live on the helper's own stack, which stays mapped
         * until the helper is reaped: it may read them after we returned. */
        stack = mmap(NULL, HELPER_STACK_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED)
                return -errno;
        args = (HelperArgs *) ((uint8_t *) stack + HELPER_STACK_SIZE - sizeof(HelperArgs));
        *args = (HelperArgs) {
                .userns_fd = userns_fd,
                .sock = theirs,
                .parent = getpid(),
                .task = task,
                .stop_before_ready = stop_before_ready,
        };

        if (mode == HELPER_CLONE_VM) {
                /* Below the arguments, 16-byte aligned. */
                void *top = (void *) (((uintptr_t) args - 64) & ~(uintptr_t) 15);
                pid = clone(helper_main, top, CLONE_VM | (pidfd_supported() ? CLONE_PIDFD : 0) | SIGCHLD,
                            args, &pidfd);
        } else {
                pid = fork();
                if (pid == 0)
                        helper_main(args);
                /* Without pidfds the pid will do: it is our child, and a pid
                 * is not recycled before its parent reaps it. */
                if (pid > 0 && pidfd_supported()) {
                        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
                        if (pidfd < 0) {
                                int r = -errno;
                                kill(pid, SIGKILL);
                                /* Nobody else would reap it. */
                                (void) waitpid(pid, NULL, 0);
                                munmap(stack, HELPER_STACK_SIZE);
                                return r;
                        }
                }
        }
        if (pid < 0) {
                int r = -errno;
                munmap(stack, HELPER_STACK_SIZE);
                return r;
        }

        *ret = (Helper) { .pid = pid, .pidfd = pidfd, .sock = TAKE_FD(ours), .stack = stack };
        return 0;
}

void helper_free_stack(Helper *h) {
        if (h->stack)
                munmap(h->stack, HELPER_STACK_SIZE);
        h->stack = NULL;
}

void helper_kill(Helper *h) {
        if (h->pidfd >= 0)
                (void) syscall(SYS_pidfd_send_signal, h->pidfd, SIGKILL, NULL, 0);
        else if (h->pid > 0)
                (void) kill(h->pid, SIGKILL);
        h->sock = h->sock >= 0 ? (close(h->sock), -1) : -1;
}

int userns_read_maps(int userns_fd, uint64_t timeout_usec, char *uid_map, char *gid_map, size_t size) {
        Helper h;
        struct pollfd p;
        char path[32], c;
        int r;

        r = helper_spawn(userns_fd, HELPER_FORK, HELPER_JOIN, false, &h);
        if (r < 0)
                return r;

        p = (struct pollfd) { .fd = h.sock, .events = POLLIN };
        r = poll(&p, 1, (int) (timeout_usec / 1000));
        if (r == 0)
                r = -ETIMEDOUT;
        else if (r > 0)
                r = recv(h.sock, &c, 1, MSG_DONTWAIT) == 1 ? 0 : -EIO;
        else
                r = -errno;

        if (r >= 0) {
                snprintf(path, sizeof(path), "/proc/%d", (int) h.pid);
                _cleanup_close_ int procfd = open(path, O_DIRECTORY | O_CLOEXEC | O_PATH);
                r = procfd < 0 ? -errno : proc_read_file(procfd, "uid_map", uid_map, size);
                if (r >= 0)
                        r = proc_read_file(procfd, "gid_map", gid_map, size);
        }

        helper_kill(&h);
        (void) waitpid(h.pid, NULL, 0);
        if (h.pidfd >= 0)
                close(h.pidfd);
        helper_free_stack(&h);
        return r < 0 ? r : 0;
}

int proc_read_file(int procfd, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = openat(procfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        size_t n = 0;

        if (fd < 0)
                return -errno;
        while (n + 1 < size) {
                ssize_t k = read(fd, buf + n, size - 1 - n);
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                n += k;
        }
        if (n + 1 >= size)
                return -EFBIG;
        buf[n] = 0;
        return (int) n;
}

int proc_write_file(int procfd, const char *name, const char *text) {
        _cleanup_close_ int fd = openat(procfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        size_t len = strlen(text);
        ssize_t k;

        if (fd < 0)
                return -errno;
        /* The kernel takes a map in exactly one write(). */
        k = write(fd, text, len);
        if (k < 0)
                return -errno;
        if ((size_t) k != len)
                return -EIO;
        return 0;
}

int map_parse(const char *text, MapExtent *ret, int max) {
        int n = 0;
        const char *p = text;

        while (*p) {
                unsigned long a, b, c;
                char *end;

                while (*p == ' ' || *p == '\t' || *p == '\n')
                        p++;
                if (!*p)
                        break;
                if (n >= max)
                        return -EBADMSG;
                errno = 0;
                a = strtoul(p, &end, 10);
                if (end == p)
                        return -EBADMSG;
                p = end;
                b = strtoul(p, &end, 10);
                if (end == p)
                        return -EBADMSG;
                p = end;
                c = strtoul(p, &end, 10);
                if (end == p || errno != 0 || a > UINT32_MAX || b > UINT32_MAX || c > UINT32_MAX)
                        return -EBADMSG;
                p = end;
                ret[n++] = (MapExtent) { .inside = a, .outside = b, .count = c };
        }
        return n;
}
