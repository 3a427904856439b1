/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A sandbox tool on top of libnsres, using nothing but <nsres.h>:
 *
 *     nsres-example --name NAME [--net] [--cgroup DIR] -- COMMAND...
 *
 * makes an empty user namespace (with --net a network namespace of its own),
 * has nsresd map a 64K range into it (and add a veth, and a cgroup below DIR),
 * then runs COMMAND as root of that namespace. Build it with
 *
 *     cc nsres-example.c $(pkg-config --cflags --libs libnsres)
 *
 * It prints what it got on stderr, one "key=value" per line. Exit status:
 * COMMAND's, 3 if NAME is taken, 1 for any other failure.
 */

/* setns(), unshare(), setresuid(). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nsres.h>

#define EXIT_NAME_TAKEN 3

/* In the child: become root of the namespace, inside the veth's network
 * namespace and the delegated cgroup, then run the command. The namespaces'
 * owner may join them: it holds every capability in them. */
static _Noreturn void run_inside(int userns_fd, int netns_fd, int cgroup_fd, const char *cgroup_leaf,
                                 char **command) {
        const char *step;

        step = "join the user namespace";
        if (setns(userns_fd, CLONE_NEWUSER) < 0)
                goto fail;
        step = "join the network namespace";
        if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0)
                goto fail;
        /* The leaf is the namespace's now: we may move ourselves into it. */
        if (cgroup_leaf) {
                char procs[4096];
                int fd;

                step = "move into the delegated cgroup";
                snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup_leaf);
                fd = openat(cgroup_fd, procs, O_WRONLY | O_CLOEXEC);
                if (fd < 0 || write(fd, "0", 1) != 1)
                        goto fail;
                close(fd);
        }
        step = "make a mount namespace";
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                goto fail;
        /* The range is the namespace's own, so nsresd leaves setgroups()
         * allowed: drop the caller's groups, they are not mapped. */
        step = "become root of the namespace";
        if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                goto fail;

        execvp(command[0], command);
        step = "execute the command";
fail:
        fprintf(stderr, "nsres-example: Failed to %s: %s\n", step, strerror(errno));
        _exit(EXIT_FAILURE);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "name",   required_argument, NULL, 'n' },
                { "net",    no_argument,       NULL, 'N' },
                { "cgroup", required_argument, NULL, 'c' },
                {}
        };
        NsresRequest req = { .size = 65536, .cgroup_fd = -1 };
        NsresResult res = {};
        NsresClient *client = NULL;
        int userns_fd = -1, netns_fd = -1, status, c, r;
        const char *cgroup_leaf = NULL;
        pid_t pid;

        while ((c = getopt_long(argc, argv, "+", options, NULL)) >= 0)
                switch (c) {
                case 'n':
                        req.name = optarg;
                        break;
                case 'N':
                        req.network = true;
                        break;
                case 'c':
                        req.cgroup = true;
                        req.cgroup_fd = open(optarg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (req.cgroup_fd < 0) {
                                fprintf(stderr, "nsres-example: Failed to open '%s': %m\n", optarg);
                                return EXIT_FAILURE;
                        }
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (!req.name || optind >= argc) {
                fprintf(stderr, "Usage: %s --name NAME [--net] [--cgroup DIR] -- COMMAND...\n", argv[0]);
                return EXIT_FAILURE;
        }

        r = nsres_client_new(&client);
        if (r < 0) {
                fprintf(stderr, "nsres-example: Failed to connect to the system bus: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        r = nsres_userns_create(req.network ? NSRES_CREATE_NETNS : 0, &userns_fd, &netns_fd);
        if (r < 0) {
                fprintf(stderr, "nsres-example: Failed to create a user namespace: %s\n", strerror(-r));
                nsres_client_free(client);
                return EXIT_FAILURE;
        }

        r = nsres_setup(client, userns_fd, req.network ? netns_fd : -1, &req, &res);
        if (r == -EREMOTEIO) {
                /* The service's message is for the user; the type is for us. */
                fprintf(stderr, "nsres-example: %s (%s)\n", nsres_client_error_message(client),
                        nsres_client_error_name(client));
                status = nsres_client_error(client) == NSRES_ERROR_NAME_EXISTS ? EXIT_NAME_TAKEN : EXIT_FAILURE;
                nsres_client_free(client);
                return status;
        }
        if (r < 0) {
                fprintf(stderr, "nsres-example: Failed to set up the namespace: %s\n", strerror(-r));
                nsres_client_free(client);
                return EXIT_FAILURE;
        }

        fprintf(stderr, "name=%s\nuid_start=%u\nobject=%s\n", res.allocation.name, res.allocation.uid_start,
                res.allocation.object_path);
        if (res.host_ifname)
                fprintf(stderr, "host_ifname=%s\nnamespace_ifname=%s\n", res.host_ifname, res.namespace_ifname);
        if (res.cgroup_path) {
                fprintf(stderr, "cgroup=%s\n", res.cgroup_path);
                /* CREATE_CHILD makes the leaf right in the directory we gave. */
                cgroup_leaf = strrchr(res.cgroup_path, '/') + 1;
        }
        fflush(stderr);

        pid = fork();
        if (pid < 0) {
                fprintf(stderr, "nsres-example: Failed to fork: %m\n");
                nsres_result_done(&res);
                nsres_client_free(client);
                return EXIT_FAILURE;
        }
        if (pid == 0)
                run_inside(userns_fd, netns_fd, req.cgroup_fd, cgroup_leaf, argv + optind);

        /* From here on only the child holds the namespaces: when it is gone,
         * so are they, and nsresd releases the range. */
        close(userns_fd);
        if (netns_fd >= 0)
                close(netns_fd);
        if (req.cgroup_fd >= 0)
                close(req.cgroup_fd);
        nsres_result_done(&res);
        nsres_client_free(client);

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return EXIT_FAILURE;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
