/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* nsresctl bwrap: bubblewrap as distributions ship it (not setuid), its
 * sandbox given a transient 64K range instead of the caller's one UID. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "bwrap.h"
#include "nsres.h"
#include "nsresctl.h"
#include "util.h"

#define BWRAP_RANGE_SIZE 65536U

/* bwrap reports the child's pid and a few namespace ids: a report longer
 * than this is not bwrap's. */
#define BWRAP_INFO_MAX 4096

/* bwrap takes the last of an option given twice: the user's would take the
 * place of the fds we pass, and bwrap and we would wait for each other. */
static const char *const reserved_options[] = { "--info-fd", "--userns-block-fd" };

static void json_tokener_freep(struct json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

static void json_object_putp(struct json_object **j) {
        json_object_put(*j);
}

static void nsres_client_freep(NsresClient **c) {
        nsres_client_free(*c);
}

/* bwrap's report on --info-fd: a JSON object with "child-pid" (and, in
 * newer versions, more keys), written in one go or not. -ENODATA if bwrap
 * closed the fd without a word, which it does only when it exits first. */
static int read_child_pid(int fd, pid_t *ret_pid) {
        _cleanup_(json_tokener_freep) struct json_tokener *tokener = json_tokener_new();
        _cleanup_(json_object_putp) struct json_object *info = NULL;
        struct json_object *pid;
        size_t total = 0;
        int64_t v;

        if (!tokener)
                return -ENOMEM;

        while (!info) {
                char buf[512];
                ssize_t n;

                n = read(fd, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return total == 0 ? -ENODATA : -EBADMSG;
                total += (size_t) n;
                if (total > BWRAP_INFO_MAX)
                        return -EBADMSG;

                info = json_tokener_parse_ex(tokener, buf, (int) n);
                if (!info && json_tokener_get_error(tokener) != json_tokener_continue)
                        return -EBADMSG;
        }

        if (!json_object_is_type(info, json_type_object) ||
            !json_object_object_get_ex(info, "child-pid", &pid) || !json_object_is_type(pid, json_type_int))
                return -EBADMSG;
        v = json_object_get_int64(pid);
        if (v <= 0 || v > INT32_MAX)
                return -EBADMSG;

        *ret_pid = (pid_t) v;
        return 0;
}

/* The child's pidfd, taken before its namespace is opened by pid: if the
 * pidfd still refers to a live process afterwards, the pid was not reused
 * in between and the namespace is the child's. */
static int open_sandbox_userns(pid_t pid, int *ret_pidfd, int *ret_userns_fd) {
        _cleanup_close_ int pidfd = -1, userns_fd = -1;
        struct stat ours, theirs;
        char path[64];

        pidfd = pidfd_open(pid, 0);
        if (pidfd < 0) {
                log_error_msg("Failed to open bwrap's sandbox process %d: %m", (int) pid);
                return -errno;
        }

        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int) pid);
        userns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (userns_fd < 0) {
                log_error_msg("Failed to open %s: %m", path);
                return -errno;
        }
        if (pidfd_send_signal(pidfd, 0, NULL, 0) < 0) {
                log_error_msg("bwrap's sandbox process %d exited before its namespace got a range.", (int) pid);
                return -ESRCH;
        }

        /* Had bwrap not made a namespace, ours would get the range's maps
         * requested; the service refuses that too, but says it less plainly. */
        if (fstat(userns_fd, &theirs) < 0 || stat("/proc/self/ns/user", &ours) < 0) {
                log_error_msg("Failed to compare bwrap's user namespace with our own: %m");
                return -errno;
        }
        if (ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino) {
                log_error_msg("bwrap did not create a user namespace of its own: is it installed setuid?");
                return -EBADE;
        }

        *ret_pidfd = TAKE_FD(pidfd);
        *ret_userns_fd = TAKE_FD(userns_fd);
        return 0;
}

static _Noreturn void exec_bwrap(char **argv, int block_fd, int info_fd, const sigset_t *saved_mask) {
        /* Only bwrap gets these two: everything else of ours is
         * close-on-exec. */
        if (fcntl(block_fd, F_SETFD, 0) < 0 || fcntl(info_fd, F_SETFD, 0) < 0) {
                log_error_msg("Failed to pass fds to bwrap: %m");
                _exit(EXIT_FAILURE);
        }
        if (sigprocmask(SIG_SETMASK, saved_mask, NULL) < 0) {
                log_error_msg("Failed to unblock signals for bwrap: %m");
                _exit(EXIT_FAILURE);
        }

        execvp(argv[0], argv);
        log_error_msg("Failed to execute '%s': %m", argv[0]);
        _exit(errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE);
}

static int reap(pid_t pid) {
        int status;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return EXIT_FAILURE;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return EXIT_FAILURE;
}

/* Before bwrap lets its child go on: the child is killed first, so that
 * the end of file bwrap then reads on the block fd cannot let it run, and
 * bwrap reaps it and exits. Killing bwrap instead would leave the child
 * waiting for bwrap forever, holding the namespace. */
static void stop_sandbox(pid_t bwrap, int child_pidfd, int *block_fd) {
        if (child_pidfd >= 0)
                (void) pidfd_send_signal(child_pidfd, SIGKILL, NULL, 0);
        else
                (void) kill(bwrap, SIGKILL);
        (void) close(TAKE_FD(*block_fd));
        (void) reap(bwrap);
}

static int unblock_bwrap(int *block_fd) {
        ssize_t n;

        while ((n = write(*block_fd, "1", 1)) < 0)
                if (errno != EINTR)
                        return -errno;
        (void) close(TAKE_FD(*block_fd));
        return 0;
}

/* argv of bwrap: the fds it reports on and waits on, then the user's. */
static char **bwrap_argv(const char *block_fd, const char *info_fd, char **args) {
        const char *ours[] = { "bwrap", "--unshare-user", "--userns-block-fd", block_fd, "--info-fd", info_fd };
        size_t n = 0;
        char **argv;

        while (args[n])
                n++;
        argv = calloc(ELEMENTSOF(ours) + n + 1, sizeof(char *));
        if (!argv)
                return NULL;
        memcpy(argv, ours, sizeof(ours));
        memcpy(argv + ELEMENTSOF(ours), args, n * sizeof(char *));
        return argv;
}

static void log_allocation(const NsresAllocation *allocation) {
        fprintf(stderr,
                "nsresctl: Allocated '%s': UIDs %" PRIu32 "-%" PRIu32 ", GIDs %" PRIu32 "-%" PRIu32
                ", as 0-%u inside, your UID/GID as %u, %s\n",
                allocation->name, allocation->uid_start, allocation->uid_start + (BWRAP_RANGE_SIZE - 1),
                allocation->gid_start, allocation->gid_start + (BWRAP_RANGE_SIZE - 1), BWRAP_RANGE_SIZE - 1,
                BWRAP_RANGE_SIZE, allocation->object_path);
}

int bwrap_run(const BwrapArgs *a) {
        static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
        _cleanup_close_ int block_r = -1, block_w = -1, info_r = -1, info_w = -1, child_pidfd = -1;
        _cleanup_(nsres_allocation_done) NsresAllocation allocation = {};
        _cleanup_(nsres_client_freep) NsresClient *client = NULL;
        _cleanup_free_ char **argv = NULL;
        char block_fd_text[16], info_fd_text[16];
        sigset_t mask, saved_mask;
        pid_t bwrap, child = 0;
        int fds[2], r, status;

        for (char **arg = a->args; *arg; arg++)
                for (size_t i = 0; i < ELEMENTSOF(reserved_options); i++)
                        if (strcmp(*arg, reserved_options[i]) == 0) {
                                log_error_msg("'%s' is nsresctl's to pass to bwrap; remove it from the "
                                              "arguments.", *arg);
                                return EXIT_USAGE;
                        }

        if (pipe2(fds, O_CLOEXEC) < 0) {
                log_error_msg("Failed to create pipe: %m");
                return EXIT_FAILURE;
        }
        block_r = fds[0];
        block_w = fds[1];
        if (pipe2(fds, O_CLOEXEC) < 0) {
                log_error_msg("Failed to create pipe: %m");
                return EXIT_FAILURE;
        }
        info_r = fds[0];
        info_w = fds[1];

        snprintf(block_fd_text, sizeof(block_fd_text), "%d", block_r);
        snprintf(info_fd_text, sizeof(info_fd_text), "%d", info_w);
        argv = bwrap_argv(block_fd_text, info_fd_text, a->args);
        if (!argv) {
                log_error_msg("Out of memory.");
                return EXIT_FAILURE;
        }

        /* Blocked before the fork, so that no signal is lost before we
         * relay them; bwrap gets the mask we had. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        for (size_t i = 0; i < ELEMENTSOF(forwarded); i++)
                sigaddset(&mask, forwarded[i]);
        if (sigprocmask(SIG_BLOCK, &mask, &saved_mask) < 0) {
                log_error_msg("Failed to block signals: %m");
                return EXIT_FAILURE;
        }

        fflush(stdout);
        fflush(stderr);

        bwrap = fork();
        if (bwrap < 0) {
                log_error_msg("Failed to fork: %m");
                return EXIT_FAILURE;
        }
        if (bwrap == 0)
                exec_bwrap(argv, block_r, info_w, &saved_mask);

        /* The end of file on the info fd must mean that bwrap is gone. */
        (void) close(TAKE_FD(block_r));
        (void) close(TAKE_FD(info_w));
        /* bwrap may be gone by the time we unblock it. */
        signal(SIGPIPE, SIG_IGN);

        r = read_child_pid(info_r, &child);
        (void) close(TAKE_FD(info_r));
        if (r == -ENODATA) {
                /* bwrap exited before making a sandbox: it refused its
                 * arguments or could not be executed, and said why. */
                (void) close(TAKE_FD(block_w));
                return reap(bwrap);
        }
        if (r < 0) {
                log_error_msg("Failed to read bwrap's report of its sandbox process: %s", strerror(-r));
                stop_sandbox(bwrap, -1, &block_w);
                return EXIT_FAILURE;
        }

        {
                /* Closed before we wait: held, it would keep the namespace
                 * and its range alive after the sandbox ends. */
                _cleanup_close_ int userns_fd = -1;

                r = open_sandbox_userns(child, &child_pidfd, &userns_fd);
                if (r >= 0) {
                        r = nsres_client_new(&client);
                        if (r < 0)
                                log_error_msg("Failed to connect to the system bus: %s", strerror(-r));
                }
                if (r >= 0) {
                        nsres_client_set_interactive(client, a->ask_password);
                        /* bwrap keeps running as the caller's UID: unmapped, it
                         * could not set up the sandbox. */
                        r = nsres_allocate(client, userns_fd, a->name, BWRAP_RANGE_SIZE, 0,
                                           NSRES_MAP_CALLER | (a->mangle_name ? NSRES_MANGLE_NAME : 0),
                                           &allocation);
                        if (r < 0)
                                log_client_error(client, r, "Failed to allocate a user range");
                }
                if (r < 0) {
                        stop_sandbox(bwrap, child_pidfd, &block_w);
                        return EXIT_FAILURE;
                }
        }

        if (a->verbose)
                log_allocation(&allocation);

        r = unblock_bwrap(&block_w);
        if (r < 0) {
                log_error_msg("Failed to let bwrap go on: %s", strerror(-r));
                stop_sandbox(bwrap, child_pidfd, &block_w);
                return EXIT_FAILURE;
        }

        status = run_wait_child(bwrap, &mask);

        /* A child that bwrap, killed before it let it go on, never released
         * would wait forever, holding the namespace and its range. After
         * bwrap's normal exit it is gone already. */
        (void) pidfd_send_signal(child_pidfd, SIGKILL, NULL, 0);
        return status;
}
