/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * What does writing the maps of a user namespace cost, with the helper that
 * joins the namespace created by fork() versus clone(CLONE_VM)? Each round:
 * a fresh namespace, a helper that setns()es into it and reports ready, the
 * uid_map and gid_map written through /proc/<helper>, the helper killed and
 * reaped. Run as root: helper-spawn [ROUNDS]
 */

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STACK_SIZE (64 * 1024)

struct helper_args {
        int userns_fd;
        int sock;
};

static int helper_main(void *p) {
        const struct helper_args *a = p;
        char c = 1;

        /* Raw syscalls only: with CLONE_VM errno and glibc's cached thread
         * state belong to the parent. */
        if (syscall(SYS_setns, a->userns_fd, CLONE_NEWUSER) < 0)
                syscall(SYS_exit, 1);
        syscall(SYS_write, a->sock, &c, 1);
        syscall(SYS_read, a->sock, &c, 1);
        syscall(SYS_exit, 0);
        return 0;
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static int write_file(const char *path, const char *text) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ssize_t k;

        if (fd < 0)
                return -errno;
        k = write(fd, text, strlen(text));
        close(fd);
        return k < 0 ? -errno : 0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static int one_round(int use_clone_vm, char *stack, uint64_t *ret_ns) {
        int pair[2], userns_fd;
        pid_t holder, helper;
        char path[64], c;
        uint64_t t0, t1;

        /* The namespace to map, held by a child that waits to be killed. */
        holder = fork();
        if (holder < 0)
                return -errno;
        if (holder == 0) {
                if (unshare(CLONE_NEWUSER) < 0)
                        _exit(1);
                pause();
                _exit(0);
        }
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int) holder);
        /* Wait until the child has unshared. */
        for (int i = 0; i < 1000; i++) {
                char self[64], other[64];
                ssize_t a = readlink("/proc/self/ns/user", self, sizeof(self) - 1);
                ssize_t b = readlink(path, other, sizeof(other) - 1);
                if (a > 0 && b > 0 && (a != b || memcmp(self, other, a) != 0))
                        break;
                usleep(100);
        }
        userns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (userns_fd < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
                return -errno;

        struct helper_args args = { .userns_fd = userns_fd, .sock = pair[1] };
        t0 = now_ns();
        if (use_clone_vm)
                helper = clone(helper_main, stack + STACK_SIZE, CLONE_VM | SIGCHLD, &args);
        else {
                helper = fork();
                if (helper == 0)
                        helper_main(&args);
        }
        if (helper < 0)
                return -errno;
        if (read(pair[0], &c, 1) != 1)
                return -EIO;
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int) helper);
        if (write_file(path, "0 1000000 65536\n") < 0)
                return -EIO;
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int) helper);
        if (write_file(path, "0 1000000 65536\n") < 0)
                return -EIO;
        kill(helper, SIGKILL);
        waitpid(helper, NULL, 0);
        t1 = now_ns();

        close(pair[0]);
        close(pair[1]);
        close(userns_fd);
        kill(holder, SIGKILL);
        waitpid(holder, NULL, 0);
        *ret_ns = t1 - t0;
        return 0;
}

int main(int argc, char *argv[]) {
        int rounds = argc > 1 ? atoi(argv[1]) : 1000;
        static const char *const names[] = { "fork", "clone_vm" };
        uint64_t *samples = calloc(rounds, sizeof(uint64_t));
        char *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);

        if (!samples || stack == MAP_FAILED || rounds <= 0)
                return 1;
        printf("[");
        for (int mode = 0; mode < 2; mode++) {
                for (int i = 0; i < rounds; i++) {
                        int r = one_round(mode, stack, &samples[i]);
                        if (r < 0) {
                                fprintf(stderr, "%s round %d failed: %s\n", names[mode], i, strerror(-r));
                                return 1;
                        }
                }
                qsort(samples, rounds, sizeof(uint64_t), cmp_u64);
                printf("%s{\"helper\": \"%s\", \"rounds\": %d, \"median_us\": %.1f, \"p99_us\": %.1f}",
                       mode ? ", " : "", names[mode], rounds,
                       samples[rounds / 2] / 1000.0, samples[(rounds * 99) / 100] / 1000.0);
        }
        printf("]\n");
        return 0;
}
