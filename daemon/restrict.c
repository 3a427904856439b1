/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "bpf-util.h"
#include "log.h"
#include "restrict.h"
#include "userns-restrict.skel.h"
#include "util.h"

/* Bump when a pinned map's type, key, value or size changes: libbpf refuses
 * to reuse an incompatible pin. The next start then fills new maps, attaches
 * and removes the older directory, whose programs enforce until then. */
#define RESTRICT_PIN_DIR "restrict-v1"
#define RESTRICT_PIN_PREFIX "restrict-v"

#define LSM_LIST "/sys/kernel/security/lsm"

/* Linux 6.8 <linux/stat.h>; Debian 12's headers predate it. */
#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif
#ifndef PIDFS_MAGIC
#define PIDFS_MAGIC 0x50494446
#endif
#define IN_SET_MAGIC(x, ...) ({                                         \
        const __typeof__(x) _set[] = { __VA_ARGS__ };                   \
        bool _found = false;                                            \
        for (size_t _i = 0; _i < ELEMENTSOF(_set); _i++)                \
                _found = _found || _set[_i] == (x);                     \
        _found;                                                         \
})

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

struct Restrictor {
        struct userns_restrict *skel;
        char *pin_dir;
        struct bpf_link *links[16];
        size_t n_links;
};

static const char *const pinned_maps[] = { "restricted", "mounts", "settings", "stats" };

static int reason(char **ret_reason, int r, const char *format, ...) __attribute__((format(printf, 3, 4)));
static int reason(char **ret_reason, int r, const char *format, ...) {
        va_list ap;

        assert(r < 0);

        if (ret_reason) {
                free(*ret_reason);
                *ret_reason = NULL;
                /* %m means r. */
                errno = -r;
                va_start(ap, format);
                if (vasprintf(ret_reason, format, ap) < 0)
                        *ret_reason = NULL;
                va_end(ap);
        }
        return r;
}

/* Reads the active LSM list; NULL with -errno if securityfs is not there. */
static int read_lsm_list(char **ret) {
        _cleanup_fclose_ FILE *f = NULL;
        char buf[512];
        size_t n;

        f = fopen(LSM_LIST, "re");
        if (!f)
                return -errno;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        if (ferror(f))
                return -EIO;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

int restrictor_probe(char **ret_reason) {
        _cleanup_free_ char *lsms = NULL;
        int r;

        r = read_lsm_list(&lsms);
        if (r >= 0 && !comma_list_has(lsms, "bpf"))
                return reason(ret_reason, -EOPNOTSUPP,
                              "The BPF LSM is not active (active LSMs: %s): add it to the kernel command line "
                              "as lsm=%s,bpf and reboot",
                              lsms, lsms);
        /* Without securityfs the list cannot be read; the check after
         * attaching tells whether the hooks run. */
        if (r < 0 && r != -ENOENT)
                return reason(ret_reason, r, "Cannot read " LSM_LIST ": %m");

        r = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_LSM, NULL);
        if (r == 0)
                return reason(ret_reason, -EOPNOTSUPP,
                              "This kernel refuses to load BPF LSM programs: they need CONFIG_BPF_LSM=y, "
                              "bpf in lsm= on the kernel command line, and a kernel that allows BPF trampolines");
        if (r < 0)
                return reason(ret_reason, r, "Cannot probe for BPF LSM programs: %m");
        return 0;
}

static void restrictor_freep(Restrictor **r) {
        restrictor_free(*r);
}

int restrictor_open(const char *bpf_dir, const struct restrict_pool *pools, size_t n_pools,
                    Restrictor **ret, char **ret_reason) {
        _cleanup_(restrictor_freep) Restrictor *rs = NULL;
        struct restrict_config settings = {};
        struct bpf_program *prog;
        uint32_t zero = 0;
        int r;

        assert(bpf_dir);
        assert(pools || n_pools == 0);
        assert(ret);

        if (n_pools > RESTRICT_MAX_POOLS)
                return reason(ret_reason, -E2BIG, "Too many transient pools for the restriction (%zu)", n_pools);

        bpf_log_to_daemon_log();

        rs = calloc(1, sizeof(*rs));
        if (!rs)
                return -ENOMEM;

        r = bpf_pin_dir_prepare(bpf_dir, RESTRICT_PIN_DIR, &rs->pin_dir);
        if (r < 0)
                return reason(ret_reason, r, "Cannot prepare '%s' for pinning: %m", bpf_dir);
        /* Unpinned programs end with the service, while the namespaces they
         * guard live on. */
        if (r == 0)
                return reason(ret_reason, -EOPNOTSUPP,
                              "'%s' is not on a BPF filesystem, so the restriction would end with the service: "
                              "mount one (mount -t bpf bpf /sys/fs/bpf)",
                              bpf_dir);

        rs->skel = userns_restrict__open();
        if (!rs->skel)
                return reason(ret_reason, -errno, "Cannot open the restriction's BPF object: %m");

        /* Hooks come and go between kernels (inode_set_acl arrived in 6.2):
         * a program for a hook this kernel lacks would fail the whole load. */
        bpf_object__for_each_program(prog, rs->skel->obj) {
                const char *hook = bpf_program__section_name(prog);

                if (strncmp(hook, "lsm/", 4) != 0)
                        continue;
                hook += 4;
                if (libbpf_find_vmlinux_btf_id(hook, BPF_LSM_MAC) < 0) {
                        log_debug("This kernel has no LSM hook %s, not loading %s", hook, bpf_program__name(prog));
                        (void) bpf_program__set_autoload(prog, false);
                }
        }

        {
                struct bpf_map *maps[] = {
                        rs->skel->maps.restricted,
                        rs->skel->maps.mounts,
                        rs->skel->maps.settings,
                        rs->skel->maps.stats,
                };

                static_assert(ELEMENTSOF(maps) == ELEMENTSOF(pinned_maps), "pinned map lists differ");
                for (size_t i = 0; i < ELEMENTSOF(maps); i++) {
                        _cleanup_free_ char *path = NULL;

                        if (asprintf(&path, "%s/%s", rs->pin_dir, pinned_maps[i]) < 0)
                                return -ENOMEM;
                        /* libbpf reuses the map pinned there (namespaces
                         * restricted by the previous run stay restricted),
                         * pins a new one where there is none, and fails on
                         * an incompatible one: see RESTRICT_PIN_DIR. */
                        r = bpf_map__set_pin_path(maps[i], path);
                        if (r < 0)
                                return reason(ret_reason, r, "Cannot pin '%s': %m", path);
                }
        }

        r = userns_restrict__load(rs->skel);
        if (r < 0)
                return reason(ret_reason, r,
                              "The kernel refused the BPF LSM programs: %m%s",
                              r == -EPERM ? " (kernel lockdown, or a kernel that refuses BPF trampoline programs)" : "");

        settings.n_pools = (unsigned) n_pools;
        for (size_t i = 0; i < n_pools; i++)
                settings.pools[i] = pools[i];
        r = bpf_map_update_elem(bpf_map__fd(rs->skel->maps.settings), &zero, &settings, BPF_ANY);
        if (r < 0)
                return reason(ret_reason, r, "Cannot write the restriction's settings: %m");

        *ret = TAKE_PTR(rs);
        return 0;
}

/* Points <pin_dir>/<name> at the link in one step: the old link stays
 * attached until the new one has taken its place. */
static int pin_link(const char *pin_dir, const char *name, struct bpf_link *link) {
        _cleanup_free_ char *path = NULL, *tmp = NULL;
        int r;

        /* bpffs refuses names with dots. */
        if (asprintf(&path, "%s/%s", pin_dir, name) < 0 || asprintf(&tmp, "%s/%s-new", pin_dir, name) < 0)
                return -ENOMEM;

        (void) unlink(tmp);
        r = bpf_obj_pin(bpf_link__fd(link), tmp);
        if (r < 0)
                return r;
        if (rename(tmp, path) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

static int unpin_dir(const char *dir) {
        _cleanup_close_ int dfd = -1;
        DIR *d;
        struct dirent *de;
        int r = 0;

        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return errno == ENOENT ? 0 : -errno;
        d = fdopendir(dfd);
        if (!d)
                return -errno;
        dfd = -1;
        /* Links go first: once their pins are gone the programs detach, and
         * the maps they used may go after them. */
        for (int pass = 0; pass < 2; pass++) {
                rewinddir(d);
                while ((de = readdir(d))) {
                        bool is_map = false;

                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;
                        for (size_t i = 0; i < ELEMENTSOF(pinned_maps); i++)
                                is_map = is_map || strcmp(de->d_name, pinned_maps[i]) == 0;
                        if (is_map != (pass == 1))
                                continue;
                        if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT && r == 0)
                                r = -errno;
                }
        }
        closedir(d);
        if (rmdir(dir) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

/* Older pin directories' programs enforce until ours run; then they go. */
static void unpin_older_versions(const char *pin_dir) {
        _cleanup_free_ char *parent = strdup(pin_dir);
        DIR *d;
        struct dirent *de;
        char *slash;

        if (!parent)
                return;
        slash = strrchr(parent, '/');
        if (!slash)
                return;
        *slash = '\0';

        d = opendir(parent);
        if (!d)
                return;
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL;
                int r;

                if (strncmp(de->d_name, RESTRICT_PIN_PREFIX, strlen(RESTRICT_PIN_PREFIX)) != 0 ||
                    strcmp(de->d_name, RESTRICT_PIN_DIR) == 0)
                        continue;
                if (asprintf(&path, "%s/%s", parent, de->d_name) < 0)
                        break;
                r = unpin_dir(path);
                if (r < 0)
                        log_warning_errno(r, "Failed to remove the older restriction pins in '%s': %m", path);
                else
                        log_info("Replaced the restriction pinned in '%s'", path);
        }
        closedir(d);
}

/* An LSM program attached where the BPF LSM is not active never runs: make
 * a hook fire (mkdir reaches path_mkdir) and look at the counter. */
static int hooks_fire(Restrictor *rs, uint64_t *ret_calls) {
        uint64_t before[_RESTRICT_STAT_MAX], after[_RESTRICT_STAT_MAX];
        _cleanup_free_ char *probe = NULL;
        int r;

        r = restrictor_stats(rs, before);
        if (r < 0)
                return r;
        if (asprintf(&probe, "%s/probe-%d", rs->pin_dir, (int) getpid()) < 0)
                return -ENOMEM;
        if (mkdir(probe, 0700) < 0 && errno != EEXIST)
                return -errno;
        (void) rmdir(probe);
        r = restrictor_stats(rs, after);
        if (r < 0)
                return r;
        *ret_calls = after[RESTRICT_STAT_CALLS];
        return after[RESTRICT_STAT_CALLS] > before[RESTRICT_STAT_CALLS];
}

int restrictor_attach(Restrictor *rs, char **ret_reason) {
        struct bpf_program *prog;
        uint64_t calls = 0;
        int r;

        assert(rs);
        assert(rs->n_links == 0);

        bpf_object__for_each_program(prog, rs->skel->obj) {
                struct bpf_link *link;

                if (!bpf_program__autoload(prog))
                        continue;
                if (rs->n_links >= ELEMENTSOF(rs->links))
                        return reason(ret_reason, -E2BIG, "Too many restriction programs");
                link = bpf_program__attach(prog);
                if (!link)
                        return reason(ret_reason, -errno, "Cannot attach %s: %m", bpf_program__name(prog));
                rs->links[rs->n_links++] = link;
        }

        r = hooks_fire(rs, &calls);
        if (r < 0)
                return reason(ret_reason, r, "Cannot check whether the restriction runs (mkdir in '%s'): %m", rs->pin_dir);
        if (r == 0) {
                for (size_t i = 0; i < rs->n_links; i++)
                        bpf_link__destroy(rs->links[i]);
                rs->n_links = 0;
                return reason(ret_reason, -EOPNOTSUPP,
                              "The BPF LSM programs attached but never run: the BPF LSM is not active; "
                              "add bpf to lsm= on the kernel command line and reboot");
        }

        /* Only now that ours run: the previous links (if any) go as their
         * pins are replaced. */
        {
                size_t i = 0;

                bpf_object__for_each_program(prog, rs->skel->obj) {
                        if (!bpf_program__autoload(prog))
                                continue;
                        r = pin_link(rs->pin_dir, bpf_program__name(prog), rs->links[i++]);
                        if (r < 0)
                                return reason(ret_reason, r,
                                              "Cannot pin the link of %s, the restriction would end with the service: %m",
                                              bpf_program__name(prog));
                }
        }
        unpin_older_versions(rs->pin_dir);

        log_debug("Restriction hooks ran %" PRIu64 " times so far", calls);
        return 0;
}

Restrictor *restrictor_free(Restrictor *rs) {
        if (!rs)
                return NULL;

        /* Closing our link fds leaves the pinned ones attached. */
        for (size_t i = 0; i < rs->n_links; i++)
                bpf_link__destroy(rs->links[i]);
        userns_restrict__destroy(rs->skel);
        free(rs->pin_dir);
        free(rs);
        return NULL;
}

int restrictor_add(Restrictor *rs, uint64_t key, uint32_t uid_start, uint32_t size) {
        struct restrict_ns v = { .uid_start = uid_start, .size = size };

        assert(rs);

        return bpf_map_update_elem(bpf_map__fd(rs->skel->maps.restricted), &key, &v, BPF_ANY);
}

int restrictor_remove(Restrictor *rs, uint64_t key) {
        int r, q;

        assert(rs);

        /* The inner map is freed with its last reference. */
        q = bpf_map_delete_elem(bpf_map__fd(rs->skel->maps.mounts), &key);
        r = bpf_map_delete_elem(bpf_map__fd(rs->skel->maps.restricted), &key);
        if (r < 0 && r != -ENOENT)
                return r;
        if (q < 0 && q != -ENOENT)
                return q;
        return 0;
}

int restrictor_prune(Restrictor *rs, bool (*keep)(uint64_t key, void *userdata), void *userdata) {
        KeyList stale = {};
        int r;

        assert(rs);
        assert(keep);

        /* A key may be in both maps; removing it twice is harmless. */
        r = bpf_map_stale_keys(bpf_map__fd(rs->skel->maps.restricted), keep, userdata, &stale);
        if (r >= 0)
                r = bpf_map_stale_keys(bpf_map__fd(rs->skel->maps.mounts), keep, userdata, &stale);
        for (size_t i = 0; r >= 0 && i < stale.n; i++)
                r = restrictor_remove(rs, stale.keys[i]);
        free(stale.keys);
        return r < 0 ? r : (int) stale.n;
}

int restrictor_forget_mounts(Restrictor *rs, uint64_t key) {
        int r;

        assert(rs);

        r = bpf_map_delete_elem(bpf_map__fd(rs->skel->maps.mounts), &key);
        return r == -ENOENT ? 0 : r;
}

static int inner_map_get(Restrictor *rs, uint64_t key) {
        int outer = bpf_map__fd(rs->skel->maps.mounts);
        uint32_t inner_id;
        int fd, r;

        r = bpf_map_lookup_elem(outer, &key, &inner_id);
        if (r >= 0)
                return bpf_map_get_fd_by_id(inner_id);
        if (r != -ENOENT)
                return r;

        fd = bpf_map_create(BPF_MAP_TYPE_HASH, "restrict_mounts", sizeof(uint64_t), sizeof(uint8_t),
                            RESTRICT_MAX_MOUNTS, NULL);
        if (fd < 0)
                return fd;
        r = bpf_map_update_elem(outer, &key, &fd, BPF_NOEXIST);
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}

int restrictor_add_mount(Restrictor *rs, uint64_t key, uint64_t mnt_id) {
        _cleanup_close_ int inner = -1;
        uint8_t one = 1;

        assert(rs);

        inner = inner_map_get(rs, key);
        if (inner < 0)
                return inner;
        return bpf_map_update_elem(inner, &mnt_id, &one, BPF_ANY);
}

int restrictor_mount_id(int fd, uint64_t *ret_id, bool *ret_unique) {
        struct statx stx = {};
        struct statfs sfs;

        assert(fd >= 0);
        assert(ret_id);

        /* What it is first: pipes, sockets, namespaces and other anonymous
         * inodes live on internal mounts nobody writes through. */
        if (fstatfs(fd, &sfs) < 0)
                return -errno;
        if (IN_SET_MAGIC(sfs.f_type, NSFS_MAGIC, ANON_INODE_FS_MAGIC, PIPEFS_MAGIC, SOCKFS_MAGIC, PIDFS_MAGIC))
                return -EINVAL;

        if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID | STATX_MNT_ID_UNIQUE, &stx) < 0)
                return -errno;
        if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) || !(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
                return -EINVAL;
        if (!(stx.stx_mask & (STATX_MNT_ID | STATX_MNT_ID_UNIQUE)))
                return -EOPNOTSUPP;

        *ret_id = stx.stx_mnt_id;
        if (ret_unique)
                *ret_unique = stx.stx_mask & STATX_MNT_ID_UNIQUE;
        return 0;
}

int restrictor_stats(Restrictor *rs, uint64_t ret[_RESTRICT_STAT_MAX]) {
        int ncpus = libbpf_num_possible_cpus();
        _cleanup_free_ uint64_t *values = NULL;

        assert(rs);

        if (ncpus <= 0)
                return ncpus < 0 ? ncpus : -EINVAL;
        values = calloc(ncpus, sizeof(uint64_t));
        if (!values)
                return -ENOMEM;

        for (uint32_t k = 0; k < _RESTRICT_STAT_MAX; k++) {
                int r = bpf_map_lookup_elem(bpf_map__fd(rs->skel->maps.stats), &k, values);
                if (r < 0)
                        return r;
                ret[k] = 0;
                for (int c = 0; c < ncpus; c++)
                        ret[k] += values[c];
        }
        return 0;
}

const void *restrictor_object(size_t *ret_size) {
        return userns_restrict__elf_bytes(ret_size);
}

int restrictor_unpin(const char *bpf_dir) {
        _cleanup_free_ char *pin_dir = NULL;
        int r;

        assert(bpf_dir);

        if (asprintf(&pin_dir, "%s/" RESTRICT_PIN_DIR, bpf_dir) < 0)
                return -ENOMEM;
        r = unpin_dir(pin_dir);
        unpin_older_versions(pin_dir);
        /* Other modules may keep their pins next to ours. */
        if (rmdir(bpf_dir) < 0 && errno != ENOENT && errno != ENOTEMPTY && r == 0)
                r = -errno;
        return r;
}
