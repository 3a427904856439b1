/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpf-util.h"
#include "log.h"
#include "track.h"
#include "userns-track.h"
#include "userns-track.skel.h"
#include "util.h"

/* Bump when a map's type, key, value or size changes: libbpf refuses to reuse
 * an incompatible pin, and a new directory lets the old program run out
 * while the new one starts clean. */
#define TRACK_PIN_VERSION "v1"

static const char *const pinned_maps[] = { "tracked", "events", "drops" };

struct Tracker {
        struct userns_track *skel;
        struct ring_buffer *ring;
        tracker_event_cb cb;
        void *userdata;
};

static int kallsyms_lookup(const char *symbol, uint64_t *ret_addr) {
        _cleanup_fclose_ FILE *f = NULL;
        size_t len = strlen(symbol);
        /* Room for a KSYM_NAME_LEN (512) name, its address and module. */
        char line[1024];

        f = fopen("/proc/kallsyms", "re");
        if (!f)
                return -errno;

        /* Lines are "<hex address> <type> <name>[\t[module]]". The core
         * kernel comes first, so a module's static function of the same name
         * cannot shadow it, and stopping at the first match saves reading
         * the rest (most of the cost is the kernel formatting it). */
        while (fgets(line, sizeof(line), f)) {
                unsigned long long addr;
                char *name;

                name = strchr(line, ' ');
                if (!name || !name[1] || name[2] != ' ')
                        continue;
                name += 3;
                if (strncmp(name, symbol, len) != 0 || (name[len] != '\n' && name[len] != '\t' && name[len] != '\0'))
                        continue;

                errno = 0;
                addr = strtoull(line, NULL, 16);
                if (errno != 0)
                        return -errno;
                /* kptr_restrict shows zeros to readers without CAP_SYSLOG. */
                if (addr == 0)
                        return -EPERM;

                *ret_addr = addr;
                return 0;
        }

        return ferror(f) ? -EIO : -ENOENT;
}

static int map_get_id(int fd, uint32_t *ret_id) {
        struct bpf_map_info info = {};
        uint32_t len = sizeof(info);
        int r;

        r = bpf_obj_get_info_by_fd(fd, &info, &len);
        if (r < 0)
                return r;
        *ret_id = info.id;
        return 0;
}

/* Returns 1 if <pin_dir>/link is a link whose program feeds exactly the maps
 * pinned next to it: then that program keeps running and we load nothing. */
static int pinned_link_usable(const char *pin_dir) {
        _cleanup_free_ char *link_path = NULL;
        _cleanup_close_ int link_fd = -1, prog_fd = -1;
        struct bpf_link_info link_info = {};
        struct bpf_prog_info prog_info = {};
        /* Cleared although the kernel fills it: it is written through a
         * pointer inside prog_info, which valgrind cannot see. */
        uint32_t map_ids[16] = {}, len;
        int r;

        if (asprintf(&link_path, "%s/link", pin_dir) < 0)
                return -ENOMEM;

        link_fd = bpf_obj_get(link_path);
        if (link_fd < 0)
                return link_fd == -ENOENT ? 0 : link_fd;
        if (!bpf_fd_is_link(link_fd))
                return 0;

        len = sizeof(link_info);
        r = bpf_obj_get_info_by_fd(link_fd, &link_info, &len);
        if (r < 0)
                return r;
        prog_fd = bpf_prog_get_fd_by_id(link_info.prog_id);
        if (prog_fd < 0)
                return prog_fd == -ENOENT ? 0 : prog_fd;

        len = sizeof(prog_info);
        prog_info.nr_map_ids = ELEMENTSOF(map_ids);
        prog_info.map_ids = (uint64_t) (uintptr_t) map_ids;
        r = bpf_obj_get_info_by_fd(prog_fd, &prog_info, &len);
        if (r < 0)
                return r;
        if (prog_info.nr_map_ids > ELEMENTSOF(map_ids))
                return 0;

        for (size_t i = 0; i < ELEMENTSOF(pinned_maps); i++) {
                _cleanup_free_ char *map_path = NULL;
                _cleanup_close_ int map_fd = -1;
                bool used = false;
                uint32_t id;

                if (asprintf(&map_path, "%s/%s", pin_dir, pinned_maps[i]) < 0)
                        return -ENOMEM;
                map_fd = bpf_obj_get(map_path);
                if (map_fd < 0)
                        return map_fd == -ENOENT ? 0 : map_fd;
                r = map_get_id(map_fd, &id);
                if (r < 0)
                        return r;
                for (uint32_t j = 0; j < prog_info.nr_map_ids; j++)
                        used = used || map_ids[j] == id;
                if (!used)
                        return 0;
        }

        return 1;
}

/* A pinned ring buffer of another size than wanted cannot be reused (libbpf
 * refuses the pin): unpin it, so a new one is made, and the link feeding it
 * with it. Events it still held are lost; the caller's start-up sweep finds
 * those namespaces. Returns 1 if it was replaced. */
static int replace_resized_ring(const char *pin_dir, uint32_t ring_size) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        struct bpf_map_info info = {};
        uint32_t len = sizeof(info);
        int r;

        if (asprintf(&path, "%s/events", pin_dir) < 0)
                return -ENOMEM;
        fd = bpf_obj_get(path);
        if (fd < 0)
                return fd == -ENOENT ? 0 : fd;
        r = bpf_obj_get_info_by_fd(fd, &info, &len);
        if (r < 0)
                return r;
        if (info.type == BPF_MAP_TYPE_RINGBUF && info.max_entries == ring_size)
                return 0;

        if (unlink(path) < 0)
                return -errno;
        log_notice("Replacing the pinned teardown ring buffer of %" PRIu32 " bytes with one of %" PRIu32
                   " bytes: events it still held are lost, every namespace is checked instead",
                   info.max_entries, ring_size);
        return 1;
}

static int on_ring_event(void *userdata, void *data, size_t size) {
        Tracker *t = userdata;
        struct userns_track_event e;

        if (size < sizeof(e))
                return 0;
        memcpy(&e, data, sizeof(e));
        t->cb(e.ns_id, e.inode, t->userdata);
        return 0;
}

static void tracker_freep(Tracker **t) {
        tracker_free(*t);
}

int tracker_open(const char *bpf_dir, uint32_t ring_size, tracker_event_cb cb, void *userdata, Tracker **ret) {
        _cleanup_(tracker_freep) Tracker *t = NULL;
        _cleanup_free_ char *pin_dir = NULL, *link_path = NULL;
        struct bpf_program *prog;
        uint64_t free_user_ns_addr = 0;
        bool reuse = false;
        int r;

        assert(bpf_dir);
        assert(cb);
        assert(ret);

        bpf_log_to_daemon_log();

        r = kallsyms_lookup("free_user_ns", &free_user_ns_addr);
        if (r < 0)
                return log_full_errno(LOG_DEBUG, r, "Cannot resolve free_user_ns() in /proc/kallsyms: %m");

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->cb = cb;
        t->userdata = userdata;

        t->skel = userns_track__open();
        if (!t->skel)
                return -errno;
        t->skel->rodata->free_user_ns_addr = free_user_ns_addr;
        prog = t->skel->progs.userns_track_free;
        if (ring_size == 0)
                ring_size = bpf_map__max_entries(t->skel->maps.events);
        r = bpf_map__set_max_entries(t->skel->maps.events, ring_size);
        if (r < 0)
                return log_full_errno(LOG_DEBUG, r, "Cannot size the teardown ring buffer to %" PRIu32 " bytes: %m",
                                      ring_size);

        r = bpf_pin_dir_prepare(bpf_dir, TRACK_PIN_VERSION, &pin_dir);
        if (r < 0)
                return log_full_errno(LOG_DEBUG, r, "Failed to prepare '%s' for pinning: %m", bpf_dir);
        if (r == 0)
                log_warning("'%s' is not on a BPF file system: namespaces destroyed while the service is stopped will only be found by a sweep",
                            bpf_dir);

        if (pin_dir) {
                struct bpf_map *maps[] = {
                        t->skel->maps.tracked,
                        t->skel->maps.events,
                        t->skel->maps.drops,
                };

                static_assert(ELEMENTSOF(maps) == ELEMENTSOF(pinned_maps), "pinned map lists differ");
                for (size_t i = 0; i < ELEMENTSOF(maps); i++) {
                        _cleanup_free_ char *path = NULL;

                        if (asprintf(&path, "%s/%s", pin_dir, pinned_maps[i]) < 0)
                                return -ENOMEM;
                        /* On load libbpf reuses a compatible pin there and
                         * pins a new map otherwise. */
                        r = bpf_map__set_pin_path(maps[i], path);
                        if (r < 0)
                                return r;
                }

                if (asprintf(&link_path, "%s/link", pin_dir) < 0)
                        return -ENOMEM;
                /* Before looking at the link: it is usable only with the
                 * ring buffer pinned next to it. */
                r = replace_resized_ring(pin_dir, ring_size);
                if (r < 0)
                        return log_full_errno(LOG_DEBUG, r, "Failed to inspect the ring buffer pinned in '%s': %m",
                                              pin_dir);
                r = pinned_link_usable(pin_dir);
                if (r < 0)
                        return log_full_errno(LOG_DEBUG, r, "Failed to inspect '%s': %m", link_path);
                reuse = r > 0;
                /* A link feeding other maps (pins removed by hand): drop it,
                 * its program detaches once nothing holds it. */
                if (!reuse && unlink(link_path) < 0 && errno != ENOENT)
                        return -errno;
        }

        /* The pinned program already fills the pinned maps; a second one
         * would report every event twice. */
        if (reuse)
                (void) bpf_program__set_autoload(prog, false);

        r = userns_track__load(t->skel);
        if (r < 0)
                return r;

        if (!reuse) {
                t->skel->links.userns_track_free = bpf_program__attach(prog);
                if (!t->skel->links.userns_track_free)
                        return -errno;
                if (link_path) {
                        r = bpf_link__pin(t->skel->links.userns_track_free, link_path);
                        if (r < 0)
                                log_warning_errno(r, "Failed to pin '%s', events during a restart will be lost: %m",
                                                  link_path);
                }
        }

        t->ring = ring_buffer__new(bpf_map__fd(t->skel->maps.events), on_ring_event, t, NULL);
        if (!t->ring)
                return -errno;

        *ret = TAKE_PTR(t);
        return 0;
}

Tracker *tracker_free(Tracker *t) {
        if (!t)
                return NULL;

        ring_buffer__free(t->ring);
        /* Closes our link fd only: a pinned link stays attached. */
        userns_track__destroy(t->skel);
        free(t);
        return NULL;
}

int tracker_add(Tracker *t, uint64_t ns_id) {
        uint8_t one = 1;

        assert(t);

        return bpf_map_update_elem(bpf_map__fd(t->skel->maps.tracked), &ns_id, &one, BPF_ANY);
}

int tracker_remove(Tracker *t, uint64_t ns_id) {
        int r;

        assert(t);

        r = bpf_map_delete_elem(bpf_map__fd(t->skel->maps.tracked), &ns_id);
        return r == -ENOENT ? 0 : r;
}

int tracker_prune(Tracker *t, bool (*keep)(uint64_t ns_id, void *userdata), void *userdata) {
        KeyList stale = {};
        int fd, r;

        assert(t);

        fd = bpf_map__fd(t->skel->maps.tracked);
        r = bpf_map_stale_keys(fd, keep, userdata, &stale);
        for (size_t i = 0; r >= 0 && i < stale.n; i++) {
                r = bpf_map_delete_elem(fd, &stale.keys[i]);
                if (r == -ENOENT)
                        r = 0;
        }
        free(stale.keys);
        return r < 0 ? r : (int) stale.n;
}

int tracker_fd(Tracker *t) {
        assert(t);

        return ring_buffer__epoll_fd(t->ring);
}

int tracker_consume(Tracker *t) {
        assert(t);

        return ring_buffer__consume(t->ring);
}

uint64_t tracker_drops(Tracker *t) {
        uint32_t zero = 0;
        uint64_t n = 0;

        assert(t);

        if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.drops), &zero, &n) < 0)
                return 0;
        return n;
}

void tracker_reset_drops(Tracker *t) {
        uint32_t zero = 0;
        uint64_t n = 0;

        assert(t);

        /* A drop counted between the caller's read and this write is lost;
         * the sweep the caller runs now covers it anyway. */
        (void) bpf_map_update_elem(bpf_map__fd(t->skel->maps.drops), &zero, &n, BPF_ANY);
}

int tracker_unpin(const char *bpf_dir) {
        _cleanup_free_ char *pin_dir = NULL;
        const char *names[] = { "link", "tracked", "events", "drops" };
        int r = 0;

        assert(bpf_dir);

        if (asprintf(&pin_dir, "%s/" TRACK_PIN_VERSION, bpf_dir) < 0)
                return -ENOMEM;

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s/%s", pin_dir, names[i]) < 0)
                        return -ENOMEM;
                if (unlink(path) < 0 && errno != ENOENT && r == 0)
                        r = -errno;
        }

        if (rmdir(pin_dir) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        /* Other modules may keep their pins next to ours. */
        if (rmdir(bpf_dir) < 0 && errno != ENOENT && errno != ENOTEMPTY && r == 0)
                r = -errno;
        return r;
}
