/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "claims.h"
#include "fileio.h"
#include "log.h"
#include "util.h"

/* A uid range is at most 2^32 ids: [start, start + count) must stay within it. */
#define ID_SPACE_END ((uint64_t) UINT32_MAX + 1)

/* systemd hands out 65536 ids per container and per nsresourced range. */
#define CONTAINER_RANGE_SIZE 65536u

/* nsresourced's registry files are a few hundred bytes; anything much larger
 * is not one of them and is not worth reading into memory. */
#define NSRESOURCED_FILE_MAX ((size_t) 64 * 1024)

/* NSS entries with more members than this are broken rather than real. */
#define NSS_BUFFER_MAX ((size_t) 16 * 1024 * 1024)

const ClaimSources claim_sources_default = {
        .subuid_path = "/etc/subuid",
        .subgid_path = "/etc/subgid",
        .dynamic_uid_dir = "/run/systemd/dynamic-uid",
        .nsresourced_dir = "/run/systemd/nsresource/registry",
        .nspawn_uid_dir = "/run/systemd/nspawn-uid",
        .use_nss = 1,
};

void claims_done(Claims *c) {
        if (!c)
                return;
        free(c->ranges);
        free(c->users);
        *c = (Claims) {};
}

static int grow(void **array, size_t *allocated, size_t needed, size_t elem_size) {
        size_t n;
        void *p;

        if (needed <= *allocated)
                return 0;
        n = *allocated ? *allocated : 64;
        while (n < needed) {
                if (n > SIZE_MAX / 2 / elem_size)
                        return -ENOMEM;
                n *= 2;
        }
        p = realloc(*array, n * elem_size);
        if (!p)
                return -ENOMEM;
        *array = p;
        *allocated = n;
        return 0;
}

/* The Claims struct carries no capacity field; the array is grown in powers
 * of two, so the capacity follows from the count. */
static size_t capacity_of(size_t n) {
        size_t c = 64;

        if (n == 0)
                return 0;
        while (c < n)
                c *= 2;
        return c;
}

int claims_add(Claims *c, uint32_t start, uint32_t count) {
        size_t allocated;
        int r;

        if (count == 0 || (uint64_t) start + count > ID_SPACE_END)
                return -EINVAL;

        allocated = capacity_of(c->n_ranges);
        r = grow((void **) &c->ranges, &allocated, c->n_ranges + 1, sizeof(ClaimRange));
        if (r < 0)
                return r;
        c->ranges[c->n_ranges++] = (ClaimRange) { .start = start, .count = count };
        return 0;
}

static int append_user(Claims *c, uid_t uid, gid_t gid) {
        size_t allocated = capacity_of(c->n_users);
        int r;

        r = grow((void **) &c->users, &allocated, c->n_users + 1, sizeof(UserEntry));
        if (r < 0)
                return r;
        c->users[c->n_users++] = (UserEntry) { .uid = uid, .gid = gid };
        return 0;
}

/* First position whose uid is >= uid. */
static size_t users_lower_bound(const Claims *c, uid_t uid) {
        size_t lo = 0, hi = c->n_users;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (c->users[mid].uid < uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Keeps the table sorted for callers outside claims_collect(), which adds
 * in bulk and sorts once. As with NSS lookups, the first entry for a uid
 * wins. */
int claims_add_user(Claims *c, uid_t uid, gid_t gid) {
        size_t i;
        int r;

        if (c->n_users == 0 || c->users[c->n_users - 1].uid < uid)
                return append_user(c, uid, gid);

        i = users_lower_bound(c, uid);
        if (i < c->n_users && c->users[i].uid == uid)
                return 0;

        r = append_user(c, uid, gid);
        if (r < 0)
                return r;
        memmove(c->users + i + 1, c->users + i, (c->n_users - 1 - i) * sizeof(UserEntry));
        c->users[i] = (UserEntry) { .uid = uid, .gid = gid };
        return 0;
}

int claims_user_gid(const Claims *c, uid_t uid, gid_t *ret) {
        size_t i = users_lower_bound(c, uid);

        if (i >= c->n_users || c->users[i].uid != uid)
                return -ENOENT;
        *ret = c->users[i].gid;
        return 0;
}

static int parse_u32_string(const char *s, uint32_t *ret) {
        return parse_decimal_u32(s, strlen(s), ret);
}

static bool is_blank(char ch) {
        return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* One "owner:start:count" line, already stripped of surrounding blanks. */
static int parse_subid_line(const char *line, uint32_t *ret_start, uint32_t *ret_count) {
        const char *colon1, *colon2, *fields;
        uint32_t start, count;

        colon1 = strchr(line, ':');
        if (!colon1 || colon1 == line)
                return -EINVAL;
        fields = colon1 + 1;
        colon2 = strchr(fields, ':');
        if (!colon2)
                return -EINVAL;

        if (parse_decimal_u32(fields, (size_t) (colon2 - fields), &start) < 0)
                return -EINVAL;
        if (parse_u32_string(colon2 + 1, &count) < 0)
                return -EINVAL;
        if (count == 0 || (uint64_t) start + count > ID_SPACE_END)
                return -EINVAL;

        *ret_start = start;
        *ret_count = count;
        return 0;
}

int claims_parse_subid(FILE *f, Claims *c, unsigned *ret_bad) {
        _cleanup_free_ char *line = NULL;
        size_t allocated = 0;
        unsigned bad = 0;
        ssize_t n;
        int r;

        errno = 0;
        while ((n = getline(&line, &allocated, f)) >= 0) {
                char *p = line, *end = line + n;
                uint32_t start, count;

                while (end > p && is_blank(end[-1]))
                        end--;
                *end = '\0';
                while (is_blank(*p))
                        p++;
                if (*p == '\0' || *p == '#')
                        continue;

                /* An embedded NUL would hide the rest of the line from us. */
                if ((size_t) (end - line) != strlen(line)) {
                        bad++;
                        continue;
                }

                if (parse_subid_line(p, &start, &count) < 0) {
                        bad++;
                        continue;
                }
                r = claims_add(c, start, count);
                if (r < 0)
                        return r;
        }
        if (ferror(f))
                return errno > 0 ? -errno : -EIO;

        if (ret_bad)
                *ret_bad = bad;
        return 0;
}

static int collect_subid(const char *path, Claims *c) {
        _cleanup_fclose_ FILE *f = NULL;
        unsigned bad = 0;
        int r;

        if (!path)
                return 0;
        f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT)
                        return 0;
                return log_warning_errno(errno, "Failed to open '%s': %m", path);
        }
        r = claims_parse_subid(f, c, &bad);
        if (r < 0)
                return log_warning_errno(r, "Failed to read '%s': %m", path);
        if (bad > 0)
                log_warning("Skipped %u malformed line(s) in '%s'", bad, path);
        return 0;
}

/* A missing directory leaves *ret_dir NULL: nothing is claimed there. */
static int open_dir(const char *path, DIR **ret_dir) {
        DIR *d;

        *ret_dir = NULL;
        if (!path)
                return 0;
        d = opendir(path);      /* glibc opens with O_CLOEXEC */
        if (!d) {
                if (errno == ENOENT)
                        return 0;
                return log_warning_errno(errno, "Failed to open directory '%s': %m", path);
        }
        *ret_dir = d;
        return 0;
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

/* Iterates a directory, calling fn for every entry other than "." and "..". */
static int for_each_dir_entry(const char *path, Claims *c,
                              int (*fn)(DIR *d, const struct dirent *de, Claims *c, const char *path)) {
        _cleanup_(closedirp) DIR *d = NULL;
        int r;

        r = open_dir(path, &d);
        if (r < 0 || !d)
                return r;

        for (;;) {
                struct dirent *de;

                r = read_dir_entry(d, &de);
                if (r < 0)
                        return log_warning_errno(r, "Failed to read directory '%s': %m", path);
                if (r == 0)
                        return 0;
                r = fn(d, de, c, path);
                if (r < 0)
                        return r;
        }
}

static int on_dynamic_uid(DIR *d, const struct dirent *de, Claims *c, const char *path) {
        uint32_t uid;

        (void) d;
        (void) path;
        /* Besides the numeric lock files the directory holds name symlinks;
         * only the numbers are ids. */
        if (parse_u32_string(de->d_name, &uid) < 0)
                return 0;
        return claims_add(c, uid, 1);
}

/* "start"/"size" from one registry file of systemd-nsresourced. */
static int read_nsresourced_file(int dir_fd, const char *name, uint32_t *ret_start, uint32_t *ret_count) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        struct json_object *root, *o;
        int64_t start, size;
        struct stat st;
        ssize_t n;
        int r = -EBADMSG;

        /* Its symlinks (by name, by uid) lead to the same file; following them is fine. */
        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size > (off_t) NSRESOURCED_FILE_MAX)
                return -EBADMSG;

        buf = malloc(NSRESOURCED_FILE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        n = read_full(fd, buf, NSRESOURCED_FILE_MAX);
        if (n < 0)
                return (int) n;
        buf[n] = '\0';

        root = json_tokener_parse(buf);
        if (!root)
                return -EBADMSG;
        if (!json_object_is_type(root, json_type_object))
                goto finish;
        if (!json_object_object_get_ex(root, "start", &o) || !json_object_is_type(o, json_type_int))
                goto finish;
        start = json_object_get_int64(o);
        if (!json_object_object_get_ex(root, "size", &o) || !json_object_is_type(o, json_type_int))
                goto finish;
        size = json_object_get_int64(o);
        if (start < 0 || size <= 0 || (uint64_t) start + (uint64_t) size > ID_SPACE_END)
                goto finish;

        *ret_start = (uint32_t) start;
        *ret_count = (uint32_t) size;
        r = 0;
finish:
        json_object_put(root);
        return r;
}

static int on_nsresourced(DIR *d, const struct dirent *de, Claims *c, const char *path) {
        uint32_t start = 0, count = 0;
        int r;

        if (!has_suffix(de->d_name, ".userns"))
                return 0;

        r = read_nsresourced_file(dirfd(d), de->d_name, &start, &count);
        if (r == -ENOMEM)
                return r;
        if (r >= 0)
                return claims_add(c, start, count);

        /* Unreadable or written in a format we do not know: the by-uid name
         * still says where a range starts, and claiming too much is safe. */
        if (de->d_name[0] == 'u') {
                const char *digits = de->d_name + 1;
                size_t len = strlen(digits) - strlen(".userns");

                if (parse_decimal_u32(digits, len, &start) >= 0) {
                        count = (uint32_t) (ID_SPACE_END - start < CONTAINER_RANGE_SIZE ? ID_SPACE_END - start
                                                                                         : CONTAINER_RANGE_SIZE);
                        return claims_add(c, start, count);
                }
        }
        log_debug("Ignoring '%s/%s': no range in it", path, de->d_name);
        return 0;
}

static int on_nspawn_uid(DIR *d, const struct dirent *de, Claims *c, const char *path) {
        uint32_t base, count;

        (void) d;
        (void) path;
        if (parse_u32_string(de->d_name, &base) < 0)
                return 0;
        count = (uint32_t) (ID_SPACE_END - base < CONTAINER_RANGE_SIZE ? ID_SPACE_END - base : CONTAINER_RANGE_SIZE);
        return claims_add(c, base, count);
}

/* One database NSS enumerates: next() reads an entry with getpwent_r() or
 * getgrent_r() and adds its ids to c. It returns 1 after adding an entry, 0
 * if there was none (with the function's error in *ret_error), or a negative
 * errno if adding failed. */
typedef struct NssDatabase {
        const char *what;
        void (*begin)(void);
        void (*end)(void);
        int (*next)(Claims *c, char *buf, size_t size, int *ret_error);
} NssDatabase;

static int next_user(Claims *c, char *buf, size_t size, int *ret_error) {
        struct passwd pw, *result = NULL;
        int r;

        *ret_error = getpwent_r(&pw, buf, size, &result);
        if (!result)
                return 0;
        r = claims_add(c, pw.pw_uid, 1);
        if (r >= 0)
                r = claims_add(c, pw.pw_gid, 1);
        if (r >= 0)
                r = append_user(c, pw.pw_uid, pw.pw_gid);
        return r < 0 ? r : 1;
}

static int next_group(Claims *c, char *buf, size_t size, int *ret_error) {
        struct group gr, *result = NULL;
        int r;

        *ret_error = getgrent_r(&gr, buf, size, &result);
        if (!result)
                return 0;
        r = claims_add(c, gr.gr_gid, 1);
        return r < 0 ? r : 1;
}

static const NssDatabase nss_users = {
        .what = "users",
        .begin = setpwent,
        .end = endpwent,
        .next = next_user,
};

static const NssDatabase nss_groups = {
        .what = "groups",
        .begin = setgrent,
        .end = endgrent,
        .next = next_group,
};

static int collect_nss(Claims *c, const NssDatabase *db) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 4096;
        int r;

        buf = malloc(size);
        if (!buf)
                return -ENOMEM;

        db->begin();
        for (;;) {
                int k = 0;

                r = db->next(c, buf, size, &k);
                if (r > 0)
                        continue;
                if (r < 0)
                        break;
                /* glibc retries the same entry after ERANGE; groups with many
                 * members outgrow small buffers quickly. */
                if (k == ERANGE && size < NSS_BUFFER_MAX) {
                        char *p = realloc(buf, size * 2);

                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        buf = p;
                        size *= 2;
                        continue;
                }
                /* ENOENT (and 0, from some modules) marks the end. Anything else
                 * means a source failed to answer: better no list than a
                 * short one, which would let us hand out a user's id. */
                if (k != 0 && k != ENOENT)
                        r = log_warning_errno(k, "Failed to enumerate %s: %m", db->what);
                break;
        }
        db->end();
        return r;
}

static int compare_ranges(const void *a, const void *b) {
        const ClaimRange *x = a, *y = b;

        if (x->start != y->start)
                return x->start < y->start ? -1 : 1;
        if (x->count != y->count)
                return x->count < y->count ? -1 : 1;
        return 0;
}

/* Thousands of users are thousands of single-id claims, mostly adjacent:
 * merged, the list handed to the allocator is short. */
static void merge_ranges(Claims *c) {
        size_t out = 0;

        if (c->n_ranges == 0)
                return;
        qsort(c->ranges, c->n_ranges, sizeof(ClaimRange), compare_ranges);

        for (size_t i = 1; i < c->n_ranges; i++) {
                ClaimRange *last = c->ranges + out;
                uint64_t last_end = (uint64_t) last->start + last->count;
                uint64_t end = (uint64_t) c->ranges[i].start + c->ranges[i].count;

                /* The count field cannot describe all 2^32 ids at once; such
                 * a pair simply stays two overlapping ranges. */
                if (c->ranges[i].start <= last_end && end - last->start <= UINT32_MAX) {
                        if (end > last_end)
                                last->count = (uint32_t) (end - last->start);
                        continue;
                }
                c->ranges[++out] = c->ranges[i];
        }
        c->n_ranges = out + 1;
}

/* The first entry for a uid is the one getpwuid() would return, so sorting
 * must be stable: a bottom-up merge sort through a scratch buffer. */
static int sort_users_stable(UserEntry *users, size_t n) {
        _cleanup_free_ UserEntry *scratch = NULL;
        UserEntry *from = users, *to;

        if (n < 2)
                return 0;
        scratch = malloc(n * sizeof(UserEntry));
        if (!scratch)
                return -ENOMEM;
        to = scratch;

        for (size_t width = 1; width < n; width *= 2) {
                for (size_t lo = 0; lo < n; lo += 2 * width) {
                        size_t mid = lo + width < n ? lo + width : n;
                        size_t hi = mid + width < n ? mid + width : n;
                        size_t i = lo, j = mid, k = lo;

                        while (i < mid && j < hi)
                                to[k++] = from[j].uid < from[i].uid ? from[j++] : from[i++];
                        while (i < mid)
                                to[k++] = from[i++];
                        while (j < hi)
                                to[k++] = from[j++];
                }
                UserEntry *t = from;
                from = to;
                to = t;
        }
        if (from != users)
                memcpy(users, from, n * sizeof(UserEntry));
        return 0;
}

static int finish_users(Claims *c) {
        size_t out = 0;
        int r;

        r = sort_users_stable(c->users, c->n_users);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_users; i++)
                if (out == 0 || c->users[out - 1].uid != c->users[i].uid)
                        c->users[out++] = c->users[i];
        c->n_users = out;
        return 0;
}

int claims_collect(const ClaimSources *src, Claims *ret) {
        Claims c = {};
        int r;

        r = collect_subid(src->subuid_path, &c);
        if (r >= 0)
                r = collect_subid(src->subgid_path, &c);
        if (r >= 0)
                r = for_each_dir_entry(src->dynamic_uid_dir, &c, on_dynamic_uid);
        if (r >= 0)
                r = for_each_dir_entry(src->nsresourced_dir, &c, on_nsresourced);
        if (r >= 0)
                r = for_each_dir_entry(src->nspawn_uid_dir, &c, on_nspawn_uid);
        if (r >= 0 && src->use_nss) {
                r = collect_nss(&c, &nss_users);
                if (r >= 0)
                        r = collect_nss(&c, &nss_groups);
        }
        if (r >= 0)
                r = finish_users(&c);
        if (r < 0) {
                claims_done(&c);
                return r;
        }

        merge_ranges(&c);
        *ret = c;
        return 0;
}
