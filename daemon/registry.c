/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "fileio.h"
#include "registry.h"
#include "util.h"

#define REGISTRY_DIR "registry"
#define QUARANTINE_DIR "quarantine"
#define INDEX_FILE "index"
#define INDEX_TMP_FILE "index.tmp"
#define TMP_SUFFIX ".tmp"
#define ENTRY_SUFFIX ".json"

/* An entry is well under 1 KiB, plus at most 23 bytes for each of
 * NS_MOUNTS_MAX mounts and at most 2 * NS_CGROUP_PATH_MAX + 128 bytes for
 * each of NS_CGROUPS_MAX cgroups (a path has no control characters, so
 * only '"' and '\\' grow when escaped), plus at most 64 bytes for each of
 * NS_NETIFS_MAX links: about 2.2 MiB. Anything larger
 * was not written by us. */
#define ENTRY_FILE_MAX ((size_t) 4 * 1024 * 1024)

/* "<u64>-<u32>-<u32>.json.tmp" */
#define ENTRY_FILE_NAME_MAX (20 + 1 + 10 + 1 + 10 + sizeof(ENTRY_SUFFIX TMP_SUFFIX))

#define ID_SPACE_END ((uint64_t) UINT32_MAX + 1)

struct Registry {
        char *state_dir;
        int state_fd;
        int dir_fd;
        int quarantine_fd;
};

static const char *const kind_names[_NS_KIND_MAX] = {
        [NS_KIND_TRANSIENT] = "transient",
        [NS_KIND_SELF] = "self",
        [NS_KIND_REGISTERED] = "registered",
};

const char *ns_kind_to_string(NsKind k) {
        if ((unsigned) k >= _NS_KIND_MAX)
                return NULL;
        return kind_names[k];
}

NsKind ns_kind_from_string(const char *s) {
        if (!s)
                return (NsKind) -1;
        for (unsigned i = 0; i < _NS_KIND_MAX; i++)
                if (strcmp(s, kind_names[i]) == 0)
                        return (NsKind) i;
        return (NsKind) -1;
}

static void cgroups_free(NsCgroup *cgroups, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                free(cgroups[i].path);
        free(cgroups);
}

void ns_entry_done(NsEntry *e) {
        free(e->mounts);
        e->mounts = NULL;
        e->n_mounts = 0;
        cgroups_free(e->cgroups, e->n_cgroups);
        e->cgroups = NULL;
        e->n_cgroups = 0;
        free(e->netifs);
        e->netifs = NULL;
        e->n_netifs = 0;
}

int ns_entry_copy(NsEntry *dst, const NsEntry *src) {
        _cleanup_free_ uint64_t *mounts = NULL;
        _cleanup_free_ NsNetif *netifs = NULL;
        NsCgroup *cgroups = NULL;

        if (src->n_netifs > 0) {
                netifs = malloc(src->n_netifs * sizeof(NsNetif));
                if (!netifs)
                        return -ENOMEM;
                memcpy(netifs, src->netifs, src->n_netifs * sizeof(NsNetif));
        }
        if (src->n_mounts > 0) {
                mounts = malloc(src->n_mounts * sizeof(uint64_t));
                if (!mounts)
                        return -ENOMEM;
                memcpy(mounts, src->mounts, src->n_mounts * sizeof(uint64_t));
        }
        if (src->n_cgroups > 0) {
                cgroups = calloc(src->n_cgroups, sizeof(NsCgroup));
                if (!cgroups)
                        return -ENOMEM;
                for (unsigned i = 0; i < src->n_cgroups; i++) {
                        cgroups[i] = src->cgroups[i];
                        cgroups[i].path = strdup(src->cgroups[i].path);
                        if (!cgroups[i].path) {
                                cgroups_free(cgroups, i);
                                return -ENOMEM;
                        }
                }
        }
        *dst = *src;
        dst->mounts = TAKE_PTR(mounts);
        dst->cgroups = cgroups;
        dst->netifs = TAKE_PTR(netifs);
        return 0;
}

static const char *const netif_kind_names[_NS_NETIF_KIND_MAX] = {
        [NS_NETIF_VETH] = "veth",
        [NS_NETIF_TAP] = "tap",
};

const char *ns_netif_kind_to_string(NsNetifKind k) {
        if ((unsigned) k >= _NS_NETIF_KIND_MAX)
                return NULL;
        return netif_kind_names[k];
}

static NsNetifKind ns_netif_kind_from_string(const char *s) {
        for (unsigned i = 0; i < _NS_NETIF_KIND_MAX; i++)
                if (strcmp(s, netif_kind_names[i]) == 0)
                        return (NsNetifKind) i;
        return (NsNetifKind) -1;
}

bool ns_netif_name_is_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strnlen(name, NS_NETIF_NAME_SIZE);
        if (n == 0 || n >= NS_NETIF_NAME_SIZE)
                return false;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return false;
        for (const char *p = name; *p; p++)
                if (*p <= ' ' || *p >= 0x7f || *p == '/' || *p == ':' || *p == '%')
                        return false;
        return true;
}

bool ns_netif_is_valid(const NsNetif *n) {
        return (unsigned) n->kind < _NS_NETIF_KIND_MAX &&
                ns_netif_name_is_valid(n->host) && ns_netif_name_is_valid(n->inside);
}

int ns_entry_find_netif(const NsEntry *e, const char *host) {
        for (unsigned i = 0; i < e->n_netifs; i++)
                if (strcmp(e->netifs[i].host, host) == 0)
                        return (int) i;
        return -1;
}

int ns_entry_add_netif(NsEntry *e, const NsNetif *n) {
        NsNetif *p;

        if (!ns_netif_is_valid(n))
                return -EINVAL;
        if (ns_entry_find_netif(e, n->host) >= 0)
                return -EEXIST;
        if (e->n_netifs >= NS_NETIFS_MAX)
                return -E2BIG;
        p = realloc(e->netifs, (e->n_netifs + 1) * sizeof(NsNetif));
        if (!p)
                return -ENOMEM;
        p[e->n_netifs++] = *n;
        e->netifs = p;
        return 0;
}

void ns_entry_remove_netif(NsEntry *e, unsigned index) {
        if (index >= e->n_netifs)
                return;
        memmove(e->netifs + index, e->netifs + index + 1, (e->n_netifs - index - 1) * sizeof(NsNetif));
        e->n_netifs--;
}

bool ns_entry_has_mount(const NsEntry *e, uint64_t mnt_id) {
        for (unsigned i = 0; i < e->n_mounts; i++)
                if (e->mounts[i] == mnt_id)
                        return true;
        return false;
}

int ns_entry_add_mount(NsEntry *e, uint64_t mnt_id) {
        uint64_t *p;

        if (e->n_mounts >= NS_MOUNTS_MAX)
                return -E2BIG;
        p = realloc(e->mounts, (e->n_mounts + 1) * sizeof(uint64_t));
        if (!p)
                return -ENOMEM;
        p[e->n_mounts++] = mnt_id;
        e->mounts = p;
        return 0;
}

/* The last part of a cgroup path: what a leaf is called in its parent. */
static const char *path_last(const char *path) {
        const char *slash = strrchr(path, '/');

        return slash ? slash + 1 : path;
}

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static bool utf8_valid(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                unsigned n, cp;

                if (*p < 0x80) {
                        p++;
                        continue;
                }
                if (*p >= 0xc2 && *p <= 0xdf)
                        n = 1, cp = *p & 0x1f;
                else if (*p >= 0xe0 && *p <= 0xef)
                        n = 2, cp = *p & 0x0f;
                else if (*p >= 0xf0 && *p <= 0xf4)
                        n = 3, cp = *p & 0x07;
                else
                        return false;
                for (unsigned i = 1; i <= n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i] & 0x3f);
                }
                if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                p += n + 1;
        }
        return true;
}

bool ns_cgroup_path_is_valid(const char *path) {
        size_t len;

        if (!path || path[0] != '/')
                return false;
        len = strlen(path);
        if (len > NS_CGROUP_PATH_MAX)
                return false;
        /* Control characters would grow sixfold when escaped, and no
         * cgroup worth delegating has them in its name. */
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) path[i] < 0x20 || path[i] == 0x7f)
                        return false;
        /* It goes out on D-Bus, whose strings are UTF-8. */
        return utf8_valid(path);
}

bool ns_cgroup_is_valid(const NsCgroup *c) {
        const char *last;

        if (!ns_cgroup_path_is_valid(c->path))
                return false;
        last = path_last(c->path);
        if (c->id == 0)
                /* Found again by its name under its parent after a crash. */
                return c->created && c->pending && c->parent_id != 0 && last[0] != '\0' &&
                       strcmp(last, ".") != 0 && strcmp(last, "..") != 0;
        return !c->created || c->parent_id != 0;
}

int ns_entry_find_cgroup(const NsEntry *e, uint64_t id) {
        if (id == 0)
                return -1;
        for (unsigned i = 0; i < e->n_cgroups; i++)
                if (e->cgroups[i].id == id)
                        return (int) i;
        return -1;
}

int ns_entry_add_cgroup(NsEntry *e, const NsCgroup *c) {
        NsCgroup *p;
        char *path;

        if (!ns_cgroup_is_valid(c))
                return -EINVAL;
        if (e->n_cgroups >= NS_CGROUPS_MAX)
                return -E2BIG;
        path = strdup(c->path);
        if (!path)
                return -ENOMEM;
        p = realloc(e->cgroups, (e->n_cgroups + 1) * sizeof(NsCgroup));
        if (!p) {
                free(path);
                return -ENOMEM;
        }
        p[e->n_cgroups] = *c;
        p[e->n_cgroups].path = path;
        e->cgroups = p;
        e->n_cgroups++;
        return 0;
}

void ns_entry_remove_cgroup(NsEntry *e, unsigned index) {
        if (index >= e->n_cgroups)
                return;
        free(e->cgroups[index].path);
        memmove(e->cgroups + index, e->cgroups + index + 1, (e->n_cgroups - index - 1) * sizeof(NsCgroup));
        e->n_cgroups--;
}

static bool name_chars_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > QUALIFIED_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char ch = s[i];

                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '_' || ch == '-'))
                        return false;
        }
        return true;
}

/* Strict decimal of at most 64 bits: digits only, no sign, no spaces. */
static int parse_u64(const char *s, size_t len, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0 || len > 20)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                unsigned d;

                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                d = (unsigned) (s[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

static int parse_u32(const char *s, size_t len, uint32_t *ret) {
        uint64_t v;
        int r;

        r = parse_u64(s, len, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

/* ---- serialisation ------------------------------------------------------ */

static int add_field(struct json_object *root, const char *key, struct json_object *value) {
        if (!value)
                return -ENOMEM;
        if (json_object_object_add(root, key, value) < 0) {
                json_object_put(value);
                return -ENOMEM;
        }
        return 0;
}

static struct json_object *new_u64_string(uint64_t v) {
        char buf[21];

        snprintf(buf, sizeof(buf), "%" PRIu64, v);
        return json_object_new_string(buf);
}

static int add_cgroup(struct json_object *array, const NsCgroup *c) {
        struct json_object *o = json_object_new_object();
        int r;

        if (!o || json_object_array_add(array, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        r = add_field(o, "id", new_u64_string(c->id));
        if (r >= 0)
                r = add_field(o, "parent", new_u64_string(c->parent_id));
        if (r >= 0)
                r = add_field(o, "path", json_object_new_string(c->path));
        if (r >= 0)
                r = add_field(o, "created", json_object_new_boolean(c->created));
        if (r >= 0)
                r = add_field(o, "pending", json_object_new_boolean(c->pending));
        return r;
}

static int add_netif(struct json_object *array, const NsNetif *n) {
        struct json_object *o = json_object_new_object();
        int r;

        if (!o || json_object_array_add(array, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        r = add_field(o, "host", json_object_new_string(n->host));
        if (r >= 0)
                r = add_field(o, "kind", json_object_new_string(ns_netif_kind_to_string(n->kind)));
        if (r >= 0)
                r = add_field(o, "inside", json_object_new_string(n->inside));
        return r;
}

int registry_entry_to_json(const NsEntry *e, char **ret) {
        static const char hex[] = "0123456789abcdef";
        char handle_hex[2 * NS_HANDLE_MAX + 1];
        struct json_object *root, *mounts, *cgroups, *netifs;
        const char *kind, *text;
        char *s = NULL;
        int r = 0;

        kind = ns_kind_to_string(e->kind);
        if (!kind || e->handle_len > NS_HANDLE_MAX || !name_chars_valid(e->name) || e->n_mounts > NS_MOUNTS_MAX ||
            e->n_cgroups > NS_CGROUPS_MAX)
                return -EINVAL;
        for (unsigned i = 0; i < e->n_cgroups; i++)
                if (!ns_cgroup_is_valid(&e->cgroups[i]))
                        return -EINVAL;
        if (e->n_netifs > NS_NETIFS_MAX || e->n_bpf > NS_BPF_MAX)
                return -EINVAL;
        for (unsigned i = 0; i < e->n_netifs; i++)
                if (!ns_netif_is_valid(&e->netifs[i]))
                        return -EINVAL;

        for (size_t i = 0; i < e->handle_len; i++) {
                handle_hex[2 * i] = hex[e->handle[i] >> 4];
                handle_hex[2 * i + 1] = hex[e->handle[i] & 0xf];
        }
        handle_hex[2 * (size_t) e->handle_len] = '\0';

        root = json_object_new_object();
        if (!root)
                return -ENOMEM;

        /* 64-bit values are strings: json-c numbers are signed 64 bits and
         * other readers of the file may only have doubles. */
        r = add_field(root, "id", new_u64_string(e->id));
        if (r >= 0)
                r = add_field(root, "inode", new_u64_string(e->inode));
        if (r >= 0)
                r = add_field(root, "name", json_object_new_string(e->name));
        if (r >= 0)
                r = add_field(root, "owner", json_object_new_int64((int64_t) e->owner));
        if (r >= 0)
                r = add_field(root, "kind", json_object_new_string(kind));
        if (r >= 0)
                r = add_field(root, "uid_start", json_object_new_int64(e->uid_start));
        if (r >= 0)
                r = add_field(root, "gid_start", json_object_new_int64(e->gid_start));
        if (r >= 0)
                r = add_field(root, "size", json_object_new_int64(e->size));
        if (r >= 0)
                r = add_field(root, "target", json_object_new_int64(e->target));
        if (r >= 0)
                r = add_field(root, "map_caller", json_object_new_boolean(e->map_caller));
        if (r >= 0)
                r = add_field(root, "caller_uid", json_object_new_int64((int64_t) e->caller_uid));
        if (r >= 0)
                r = add_field(root, "caller_gid", json_object_new_int64((int64_t) e->caller_gid));
        if (r >= 0)
                r = add_field(root, "pending", json_object_new_boolean(e->pending));
        if (r >= 0)
                r = add_field(root, "created_usec", new_u64_string(e->created_usec));
        if (r >= 0)
                r = add_field(root, "handle_type", json_object_new_int(e->handle_type));
        if (r >= 0)
                r = add_field(root, "handle", json_object_new_string(handle_hex));
        if (r >= 0) {
                mounts = json_object_new_array_ext((int) e->n_mounts);
                r = add_field(root, "mounts", mounts);
                for (unsigned i = 0; r >= 0 && i < e->n_mounts; i++) {
                        struct json_object *id = new_u64_string(e->mounts[i]);

                        if (!id || json_object_array_add(mounts, id) < 0) {
                                json_object_put(id);
                                r = -ENOMEM;
                        }
                }
        }

        if (r >= 0) {
                cgroups = json_object_new_array_ext((int) e->n_cgroups);
                r = add_field(root, "cgroups", cgroups);
                for (unsigned i = 0; r >= 0 && i < e->n_cgroups; i++)
                        r = add_cgroup(cgroups, &e->cgroups[i]);
        }

        if (r >= 0) {
                netifs = json_object_new_array_ext((int) e->n_netifs);
                r = add_field(root, "netifs", netifs);
                for (unsigned i = 0; r >= 0 && i < e->n_netifs; i++)
                        r = add_netif(netifs, &e->netifs[i]);
        }

        /* Only where something was delegated: older entries have no "bpf". */
        if (r >= 0 && e->n_bpf > 0) {
                static const char *const keys[NS_BPF_MASKS] = { "cmds", "maps", "progs", "attachs" };
                struct json_object *bpf = json_object_new_object();

                r = add_field(root, "bpf", bpf);
                if (r >= 0)
                        r = add_field(bpf, "delegations", json_object_new_int64(e->n_bpf));
                for (unsigned k = 0; r >= 0 && k < NS_BPF_MASKS; k++)
                        r = add_field(bpf, keys[k], new_u64_string(e->bpf_masks[k]));
        }

        if (r >= 0) {
                text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                if (!text || asprintf(&s, "%s\n", text) < 0)
                        r = -ENOMEM;
        }
        json_object_put(root);
        if (r < 0)
                return r;

        *ret = s;
        return 0;
}

static struct json_object *get_typed(struct json_object *root, const char *key, json_type type) {
        struct json_object *o;

        if (!json_object_object_get_ex(root, key, &o) || !json_object_is_type(o, type))
                return NULL;
        return o;
}

static int get_u64_string(struct json_object *root, const char *key, uint64_t *ret) {
        struct json_object *o = get_typed(root, key, json_type_string);

        if (!o)
                return -EBADMSG;
        if (parse_u64(json_object_get_string(o), (size_t) json_object_get_string_len(o), ret) < 0)
                return -EBADMSG;
        return 0;
}

static int get_int_range(struct json_object *root, const char *key, int64_t min, int64_t max, int64_t *ret) {
        struct json_object *o = get_typed(root, key, json_type_int);
        int64_t v;

        if (!o)
                return -EBADMSG;
        /* Values beyond int64 are clamped by json-c and then fail the range check. */
        v = json_object_get_int64(o);
        if (v < min || v > max)
                return -EBADMSG;
        *ret = v;
        return 0;
}

static int get_u32(struct json_object *root, const char *key, uint32_t *ret) {
        int64_t v;

        if (get_int_range(root, key, 0, UINT32_MAX, &v) < 0)
                return -EBADMSG;
        *ret = (uint32_t) v;
        return 0;
}

static int get_bool(struct json_object *root, const char *key, bool *ret) {
        struct json_object *o = get_typed(root, key, json_type_boolean);

        if (!o)
                return -EBADMSG;
        *ret = json_object_get_boolean(o);
        return 0;
}

static int unhex_digit(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        return -1;
}

/* Optional: absent where nothing was delegated. */
static int get_bpf(struct json_object *root, NsEntry *e) {
        static const char *const keys[NS_BPF_MASKS] = { "cmds", "maps", "progs", "attachs" };
        struct json_object *bpf;
        int64_t n;

        if (!json_object_object_get_ex(root, "bpf", &bpf))
                return 0;
        if (!json_object_is_type(bpf, json_type_object) ||
            get_int_range(bpf, "delegations", 1, NS_BPF_MAX, &n) < 0)
                return -EBADMSG;
        e->n_bpf = (unsigned) n;
        for (unsigned k = 0; k < NS_BPF_MASKS; k++)
                if (get_u64_string(bpf, keys[k], &e->bpf_masks[k]) < 0)
                        return -EBADMSG;
        return 0;
}

/* Optional: absent in entries written before mounts could be delegated. */
static int get_mounts(struct json_object *root, uint64_t **ret, unsigned *ret_n) {
        _cleanup_free_ uint64_t *mounts = NULL;
        struct json_object *o;
        size_t n;

        if (!json_object_object_get_ex(root, "mounts", &o)) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (!json_object_is_type(o, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(o);
        if (n > NS_MOUNTS_MAX)
                return -EBADMSG;
        if (n > 0) {
                mounts = calloc(n, sizeof(uint64_t));
                if (!mounts)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                struct json_object *id = json_object_array_get_idx(o, i);

                if (!json_object_is_type(id, json_type_string) ||
                    parse_u64(json_object_get_string(id), (size_t) json_object_get_string_len(id), &mounts[i]) < 0)
                        return -EBADMSG;
        }
        *ret = TAKE_PTR(mounts);
        *ret_n = (unsigned) n;
        return 0;
}

static int get_cgroup(struct json_object *o, NsCgroup *ret) {
        struct json_object *path;

        if (!json_object_is_type(o, json_type_object) ||
            get_u64_string(o, "id", &ret->id) < 0 ||
            get_u64_string(o, "parent", &ret->parent_id) < 0 ||
            get_bool(o, "created", &ret->created) < 0 ||
            get_bool(o, "pending", &ret->pending) < 0)
                return -EBADMSG;
        path = get_typed(o, "path", json_type_string);
        /* A NUL inside would cut the path short. */
        if (!path || strlen(json_object_get_string(path)) != (size_t) json_object_get_string_len(path))
                return -EBADMSG;
        ret->path = strdup(json_object_get_string(path));
        if (!ret->path)
                return -ENOMEM;
        return ns_cgroup_is_valid(ret) ? 0 : -EBADMSG;
}

/* Optional, like "mounts". */
static int get_cgroups(struct json_object *root, NsCgroup **ret, unsigned *ret_n) {
        NsCgroup *cgroups = NULL;
        struct json_object *o;
        size_t n;
        int r = 0;

        if (!json_object_object_get_ex(root, "cgroups", &o)) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (!json_object_is_type(o, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(o);
        if (n > NS_CGROUPS_MAX)
                return -EBADMSG;
        if (n > 0) {
                cgroups = calloc(n, sizeof(NsCgroup));
                if (!cgroups)
                        return -ENOMEM;
        }
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = get_cgroup(json_object_array_get_idx(o, i), &cgroups[i]);
                /* One cgroup, one record. */
                for (size_t j = 0; r >= 0 && j < i; j++)
                        if (cgroups[i].id != 0 && cgroups[j].id == cgroups[i].id)
                                r = -EBADMSG;
        }
        if (r < 0) {
                cgroups_free(cgroups, (unsigned) n);
                return r;
        }
        *ret = cgroups;
        *ret_n = (unsigned) n;
        return 0;
}

static int get_name(struct json_object *o, const char *key, char ret[static NS_NETIF_NAME_SIZE]) {
        struct json_object *s = get_typed(o, key, json_type_string);

        /* A NUL inside would cut the name short. */
        if (!s || (size_t) json_object_get_string_len(s) >= NS_NETIF_NAME_SIZE ||
            strlen(json_object_get_string(s)) != (size_t) json_object_get_string_len(s))
                return -EBADMSG;
        strcpy(ret, json_object_get_string(s));
        return 0;
}

static int get_netif(struct json_object *o, NsNetif *ret) {
        struct json_object *kind;

        if (!json_object_is_type(o, json_type_object) ||
            get_name(o, "host", ret->host) < 0 ||
            get_name(o, "inside", ret->inside) < 0)
                return -EBADMSG;
        kind = get_typed(o, "kind", json_type_string);
        if (!kind)
                return -EBADMSG;
        ret->kind = ns_netif_kind_from_string(json_object_get_string(kind));
        return ns_netif_is_valid(ret) ? 0 : -EBADMSG;
}

/* Optional, like "mounts": absent in entries written before links could be made. */
static int get_netifs(struct json_object *root, NsNetif **ret, unsigned *ret_n) {
        _cleanup_free_ NsNetif *netifs = NULL;
        struct json_object *o;
        size_t n;

        if (!json_object_object_get_ex(root, "netifs", &o)) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (!json_object_is_type(o, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(o);
        if (n > NS_NETIFS_MAX)
                return -EBADMSG;
        if (n > 0) {
                netifs = calloc(n, sizeof(NsNetif));
                if (!netifs)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                if (get_netif(json_object_array_get_idx(o, i), &netifs[i]) < 0)
                        return -EBADMSG;
                /* One link, one record. */
                for (size_t j = 0; j < i; j++)
                        if (strcmp(netifs[i].host, netifs[j].host) == 0)
                                return -EBADMSG;
        }
        *ret = TAKE_PTR(netifs);
        *ret_n = (unsigned) n;
        return 0;
}

static int entry_from_object(struct json_object *root, NsEntry *ret) {
        struct json_object *o;
        const char *s;
        uint32_t owner, caller_uid, caller_gid;
        NsEntry e = {};
        int64_t handle_type;
        size_t len;
        int r;

        if (!json_object_is_type(root, json_type_object))
                return -EBADMSG;

        if (get_u64_string(root, "id", &e.id) < 0 ||
            get_u64_string(root, "inode", &e.inode) < 0 ||
            get_u64_string(root, "created_usec", &e.created_usec) < 0)
                return -EBADMSG;

        o = get_typed(root, "name", json_type_string);
        if (!o)
                return -EBADMSG;
        s = json_object_get_string(o);
        /* A NUL inside the JSON string would cut the name short unnoticed. */
        if ((size_t) json_object_get_string_len(o) != strlen(s) || !name_chars_valid(s))
                return -EBADMSG;
        strcpy(e.name, s);

        o = get_typed(root, "kind", json_type_string);
        if (!o)
                return -EBADMSG;
        e.kind = ns_kind_from_string(json_object_get_string(o));
        if ((unsigned) e.kind >= _NS_KIND_MAX)
                return -EBADMSG;

        if (get_u32(root, "owner", &owner) < 0 ||
            get_u32(root, "uid_start", &e.uid_start) < 0 ||
            get_u32(root, "gid_start", &e.gid_start) < 0 ||
            get_u32(root, "size", &e.size) < 0 ||
            get_u32(root, "target", &e.target) < 0 ||
            get_u32(root, "caller_uid", &caller_uid) < 0 ||
            get_u32(root, "caller_gid", &caller_gid) < 0)
                return -EBADMSG;
        e.owner = owner;
        e.caller_uid = caller_uid;
        e.caller_gid = caller_gid;

        if (e.size != 1 && e.size != 65536)
                return -EBADMSG;
        if ((uint64_t) e.uid_start + e.size > ID_SPACE_END ||
            (uint64_t) e.gid_start + e.size > ID_SPACE_END ||
            (uint64_t) e.target + e.size > ID_SPACE_END)
                return -EBADMSG;

        if (get_bool(root, "map_caller", &e.map_caller) < 0 ||
            get_bool(root, "pending", &e.pending) < 0)
                return -EBADMSG;

        if (get_int_range(root, "handle_type", INT_MIN, INT_MAX, &handle_type) < 0)
                return -EBADMSG;
        e.handle_type = (int) handle_type;

        o = get_typed(root, "handle", json_type_string);
        if (!o)
                return -EBADMSG;
        s = json_object_get_string(o);
        len = (size_t) json_object_get_string_len(o);
        if (len % 2 != 0 || len / 2 > NS_HANDLE_MAX)
                return -EBADMSG;
        for (size_t i = 0; i < len; i += 2) {
                int hi = unhex_digit(s[i]), lo = unhex_digit(s[i + 1]);

                if (hi < 0 || lo < 0)
                        return -EBADMSG;
                e.handle[i / 2] = (uint8_t) (hi << 4 | lo);
        }
        e.handle_len = (unsigned) (len / 2);

        r = get_bpf(root, &e);
        if (r < 0)
                return r;

        /* Last: nothing before these allocates, so nothing leaks on the way out. */
        r = get_mounts(root, &e.mounts, &e.n_mounts);
        if (r < 0)
                return r;
        r = get_cgroups(root, &e.cgroups, &e.n_cgroups);
        if (r < 0) {
                free(e.mounts);
                return r;
        }
        r = get_netifs(root, &e.netifs, &e.n_netifs);
        if (r < 0) {
                ns_entry_done(&e);
                return r;
        }

        *ret = e;
        return 0;
}

static bool is_json_space(char ch) {
        return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

int registry_entry_from_json(const char *text, NsEntry *ret) {
        struct json_tokener *tok;
        struct json_object *root;
        size_t len = strlen(text), end;
        int r = -EBADMSG;

        if (len > ENTRY_FILE_MAX)
                return -EBADMSG;

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);

        /* json_tokener_parse() would accept a prefix: a document cut short
         * or followed by garbage must be rejected, not half-read. */
        root = json_tokener_parse_ex(tok, text, (int) len);
        if (root && json_tokener_get_error(tok) == json_tokener_success) {
                end = json_tokener_get_parse_end(tok);
                while (end < len && is_json_space(text[end]))
                        end++;
                if (end == len)
                        r = entry_from_object(root, ret);
        }

        json_object_put(root);
        json_tokener_free(tok);
        return r;
}

/* ---- files -------------------------------------------------------------- */

static int write_all(int fd, const char *buf, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, buf, n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Write-then-rename: a reader (or we, after a crash) sees the old file or
 * the new one, never a mix. The state lives on tmpfs, so there is nothing
 * to fsync for. */
static int write_file_atomic(int dir_fd, const char *tmp_name, const char *name, mode_t mode,
                             const char *data, size_t n) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        fd = openat(dir_fd, tmp_name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, mode);
        if (fd < 0)
                return -errno;
        /* The umask must not decide who may read the NSS index. */
        if (fchmod(fd, mode) < 0)
                r = -errno;
        else
                r = write_all(fd, data, n);
        if (r >= 0 && renameat(dir_fd, tmp_name, dir_fd, name) < 0)
                r = -errno;
        if (r < 0)
                (void) unlinkat(dir_fd, tmp_name, 0);
        return r;
}

static int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *copy = strdup(path);

        if (!copy)
                return -ENOMEM;
        for (char *p = copy + 1;; p++) {
                if (*p != '/' && *p != '\0')
                        continue;
                char saved = *p;

                *p = '\0';
                if (mkdir(copy, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = saved;
                if (saved == '\0')
                        return 0;
        }
}

/* Creates (or fixes the mode of) a private directory below dir_fd and opens it. */
static int open_private_dir(int dir_fd, const char *name, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        if (mkdirat(dir_fd, name, 0700) < 0 && errno != EEXIST)
                return -errno;
        fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        /* Entries hold nsfs handles and owners: only root reads them. */
        if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int registry_open(const char *state_dir, Registry **ret) {
        _cleanup_free_ char *dir = NULL;
        Registry *reg;
        int r;

        if (!state_dir || state_dir[0] == '\0')
                return -EINVAL;

        r = mkdir_p(state_dir, 0755);
        if (r < 0)
                return r;

        dir = strdup(state_dir);
        reg = calloc(1, sizeof(Registry));
        if (!dir || !reg) {
                free(reg);
                return -ENOMEM;
        }
        reg->state_dir = TAKE_PTR(dir);
        reg->dir_fd = reg->quarantine_fd = -EBADF;

        reg->state_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (reg->state_fd < 0)
                r = -errno;
        if (r >= 0)
                r = open_private_dir(reg->state_fd, REGISTRY_DIR, &reg->dir_fd);
        if (r >= 0)
                r = open_private_dir(reg->dir_fd, QUARANTINE_DIR, &reg->quarantine_fd);
        if (r < 0) {
                registry_close(reg);
                return r;
        }

        *ret = reg;
        return 0;
}

Registry *registry_close(Registry *r) {
        if (!r)
                return NULL;
        closep(&r->state_fd);
        closep(&r->dir_fd);
        closep(&r->quarantine_fd);
        free(r->state_dir);
        free(r);
        return NULL;
}

static void entry_file_name(const NsEntry *e, char buf[static ENTRY_FILE_NAME_MAX], bool tmp) {
        snprintf(buf, ENTRY_FILE_NAME_MAX, "%" PRIu64 "-%" PRIu32 "-%" PRIu32 "%s", e->id, e->uid_start, e->size,
                 tmp ? ENTRY_SUFFIX TMP_SUFFIX : ENTRY_SUFFIX);
}

int registry_save(Registry *r, const NsEntry *e) {
        char name[ENTRY_FILE_NAME_MAX], tmp_name[ENTRY_FILE_NAME_MAX];
        _cleanup_free_ char *text = NULL;
        int k;

        k = registry_entry_to_json(e, &text);
        if (k < 0)
                return k;

        entry_file_name(e, name, false);
        entry_file_name(e, tmp_name, true);
        return write_file_atomic(r->dir_fd, tmp_name, name, 0600, text, strlen(text));
}

int registry_remove(Registry *r, const NsEntry *e) {
        char name[ENTRY_FILE_NAME_MAX];

        entry_file_name(e, name, false);
        if (unlinkat(r->dir_fd, name, 0) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

/* "<id>-<uid_start>-<size>.json": what a file held, even if its content is lost. */
static int parse_entry_file_name(const char *name, uint64_t *ret_id, uint32_t *ret_uid_start, uint32_t *ret_size) {
        const char *dash1, *dash2, *suffix;
        size_t len = strlen(name), suffix_len = strlen(ENTRY_SUFFIX);
        uint64_t id;
        uint32_t uid_start, size;

        if (len <= suffix_len || strcmp(name + len - suffix_len, ENTRY_SUFFIX) != 0)
                return -EINVAL;
        suffix = name + len - suffix_len;
        dash1 = memchr(name, '-', (size_t) (suffix - name));
        if (!dash1)
                return -EINVAL;
        dash2 = memchr(dash1 + 1, '-', (size_t) (suffix - dash1 - 1));
        if (!dash2)
                return -EINVAL;

        if (parse_u64(name, (size_t) (dash1 - name), &id) < 0 ||
            parse_u32(dash1 + 1, (size_t) (dash2 - dash1 - 1), &uid_start) < 0 ||
            parse_u32(dash2 + 1, (size_t) (suffix - dash2 - 1), &size) < 0)
                return -EINVAL;

        *ret_id = id;
        *ret_uid_start = uid_start;
        *ret_size = size;
        return 0;
}

static int read_entry_file(int dir_fd, const char *name, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        ssize_t n;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;

        if (st.st_size > (off_t) ENTRY_FILE_MAX)
                return -EBADMSG;

        /* Sized by the file, not by the limit: entries are a few hundred
         * bytes, and start-up reads every one of them. One byte more than
         * fstat() said tells a file that grew meanwhile (never one of ours:
         * they are replaced by rename). */
        buf = malloc((size_t) st.st_size + 2);
        if (!buf)
                return -ENOMEM;
        n = read_full(fd, buf, (size_t) st.st_size + 1);
        if (n < 0)
                return (int) n;
        if (n > st.st_size || memchr(buf, '\0', (size_t) n))
                return -EBADMSG;
        buf[n] = '\0';

        *ret = TAKE_PTR(buf);
        return 0;
}

typedef struct NameList {
        char **names;
        size_t n, allocated;
} NameList;

static void name_list_done(NameList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->names[i]);
        free(l->names);
        *l = (NameList) {};
}

static bool name_list_contains(const NameList *l, const char *name) {
        for (size_t i = 0; i < l->n; i++)
                if (strcmp(l->names[i], name) == 0)
                        return true;
        return false;
}

static int name_list_add(NameList *l, const char *name) {
        if (l->n == l->allocated) {
                size_t k = l->allocated ? l->allocated * 2 : 16;
                char **p = realloc(l->names, k * sizeof(char *));

                if (!p)
                        return -ENOMEM;
                l->names = p;
                l->allocated = k;
        }
        l->names[l->n] = strdup(name);
        if (!l->names[l->n])
                return -ENOMEM;
        l->n++;
        return 0;
}

/* Snapshot of a directory's names: we rename and delete entries while going
 * through them, and readdir() does not promise to cope with that. */
static int list_dir(int dir_fd, NameList *ret) {
        NameList l = {};
        DIR *d;
        int fd, r = 0;

        fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                close(fd);
                return r;
        }

        for (;;) {
                struct dirent *de;

                r = read_dir_entry(d, &de);
                if (r <= 0)
                        break;
                r = name_list_add(&l, de->d_name);
                if (r < 0)
                        break;
        }
        closedir(d);

        if (r < 0) {
                name_list_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}

/* `where` is the directory the file is in now, below the state directory. */
static void report_corrupt(Registry *r, const RegistryLoadCallbacks *cb, void *userdata,
                           const char *where, const char *name) {
        _cleanup_free_ char *path = NULL;
        uint32_t uid_start = 0, size = 0;
        uint64_t id;

        if (!cb || !cb->corrupt)
                return;
        if (parse_entry_file_name(name, &id, &uid_start, &size) < 0)
                uid_start = size = 0;
        if (asprintf(&path, "%s/%s/%s", r->state_dir, where, name) < 0)
                path = NULL;
        cb->corrupt(path ? path : name, uid_start, size, userdata);
}

/* 0 and *ret filled for a good entry, -EBADMSG for a corrupt one. */
static int load_entry(Registry *r, const char *name, NsEntry *ret) {
        _cleanup_free_ char *text = NULL;
        uint32_t uid_start, size;
        uint64_t id;
        NsEntry e;
        int k;

        if (parse_entry_file_name(name, &id, &uid_start, &size) < 0)
                return -EBADMSG;

        k = read_entry_file(r->dir_fd, name, &text);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return -EBADMSG;

        k = registry_entry_from_json(text, &e);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return -EBADMSG;
        /* The name decides which range stays reserved if the file is lost
         * later; content that disagrees with it cannot be trusted either. */
        if (e.id != id || e.uid_start != uid_start || e.size != size) {
                ns_entry_done(&e);
                return -EBADMSG;
        }

        *ret = e;
        return 0;
}

int registry_load(Registry *r, const RegistryLoadCallbacks *cb, void *userdata) {
        _cleanup_(name_list_done) NameList entries = {}, quarantined = {}, moved = {};
        int k;

        k = list_dir(r->quarantine_fd, &quarantined);
        if (k < 0)
                return k;
        k = list_dir(r->dir_fd, &entries);
        if (k < 0)
                return k;

        for (size_t i = 0; i < entries.n; i++) {
                const char *name = entries.names[i];
                NsEntry e;

                if (strcmp(name, QUARANTINE_DIR) == 0)
                        continue;
                /* Left behind by a crash between write and rename: the
                 * previous version of the file (if any) is still in place. */
                if (has_suffix(name, TMP_SUFFIX)) {
                        (void) unlinkat(r->dir_fd, name, 0);
                        continue;
                }

                k = load_entry(r, name, &e);
                if (k == -ENOMEM)
                        return k;
                if (k >= 0) {
                        if (cb && cb->entry)
                                cb->entry(&e, userdata);
                        ns_entry_done(&e);
                        continue;
                }

                /* Even if moving it fails, the range is reported, and the
                 * file is found again on the next load. */
                if (renameat(r->dir_fd, name, r->quarantine_fd, name) < 0) {
                        report_corrupt(r, cb, userdata, REGISTRY_DIR, name);
                        continue;
                }
                k = name_list_add(&moved, name);
                if (k < 0)
                        return k;
                report_corrupt(r, cb, userdata, REGISTRY_DIR "/" QUARANTINE_DIR, name);
        }

        for (size_t i = 0; i < quarantined.n; i++)
                if (!name_list_contains(&moved, quarantined.names[i]))
                        report_corrupt(r, cb, userdata, REGISTRY_DIR "/" QUARANTINE_DIR, quarantined.names[i]);

        return 0;
}

/* The index lists transient namespaces only, one "uid_start size name" line
 * each; the NSS module splits on whitespace and newlines. */
static bool index_lists(const NsEntry *e) {
        return e->kind == NS_KIND_TRANSIENT && name_chars_valid(e->name);
}

int registry_append_index(Registry *r, const NsEntry *e) {
        _cleanup_close_ int fd = -EBADF;
        char line[10 + 1 + 10 + 1 + QUALIFIED_NAME_MAX + 2];
        ssize_t k;
        int n;

        if (!index_lists(e))
                return 0;
        n = snprintf(line, sizeof(line), "%" PRIu32 " %" PRIu32 " %s\n", e->uid_start, e->size, e->name);
        if (n < 0 || (size_t) n >= sizeof(line))
                return -ENAMETOOLONG;
        fd = openat(r->state_fd, INDEX_FILE, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        /* One short write to an O_APPEND file: a reader sees the whole line
         * or none of it (the module ignores a line without its newline). */
        k = write(fd, line, (size_t) n);
        if (k < 0)
                return -errno;
        return k == n ? 0 : -EIO;
}

int registry_write_index(Registry *r, const NsEntry *const *entries, size_t n) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&text, &size);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const NsEntry *e = entries[i];

                if (!index_lists(e))
                        continue;
                fprintf(f, "%" PRIu32 " %" PRIu32 " %s\n", e->uid_start, e->size, e->name);
        }
        if (fclose(f) != 0 || !text)
                return -ENOMEM;

        return write_file_atomic(r->state_fd, INDEX_TMP_FILE, INDEX_FILE, 0644, text, size);
}
