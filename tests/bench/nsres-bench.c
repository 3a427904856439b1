/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * End-to-end benchmark client for nsresd. It talks to the daemon over the
 * system bus (DBUS_SYSTEM_BUS_ADDRESS honoured) exactly as any unprivileged
 * client would: it creates a fresh, empty user namespace, passes its fd to
 * AllocateUserRange and closes it again, so the namespace dies and the daemon
 * has to free the range.
 *
 *   nsres-bench latency N             N sequential calls
 *   nsres-bench throughput N C        N calls spread over C clients
 *   nsres-bench teardown N            last process exit → UserNamespaceRemoved
 *   nsres-bench cgroup N PATH         AddControlGroupToUserNamespace (CREATE_CHILD
 *                                     in the cgroup PATH), one fresh namespace each
 *   nsres-bench network N             AddNetworkToUserNamespace into a network
 *                                     namespace of each fresh user namespace
 *   nsres-bench newuidmap N UID GID   the setuid helpers, for comparison
 *   nsres-bench soak SECONDS ROLE [CGROUP]
 *                                     one client of a soak: a mix of every
 *                                     call ("mixed") or holding namespaces up
 *                                     to the per-owner limit ("hoard")
 *
 * One JSON object per run goes to stdout; D-Bus errors are counted and the
 * first few are printed to stderr.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#define NSRES_SERVICE "org.freedesktop.NamespaceResource1"
#define NSRES_PATH "/org/freedesktop/NamespaceResource1"
#define NSRES_MANAGER "org.freedesktop.NamespaceResource1.Manager"

#define RANGE_SIZE UINT32_C(65536)
#define ADD_CGROUP_CREATE_CHILD UINT64_C(1)
#define CALL_TIMEOUT_USEC (10 * UINT64_C(1000000))
#define TEARDOWN_TIMEOUT_NSEC (5 * INT64_C(1000000000))
#define ERRORS_SHOWN 5
#define MAX_CALLS 1000000u
#define MAX_CLIENTS 256u
/* Enough for the child that only opens /proc/self/ns/user and exits. */
#define CHILD_STACK_SIZE (64 * 1024)

#define _cleanup_(f) __attribute__((cleanup(f)))

static const char *arg_prefix = "b";
static bool arg_samples = false;
static atomic_uint errors_shown;

static int64_t now_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

static double nsec_to_ms(int64_t nsec) {
        return (double) nsec / 1e6;
}

static void closep(int *fd) {
        if (*fd >= 0)
                (void) close(*fd);
}

static int safe_close(int fd) {
        if (fd >= 0)
                (void) close(fd);
        return -EBADF;
}

static void freep(void *p) {
        free(*(void **) p);
}

static void report_error(const char *what, const char *name, const sd_bus_error *error, int r) {
        unsigned n = atomic_fetch_add(&errors_shown, 1);

        if (n < ERRORS_SHOWN)
                fprintf(stderr, "%s '%s' failed: %s: %s\n", what, name,
                        error && error->name ? error->name : "errno",
                        error && error->message ? error->message : strerror(-r));
        else if (n == ERRORS_SHOWN)
                fprintf(stderr, "(further errors are counted, not shown)\n");
}

/* ---- user namespaces ---------------------------------------------------- */

struct userns_child {
        int fd;
        int error;
};

static int userns_child_main(void *userdata) {
        struct userns_child *c = userdata;
        int fd;

        /* CLONE_FILES: the fd lands in the parent's table; CLONE_VM: so does
         * the result. The parent is suspended (CLONE_VFORK) until we exit. */
        fd = open("/proc/self/ns/user", O_RDONLY|O_CLOEXEC);
        if (fd < 0)
                c->error = errno;
        else
                c->fd = fd;
        _exit(0);
}

/* A new empty user namespace, held only by the returned fd. Cheaper than
 * fork()+unshare(): the child shares memory and fd table, so the fd needs no
 * passing back and nothing is copied. It runs on a buffer in this frame, which
 * is safe because CLONE_VFORK suspends us until the child has exited. */
static int userns_new(int *ret_fd) {
        _Alignas(16) char stack[CHILD_STACK_SIZE];
        struct userns_child c = { .fd = -1 };
        pid_t pid;

        pid = clone(userns_child_main, stack + sizeof(stack),
                    CLONE_VM|CLONE_VFORK|CLONE_FILES|CLONE_NEWUSER|SIGCHLD, &c);
        if (pid < 0)
                return -errno;
        while (waitpid(pid, NULL, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (c.fd < 0)
                return -(c.error ?: EIO);

        *ret_fd = c.fd;
        return 0;
}

/* ---- the call ----------------------------------------------------------- */

/* Returns 1 on success, 0 on a D-Bus error (counted by the caller), negative
 * errno when the client itself failed. Only sd_bus_call() is timed. The
 * message holds its own copy of the fd; it is released before returning, so
 * once the caller closes userns_fd nothing keeps the namespace alive. */
static int allocate(sd_bus *bus, const char *name, int userns_fd, int64_t *ret_nsec, char **ret_path) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path, *final_name;
        uint32_t uid_start, gid_start;
        int64_t t0, t1;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, NSRES_SERVICE, NSRES_PATH, NSRES_MANAGER,
                                           "AllocateUserRange");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "suuht", name, RANGE_SIZE, UINT32_C(0), userns_fd, UINT64_C(0));
        if (r < 0)
                return r;

        t0 = now_nsec();
        r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        t1 = now_nsec();
        if (r < 0) {
                if (!sd_bus_error_is_set(&error))
                        return r;
                report_error("AllocateUserRange", name, &error, r);
                return 0;
        }

        r = sd_bus_message_read(reply, "osuu", &path, &final_name, &uid_start, &gid_start);
        if (r < 0)
                return r;

        if (ret_path) {
                *ret_path = strdup(path);
                if (!*ret_path)
                        return -ENOMEM;
        }
        *ret_nsec = t1 - t0;
        return 1;
}

/* ---- statistics --------------------------------------------------------- */

static int compare_int64(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

        return (x > y) - (x < y);
}

struct stats {
        double median_ms, p99_ms, mean_ms, min_ms, max_ms;
};

/* Sorts samples in place. p99 is the nearest-rank value: the smallest sample
 * that at least 99% of the samples do not exceed. */
static bool stats_compute(int64_t *samples, size_t n, struct stats *ret) {
        double sum = 0;
        size_t rank;

        if (n == 0)
                return false;

        qsort(samples, n, sizeof(int64_t), compare_int64);
        for (size_t i = 0; i < n; i++)
                sum += (double) samples[i];

        rank = (size_t) ceil(0.99 * (double) n);
        *ret = (struct stats) {
                .median_ms = n % 2 ? nsec_to_ms(samples[n / 2])
                                   : (nsec_to_ms(samples[n / 2 - 1]) + nsec_to_ms(samples[n / 2])) / 2,
                .p99_ms = nsec_to_ms(samples[rank - 1]),
                .mean_ms = sum / (double) n / 1e6,
                .min_ms = nsec_to_ms(samples[0]),
                .max_ms = nsec_to_ms(samples[n - 1]),
        };
        return true;
}

static void print_stats_fields(int64_t *samples, size_t n) {
        struct stats s;

        if (!stats_compute(samples, n, &s)) {
                printf("\"median_ms\":null,\"p99_ms\":null,\"mean_ms\":null,\"min_ms\":null,\"max_ms\":null");
                return;
        }
        printf("\"median_ms\":%.4f,\"p99_ms\":%.4f,\"mean_ms\":%.4f,\"min_ms\":%.4f,\"max_ms\":%.4f",
               s.median_ms, s.p99_ms, s.mean_ms, s.min_ms, s.max_ms);
        if (arg_samples) {
                printf(",\"samples_ms\":[");
                for (size_t i = 0; i < n; i++)
                        printf("%s%.4f", i > 0 ? "," : "", nsec_to_ms(samples[i]));
                printf("]");
        }
}

/* ---- modes -------------------------------------------------------------- */

static int bus_connect(sd_bus **ret) {
        int r;

        r = sd_bus_open_system(ret);
        if (r < 0)
                fprintf(stderr, "Failed to connect to the system bus: %s\n", strerror(-r));
        return r;
}

static int run_latency(unsigned calls) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(freep) int64_t *samples = NULL, *create = NULL;
        struct stats s;
        size_t ok = 0;
        int64_t start, wall;
        int r;

        samples = calloc(calls, sizeof(int64_t));
        create = calloc(calls, sizeof(int64_t));
        if (!samples || !create)
                return -ENOMEM;

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        start = now_nsec();
        for (unsigned k = 0; k < calls; k++) {
                _cleanup_(closep) int fd = -EBADF;
                char name[32];
                int64_t t0 = now_nsec();

                r = userns_new(&fd);
                if (r < 0) {
                        fprintf(stderr, "Failed to create a user namespace: %s\n", strerror(-r));
                        return r;
                }
                create[k] = now_nsec() - t0;

                (void) snprintf(name, sizeof(name), "%s%u", arg_prefix, k);
                r = allocate(bus, name, fd, &samples[ok], NULL);
                if (r < 0) {
                        fprintf(stderr, "AllocateUserRange '%s' failed in the client: %s\n", name, strerror(-r));
                        return r;
                }
                if (r > 0)
                        ok++;
        }
        wall = now_nsec() - start;

        printf("{\"mode\":\"latency\",\"calls\":%u,\"errors\":%zu,", calls, calls - ok);
        print_stats_fields(samples, ok);
        printf(",\"per_sec\":%.1f,\"wall_s\":%.3f", (double) ok / ((double) wall / 1e9), (double) wall / 1e9);
        if (stats_compute(create, calls, &s))
                printf(",\"userns_create_median_ms\":%.4f", s.median_ms);
        printf("}\n");
        return 0;
}

struct throughput_run {
        unsigned calls;
        atomic_uint next;
        int64_t *samples;           /* indexed by call number; -1: the call failed */

        /* Start gate: the clock starts once every client is connected. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned connected;
        bool go;
};

struct throughput_client {
        struct throughput_run *run;
        int result;
};

static void *throughput_client_main(void *userdata) {
        struct throughput_client *client = userdata;
        struct throughput_run *run = client->run;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = bus_connect(&bus);

        (void) pthread_mutex_lock(&run->lock);
        run->connected++;
        (void) pthread_cond_broadcast(&run->cond);
        while (!run->go)
                (void) pthread_cond_wait(&run->cond, &run->lock);
        (void) pthread_mutex_unlock(&run->lock);

        if (r < 0) {
                client->result = r;
                return NULL;
        }

        for (;;) {
                _cleanup_(closep) int fd = -EBADF;
                unsigned k = atomic_fetch_add(&run->next, 1);
                char name[32];

                if (k >= run->calls)
                        break;

                r = userns_new(&fd);
                if (r < 0) {
                        fprintf(stderr, "Failed to create a user namespace: %s\n", strerror(-r));
                        client->result = r;
                        return NULL;
                }

                (void) snprintf(name, sizeof(name), "%s%u", arg_prefix, k);
                run->samples[k] = -1;
                r = allocate(bus, name, fd, &run->samples[k], NULL);
                if (r < 0) {
                        fprintf(stderr, "AllocateUserRange '%s' failed in the client: %s\n", name, strerror(-r));
                        client->result = r;
                        return NULL;
                }
        }
        client->result = 0;
        return NULL;
}

static int run_throughput(unsigned calls, unsigned n_clients) {
        struct throughput_run run = {
                .calls = calls,
                .lock = PTHREAD_MUTEX_INITIALIZER,
                .cond = PTHREAD_COND_INITIALIZER,
        };
        _cleanup_(freep) struct throughput_client *clients = NULL;
        _cleanup_(freep) pthread_t *threads = NULL;
        _cleanup_(freep) int64_t *samples = NULL;
        unsigned started = 0;
        size_t ok = 0;
        int64_t start, wall;
        int r = 0;

        samples = calloc(calls, sizeof(int64_t));
        clients = calloc(n_clients, sizeof(struct throughput_client));
        threads = calloc(n_clients, sizeof(pthread_t));
        if (!samples || !clients || !threads)
                return -ENOMEM;
        run.samples = samples;

        for (; started < n_clients; started++) {
                clients[started].run = &run;
                r = -pthread_create(&threads[started], NULL, throughput_client_main, &clients[started]);
                if (r < 0) {
                        fprintf(stderr, "Failed to start client thread: %s\n", strerror(-r));
                        /* Release the clients that did start without work. */
                        atomic_store(&run.next, calls);
                        break;
                }
        }

        (void) pthread_mutex_lock(&run.lock);
        while (run.connected < started)
                (void) pthread_cond_wait(&run.cond, &run.lock);
        run.go = true;
        (void) pthread_cond_broadcast(&run.cond);
        (void) pthread_mutex_unlock(&run.lock);
        start = now_nsec();

        for (unsigned i = 0; i < started; i++)
                (void) pthread_join(threads[i], NULL);
        wall = now_nsec() - start;

        if (r < 0)
                return r;
        for (unsigned i = 0; i < n_clients; i++)
                if (clients[i].result < 0)
                        return clients[i].result;

        for (unsigned k = 0; k < calls; k++)
                if (samples[k] >= 0)
                        samples[ok++] = samples[k];

        printf("{\"mode\":\"throughput\",\"calls\":%u,\"errors\":%zu,", calls, calls - ok);
        print_stats_fields(samples, ok);
        printf(",\"per_sec\":%.1f,\"wall_s\":%.3f,\"clients\":%u}\n",
               (double) ok / ((double) wall / 1e9), (double) wall / 1e9, n_clients);
        return 0;
}

/* A child in a new user namespace of its own, alive until killed: unlike the
 * fd-only namespaces above, its death is a process exit we can time. */
static int holder_spawn(pid_t *ret_pid) {
        _cleanup_(closep) int ready_r = -EBADF, ready_w = -EBADF;
        pid_t parent = getpid(), pid;
        int fds[2], error = 0;
        ssize_t n;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        ready_r = fds[0];
        ready_w = fds[1];

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                /* Do not outlive an interrupted bench. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(EXIT_FAILURE);
                if (unshare(CLONE_NEWUSER) < 0)
                        error = errno;
                (void) write(ready_w, &error, sizeof(error));
                if (error == 0)
                        for (;;)
                                (void) pause();
                _exit(EXIT_FAILURE);
        }

        ready_w = safe_close(ready_w);
        do
                n = read(ready_r, &error, sizeof(error));
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t) sizeof(error) || error != 0) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                return -(error ?: EIO);
        }

        *ret_pid = pid;
        return 0;
}

static void holder_reap(pid_t pid) {
        (void) kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

static int holder_open_userns(pid_t pid, int *ret_fd) {
        char path[64];
        int fd;

        (void) snprintf(path, sizeof(path), "/proc/%d/ns/user", (int) pid);
        fd = open(path, O_RDONLY|O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

struct removal_watch {
        const char *path;           /* the namespace object waited for */
        int64_t removed_at;         /* 0 until its UserNamespaceRemoved arrived */
};

static int on_namespace_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct removal_watch *w = userdata;
        int64_t t = now_nsec();
        const char *path;

        (void) ret_error;
        /* Signals for namespaces given up on earlier may still arrive. */
        if (sd_bus_message_read(m, "o", &path) < 0 || !w->path || strcmp(path, w->path) != 0)
                return 0;
        if (w->removed_at == 0)
                w->removed_at = t;
        return 0;
}

enum teardown_outcome {
        TEARDOWN_OK,
        TEARDOWN_CALL_FAILED,
        TEARDOWN_NO_SIGNAL,
};

static int teardown_one(sd_bus *bus, struct removal_watch *w, const char *name,
                        enum teardown_outcome *ret_outcome, int64_t *ret_nsec) {
        _cleanup_(freep) char *path = NULL;
        int64_t call_nsec, exited, deadline;
        pid_t pid;
        int fd = -EBADF, r;

        r = holder_spawn(&pid);
        if (r < 0)
                return r;
        r = holder_open_userns(pid, &fd);
        if (r < 0) {
                holder_reap(pid);
                return r;
        }
        r = allocate(bus, name, fd, &call_nsec, &path);
        /* From here on only the holder keeps the namespace alive. */
        (void) close(fd);
        if (r <= 0) {
                holder_reap(pid);
                *ret_outcome = TEARDOWN_CALL_FAILED;
                return r;
        }

        *w = (struct removal_watch) { .path = path };
        holder_reap(pid);
        exited = now_nsec();

        deadline = exited + TEARDOWN_TIMEOUT_NSEC;
        while (w->removed_at == 0) {
                int64_t n;

                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;

                n = now_nsec();
                if (n >= deadline) {
                        w->path = NULL;
                        fprintf(stderr, "No UserNamespaceRemoved for '%s' (%s) within %" PRIi64 " ms\n",
                                name, path, TEARDOWN_TIMEOUT_NSEC / 1000000);
                        *ret_outcome = TEARDOWN_NO_SIGNAL;
                        return 0;
                }
                r = sd_bus_wait(bus, (uint64_t) (deadline - n) / 1000);
                if (r < 0 && r != -EINTR)
                        return r;
        }
        w->path = NULL;

        *ret_outcome = TEARDOWN_OK;
        *ret_nsec = w->removed_at - exited;
        return 1;
}

static int run_teardown(unsigned calls) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        _cleanup_(freep) int64_t *samples = NULL;
        struct removal_watch watch = {};
        size_t ok = 0, call_errors = 0, no_signal = 0;
        int r;

        samples = calloc(calls, sizeof(int64_t));
        if (!samples)
                return -ENOMEM;

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        /* Synchronous AddMatch: subscribed before the first namespace exists. */
        r = sd_bus_match_signal(bus, &slot, NSRES_SERVICE, NULL, NSRES_MANAGER, "UserNamespaceRemoved",
                                on_namespace_removed, &watch);
        if (r < 0) {
                fprintf(stderr, "Failed to subscribe to UserNamespaceRemoved: %s\n", strerror(-r));
                return r;
        }

        for (unsigned k = 0; k < calls; k++) {
                enum teardown_outcome outcome;
                char name[32];

                (void) snprintf(name, sizeof(name), "%s%u", arg_prefix, k);
                r = teardown_one(bus, &watch, name, &outcome, &samples[ok]);
                if (r < 0) {
                        fprintf(stderr, "Teardown run '%s' failed in the client: %s\n", name, strerror(-r));
                        return r;
                }
                if (outcome == TEARDOWN_OK)
                        ok++;
                else if (outcome == TEARDOWN_CALL_FAILED)
                        call_errors++;
                else
                        no_signal++;
        }

        printf("{\"mode\":\"teardown\",\"calls\":%u,\"errors\":%zu,", calls, call_errors + no_signal);
        print_stats_fields(samples, ok);
        printf(",\"per_sec\":null,\"call_errors\":%zu,\"missing_signals\":%zu}\n", call_errors, no_signal);
        return 0;
}

/* ---- cgroup delegation ------------------------------------------------- */

/* Returns 1 on success, 0 on a D-Bus error, negative errno when the client
 * failed. Only sd_bus_call() is timed. */
static int add_cgroup(sd_bus *bus, const char *name, int userns_fd, int cgroup_fd, int64_t *ret_nsec) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        int64_t t0, t1;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, NSRES_SERVICE, NSRES_PATH, NSRES_MANAGER,
                                           "AddControlGroupToUserNamespace");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "hht", userns_fd, cgroup_fd, ADD_CGROUP_CREATE_CHILD);
        if (r < 0)
                return r;

        t0 = now_nsec();
        r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        t1 = now_nsec();
        if (r < 0) {
                if (!sd_bus_error_is_set(&error))
                        return r;
                report_error("AddControlGroupToUserNamespace", name, &error, r);
                return 0;
        }
        r = sd_bus_message_read(reply, "s", &path);
        if (r < 0)
                return r;

        *ret_nsec = t1 - t0;
        return 1;
}

/* Each call on a namespace of its own, as `nsresctl run --cgroup` makes
 * them: allocate (not timed), delegate a new leaf in `parent` (timed), let
 * the namespace go, so that the daemon removes the leaf again. */
static int run_cgroup(unsigned calls, const char *parent) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(freep) int64_t *samples = NULL;
        _cleanup_(closep) int cgroup_fd = -EBADF;
        size_t ok = 0, allocation_errors = 0;
        int64_t start, wall;
        int r;

        samples = calloc(calls, sizeof(int64_t));
        if (!samples)
                return -ENOMEM;
        cgroup_fd = open(parent, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
        if (cgroup_fd < 0) {
                r = -errno;
                fprintf(stderr, "Failed to open the cgroup '%s': %s\n", parent, strerror(-r));
                return r;
        }

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        start = now_nsec();
        for (unsigned k = 0; k < calls; k++) {
                _cleanup_(closep) int fd = -EBADF;
                int64_t allocate_nsec;
                char name[32];

                r = userns_new(&fd);
                if (r < 0) {
                        fprintf(stderr, "Failed to create a user namespace: %s\n", strerror(-r));
                        return r;
                }
                (void) snprintf(name, sizeof(name), "%s%u", arg_prefix, k);
                r = allocate(bus, name, fd, &allocate_nsec, NULL);
                if (r == 0) {
                        allocation_errors++;
                        continue;
                }
                if (r > 0)
                        r = add_cgroup(bus, name, fd, cgroup_fd, &samples[ok]);
                if (r < 0) {
                        fprintf(stderr, "Delegating a cgroup to '%s' failed in the client: %s\n", name, strerror(-r));
                        return r;
                }
                if (r > 0)
                        ok++;
        }
        wall = now_nsec() - start;

        printf("{\"mode\":\"cgroup\",\"calls\":%u,\"errors\":%zu,", calls, calls - ok);
        print_stats_fields(samples, ok);
        printf(",\"per_sec\":null,\"wall_s\":%.3f,\"allocation_errors\":%zu}\n",
               (double) wall / 1e9, allocation_errors);
        return 0;
}

/* ---- network links ----------------------------------------------------- */

struct netns_child {
        int userns_fd;
        int netns_fd;
        int error;
};

static int netns_child_main(void *userdata) {
        struct netns_child *c = userdata;

        /* As userns_child_main(): the fds land in the parent's table. */
        c->userns_fd = open("/proc/self/ns/user", O_RDONLY|O_CLOEXEC);
        if (c->userns_fd < 0) {
                c->error = errno;
                _exit(0);
        }
        c->netns_fd = open("/proc/self/ns/net", O_RDONLY|O_CLOEXEC);
        if (c->netns_fd < 0)
                c->error = errno;
        _exit(0);
}

/* A new empty user namespace and a network namespace it owns (both made by
 * the one clone()), held only by the returned fds. */
static int userns_netns_new(int *ret_userns_fd, int *ret_netns_fd) {
        _Alignas(16) char stack[CHILD_STACK_SIZE];
        struct netns_child c = { .userns_fd = -1, .netns_fd = -1 };
        pid_t pid;

        pid = clone(netns_child_main, stack + sizeof(stack),
                    CLONE_VM|CLONE_VFORK|CLONE_FILES|CLONE_NEWUSER|CLONE_NEWNET|SIGCHLD, &c);
        if (pid < 0)
                return -errno;
        while (waitpid(pid, NULL, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (c.userns_fd < 0 || c.netns_fd < 0) {
                if (c.userns_fd >= 0)
                        close(c.userns_fd);
                return -(c.error ?: EIO);
        }

        *ret_userns_fd = c.userns_fd;
        *ret_netns_fd = c.netns_fd;
        return 0;
}

/* Returns 1 on success, 0 on a D-Bus error, negative errno when the client
 * failed. Only sd_bus_call() is timed. */
static int add_network(sd_bus *bus, const char *name, int userns_fd, int netns_fd, int64_t *ret_nsec) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *host, *inside;
        int64_t t0, t1;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, NSRES_SERVICE, NSRES_PATH, NSRES_MANAGER,
                                           "AddNetworkToUserNamespace");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "hhst", userns_fd, netns_fd, "", UINT64_C(0));
        if (r < 0)
                return r;

        t0 = now_nsec();
        r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        t1 = now_nsec();
        if (r < 0) {
                if (!sd_bus_error_is_set(&error))
                        return r;
                report_error("AddNetworkToUserNamespace", name, &error, r);
                return 0;
        }
        r = sd_bus_message_read(reply, "ss", &host, &inside);
        if (r < 0)
                return r;

        *ret_nsec = t1 - t0;
        return 1;
}

/* Each call on namespaces of their own, as `nsresctl run --net` makes them:
 * allocate (not timed), add a veth (timed), let both namespaces go, so that
 * the kernel and the daemon delete the link again. */
static int run_network(unsigned calls) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(freep) int64_t *samples = NULL;
        size_t ok = 0, allocation_errors = 0;
        int64_t start, wall;
        int r;

        samples = calloc(calls, sizeof(int64_t));
        if (!samples)
                return -ENOMEM;

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        start = now_nsec();
        for (unsigned k = 0; k < calls; k++) {
                _cleanup_(closep) int fd = -EBADF, netns_fd = -EBADF;
                int64_t allocate_nsec;
                char name[32];

                r = userns_netns_new(&fd, &netns_fd);
                if (r < 0) {
                        fprintf(stderr, "Failed to create a user and a network namespace: %s\n", strerror(-r));
                        return r;
                }
                (void) snprintf(name, sizeof(name), "%s%u", arg_prefix, k);
                r = allocate(bus, name, fd, &allocate_nsec, NULL);
                if (r == 0) {
                        allocation_errors++;
                        continue;
                }
                if (r > 0)
                        r = add_network(bus, name, fd, netns_fd, &samples[ok]);
                if (r < 0) {
                        fprintf(stderr, "Adding a veth to '%s' failed in the client: %s\n", name, strerror(-r));
                        return r;
                }
                if (r > 0)
                        ok++;
        }
        wall = now_nsec() - start;

        printf("{\"mode\":\"network\",\"calls\":%u,\"errors\":%zu,", calls, calls - ok);
        print_stats_fields(samples, ok);
        printf(",\"per_sec\":null,\"wall_s\":%.3f,\"allocation_errors\":%zu}\n",
               (double) wall / 1e9, allocation_errors);
        return 0;
}

/* What users do without a daemon: the setuid helpers from shadow's uidmap,
 * mapping the range /etc/subuid and /etc/subgid give the caller. */
static int spawn_and_wait(char *const argv[]) {
        int status;
        pid_t pid;
        int r;

        r = -posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
        if (r < 0)
                return r;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPERM;
}

static int run_newuidmap(unsigned calls, uint32_t uid_start, uint32_t gid_start) {
        _cleanup_(freep) int64_t *samples = NULL;
        size_t ok = 0;
        int r;

        samples = calloc(calls, sizeof(int64_t));
        if (!samples)
                return -ENOMEM;

        for (unsigned k = 0; k < calls; k++) {
                char pid_s[16], uid_s[16], gid_s[16], size_s[16];
                char *uid_argv[] = { (char *) "newuidmap", pid_s, (char *) "0", uid_s, size_s, NULL };
                char *gid_argv[] = { (char *) "newgidmap", pid_s, (char *) "0", gid_s, size_s, NULL };
                int64_t t0;
                pid_t pid;

                r = holder_spawn(&pid);
                if (r < 0) {
                        fprintf(stderr, "Failed to create a user namespace: %s\n", strerror(-r));
                        return r;
                }
                (void) snprintf(pid_s, sizeof(pid_s), "%d", (int) pid);
                (void) snprintf(uid_s, sizeof(uid_s), "%" PRIu32, uid_start);
                (void) snprintf(gid_s, sizeof(gid_s), "%" PRIu32, gid_start);
                (void) snprintf(size_s, sizeof(size_s), "%" PRIu32, RANGE_SIZE);

                t0 = now_nsec();
                r = spawn_and_wait(uid_argv);
                if (r >= 0)
                        r = spawn_and_wait(gid_argv);
                samples[ok] = now_nsec() - t0;
                holder_reap(pid);
                if (r < 0) {
                        report_error("newuidmap/newgidmap", pid_s, NULL, r);
                        continue;
                }
                ok++;
        }

        printf("{\"mode\":\"newuidmap\",\"calls\":%u,\"errors\":%zu,", calls, calls - ok);
        print_stats_fields(samples, ok);
        printf(",\"per_sec\":null}\n");
        return 0;
}

/* ---- scale -------------------------------------------------------------- */

/* Times `reps` calls of a method without arguments but flags, whose reply
 * may be large (every namespace). */
static int time_listing(sd_bus *bus, const char *interface, const char *method, unsigned reps,
                        int64_t *samples) {
        for (unsigned i = 0; i < reps; i++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                int64_t t0 = now_nsec();
                int r;

                if (strcmp(method, "GetManagedObjects") == 0)
                        r = sd_bus_call_method(bus, NSRES_SERVICE, NSRES_PATH, interface, method, &error, &reply, "");
                else
                        r = sd_bus_call_method(bus, NSRES_SERVICE, NSRES_PATH, interface, method, &error, &reply,
                                               "t", UINT64_C(0));
                samples[i] = now_nsec() - t0;
                if (r < 0) {
                        report_error(method, "", &error, r);
                        return r;
                }
        }
        return 0;
}

/* Allocates for `count` fresh namespaces and keeps them alive (their fds go
 * to fds[*n_fds...]); timed samples where `samples` is not NULL. */
static int allocate_held(sd_bus *bus, unsigned count, int *fds, unsigned *n_fds, int64_t *samples, size_t *ok) {
        for (unsigned k = 0; k < count; k++) {
                char name[32];
                int64_t t;
                int r;

                r = userns_new(&fds[*n_fds]);
                if (r < 0) {
                        fprintf(stderr, "Failed to create user namespace %u: %s\n", *n_fds, strerror(-r));
                        return r;
                }
                (void) snprintf(name, sizeof(name), "%s%u", arg_prefix, *n_fds);
                (*n_fds)++;
                r = allocate(bus, name, fds[*n_fds - 1], &t, NULL);
                if (r < 0)
                        return r;
                if (r == 0)
                        return -EIO;
                if (samples)
                        samples[(*ok)++] = t;
        }
        return 0;
}

/* Latency with none and with `live` namespaces held, and the listings at
 * that size. In between it prints a "holding" line and waits for a line on
 * stdin: the runner measures the daemon (and restarts it) meanwhile. */
static int run_scale(unsigned live, unsigned samples_n) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(freep) int64_t *empty = NULL, *full = NULL, *list = NULL, *objects = NULL;
        _cleanup_(freep) int *fds = NULL;
        unsigned n_fds = 0, total = live + samples_n;
        size_t n_empty = 0, n_full = 0;
        struct rlimit rl;
        int64_t fill_start, fill_wall;
        char line[16];
        int r;

        /* One fd per namespace held. */
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t) total + 64) {
                fprintf(stderr, "Holding %u namespaces needs %u fds, the hard limit is %ju\n", total, total + 64,
                        (uintmax_t) rl.rlim_max);
                return -EMFILE;
        }
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;

        empty = calloc(samples_n, sizeof(int64_t));
        full = calloc(samples_n, sizeof(int64_t));
        list = calloc(5, sizeof(int64_t));
        objects = calloc(5, sizeof(int64_t));
        fds = calloc(total, sizeof(int));
        if (!empty || !full || !list || !objects || !fds)
                return -ENOMEM;

        r = bus_connect(&bus);
        if (r < 0)
                return r;

        /* Latency with (almost) nothing live, then fill up to `live`. */
        r = allocate_held(bus, samples_n, fds, &n_fds, empty, &n_empty);
        if (r < 0)
                return r;
        fill_start = now_nsec();
        r = allocate_held(bus, live - samples_n, fds, &n_fds, NULL, NULL);
        if (r < 0)
                return r;
        fill_wall = now_nsec() - fill_start;

        printf("{\"mode\":\"scale-holding\",\"live\":%u}\n", n_fds);
        (void) fflush(stdout);
        if (!fgets(line, sizeof(line), stdin))
                return -EPIPE;

        r = allocate_held(bus, samples_n, fds, &n_fds, full, &n_full);
        if (r < 0)
                return r;
        r = time_listing(bus, NSRES_MANAGER, "ListUserNamespaces", 5, list);
        if (r >= 0)
                r = time_listing(bus, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", 5, objects);
        if (r < 0)
                return r;

        printf("{\"mode\":\"scale\",\"calls\":%u,\"errors\":0,\"live\":%u,\"fill_per_sec\":%.1f,", total, n_fds,
               (double) (live - samples_n) / ((double) fill_wall / 1e9));
        printf("\"empty\":{");
        print_stats_fields(empty, n_empty);
        printf("},\"full\":{");
        print_stats_fields(full, n_full);
        printf("},\"list\":{");
        print_stats_fields(list, 5);
        printf("},\"managed_objects\":{");
        print_stats_fields(objects, 5);
        printf("}}\n");

        /* Every namespace goes at once when we exit. */
        for (unsigned i = 0; i < n_fds; i++)
                safe_close(fds[i]);
        return 0;
}

/* ---- soak --------------------------------------------------------------- */

#define USERNS_IFACE "org.freedesktop.NamespaceResource1.UserNamespace"
#define NSRES_ERROR "org.freedesktop.NamespaceResource1.Error."
#define ALLOCATE_SELF UINT64_C(2)
#define TALLY_MAX 32u
#define SOAK_HELD_MAX 2u
/* Far above any per-owner limit a soak sets. */
#define SOAK_HOARD_MAX 4096u

/* Counts by name (method or error), in order of first appearance. */
struct tally {
        unsigned n;
        struct {
                char name[128];
                unsigned count;
        } e[TALLY_MAX];
};

static void tally_add(struct tally *t, const char *name) {
        unsigned i;

        for (i = 0; i < t->n; i++)
                if (strcmp(t->e[i].name, name) == 0)
                        break;
        if (i == t->n) {
                /* The last slot collects whatever does not fit. */
                if (t->n == TALLY_MAX)
                        i = TALLY_MAX - 1;
                else {
                        (void) snprintf(t->e[i].name, sizeof(t->e[i].name), "%s", name);
                        t->n++;
                }
        }
        t->e[i].count++;
}

static void tally_print(const char *key, const struct tally *t) {
        printf("\"%s\":{", key);
        for (unsigned i = 0; i < t->n; i++)
                printf("%s\"%s\":%u", i > 0 ? "," : "", t->e[i].name, t->e[i].count);
        printf("}");
}

/* A namespace the client keeps for a while; it dies when the fd is closed
 * and, if a process holds it, that process is killed. */
struct soak_ns {
        int fd;
        pid_t holder;
        char name[32];
        char path[128];
        uint32_t uid_start;
        bool cgroup_added;
};

struct soak {
        sd_bus *bus;
        int cgroup_fd;
        unsigned serial;            /* makes names unique within the client */
        unsigned newest;            /* the slot of the namespace held last */
        unsigned calls, ok, wrong_answers;
        struct tally methods, expected, unexpected;
        int64_t *samples;
        size_t n_samples, allocated_samples;
};

static void soak_ns_release(struct soak_ns *ns) {
        ns->fd = safe_close(ns->fd);
        if (ns->holder > 0)
                holder_reap(ns->holder);
        ns->holder = 0;
}

static int soak_sample(struct soak *s, int64_t nsec) {
        if (s->n_samples == s->allocated_samples) {
                size_t k = s->allocated_samples ? s->allocated_samples * 2 : 4096;
                int64_t *p = realloc(s->samples, k * sizeof(int64_t));

                if (!p)
                        return -ENOMEM;
                s->samples = p;
                s->allocated_samples = k;
        }
        s->samples[s->n_samples++] = nsec;
        return 0;
}

/* Sends m and counts the outcome. An error named `allowed` is counted as
 * expected (the limits the soak sets on purpose); with must_fail, success is
 * a wrong answer. Returns 1 on success, 0 on a D-Bus error, negative errno
 * when the client itself failed. */
static int soak_call(struct soak *s, sd_bus_message *m, const char *allowed, bool must_fail,
                     sd_bus_message **ret_reply) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char member[64];
        int64_t t0;
        int r;

        /* Sending seals m, which may move its header fields. */
        (void) snprintf(member, sizeof(member), "%s", sd_bus_message_get_member(m));
        s->calls++;
        tally_add(&s->methods, member);
        t0 = now_nsec();
        r = sd_bus_call(s->bus, m, CALL_TIMEOUT_USEC, &error, ret_reply);
        if (soak_sample(s, now_nsec() - t0) < 0)
                return -ENOMEM;
        if (r < 0) {
                if (!sd_bus_error_is_set(&error))
                        return r;
                if (allowed && strcmp(error.name, allowed) == 0)
                        tally_add(&s->expected, error.name);
                else {
                        tally_add(&s->unexpected, error.name);
                        report_error(member, "", &error, r);
                }
                return 0;
        }
        s->ok++;
        if (must_fail) {
                s->wrong_answers++;
                fprintf(stderr, "%s succeeded, expected %s\n", member, allowed);
        }
        return 1;
}

static int soak_method(struct soak *s, const char *path, const char *interface, const char *method,
                       sd_bus_message **ret) {
        return sd_bus_message_new_method_call(s->bus, ret, NSRES_SERVICE, path, interface, method);
}

/* AllocateUserRange for fd; on success the object path and first uid go to
 * ns (if given). */
static int soak_allocate(struct soak *s, const char *name, int fd, uint32_t size, uint64_t flags,
                         const char *allowed, bool must_fail, struct soak_ns *ns) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *path, *final_name;
        uint32_t uid_start, gid_start;
        int r;

        r = soak_method(s, NSRES_PATH, NSRES_MANAGER, "AllocateUserRange", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "suuht", name, size, UINT32_C(0), fd, flags);
        if (r >= 0)
                r = soak_call(s, m, allowed, must_fail, &reply);
        if (r <= 0)
                return r;
        r = sd_bus_message_read(reply, "osuu", &path, &final_name, &uid_start, &gid_start);
        if (r < 0)
                return r;
        if (ns) {
                (void) snprintf(ns->path, sizeof(ns->path), "%s", path);
                ns->uid_start = uid_start;
        }
        return 1;
}

static int soak_hold_new(struct soak *s, struct soak_ns *ns, bool by_process) {
        int r;

        *ns = (struct soak_ns) { .fd = -EBADF };
        (void) snprintf(ns->name, sizeof(ns->name), "%s%u", arg_prefix, s->serial++);
        if (by_process) {
                r = holder_spawn(&ns->holder);
                if (r >= 0)
                        r = holder_open_userns(ns->holder, &ns->fd);
        } else
                r = userns_new(&ns->fd);
        if (r < 0) {
                fprintf(stderr, "Failed to create a user namespace: %s\n", strerror(-r));
                soak_ns_release(ns);
                return r;
        }
        r = soak_allocate(s, ns->name, ns->fd, RANGE_SIZE, 0, NULL, false, ns);
        if (r <= 0)
                soak_ns_release(ns);
        return r;
}

struct selfmap_child {
        uid_t uid;
        gid_t gid;
        int fd;
        int error;
};

static int write_proc_self(const char *file, const char *text) {
        _cleanup_(closep) int fd = -EBADF;
        char path[64];
        size_t len = strlen(text);

        (void) snprintf(path, sizeof(path), "/proc/self/%s", file);
        fd = open(path, O_WRONLY|O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (write(fd, text, len) != (ssize_t) len)
                return -errno;
        return 0;
}

static int selfmap_child_main(void *userdata) {
        struct selfmap_child *c = userdata;
        char map[64];
        int r;

        /* As userns_child_main(), after mapping ourselves as `unshare -r`
         * does: what RegisterUserNamespace accepts. */
        r = write_proc_self("setgroups", "deny");
        (void) snprintf(map, sizeof(map), "0 %u 1", (unsigned) c->uid);
        if (r >= 0)
                r = write_proc_self("uid_map", map);
        (void) snprintf(map, sizeof(map), "0 %u 1", (unsigned) c->gid);
        if (r >= 0)
                r = write_proc_self("gid_map", map);
        if (r >= 0) {
                c->fd = open("/proc/self/ns/user", O_RDONLY|O_CLOEXEC);
                if (c->fd < 0)
                        r = -errno;
        }
        if (r < 0)
                c->error = -r;
        _exit(0);
}

static int userns_selfmapped_new(int *ret_fd) {
        _Alignas(16) char stack[CHILD_STACK_SIZE];
        struct selfmap_child c = { .uid = getuid(), .gid = getgid(), .fd = -1 };
        pid_t pid;

        pid = clone(selfmap_child_main, stack + sizeof(stack),
                    CLONE_VM|CLONE_VFORK|CLONE_FILES|CLONE_NEWUSER|SIGCHLD, &c);
        if (pid < 0)
                return -errno;
        while (waitpid(pid, NULL, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (c.fd < 0)
                return -(c.error ?: EIO);
        *ret_fd = c.fd;
        return 0;
}

/* A namespace that lives only for the call: SELF, registered, or with a veth. */
static int soak_short_lived(struct soak *s, unsigned kind) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(closep) int fd = -EBADF, netns_fd = -EBADF;
        char name[32];
        int r;

        (void) snprintf(name, sizeof(name), "%s%u", arg_prefix, s->serial++);
        r = kind == 0 ? userns_new(&fd) : kind == 1 ? userns_selfmapped_new(&fd) : userns_netns_new(&fd, &netns_fd);
        if (r < 0) {
                fprintf(stderr, "Failed to create a user namespace: %s\n", strerror(-r));
                return r;
        }
        if (kind == 0)
                return soak_allocate(s, name, fd, 1, ALLOCATE_SELF, NULL, false, NULL);
        if (kind == 1) {
                r = soak_method(s, NSRES_PATH, NSRES_MANAGER, "RegisterUserNamespace", &m);
                if (r >= 0)
                        r = sd_bus_message_append(m, "sht", name, fd, UINT64_C(0));
                return r < 0 ? r : soak_call(s, m, NULL, false, NULL);
        }
        r = soak_allocate(s, name, fd, RANGE_SIZE, 0, NULL, false, NULL);
        if (r <= 0)
                return r;
        r = soak_method(s, NSRES_PATH, NSRES_MANAGER, "AddNetworkToUserNamespace", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "hhst", fd, netns_fd, "", UINT64_C(0));
        return r < 0 ? r : soak_call(s, m, NULL, false, NULL);
}

/* Reads that must agree with what the client holds. */
static int soak_check_held(struct soak *s, const struct soak_ns *ns, bool by_uid) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *got;
        int r;

        if (by_uid) {
                r = soak_method(s, NSRES_PATH, NSRES_MANAGER, "GetUserNamespaceByUid", &m);
                if (r >= 0)
                        r = sd_bus_message_append(m, "ut", ns->uid_start, UINT64_C(0));
        } else {
                r = soak_method(s, ns->path, "org.freedesktop.DBus.Properties", "Get", &m);
                if (r >= 0)
                        r = sd_bus_message_append(m, "ss", USERNS_IFACE, "Name");
        }
        if (r >= 0)
                r = soak_call(s, m, NULL, false, &reply);
        if (r <= 0)
                return r;
        r = by_uid ? sd_bus_message_read(reply, "o", &got) : sd_bus_message_read(reply, "v", "s", &got);
        if (r < 0)
                return r;
        /* The stored name is "<uid>-<name>". */
        if (by_uid ? strcmp(got, ns->path) != 0
                   : !(strchr(got, '-') && strcmp(strchr(got, '-') + 1, ns->name) == 0)) {
                s->wrong_answers++;
                fprintf(stderr, "%s of '%s' answered '%s'\n", by_uid ? "GetUserNamespaceByUid" : "Name",
                        ns->name, got);
        }
        return 1;
}

static int soak_simple(struct soak *s, const char *interface, const char *method) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = soak_method(s, NSRES_PATH, interface, method, &m);
        if (r >= 0 && strcmp(method, "ListUserNamespaces") == 0)
                r = sd_bus_message_append(m, "t", UINT64_C(0));
        else if (r >= 0 && strcmp(method, "GetAll") == 0)
                r = sd_bus_message_append(m, "s", NSRES_MANAGER);
        return r < 0 ? r : soak_call(s, m, NULL, false, NULL);
}

static int soak_add_cgroup(struct soak *s, struct soak_ns *ns) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = soak_method(s, NSRES_PATH, NSRES_MANAGER, "AddControlGroupToUserNamespace", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "hht", ns->fd, s->cgroup_fd, ADD_CGROUP_CREATE_CHILD);
        if (r >= 0)
                r = soak_call(s, m, NULL, false, NULL);
        if (r > 0)
                ns->cgroup_added = true;
        return r;
}

/* One step of an ordinary client: k picks what. It keeps up to
 * SOAK_HELD_MAX namespaces, replacing the oldest. */
static int soak_mixed_step(struct soak *s, struct soak_ns *held, unsigned k) {
        struct soak_ns *newest = held[s->newest].fd >= 0 ? &held[s->newest] : NULL;
        int r;

        switch (k % 16) {
        case 0:
        case 4:
        case 8:
        case 12: {
                /* By fd close, or every other time by the exit of a process
                 * in the namespace. */
                s->newest = (k / 4) % SOAK_HELD_MAX;
                soak_ns_release(&held[s->newest]);
                return soak_hold_new(s, &held[s->newest], k % 8 == 4);
        }
        case 1:
        case 5:
                return soak_short_lived(s, k % 16 == 1 ? 0 : 1);
        case 2:
        case 6:
        case 10:
        case 14:
                return newest ? soak_check_held(s, newest, k % 8 == 2) : 0;
        case 3:
                /* On purpose: a name the client holds. */
                if (newest) {
                        _cleanup_(closep) int fd = -EBADF;

                        r = userns_new(&fd);
                        if (r < 0)
                                return r;
                        return soak_allocate(s, newest->name, fd, RANGE_SIZE, 0, NSRES_ERROR "NameExists", true, NULL);
                }
                return 0;
        case 7:
                return soak_simple(s, NSRES_MANAGER, "ListUserNamespaces");
        case 9:
                return soak_simple(s, "org.freedesktop.DBus.Properties", "GetAll");
        case 11:
                if (s->cgroup_fd >= 0 && newest && !newest->cgroup_added && newest->holder == 0)
                        return soak_add_cgroup(s, newest);
                return 0;
        case 13:
                /* A veth costs the kernel far more than anything else here. */
                return k % 64 == 13 ? soak_short_lived(s, 2) : soak_simple(s, NSRES_MANAGER, "ListUserNamespaces");
        case 15:
                return k % 64 == 15 ? soak_simple(s, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")
                                    : soak_simple(s, "org.freedesktop.DBus.Properties", "GetAll");
        }
        return 0;
}

/* One round of a hoarding client: allocate and hold until the per-owner
 * limit answers, then let everything go. */
static int soak_hoard_round(struct soak *s, struct soak_ns *hoard, int64_t deadline) {
        unsigned n = 0;
        int r = 0;

        while (n < SOAK_HOARD_MAX && now_nsec() < deadline) {
                hoard[n] = (struct soak_ns) { .fd = -EBADF };
                (void) snprintf(hoard[n].name, sizeof(hoard[n].name), "%s%u", arg_prefix, s->serial++);
                r = userns_new(&hoard[n].fd);
                if (r < 0)
                        break;
                r = soak_allocate(s, hoard[n].name, hoard[n].fd, RANGE_SIZE, 0, NSRES_ERROR "TooManyNamespaces",
                                  false, &hoard[n]);
                if (r < 0)
                        break;
                if (r == 0) {
                        /* The limit, or anything else (counted as unexpected). */
                        hoard[n].fd = safe_close(hoard[n].fd);
                        break;
                }
                n++;
        }
        for (unsigned i = 0; i < n; i++)
                soak_ns_release(&hoard[i]);
        return r < 0 ? r : 0;
}

/* Prints a "soak-ready" line once connected, waits for a line on stdin, then
 * runs for `seconds`: the runner starts many of these at once. */
static int run_soak(unsigned seconds, const char *role, const char *cgroup) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(closep) int cgroup_fd = -EBADF;
        _cleanup_(freep) struct soak_ns *held = NULL;
        _cleanup_(freep) int64_t *samples = NULL;
        bool hoarding = strcmp(role, "hoard") == 0;
        struct soak s = { .cgroup_fd = -EBADF };
        unsigned n_held = hoarding ? SOAK_HOARD_MAX : SOAK_HELD_MAX;
        int64_t start, deadline, wall;
        char line[16];
        int r = 0;

        if (!hoarding && strcmp(role, "mixed") != 0) {
                fprintf(stderr, "Unknown soak role '%s'\n", role);
                return -EINVAL;
        }
        if (cgroup) {
                cgroup_fd = open(cgroup, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
                if (cgroup_fd < 0) {
                        r = -errno;
                        fprintf(stderr, "Failed to open the cgroup '%s': %s\n", cgroup, strerror(-r));
                        return r;
                }
        }
        held = calloc(n_held, sizeof(struct soak_ns));
        if (!held)
                return -ENOMEM;
        for (unsigned i = 0; i < n_held; i++)
                held[i].fd = -EBADF;

        r = bus_connect(&bus);
        if (r < 0)
                return r;
        s.bus = bus;
        s.cgroup_fd = cgroup_fd;

        printf("{\"mode\":\"soak-ready\"}\n");
        (void) fflush(stdout);
        if (!fgets(line, sizeof(line), stdin))
                return -EPIPE;

        start = now_nsec();
        deadline = start + (int64_t) seconds * INT64_C(1000000000);
        for (unsigned k = 0; now_nsec() < deadline; k++) {
                r = hoarding ? soak_hoard_round(&s, held, deadline) : soak_mixed_step(&s, held, k);
                if (r < 0)
                        break;
        }
        wall = now_nsec() - start;
        for (unsigned i = 0; i < n_held; i++)
                soak_ns_release(&held[i]);
        samples = s.samples;
        if (r < 0) {
                fprintf(stderr, "The soak client failed: %s\n", strerror(-r));
                return r;
        }

        printf("{\"mode\":\"soak\",\"role\":\"%s\",\"calls\":%u,\"ok\":%u,\"wrong_answers\":%u,", role, s.calls,
               s.ok, s.wrong_answers);
        tally_print("methods", &s.methods);
        printf(",");
        tally_print("expected_errors", &s.expected);
        printf(",");
        tally_print("unexpected_errors", &s.unexpected);
        printf(",\"per_sec\":%.1f,\"wall_s\":%.3f,", (double) s.calls / ((double) wall / 1e9), (double) wall / 1e9);
        print_stats_fields(samples, s.n_samples);
        printf("}\n");
        return 0;
}

/* ---- command line ------------------------------------------------------- */

static void help(void) {
        printf("Usage: nsres-bench [--prefix=P] [--samples] MODE ARGS...\n"
               "Benchmark nsresd's AllocateUserRange (and the delegation methods) end to end.\n\n"
               "  latency N             N sequential calls, one fresh user namespace each\n"
               "  throughput N C        N calls in total from C concurrent clients\n"
               "  teardown N            N times: allocate for a namespace held by a process,\n"
               "                        kill it, time until UserNamespaceRemoved\n"
               "  newuidmap N UID GID   N times newuidmap+newgidmap mapping UID/GID (65536 each)\n"
               "  cgroup N PATH         N times AddControlGroupToUserNamespace with CREATE_CHILD in\n"
               "                        the cgroup PATH (one you own), each on a fresh namespace\n"
               "  network N             N times AddNetworkToUserNamespace, each into a fresh network\n"
               "                        namespace of a fresh user namespace\n"
               "  scale N S             S timed calls with nothing live, fill up to N live namespaces\n"
               "                        (held), print a \"holding\" line, wait for a line on stdin,\n"
               "                        S timed calls with N live, time ListUserNamespaces and\n"
               "                        GetManagedObjects\n"
               "  soak SECONDS ROLE [CGROUP]\n"
               "                        One client of a soak: print a \"soak-ready\" line, wait for a line\n"
               "                        on stdin, then for SECONDS either a mix of every call (ROLE\n"
               "                        \"mixed\"; with CGROUP, also AddControlGroupToUserNamespace in it)\n"
               "                        or (\"hoard\") holding namespaces until the per-owner limit\n"
               "                        answers, over and over; errors counted by name\n\n"
               "     --prefix=P         Namespace names are P0, P1, ... (default '%s')\n"
               "     --samples          Include every sample (sorted, ms) in the output\n\n"
               "One JSON object goes to stdout; the bus is DBUS_SYSTEM_BUS_ADDRESS or the system bus.\n",
               arg_prefix);
}

static bool prefix_is_valid(const char *p) {
        size_t n = strlen(p);

        /* Leaves room for 7 digits within the 16-character name limit. */
        if (n == 0 || n > 9 || p[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", p[i]))
                        return false;
        return true;
}

static int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *ret) {
        unsigned long v;
        char *end;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
                fprintf(stderr, "Invalid number '%s' (expected %u…%u)\n", s, min, max);
                return -EINVAL;
        }
        *ret = (unsigned) v;
        return 0;
}

int main(int argc, char *argv[]) {
        enum { ARG_PREFIX = 0x100, ARG_SAMPLES };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "prefix", required_argument, NULL, ARG_PREFIX },
                { "samples", no_argument, NULL, ARG_SAMPLES },
                {}
        };
        const char *mode;
        unsigned n, c, uid, gid;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_PREFIX:
                        if (!prefix_is_valid(optarg)) {
                                fprintf(stderr, "Invalid name prefix '%s'\n", optarg);
                                return EXIT_FAILURE;
                        }
                        arg_prefix = optarg;
                        break;
                case ARG_SAMPLES:
                        arg_samples = true;
                        break;
                default:
                        return EXIT_FAILURE;
                }

        if (optind + 2 > argc) {
                help();
                return EXIT_FAILURE;
        }
        mode = argv[optind];
        if (parse_unsigned(argv[optind + 1], 1, MAX_CALLS, &n) < 0)
                return EXIT_FAILURE;

        if (strcmp(mode, "latency") == 0 && argc == optind + 2)
                r = run_latency(n);
        else if (strcmp(mode, "throughput") == 0 && argc == optind + 3) {
                if (parse_unsigned(argv[optind + 2], 1, MAX_CLIENTS, &c) < 0)
                        return EXIT_FAILURE;
                r = run_throughput(n, c);
        } else if (strcmp(mode, "teardown") == 0 && argc == optind + 2)
                r = run_teardown(n);
        else if (strcmp(mode, "cgroup") == 0 && argc == optind + 3)
                r = run_cgroup(n, argv[optind + 2]);
        else if (strcmp(mode, "network") == 0 && argc == optind + 2)
                r = run_network(n);
        else if (strcmp(mode, "scale") == 0 && argc == optind + 3) {
                if (parse_unsigned(argv[optind + 2], 1, n, &c) < 0)
                        return EXIT_FAILURE;
                r = run_scale(n, c);
        }
        else if (strcmp(mode, "soak") == 0 && (argc == optind + 3 || argc == optind + 4))
                r = run_soak(n, argv[optind + 2], argc == optind + 4 ? argv[optind + 3] : NULL);
        else if (strcmp(mode, "newuidmap") == 0 && argc == optind + 4) {
                if (parse_unsigned(argv[optind + 2], 1, UINT_MAX - 1, &uid) < 0 ||
                    parse_unsigned(argv[optind + 3], 1, UINT_MAX - 1, &gid) < 0)
                        return EXIT_FAILURE;
                r = run_newuidmap(n, uid, gid);
        } else {
                fprintf(stderr, "Unknown mode or wrong number of arguments: '%s'\n", mode);
                return EXIT_FAILURE;
        }

        (void) fflush(stdout);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
