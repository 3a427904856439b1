/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * libnss_nsresd: user and group names for the transient ids nsresd hands out.
 *
 * UID uid_start + k of a transient namespace called <name> is the user
 * "ns-<name>-<k>", whose primary group is the group of the same name and
 * number (nsresd always makes gid_start = uid_start). Without these entries
 * ps and ls show bare numbers, and dbus-daemon refuses connections from a uid
 * it cannot resolve, so nothing inside an allocated namespace could talk to
 * the system bus.
 *
 * The only source is the daemon's world-readable index (NSRESD_INDEX_PATH,
 * "uid_start size name" lines), never the 0700 registry and never D-Bus: an
 * NSS module runs inside every process that resolves a name, dbus-daemon
 * included, and must not call back into the bus or pull in libraries. Each
 * lookup opens, reads and closes the file with no state kept between calls,
 * which makes the module thread-safe without locks; what it reads is bounded,
 * and any line it does not understand is skipped.
 *
 * There is deliberately no enumeration (setpwent/getpwent): nsresd enumerates
 * NSS users and groups to learn which ids something else claims, and must not
 * see its own ranges among them.
 */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <nss.h>
#include <pwd.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "names.h"

#define USER_PREFIX "ns-"
#define GECOS_PREFIX "nsresd user namespace "
#define LOCKED_PASSWORD "!*"
#define HOME_DIR "/"
#define SHELL "/usr/sbin/nologin"

/* The longest valid line: two 10-digit numbers, two separators, a name. */
#define INDEX_LINE_MAX (10 + 1 + 10 + 1 + QUALIFIED_NAME_MAX)
/* The index of a full pool is a couple of MiB; whatever lies beyond this is
 * not the daemon's and is not read, so a huge file cannot stall a lookup. */
#define INDEX_READ_MAX ((size_t) 64 * 1024 * 1024)
/* "ns-" + name + "-" + up to 10 digits. */
#define USER_NAME_MAX (sizeof(USER_PREFIX) - 1 + QUALIFIED_NAME_MAX + 1 + 10)

typedef struct IndexEntry {
        uint32_t uid_start;
        uint32_t size;
        char name[QUALIFIED_NAME_MAX + 1];
} IndexEntry;

/* What a lookup looks for: an id, or a name with its offset. */
typedef struct IndexQuery {
        bool by_name;
        uint32_t id;
        const char *name;
        size_t name_len;
        uint32_t offset;
} IndexQuery;

enum nss_status _nss_nsresd_getpwuid_r(uid_t uid, struct passwd *pw, char *buffer, size_t buflen, int *errnop);
enum nss_status _nss_nsresd_getpwnam_r(const char *name, struct passwd *pw, char *buffer, size_t buflen,
                                       int *errnop);
enum nss_status _nss_nsresd_getgrgid_r(gid_t gid, struct group *gr, char *buffer, size_t buflen, int *errnop);
enum nss_status _nss_nsresd_getgrnam_r(const char *name, struct group *gr, char *buffer, size_t buflen,
                                       int *errnop);

static bool name_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* The characters of a stored namespace name: what the daemon writes, and all
 * that may end up in a passwd line. */
static bool namespace_name_ok(const char *s, size_t n) {
        if (n == 0 || n > QUALIFIED_NAME_MAX || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!name_char_ok(s[i]))
                        return false;
        return true;
}

/* A decimal uint32 as the daemon prints it: digits only, no sign, no
 * leading zero, so that every number has exactly one spelling. */
static bool parse_u32(const char *s, size_t n, uint32_t *ret) {
        uint64_t v = 0;

        if (n == 0 || n > 10 || (s[0] == '0' && n > 1))
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        if (v > UINT32_MAX)
                return false;
        *ret = (uint32_t) v;
        return true;
}

/* One index line without its newline: "uid_start size name", single spaces. */
static bool parse_index_line(const char *line, size_t n, IndexEntry *ret) {
        const char *sp1, *sp2, *name;
        IndexEntry e = {};

        sp1 = memchr(line, ' ', n);
        if (!sp1)
                return false;
        sp2 = memchr(sp1 + 1, ' ', n - (size_t) (sp1 + 1 - line));
        if (!sp2)
                return false;
        name = sp2 + 1;
        if (!parse_u32(line, (size_t) (sp1 - line), &e.uid_start) ||
            !parse_u32(sp1 + 1, (size_t) (sp2 - sp1 - 1), &e.size) ||
            !namespace_name_ok(name, n - (size_t) (name - line)))
                return false;
        /* The last id of the range must exist, and (uid_t) -1 means "no id"
         * to every set*id call: a range reaching it is not a real one. */
        if (e.size == 0 || (uint64_t) e.uid_start + e.size > UINT32_MAX)
                return false;
        memcpy(e.name, name, n - (size_t) (name - line));
        *ret = e;
        return true;
}

static bool entry_matches(const IndexEntry *e, const IndexQuery *q) {
        if (q->by_name)
                return strlen(e->name) == q->name_len && memcmp(e->name, q->name, q->name_len) == 0 &&
                       q->offset < e->size;
        return q->id >= e->uid_start && q->id - e->uid_start < e->size;
}

/* Only a file that nobody but root could have written is believed: anyone
 * who could plant lines here could name ids after whatever they like. */
static int open_index(void) {
        struct stat st;
        int fd;

        /* O_NONBLOCK: a FIFO planted at the path must not block the open. */
        fd = open(NSRESD_INDEX_PATH, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH))) {
                close(fd);
                return -EPERM;
        }
        return fd;
}

/* Find the entry the query names. 1 and the entry if found, 0 if not (no
 * index, or an index the module does not trust, counts as not found: the
 * daemon is not running), negative errno on a read error. */
static int index_find(const IndexQuery *q, IndexEntry *ret) {
        char buf[4096];
        char line[INDEX_LINE_MAX + 1];
        size_t line_len = 0, total = 0;
        bool overlong = false;
        int fd, r = 0;

        fd = open_index();
        if (fd == -ENOENT || fd == -ENOTDIR || fd == -ELOOP || fd == -EPERM || fd == -EACCES)
                return 0;
        if (fd < 0)
                return fd;

        /* Lines are matched as their newline arrives: a last line without
         * one is a file cut short and is not believed. (The daemon replaces
         * the index by rename; a reader never sees half of it.) */
        while (total < INDEX_READ_MAX) {
                ssize_t n;

                n = read(fd, buf, sizeof(buf) < INDEX_READ_MAX - total ? sizeof(buf) : INDEX_READ_MAX - total);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                total += (size_t) n;

                for (ssize_t i = 0; i < n; i++) {
                        IndexEntry e;

                        if (buf[i] != '\n') {
                                if (line_len < INDEX_LINE_MAX)
                                        line[line_len++] = buf[i];
                                else
                                        overlong = true;
                                continue;
                        }
                        if (!overlong && parse_index_line(line, line_len, &e) && entry_matches(&e, q)) {
                                *ret = e;
                                r = 1;
                                goto done;
                        }
                        line_len = 0;
                        overlong = false;
                }
        }
done:
        close(fd);
        return r;
}

/* "ns-<name>-<k>" to a query; false if it is not a name this module could
 * have made. */
static bool parse_user_name(const char *s, IndexQuery *ret) {
        const char *body, *dash;
        size_t len;
        uint32_t k;

        len = strnlen(s, USER_NAME_MAX + 1);
        if (len > USER_NAME_MAX || strncmp(s, USER_PREFIX, sizeof(USER_PREFIX) - 1) != 0)
                return false;
        body = s + sizeof(USER_PREFIX) - 1;
        /* Names contain '-' themselves ("<owner>-<name>"): the offset is what
         * follows the last one. */
        dash = strrchr(body, '-');
        if (!dash || !namespace_name_ok(body, (size_t) (dash - body)) ||
            !parse_u32(dash + 1, strlen(dash + 1), &k))
                return false;
        *ret = (IndexQuery) {
                .by_name = true,
                .name = body,
                .name_len = (size_t) (dash - body),
                .offset = k,
        };
        return true;
}

/* Hands out pieces of the caller's buffer; NULL once it is exhausted. */
typedef struct Arena {
        char *p;
        size_t left;
} Arena;

static void *arena_alloc(Arena *a, size_t size, size_t align) {
        size_t pad = (align - (uintptr_t) a->p % align) % align;
        void *ret;

        if (pad > a->left || size > a->left - pad)
                return NULL;
        ret = a->p + pad;
        a->p += pad + size;
        a->left -= pad + size;
        return ret;
}

static char *arena_append(Arena *a, const char *s, size_t n) {
        char *d;

        d = arena_alloc(a, n + 1, 1);
        if (d) {
                memcpy(d, s, n);
                d[n] = 0;
        }
        return d;
}

static char *arena_strdup(Arena *a, const char *s) {
        return arena_append(a, s, strlen(s));
}

/* "ns-<name>-<k>", the user and group name of uid/gid uid_start + k. */
static int format_user_name(const char *name, uint32_t k, char ret[static USER_NAME_MAX + 1]) {
        int n;

        n = snprintf(ret, USER_NAME_MAX + 1, USER_PREFIX "%s-%" PRIu32, name, k);
        if (n < 0 || (size_t) n > USER_NAME_MAX)
                return -ENAMETOOLONG;
        return n;
}

/* The index entry and the offset in its range that a name or an id stands
 * for. */
/* A name is found only if the name made from what the index says is the one
 * asked for: "ns-a-01" and "ns-a-1" cannot both be uid_start + 1. */
static bool name_round_trips(const char *name, const IndexEntry *e, uint32_t k) {
        char made[USER_NAME_MAX + 1];

        return format_user_name(e->name, k, made) > 0 && strcmp(made, name) == 0;
}

/* The entry for a user or group name (name set) or for an id. */
static enum nss_status lookup(const char *name, uid_t id, IndexEntry *ret_entry, uint32_t *ret_offset,
                              int *errnop) {
        IndexQuery q = {};
        IndexEntry e;
        int r;

        if (name) {
                if (!parse_user_name(name, &q))
                        goto not_found;
        } else {
                if (id == (uid_t) -1)
                        goto not_found;
                q.id = id;
        }

        r = index_find(&q, &e);
        if (r < 0) {
                *errnop = -r;
                return NSS_STATUS_UNAVAIL;
        }
        if (r == 0)
                goto not_found;
        if (name && !name_round_trips(name, &e, q.offset))
                goto not_found;

        *ret_entry = e;
        *ret_offset = name ? q.offset : id - e.uid_start;
        return NSS_STATUS_SUCCESS;

not_found:
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
}

/* NOLINTNEXTLINE(readability-non-const-parameter): the Arena writes to buffer. */
static enum nss_status fill_passwd(const IndexEntry *e, uint32_t k, struct passwd *pw, char *buffer,
                                   size_t buflen, int *errnop) {
        char user[USER_NAME_MAX + 1], gecos[sizeof(GECOS_PREFIX) + QUALIFIED_NAME_MAX];
        Arena a = { buffer, buflen };
        struct passwd p = {
                .pw_uid = e->uid_start + k,
                .pw_gid = e->uid_start + k,
        };
        int n;

        n = format_user_name(e->name, k, user);
        if (n < 0)
                goto not_found;
        p.pw_name = arena_append(&a, user, (size_t) n);
        n = snprintf(gecos, sizeof(gecos), GECOS_PREFIX "%s", e->name);
        if (n < 0 || (size_t) n >= sizeof(gecos))
                goto not_found;
        p.pw_gecos = arena_append(&a, gecos, (size_t) n);
        p.pw_passwd = arena_strdup(&a, LOCKED_PASSWORD);
        p.pw_dir = arena_strdup(&a, HOME_DIR);
        p.pw_shell = arena_strdup(&a, SHELL);
        if (!p.pw_name || !p.pw_passwd || !p.pw_gecos || !p.pw_dir || !p.pw_shell) {
                *errnop = ERANGE;
                return NSS_STATUS_TRYAGAIN;
        }
        *pw = p;
        return NSS_STATUS_SUCCESS;

not_found:
        *errnop = ENOENT;
        return NSS_STATUS_NOTFOUND;
}

/* NOLINTNEXTLINE(readability-non-const-parameter): the Arena writes to buffer. */
static enum nss_status fill_group(const IndexEntry *e, uint32_t k, struct group *gr, char *buffer,
                                  size_t buflen, int *errnop) {
        char name[USER_NAME_MAX + 1];
        Arena a = { buffer, buflen };
        struct group g = {
                .gr_gid = e->uid_start + k,
        };
        int n;

        n = format_user_name(e->name, k, name);
        if (n < 0) {
                *errnop = ENOENT;
                return NSS_STATUS_NOTFOUND;
        }
        g.gr_mem = arena_alloc(&a, sizeof(char *), alignof(char *));
        g.gr_name = arena_append(&a, name, (size_t) n);
        g.gr_passwd = arena_strdup(&a, LOCKED_PASSWORD);
        if (!g.gr_mem || !g.gr_name || !g.gr_passwd) {
                *errnop = ERANGE;
                return NSS_STATUS_TRYAGAIN;
        }
        /* No supplementary members: each id is only its own user's primary group. */
        g.gr_mem[0] = NULL;
        *gr = g;
        return NSS_STATUS_SUCCESS;
}

enum nss_status _nss_nsresd_getpwuid_r(uid_t uid, struct passwd *pw, char *buffer, size_t buflen, int *errnop) {
        enum nss_status s;
        IndexEntry e;
        uint32_t k;

        s = lookup(NULL, uid, &e, &k, errnop);
        if (s != NSS_STATUS_SUCCESS)
                return s;
        return fill_passwd(&e, k, pw, buffer, buflen, errnop);
}

enum nss_status _nss_nsresd_getpwnam_r(const char *name, struct passwd *pw, char *buffer, size_t buflen,
                                       int *errnop) {
        enum nss_status s;
        IndexEntry e;
        uint32_t k;

        s = lookup(name, 0, &e, &k, errnop);
        if (s != NSS_STATUS_SUCCESS)
                return s;
        return fill_passwd(&e, k, pw, buffer, buflen, errnop);
}

enum nss_status _nss_nsresd_getgrgid_r(gid_t gid, struct group *gr, char *buffer, size_t buflen, int *errnop) {
        enum nss_status s;
        IndexEntry e;
        uint32_t k;

        s = lookup(NULL, gid, &e, &k, errnop);
        if (s != NSS_STATUS_SUCCESS)
                return s;
        return fill_group(&e, k, gr, buffer, buflen, errnop);
}

enum nss_status _nss_nsresd_getgrnam_r(const char *name, struct group *gr, char *buffer, size_t buflen,
                                       int *errnop) {
        enum nss_status s;
        IndexEntry e;
        uint32_t k;

        s = lookup(name, 0, &e, &k, errnop);
        if (s != NSS_STATUS_SUCCESS)
                return s;
        return fill_group(&e, k, gr, buffer, buflen, errnop);
}
