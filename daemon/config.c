/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fileio.h"
#include "util.h"

/* Ranges of 65536 ids are handed out in aligned blocks. */
#define BLOCK_SIZE 65536u

/* A configuration file is a few hundred bytes; refuse to slurp anything huge. */
#define CONFIG_FILE_MAX (1024u * 1024u)

typedef enum Section {
        SECTION_NONE,
        SECTION_ALLOCATOR,
        SECTION_DELEGATION,
        SECTION_SECURITY,
        SECTION_TRACKING,
} Section;

typedef enum ValueType {
        VALUE_ID,       /* any uint32 */
        VALUE_COUNT,    /* uint32, at least 1 */
        VALUE_RESTRICTION,
        VALUE_RING_SIZE, /* bytes: a power of two, at least a page, at most the key's max */
} ValueType;

typedef struct ConfigKey {
        Section section;
        const char *name;
        ValueType type;
        size_t offset;
        uint32_t max;   /* VALUE_ID, VALUE_COUNT: the highest value accepted */
} ConfigKey;

static const char *const section_names[] = {
        [SECTION_ALLOCATOR] = "Allocator",
        [SECTION_DELEGATION] = "Delegation",
        [SECTION_SECURITY] = "Security",
        [SECTION_TRACKING] = "Tracking",
};

static const ConfigKey config_keys[] = {
        { SECTION_ALLOCATOR, "RangeStart", VALUE_ID, offsetof(Config, range_start), UINT32_MAX },
        { SECTION_ALLOCATOR, "RangeEnd", VALUE_ID, offsetof(Config, range_end), UINT32_MAX },
        { SECTION_ALLOCATOR, "SingleRangeStart", VALUE_ID, offsetof(Config, single_range_start), UINT32_MAX },
        { SECTION_ALLOCATOR, "SingleRangeEnd", VALUE_ID, offsetof(Config, single_range_end), UINT32_MAX },
        { SECTION_ALLOCATOR, "MaxNamespacesPerOwner", VALUE_COUNT, offsetof(Config, max_namespaces_per_owner),
          UINT32_MAX },
        { SECTION_ALLOCATOR, "MaxRequestsPerOwner", VALUE_COUNT, offsetof(Config, max_requests_per_owner),
          UINT32_MAX },
        { SECTION_DELEGATION, "MaxControlGroups", VALUE_COUNT, offsetof(Config, max_control_groups),
          CONFIG_CONTROL_GROUPS_MAX },
        { SECTION_DELEGATION, "ControlGroupMaxDescendants", VALUE_COUNT,
          offsetof(Config, control_group_max_descendants), CONFIG_CGROUP_DESCENDANTS_MAX },
        { SECTION_DELEGATION, "ControlGroupMaxDepth", VALUE_COUNT, offsetof(Config, control_group_max_depth),
          CONFIG_CGROUP_DEPTH_MAX },
        { SECTION_DELEGATION, "MaxNetworkInterfaces", VALUE_COUNT, offsetof(Config, max_network_interfaces),
          UINT32_MAX },
        { SECTION_DELEGATION, "MaxNetworkInterfacesPerOwner", VALUE_COUNT,
          offsetof(Config, max_network_interfaces_per_owner), UINT32_MAX },
        { SECTION_DELEGATION, "MaxBpfDelegations", VALUE_COUNT, offsetof(Config, max_bpf_delegations),
          CONFIG_BPF_DELEGATIONS_MAX },
        { SECTION_SECURITY, "Restriction", VALUE_RESTRICTION, offsetof(Config, restriction), 0 },
        { SECTION_SECURITY, "PolkitTimeoutSec", VALUE_COUNT, offsetof(Config, polkit_timeout_sec),
          CONFIG_POLKIT_TIMEOUT_MAX },
        { SECTION_TRACKING, "TeardownRingBufferSize", VALUE_RING_SIZE,
          offsetof(Config, teardown_ring_buffer_size), CONFIG_RING_BUFFER_MAX },
};

static const char *const restriction_names[] = {
        [RESTRICTION_ENFORCE] = "enforce",
        [RESTRICTION_PERMISSIVE] = "permissive",
        [RESTRICTION_OFF] = "off",
};

const char *restriction_mode_to_string(RestrictionMode m) {
        if ((unsigned) m >= ELEMENTSOF(restriction_names))
                return NULL;
        return restriction_names[m];
}

void config_defaults(Config *c) {
        *c = (Config) {
                .range_start = 524288,
                .range_end = 1879048191,
                .single_range_start = 61184,
                .single_range_end = 65519,
                .max_namespaces_per_owner = 256,
                .max_requests_per_owner = 32,
                .max_control_groups = 16,
                .control_group_max_descendants = 256,
                .control_group_max_depth = 16,
                .max_network_interfaces = 16,
                .max_network_interfaces_per_owner = 64,
                .max_bpf_delegations = 8,
                .restriction = RESTRICTION_ENFORCE,
                .polkit_timeout_sec = 25,
                .teardown_ring_buffer_size = CONFIG_RING_BUFFER_DEFAULT,
        };
}

/* Sets *ret_error (if wanted) and returns -EINVAL, so error paths stay one line. */
__attribute__((format(printf, 2, 3)))
static int fail(char **ret_error, const char *format, ...) {
        va_list ap;
        char *s;

        if (!ret_error)
                return -EINVAL;
        va_start(ap, format);
        if (vasprintf(&s, format, ap) < 0)
                s = NULL;
        va_end(ap);
        *ret_error = s;
        return -EINVAL;
}

static bool is_blank(char ch) {
        return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Trims [*start, *end) in place: both pointers move inwards. */
static void trim(const char **start, const char **end) {
        while (*start < *end && is_blank(**start))
                (*start)++;
        while (*end > *start && is_blank((*end)[-1]))
                (*end)--;
}

static bool span_equals(const char *s, size_t len, const char *word) {
        return strlen(word) == len && memcmp(s, word, len) == 0;
}

static uint32_t ring_size_min(void) {
        long page = sysconf(_SC_PAGESIZE);

        return page > 0 && (unsigned long) page <= (unsigned long) CONFIG_RING_BUFFER_MAX ? (uint32_t) page : 4096u;
}

static int assign(Config *c, const ConfigKey *key, const char *value, size_t len,
                  const char *origin, unsigned line, char **ret_error) {
        uint32_t n, max = key->max;

        switch (key->type) {
        case VALUE_ID:
        case VALUE_COUNT:
                if (parse_decimal_u32(value, len, &n) < 0 || n > max)
                        return fail(ret_error, "%s:%u: %s= wants a decimal number from %u to %u, not '%.*s'",
                                    origin, line, key->name, key->type == VALUE_COUNT ? 1u : 0u, max,
                                    (int) len, value);
                if (key->type == VALUE_COUNT && n == 0)
                        return fail(ret_error, "%s:%u: %s= must be at least 1", origin, line, key->name);
                /* Both kinds of field are 32 bits wide. */
                if (key->type == VALUE_ID) {
                        /* The pool bounds are the first keys of the table. */
                        size_t bound = (size_t) (key - config_keys);

                        *(uint32_t *) ((char *) c + key->offset) = n;
                        if (bound < _POOL_BOUND_MAX)
                                snprintf(c->pool_origin[bound], sizeof(c->pool_origin[bound]), "%s:%u", origin, line);
                } else
                        *(unsigned *) ((char *) c + key->offset) = n;
                return 0;

        case VALUE_RESTRICTION:
                for (size_t i = 0; i < ELEMENTSOF(restriction_names); i++)
                        if (span_equals(value, len, restriction_names[i])) {
                                *(RestrictionMode *) ((char *) c + key->offset) = (RestrictionMode) i;
                                return 0;
                        }
                return fail(ret_error, "%s:%u: %s= must be enforce, permissive or off, not '%.*s'",
                            origin, line, key->name, (int) len, value);

        case VALUE_RING_SIZE:
                /* The kernel takes nothing else for a BPF ring buffer. */
                if (parse_decimal_u32(value, len, &n) < 0 || n < ring_size_min() || n > max || (n & (n - 1)) != 0)
                        return fail(ret_error, "%s:%u: %s= wants a size in bytes that is a power of two from %u "
                                    "(the page size) to %u, such as 262144, not '%.*s'",
                                    origin, line, key->name, ring_size_min(), max, (int) len, value);
                *(uint32_t *) ((char *) c + key->offset) = n;
                return 0;
        }
        return -EINVAL;
}

static int parse_line(Config *c, Section *section, const char *start, const char *end,
                      const char *origin, unsigned line, char **ret_error) {
        const char *eq, *key, *key_end, *value, *value_end;

        trim(&start, &end);
        if (start == end || *start == '#' || *start == ';')
                return 0;

        /* A '#' glued to a word could be meant as part of it; only one after
         * whitespace starts a trailing comment. */
        for (const char *p = start + 1; p < end; p++)
                if (*p == '#' && is_blank(p[-1])) {
                        end = p;
                        trim(&start, &end);
                        break;
                }

        if (*start == '[') {
                if (end[-1] != ']' || end - start < 3)
                        return fail(ret_error, "%s:%u: Malformed section header '%.*s'",
                                    origin, line, (int) (end - start), start);
                for (size_t i = 0; i < ELEMENTSOF(section_names); i++)
                        if (section_names[i] && span_equals(start + 1, (size_t) (end - start - 2), section_names[i])) {
                                *section = (Section) i;
                                return 0;
                        }
                return fail(ret_error, "%s:%u: Unknown section '%.*s'", origin, line, (int) (end - start), start);
        }

        eq = memchr(start, '=', (size_t) (end - start));
        if (!eq)
                return fail(ret_error, "%s:%u: Expected Key=Value or [Section], got '%.*s'",
                            origin, line, (int) (end - start), start);

        key = start;
        key_end = eq;
        trim(&key, &key_end);
        if (key == key_end)
                return fail(ret_error, "%s:%u: Missing key before '='", origin, line);

        value = eq + 1;
        value_end = end;
        trim(&value, &value_end);

        if (*section == SECTION_NONE)
                return fail(ret_error, "%s:%u: Key '%.*s' outside of any section",
                            origin, line, (int) (key_end - key), key);

        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++)
                if (config_keys[i].section == *section &&
                    span_equals(key, (size_t) (key_end - key), config_keys[i].name))
                        return assign(c, &config_keys[i], value, (size_t) (value_end - value),
                                      origin, line, ret_error);

        return fail(ret_error, "%s:%u: Unknown key '%.*s' in section [%s]",
                    origin, line, (int) (key_end - key), key, section_names[*section]);
}

int config_parse_text(Config *c, const char *text, const char *origin, char **ret_error) {
        Section section = SECTION_NONE;
        Config parsed = *c;
        unsigned line = 1;
        int r;

        for (const char *p = text;; line++) {
                const char *nl = strchr(p, '\n');
                const char *end = nl ? nl : p + strlen(p);

                r = parse_line(&parsed, &section, p, end, origin, line, ret_error);
                if (r < 0)
                        return r;
                if (!nl)
                        break;
                p = nl + 1;
        }

        *c = parsed;
        return 0;
}

/* Reads a whole file: -ENOENT if it does not exist, -EINVAL with a message
 * for anything we refuse to parse. */
static int read_file(int dir_fd, const char *name, const char *path, char **ret, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        ssize_t n;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT)
                        return -ENOENT;
                int r = -errno;
                fail(ret_error, "%s: Failed to open: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                fail(ret_error, "%s: Failed to stat: %s", path, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode))
                return fail(ret_error, "%s: Not a regular file", path);

        buf = malloc(CONFIG_FILE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        n = read_full(fd, buf, CONFIG_FILE_MAX + 1);
        if (n < 0) {
                int r = (int) n;
                fail(ret_error, "%s: Failed to read: %s", path, strerror(-r));
                return r;
        }
        if (n > (ssize_t) CONFIG_FILE_MAX)
                return fail(ret_error, "%s: Larger than %u bytes", path, CONFIG_FILE_MAX);
        if (memchr(buf, '\0', (size_t) n))
                return fail(ret_error, "%s: Contains a NUL byte", path);
        buf[n] = '\0';

        *ret = TAKE_PTR(buf);
        return 0;
}

static int load_file(Config *c, int dir_fd, const char *name, const char *path, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = read_file(dir_fd, name, path, &text, ret_error);
        if (r < 0)
                return r;
        return config_parse_text(c, text, path, ret_error);
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void free_strv(char **l, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(l[i]);
        free(l);
}

static bool is_dropin_name(const char *s) {
        size_t len = strlen(s);

        /* ".conf" alone is a hidden file, not a drop-in. */
        return s[0] != '.' && len > 5 && strcmp(s + len - 5, ".conf") == 0;
}

static int load_dropins(Config *c, const char *dir_path, char **ret_error) {
        _cleanup_close_ int dir_fd = -EBADF;
        char **names = NULL;
        size_t n = 0, allocated = 0;
        DIR *d;
        int r = 0;

        dir_fd = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0) {
                if (errno == ENOENT)
                        return 0;
                r = -errno;
                fail(ret_error, "%s: Failed to open directory: %s", dir_path, strerror(-r));
                return r;
        }

        /* fdopendir() takes over the fd it is given; keep ours for openat(). */
        int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                fail(ret_error, "%s: Failed to open directory: %s", dir_path, strerror(-r));
                return r;
        }
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                close(fd);
                fail(ret_error, "%s: Failed to open directory: %s", dir_path, strerror(-r));
                return r;
        }

        for (;;) {
                struct dirent *de;

                r = read_dir_entry(d, &de);
                if (r < 0)
                        fail(ret_error, "%s: Failed to read directory: %s", dir_path, strerror(-r));
                if (r <= 0)
                        break;
                if (!is_dropin_name(de->d_name))
                        continue;
                if (n == allocated) {
                        size_t k = allocated ? allocated * 2 : 8;
                        char **p = realloc(names, k * sizeof(char *));

                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        names = p;
                        allocated = k;
                }
                names[n] = strdup(de->d_name);
                if (!names[n]) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        closedir(d);

        if (r >= 0) {
                qsort(names, n, sizeof(char *), compare_strings);
                for (size_t i = 0; i < n; i++) {
                        _cleanup_free_ char *path = NULL;

                        if (asprintf(&path, "%s/%s", dir_path, names[i]) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                        r = load_file(c, dir_fd, names[i], path, ret_error);
                        /* Removed while we were reading the directory. */
                        if (r == -ENOENT)
                                r = 0;
                        if (r < 0)
                                break;
                }
        }

        free_strv(names, n);
        return r;
}

int config_load(Config *c, const char *path, char **ret_error) {
        _cleanup_free_ char *dropin_dir = NULL;
        Config loaded = *c;
        int r;

        r = load_file(&loaded, AT_FDCWD, path, path, ret_error);
        if (r < 0 && r != -ENOENT)
                return r;

        if (asprintf(&dropin_dir, "%s.d", path) < 0)
                return -ENOMEM;
        r = load_dropins(&loaded, dropin_dir, ret_error);
        if (r < 0)
                return r;

        r = config_verify(&loaded, ret_error);
        if (r < 0)
                return r;

        *c = loaded;
        return 0;
}

static const char *pool_origin(const Config *c, PoolBound b) {
        return c->pool_origin[b][0] ? c->pool_origin[b] : "(default)";
}

int config_verify(const Config *c, char **ret_error) {
        /* uid_t -1 means "no id" to the kernel and cannot be mapped. */
        const uint32_t invalid_id = UINT32_MAX;

        if (c->range_start % BLOCK_SIZE != 0)
                return fail(ret_error, "%s: RangeStart=%u is not a multiple of %u",
                            pool_origin(c, POOL_RANGE_START), c->range_start, BLOCK_SIZE);
        if (((uint64_t) c->range_end + 1) % BLOCK_SIZE != 0)
                return fail(ret_error, "%s: RangeEnd=%u must be one less than a multiple of %u",
                            pool_origin(c, POOL_RANGE_END), c->range_end, BLOCK_SIZE);
        if (c->range_start >= c->range_end)
                return fail(ret_error, "%s: RangeStart=%u must be below RangeEnd=%u (%s)",
                            pool_origin(c, POOL_RANGE_START), c->range_start, c->range_end,
                            pool_origin(c, POOL_RANGE_END));
        /* Handing out root's id would give a namespace root's files. */
        if (c->range_start == 0)
                return fail(ret_error, "%s: RangeStart=0 would hand out uid 0 (root)",
                            pool_origin(c, POOL_RANGE_START));
        if (c->range_end == invalid_id)
                return fail(ret_error, "%s: RangeEnd=%u includes the invalid id %u; the highest usable RangeEnd is %u",
                            pool_origin(c, POOL_RANGE_END), c->range_end, invalid_id, invalid_id - BLOCK_SIZE);

        if (c->single_range_start > c->single_range_end)
                return fail(ret_error, "%s: SingleRangeStart=%u must not be above SingleRangeEnd=%u (%s)",
                            pool_origin(c, POOL_SINGLE_START), c->single_range_start, c->single_range_end,
                            pool_origin(c, POOL_SINGLE_END));
        if (c->single_range_start == 0)
                return fail(ret_error, "%s: SingleRangeStart=0 would hand out uid 0 (root)",
                            pool_origin(c, POOL_SINGLE_START));
        if (c->single_range_end == invalid_id)
                return fail(ret_error, "%s: SingleRangeEnd=%u is the invalid id",
                            pool_origin(c, POOL_SINGLE_END), c->single_range_end);
        if (c->single_range_start <= c->range_end && c->range_start <= c->single_range_end)
                return fail(ret_error,
                            "%s: SingleRangeStart=%u..SingleRangeEnd=%u overlaps RangeStart=%u..RangeEnd=%u (%s)",
                            pool_origin(c, POOL_SINGLE_START), c->single_range_start, c->single_range_end,
                            c->range_start, c->range_end, pool_origin(c, POOL_RANGE_START));

        if (c->max_namespaces_per_owner == 0)
                return fail(ret_error, "MaxNamespacesPerOwner= must be at least 1");
        if (c->max_requests_per_owner == 0)
                return fail(ret_error, "MaxRequestsPerOwner= must be at least 1");
        if (c->max_control_groups == 0 || c->max_control_groups > CONFIG_CONTROL_GROUPS_MAX)
                return fail(ret_error, "MaxControlGroups= must be from 1 to %u", CONFIG_CONTROL_GROUPS_MAX);
        if (c->control_group_max_descendants == 0 || c->control_group_max_descendants > CONFIG_CGROUP_DESCENDANTS_MAX)
                return fail(ret_error, "ControlGroupMaxDescendants= must be from 1 to %u",
                            CONFIG_CGROUP_DESCENDANTS_MAX);
        if (c->control_group_max_depth == 0 || c->control_group_max_depth > CONFIG_CGROUP_DEPTH_MAX)
                return fail(ret_error, "ControlGroupMaxDepth= must be from 1 to %u", CONFIG_CGROUP_DEPTH_MAX);
        if (c->max_network_interfaces == 0)
                return fail(ret_error, "MaxNetworkInterfaces= must be at least 1");
        if (c->max_network_interfaces_per_owner == 0)
                return fail(ret_error, "MaxNetworkInterfacesPerOwner= must be at least 1");
        if (!restriction_mode_to_string(c->restriction))
                return fail(ret_error, "Restriction= has an unknown value");
        if (c->polkit_timeout_sec == 0 || c->polkit_timeout_sec > CONFIG_POLKIT_TIMEOUT_MAX)
                return fail(ret_error, "PolkitTimeoutSec= must be from 1 to %u", CONFIG_POLKIT_TIMEOUT_MAX);
        if (c->teardown_ring_buffer_size < ring_size_min() || c->teardown_ring_buffer_size > CONFIG_RING_BUFFER_MAX ||
            (c->teardown_ring_buffer_size & (c->teardown_ring_buffer_size - 1)) != 0)
                return fail(ret_error, "TeardownRingBufferSize= must be a power of two from %u to %u",
                            ring_size_min(), CONFIG_RING_BUFFER_MAX);

        return 0;
}

bool config_pool_differs(const Config *a, const Config *b) {
        return a->range_start != b->range_start || a->range_end != b->range_end ||
               a->single_range_start != b->single_range_start || a->single_range_end != b->single_range_end;
}

static void key_value(const Config *c, const ConfigKey *key, char *buf, size_t size) {
        switch (key->type) {
        case VALUE_ID:
                snprintf(buf, size, "%u", *(const uint32_t *) ((const char *) c + key->offset));
                return;
        case VALUE_COUNT:
                snprintf(buf, size, "%u", *(const unsigned *) ((const char *) c + key->offset));
                return;
        case VALUE_RESTRICTION:
                snprintf(buf, size, "%s",
                         restriction_mode_to_string(*(const RestrictionMode *) ((const char *) c + key->offset)) ?: "?");
                return;
        case VALUE_RING_SIZE:
                snprintf(buf, size, "%u", *(const uint32_t *) ((const char *) c + key->offset));
                return;
        }
        buf[0] = '\0';
}

char *config_describe_changes(const Config *old, const Config *new) {
        char *s = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&s, &len);
        if (!f)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++) {
                char a[32], b[32];

                key_value(old, &config_keys[i], a, sizeof(a));
                key_value(new, &config_keys[i], b, sizeof(b));
                if (strcmp(a, b) != 0)
                        fprintf(f, "%s%s=%s->%s", ftell(f) > 0 ? ", " : "", config_keys[i].name, a, b);
        }
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}
