/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Teardown tracking against the running kernel (needs root): a tracked user
 * namespace that dies is reported, an untracked one is not, a death while no
 * tracker is open is delivered at the next open, and a tracked namespace
 * freed together with its untracked child is reported through the child.
 */

#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/types.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "test-util.h"
#include "track.h"
#include "util.h"

#ifndef NS_GET_ID
/* Linux 6.18 <linux/nsfs.h>; older uapi headers do not have it. */
#define NS_GET_ID _IOR(0xb7, 13, __u64)
#endif

#define EVENT_TIMEOUT_USEC (5 * 1000 * 1000ULL)
#define QUIET_USEC (300 * 1000ULL)
#define LATENCY_ROUNDS 20

#define RUN_TEST_LOOP(e, f)                                                     \
        do {                                                                    \
                f(e);                                                           \
                printf("ok - %s\n", #f);                                        \
        } while (0)

static char bpf_root[] = "/sys/fs/bpf/test-track-XXXXXX";
static char bpf_dir[sizeof(bpf_root) + sizeof("/nsresd")];

/* The daemon's wiring of the tracker into its event loop, for one tracker at
 * a time. */
static sd_event_source *tracker_source;

static int on_tracker_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        (void) s;
        (void) fd;
        (void) revents;
        CHECK(tracker_consume(userdata) >= 0);
        return 0;
}

static int open_tracker(sd_event *e, const char *dir, tracker_event_cb cb, void *userdata, Tracker **ret) {
        int r;

        r = tracker_open(dir, 0, cb, userdata, ret);
        if (r < 0)
                return r;
        CHECK(sd_event_add_io(e, &tracker_source, tracker_fd(*ret), EPOLLIN, on_tracker_io, *ret) >= 0);
        return 0;
}

static void close_tracker(Tracker *t) {
        tracker_source = sd_event_source_disable_unref(tracker_source);
        tracker_free(t);
}

typedef struct Seen {
        uint64_t ids[256];
        uint64_t inodes[256];
        uint64_t at_usec[256];
        size_t n;
} Seen;

static uint64_t now_usec(void) {
        struct timespec ts;

        CHECK(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static void on_event(uint64_t ns_id, uint64_t inode, void *userdata) {
        Seen *s = userdata;

        CHECK(s->n < ELEMENTSOF(s->ids));
        s->ids[s->n] = ns_id;
        s->inodes[s->n] = inode;
        s->at_usec[s->n] = now_usec();
        s->n++;
}

static ssize_t seen_find(const Seen *s, uint64_t id) {
        for (size_t i = 0; i < s->n; i++)
                if (s->ids[i] == id)
                        return (ssize_t) i;
        return -1;
}

/* Runs the loop until an event for id arrives; returns its index. */
static size_t run_until_seen(sd_event *e, const Seen *s, uint64_t id) {
        uint64_t deadline = now_usec() + EVENT_TIMEOUT_USEC;
        ssize_t i;

        while ((i = seen_find(s, id)) < 0) {
                uint64_t now = now_usec();

                if (now >= deadline) {
                        fprintf(stderr, "no teardown event for namespace %llu within 5 s\n",
                                (unsigned long long) id);
                        exit(EXIT_FAILURE);
                }
                CHECK(sd_event_run(e, deadline - now) >= 0);
        }
        return (size_t) i;
}

static void run_for(sd_event *e, uint64_t usec) {
        uint64_t deadline = now_usec() + usec, now;

        while ((now = now_usec()) < deadline)
                CHECK(sd_event_run(e, deadline - now) >= 0);
}

typedef struct Holder {
        pid_t pid;
        int hold_fd;            /* closing it lets the process exit */
        uint64_t ns_id;
        uint64_t inode;
        struct file_handle *handle;
} Holder;

static void wait_for_eof(int fd) {
        char c;

        while (read(fd, &c, 1) > 0)
                ;
}

/* Forked holders must not keep other holders' pipes open, or those would
 * never see EOF. */
static void close_all_but(const int *keep, size_t n_keep) {
        for (int fd = 3; fd < 1024; fd++) {
                bool kept = false;

                for (size_t i = 0; i < n_keep; i++)
                        kept = kept || keep[i] == fd;
                if (!kept)
                        close(fd);
        }
}

static void write_file(const char *path, const char *text) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);

        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t) strlen(text))
                _exit(EXIT_FAILURE);
        close(fd);
}

static void holder_identify(Holder *h) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        char path[64];
        int mnt_id;
        __u64 id;

        snprintf(path, sizeof(path), "/proc/%i/ns/user", (int) h->pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        CHECK(ioctl(fd, NS_GET_ID, &id) == 0);
        CHECK(fstat(fd, &st) == 0);
        h->ns_id = id;
        h->inode = st.st_ino;

        h->handle = calloc(1, sizeof(struct file_handle) + 64);
        CHECK(h->handle);
        h->handle->handle_bytes = 64;
        CHECK(name_to_handle_at(fd, "", h->handle, &mnt_id, AT_EMPTY_PATH) == 0);
        /* fd closes here: holding it would keep the namespace alive. */
}

static bool holder_ns_alive(const Holder *h) {
        _cleanup_close_ int self = -1, fd = -1;

        self = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
        CHECK(self >= 0);
        fd = open_by_handle_at(self, h->handle, O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
                return true;
        CHECK_EQ(errno, ESTALE);
        return false;
}

static void holder_wait_ns_gone(const Holder *h) {
        uint64_t deadline = now_usec() + EVENT_TIMEOUT_USEC;

        while (holder_ns_alive(h)) {
                CHECK(now_usec() < deadline);
                usleep(1000);
        }
}

/* Forks a process in a new user namespace that lives until hold_fd is closed.
 * With nested, that process also forks one in a child namespace of its own,
 * returned in *ret_inner, which outlives it. */
static void holder_start(Holder *h, Holder *ret_inner) {
        int ready[2], hold[2], hold_inner[2] = { -1, -1 };
        pid_t pids[2];

        CHECK(pipe2(ready, O_CLOEXEC) == 0);
        CHECK(pipe2(hold, O_CLOEXEC) == 0);
        if (ret_inner)
                CHECK(pipe2(hold_inner, O_CLOEXEC) == 0);

        h->pid = fork();
        CHECK(h->pid >= 0);
        if (h->pid == 0) {
                pid_t self;

                close_all_but((const int[]) { ready[1], hold[0], hold_inner[0] }, 3);
                if (unshare(CLONE_NEWUSER) < 0)
                        _exit(EXIT_FAILURE);

                if (ret_inner) {
                        pid_t inner;

                        /* A child namespace can only be created by an id
                         * mapped in this one. */
                        write_file("/proc/self/setgroups", "deny");
                        write_file("/proc/self/uid_map", "0 0 1");
                        write_file("/proc/self/gid_map", "0 0 1");

                        self = getpid();
                        if (write(ready[1], &self, sizeof(self)) != sizeof(self))
                                _exit(EXIT_FAILURE);

                        inner = fork();
                        if (inner < 0)
                                _exit(EXIT_FAILURE);
                        if (inner == 0) {
                                close(hold[0]);
                                if (unshare(CLONE_NEWUSER) < 0)
                                        _exit(EXIT_FAILURE);
                                self = getpid();
                                if (write(ready[1], &self, sizeof(self)) != sizeof(self))
                                        _exit(EXIT_FAILURE);
                                wait_for_eof(hold_inner[0]);
                                _exit(EXIT_SUCCESS);
                        }
                        close(hold_inner[0]);
                } else {
                        self = getpid();
                        if (write(ready[1], &self, sizeof(self)) != sizeof(self))
                                _exit(EXIT_FAILURE);
                }
                wait_for_eof(hold[0]);
                _exit(EXIT_SUCCESS);
        }

        close(ready[1]);
        close(hold[0]);
        if (hold_inner[0] >= 0)
                close(hold_inner[0]);

        for (size_t i = 0; i < (ret_inner ? 2U : 1U); i++)
                CHECK(read(ready[0], &pids[i], sizeof(pids[i])) == sizeof(pids[i]));
        close(ready[0]);

        CHECK_EQ(pids[0], h->pid);
        h->hold_fd = hold[1];
        holder_identify(h);
        if (ret_inner) {
                *ret_inner = (Holder) { .pid = pids[1], .hold_fd = hold_inner[1] };
                holder_identify(ret_inner);
        }
}

/* Lets the process exit and reaps it; returns when it was reaped. */
static uint64_t holder_stop(Holder *h) {
        int status;

        close(TAKE_FD(h->hold_fd));
        CHECK(waitpid(h->pid, &status, 0) == h->pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        return now_usec();
}

static void holder_done(Holder *h) {
        free(TAKE_PTR(h->handle));
}

static uint32_t pinned_link_id(void) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        struct bpf_link_info info = {};
        uint32_t len = sizeof(info);

        CHECK(asprintf(&path, "%s/v1/link", bpf_dir) >= 0);
        fd = bpf_obj_get(path);
        CHECK(fd >= 0);
        CHECK(bpf_obj_get_info_by_fd(fd, &info, &len) == 0);
        return info.id;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

static void test_tracked_namespace_reported(sd_event *e) {
        uint64_t latency[LATENCY_ROUNDS];
        Tracker *t = NULL;
        Seen seen = {};

        CHECK_EQ(open_tracker(e, bpf_dir, on_event, &seen, &t), 0);
        CHECK_EQ(tracker_drops(t), 0);

        for (size_t round = 0; round < LATENCY_ROUNDS; round++) {
                Holder h;
                uint64_t exited;
                size_t i;

                holder_start(&h, NULL);
                CHECK(h.ns_id != 0);
                CHECK_EQ(tracker_add(t, h.ns_id), 0);
                exited = holder_stop(&h);

                i = run_until_seen(e, &seen, h.ns_id);
                CHECK_EQ(seen.inodes[i], h.inode);
                /* The event comes as the kernel starts freeing it. */
                holder_wait_ns_gone(&h);
                latency[round] = seen.at_usec[i] > exited ? seen.at_usec[i] - exited : 0;

                CHECK_EQ(tracker_remove(t, h.ns_id), 0);
                /* Already gone: not an error for the caller. */
                CHECK_EQ(tracker_remove(t, h.ns_id), 0);
                holder_done(&h);
        }
        CHECK_EQ(seen.n, LATENCY_ROUNDS);

        qsort(latency, LATENCY_ROUNDS, sizeof(latency[0]), cmp_u64);
        printf("# exit to event: median %.1f ms, max %.1f ms (%d rounds)\n",
               latency[LATENCY_ROUNDS / 2] / 1000.0, latency[LATENCY_ROUNDS - 1] / 1000.0, LATENCY_ROUNDS);

        CHECK_EQ(tracker_drops(t), 0);
        tracker_reset_drops(t);
        CHECK_EQ(tracker_drops(t), 0);
        close_tracker(t);
}

static bool keep_none(uint64_t ns_id, void *userdata) {
        (void) ns_id;
        (void) userdata;
        return false;
}

static bool keep_listed(uint64_t ns_id, void *userdata) {
        return ns_id == *(const uint64_t *) userdata;
}

static void test_prune_drops_unknown_entries(sd_event *e) {
        uint64_t known = UINT64_C(1) << 62;
        Tracker *t = NULL;
        Seen seen = {};

        CHECK_EQ(open_tracker(e, bpf_dir, on_event, &seen, &t), 0);
        CHECK(tracker_prune(t, keep_none, NULL) >= 0);

        CHECK_EQ(tracker_add(t, known - 1), 0);
        CHECK_EQ(tracker_add(t, known), 0);
        CHECK_EQ(tracker_add(t, known + 1), 0);
        CHECK_EQ(tracker_prune(t, keep_listed, &known), 2);
        CHECK_EQ(tracker_prune(t, keep_listed, &known), 0);
        CHECK_EQ(tracker_prune(t, keep_none, NULL), 1);
        CHECK_EQ(tracker_prune(t, keep_none, NULL), 0);
        close_tracker(t);
}

static void test_untracked_namespace_silent(sd_event *e) {
        Holder never, removed, tracked;
        Tracker *t = NULL;
        Seen seen = {};

        CHECK_EQ(open_tracker(e, bpf_dir, on_event, &seen, &t), 0);

        holder_start(&never, NULL);
        holder_start(&removed, NULL);
        holder_start(&tracked, NULL);
        CHECK_EQ(tracker_add(t, removed.ns_id), 0);
        CHECK_EQ(tracker_add(t, tracked.ns_id), 0);
        CHECK_EQ(tracker_remove(t, removed.ns_id), 0);

        holder_stop(&never);
        holder_stop(&removed);
        holder_wait_ns_gone(&never);
        holder_wait_ns_gone(&removed);
        holder_stop(&tracked);
        run_until_seen(e, &seen, tracked.ns_id);
        run_for(e, QUIET_USEC);

        CHECK_EQ(seen.n, 1);
        CHECK(seen_find(&seen, never.ns_id) < 0);
        CHECK(seen_find(&seen, removed.ns_id) < 0);

        CHECK_EQ(tracker_remove(t, tracked.ns_id), 0);
        holder_done(&never);
        holder_done(&removed);
        holder_done(&tracked);
        close_tracker(t);
}

static void test_event_kept_across_restart(sd_event *e) {
        _cleanup_free_ char *events_path = NULL;
        _cleanup_close_ int events_fd = -1;
        uint32_t link_id;
        Tracker *t = NULL;
        Seen seen = {};
        Holder h;
        size_t i;

        CHECK_EQ(open_tracker(e, bpf_dir, on_event, &seen, &t), 0);
        link_id = pinned_link_id();
        holder_start(&h, NULL);
        CHECK_EQ(tracker_add(t, h.ns_id), 0);
        close_tracker(t);

        holder_stop(&h);
        holder_wait_ns_gone(&h);

        /* The pinned ring buffer becomes readable once the still attached
         * program queued the event; polling it consumes nothing. */
        CHECK(asprintf(&events_path, "%s/v1/events", bpf_dir) >= 0);
        events_fd = bpf_obj_get(events_path);
        CHECK(events_fd >= 0);
        CHECK_EQ(poll(&(struct pollfd) { .fd = events_fd, .events = POLLIN }, 1, EVENT_TIMEOUT_USEC / 1000), 1);
        CHECK_EQ(seen.n, 0);

        CHECK_EQ(open_tracker(e, bpf_dir, on_event, &seen, &t), 0);
        /* The pinned program was kept, not loaded a second time. */
        CHECK_EQ(pinned_link_id(), link_id);
        CHECK_EQ(tracker_consume(t), 1);
        CHECK_EQ(seen.n, 1);
        i = (size_t) seen_find(&seen, h.ns_id);
        CHECK_EQ(i, 0);
        CHECK_EQ(seen.inodes[i], h.inode);
        CHECK_EQ(tracker_consume(t), 0);

        CHECK_EQ(tracker_remove(t, h.ns_id), 0);
        holder_done(&h);
        close_tracker(t);
}

static void test_stale_link_replaced(sd_event *e) {
        _cleanup_free_ char *tracked_path = NULL;
        uint32_t link_id;
        Tracker *t = NULL;
        Seen seen = {};
        Holder h;

        CHECK_EQ(open_tracker(e, bpf_dir, on_event, &seen, &t), 0);
        close_tracker(t);
        link_id = pinned_link_id();

        /* The pinned program would keep filling a map nobody can reach: the
         * next open must load and pin a new one for the new map. */
        CHECK(asprintf(&tracked_path, "%s/v1/tracked", bpf_dir) >= 0);
        CHECK(unlink(tracked_path) == 0);
        CHECK_EQ(open_tracker(e, bpf_dir, on_event, &seen, &t), 0);
        CHECK(pinned_link_id() != link_id);
        CHECK(access(tracked_path, F_OK) == 0);

        holder_start(&h, NULL);
        CHECK_EQ(tracker_add(t, h.ns_id), 0);
        holder_stop(&h);
        run_until_seen(e, &seen, h.ns_id);
        /* One program attached, one event. */
        run_for(e, QUIET_USEC);
        CHECK_EQ(seen.n, 1);

        CHECK_EQ(tracker_remove(t, h.ns_id), 0);
        holder_done(&h);
        close_tracker(t);
}

static void test_ancestor_reported(sd_event *e) {
        Holder outer, inner;
        Tracker *t = NULL;
        Seen seen = {};
        int status;

        CHECK_EQ(open_tracker(e, bpf_dir, on_event, &seen, &t), 0);

        holder_start(&outer, &inner);
        CHECK(outer.ns_id != inner.ns_id);
        CHECK_EQ(tracker_add(t, outer.ns_id), 0);

        /* The inner process becomes our child (subreaper) and keeps the
         * tracked namespace alive as the parent of its own. */
        holder_stop(&outer);
        run_for(e, QUIET_USEC);
        CHECK(holder_ns_alive(&outer));
        CHECK_EQ(seen.n, 0);

        close(TAKE_FD(inner.hold_fd));
        CHECK(waitpid(inner.pid, &status, 0) == inner.pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        run_until_seen(e, &seen, outer.ns_id);
        holder_wait_ns_gone(&outer);
        holder_wait_ns_gone(&inner);
        CHECK(seen_find(&seen, inner.ns_id) < 0);

        CHECK_EQ(tracker_remove(t, outer.ns_id), 0);
        holder_done(&outer);
        holder_done(&inner);
        close_tracker(t);
}

static void test_without_bpffs(sd_event *e) {
        char dir[] = "/tmp/test-track-XXXXXX";
        _cleanup_free_ char *pin_dir = NULL;
        Tracker *t = NULL;
        Seen seen = {};
        Holder h;

        /* Not bpffs: works for as long as it is open, pins nothing. */
        CHECK(mkdtemp(dir));
        CHECK_EQ(open_tracker(e, dir, on_event, &seen, &t), 0);
        CHECK(asprintf(&pin_dir, "%s/v1", dir) >= 0);
        CHECK(access(pin_dir, F_OK) < 0 && errno == ENOENT);

        holder_start(&h, NULL);
        CHECK_EQ(tracker_add(t, h.ns_id), 0);
        holder_stop(&h);
        run_until_seen(e, &seen, h.ns_id);

        holder_done(&h);
        close_tracker(t);
        CHECK(rmdir(dir) == 0);
}

/* A failed check exits: leave no pins (and so no attached program) behind. */
static void cleanup_pins(void) {
        (void) tracker_unpin(bpf_dir);
        (void) rmdir(bpf_root);
}

int main(void) {
        sd_event *e = NULL;
        struct statfs sfs;
        Tracker *t = NULL;
        Seen seen = {};
        int r;

        if (geteuid() != 0) {
                printf("# skipped: needs root\n");
                return 77;
        }

        /* Private bpffs where none is mounted, so nothing outside sees it. */
        if (statfs("/sys/fs/bpf", &sfs) < 0 || sfs.f_type != BPF_FS_MAGIC) {
                CHECK(unshare(CLONE_NEWNS) == 0);
                CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
                CHECK(mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") == 0);
        }
        CHECK(mkdtemp(bpf_root));
        /* Not there yet: tracker_open creates it. */
        snprintf(bpf_dir, sizeof(bpf_dir), "%s/nsresd", bpf_root);
        CHECK(atexit(cleanup_pins) == 0);

        /* Namespace holders whose parent exits are reparented to us. */
        CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
        CHECK(sd_event_new(&e) >= 0);

        r = open_tracker(e, bpf_dir, on_event, &seen, &t);
        if (r == -ENOENT || r == -EPERM) {
                printf("# skipped: BPF teardown tracking unavailable: %s\n", strerror(-r));
                return 77;
        }
        CHECK_EQ(r, 0);
        close_tracker(t);

        RUN_TEST_LOOP(e, test_tracked_namespace_reported);
        RUN_TEST_LOOP(e, test_untracked_namespace_silent);
        RUN_TEST_LOOP(e, test_prune_drops_unknown_entries);
        RUN_TEST_LOOP(e, test_event_kept_across_restart);
        RUN_TEST_LOOP(e, test_stale_link_replaced);
        RUN_TEST_LOOP(e, test_ancestor_reported);
        RUN_TEST_LOOP(e, test_without_bpffs);

        CHECK_EQ(tracker_unpin(bpf_dir), 0);
        CHECK(access(bpf_dir, F_OK) < 0 && errno == ENOENT);
        CHECK(rmdir(bpf_root) == 0);
        sd_event_unref(e);
        return EXIT_SUCCESS;
}
