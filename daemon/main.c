/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <getopt.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "build-config.h"
#include "config.h"
#include "log-journal.h"
#include "log.h"
#include "manager.h"
#include "state.h"
#include "util.h"

static const char *arg_config = NSRESD_SYSCONFDIR "/nsresd/nsresd.conf";
static const char *arg_state_dir = NSRESD_STATE_DIR;
static const char *arg_bpf_dir = "/sys/fs/bpf/nsresd";
static bool arg_cleanup;
static bool arg_force;

static void help(void) {
        printf("Usage: nsresd [OPTIONS]\n"
               "Hand out transient UID/GID ranges for user namespaces over D-Bus.\n\n"
               "  -h --help            Show this help\n"
               "     --version         Show the version\n"
               "     --config=PATH     Configuration file (default %s)\n"
               "     --state-dir=DIR   Registry and NSS index (default %s)\n"
               "     --bpf-dir=DIR     Where BPF objects are pinned (default %s)\n"
               "  -v --verbose         Log debug messages\n"
               "     --cleanup         Remove the BPF pins under the bpf directory and the state\n"
               "                       directory's contents (for package removal), then exit;\n"
               "                       no bus is used. Refused while an nsresd runs on the state\n"
               "                       directory (it holds an flock() on it) and while a namespace\n"
               "                       of the registry is alive or cannot be proven dead\n"
               "     --force           With --cleanup: remove them even so\n"
               "\nSIGHUP, or the Reload method, reads the configuration again.\n",
               arg_config, arg_state_dir, arg_bpf_dir);
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_CONFIG, ARG_STATE_DIR, ARG_BPF_DIR, ARG_CLEANUP, ARG_FORCE };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "bpf-dir", required_argument, NULL, ARG_BPF_DIR },
                { "verbose", no_argument, NULL, 'v' },
                { "cleanup", no_argument, NULL, ARG_CLEANUP },
                { "force", no_argument, NULL, ARG_FORCE },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "hv", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        puts("nsresd " NSRESD_VERSION);
                        return 0;
                case ARG_CONFIG:
                        arg_config = optarg;
                        break;
                case ARG_STATE_DIR:
                        arg_state_dir = optarg;
                        break;
                case ARG_BPF_DIR:
                        arg_bpf_dir = optarg;
                        break;
                case 'v':
                        log_set_max_level(LOG_DEBUG);
                        break;
                case ARG_CLEANUP:
                        arg_cleanup = true;
                        break;
                case ARG_FORCE:
                        arg_force = true;
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "nsresd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        if (arg_force && !arg_cleanup) {
                fprintf(stderr, "nsresd: --force only goes with --cleanup\n");
                return -EINVAL;
        }
        return 1;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) userdata;
        log_info("Received %s, exiting", strsignal((int) si->ssi_signo));
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        struct timespec ts;

        (void) s;
        (void) si;
        /* Type=notify-reload (systemd 253+) wants the time with RELOADING=1,
         * to tell this reload from an earlier one; older ones ignore it. */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        (void) sd_notifyf(false, "RELOADING=1\nSTATUS=Reloading the configuration\nMONOTONIC_USEC=%llu",
                          (unsigned long long) ts.tv_sec * 1000000ULL + (unsigned long long) ts.tv_nsec / 1000ULL);
        (void) manager_reload(m, NULL);
        (void) sd_notify(false, "READY=1\nSTATUS=Handing out user namespace ranges");
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_free_ char *config_error = NULL;
        sd_event *event = NULL;
        Manager *m = NULL;
        Config config;
        sigset_t mask;
        int r;

        log_setup();
        if (log_stderr_is_journal())
                log_set_journal_sink(log_journal_send);
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        if (geteuid() != 0) {
                log_error("nsresd writes uid maps for other users and must run as root");
                return EXIT_FAILURE;
        }

        if (arg_cleanup)
                return state_cleanup(arg_state_dir, arg_bpf_dir, arg_force) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        config_defaults(&config);
        r = config_load(&config, arg_config, &config_error);
        if (r < 0) {
                log_error("Bad configuration: %s", config_error ? config_error : strerror(-r));
                return EXIT_FAILURE;
        }

        /* Signals arrive through the event loop; SIGCHLD must be blocked for
         * child sources. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        /* A client that disconnects mid-reply must not kill us. */
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&event);
        if (r < 0) {
                log_error_errno(r, "Failed to create the event loop: %m");
                goto finish;
        }
        r = sd_event_add_signal(event, NULL, SIGTERM, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, on_exit_signal, NULL);
        if (r < 0) {
                log_error_errno(r, "Failed to handle signals: %m");
                goto finish;
        }

        r = manager_new(event, &config, &(ManagerPaths) {
                                .config = arg_config,
                                .state_dir = arg_state_dir,
                                .bpf_dir = arg_bpf_dir,
                        }, &m);
        if (r < 0) {
                log_error_errno(r, "Failed to set up: %m");
                goto finish;
        }
        r = sd_event_add_signal(event, NULL, SIGHUP, on_reload_signal, m);
        if (r < 0) {
                log_error_errno(r, "Failed to handle SIGHUP: %m");
                goto finish;
        }
        r = manager_start(m);
        if (r < 0)
                goto finish;

        (void) sd_notify(false, "READY=1\nSTATUS=Handing out user namespace ranges");
        r = sd_event_loop(event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        (void) sd_notify(false, "STOPPING=1");

finish:
        manager_free(m);
        sd_event_unref(event);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
