/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "registry.h"
#include "test-util.h"
#include "util.h"

static const char *tmp_root;

static NsEntry sample_entry(void) {
        NsEntry e = {
                .id = UINT64_C(0x8000000000000123),
                .inode = UINT64_C(4026532999),
                .name = "1000-sandbox_X",
                .owner = 1000,
                .kind = NS_KIND_TRANSIENT,
                .uid_start = 524288,
                .gid_start = 524288,
                .size = 65536,
                .target = 0,
                .map_caller = true,
                .caller_uid = 1000,
                .caller_gid = 1001,
                .pending = true,
                .created_usec = UINT64_C(1735689600123456),
                .handle_type = 0xf1,
                .handle_len = 16,
        };

        for (unsigned i = 0; i < e.handle_len; i++)
                e.handle[i] = (uint8_t) (i * 17 + 0x0f);
        e.handle[15] = 0xff;
        return e;
}

static bool cgroups_equal(const NsEntry *a, const NsEntry *b) {
        if (a->n_cgroups != b->n_cgroups)
                return false;
        for (unsigned i = 0; i < a->n_cgroups; i++) {
                const NsCgroup *x = &a->cgroups[i], *y = &b->cgroups[i];

                if (x->id != y->id || x->parent_id != y->parent_id || x->created != y->created ||
                    x->pending != y->pending || strcmp(x->path, y->path) != 0)
                        return false;
        }
        return true;
}

static bool netifs_equal(const NsEntry *a, const NsEntry *b) {
        return a->n_netifs == b->n_netifs &&
               (a->n_netifs == 0 || memcmp(a->netifs, b->netifs, a->n_netifs * sizeof(NsNetif)) == 0);
}

static bool entries_equal(const NsEntry *a, const NsEntry *b) {
        return cgroups_equal(a, b) && netifs_equal(a, b) && a->id == b->id && a->inode == b->inode && strcmp(a->name, b->name) == 0 && a->owner == b->owner &&
               a->kind == b->kind && a->uid_start == b->uid_start && a->gid_start == b->gid_start &&
               a->size == b->size && a->target == b->target && a->map_caller == b->map_caller &&
               a->caller_uid == b->caller_uid && a->caller_gid == b->caller_gid && a->pending == b->pending &&
               a->created_usec == b->created_usec && a->handle_type == b->handle_type &&
               a->handle_len == b->handle_len && memcmp(a->handle, b->handle, a->handle_len) == 0 &&
               a->n_mounts == b->n_mounts &&
               (a->n_mounts == 0 || memcmp(a->mounts, b->mounts, a->n_mounts * sizeof(uint64_t)) == 0) &&
               a->n_bpf == b->n_bpf && memcmp(a->bpf_masks, b->bpf_masks, sizeof(a->bpf_masks)) == 0;
}

/* from_json must fail and leave *ret exactly as it was. */
static bool rejected(const char *text) {
        NsEntry e;
        unsigned char before[sizeof(NsEntry)];
        int r;

        memset(&e, 0xa5, sizeof(e));
        memcpy(before, &e, sizeof(e));
        r = registry_entry_from_json(text, &e);
        if (r != -EBADMSG) {
                fprintf(stderr, "accepted (r=%d): %s\n", r, text);
                return false;
        }
        return memcmp(before, &e, sizeof(e)) == 0;
}

/* The sample document with `key` replaced by `value` (or removed if NULL). */
static char *with_field(const char *key, struct json_object *value) {
        NsEntry e = sample_entry();
        _cleanup_free_ char *text = NULL;
        struct json_object *root;
        char *s;

        CHECK(registry_entry_to_json(&e, &text) == 0);
        root = json_tokener_parse(text);
        CHECK(root);
        if (value)
                json_object_object_add(root, key, value);
        else
                json_object_object_del(root, key);
        s = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
        CHECK(s);
        json_object_put(root);
        return s;
}

static void check_field_rejected(const char *key, struct json_object *value) {
        _cleanup_free_ char *s = with_field(key, value);

        if (!rejected(s)) {
                fprintf(stderr, "%s:%d: document with bad '%s' accepted\n", __FILE__, __LINE__, key);
                exit(EXIT_FAILURE);
        }
}

static void test_json_round_trip(void) {
        NsEntry e = sample_entry(), back;
        _cleanup_free_ char *text = NULL;

        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(strstr(text, "\"id\":\"9223372036854776099\""));
        CHECK(strstr(text, "\"kind\":\"transient\""));
        CHECK(strstr(text, "\"handle\":\"0f2031425364758697a8b9cadbecfdff\""));
        CHECK(strstr(text, "\"created_usec\":\"1735689600123456\""));
        CHECK(registry_entry_from_json(text, &back) == 0);
        CHECK(entries_equal(&e, &back));

        /* Every kind, the extremes of each range, and an empty handle. */
        e.kind = NS_KIND_SELF;
        e.id = UINT64_MAX;
        e.inode = 0;
        e.owner = 4294967294u;
        e.uid_start = 4294967294u;
        e.gid_start = 0;
        e.size = 1;
        e.target = 4294967294u;
        e.map_caller = false;
        e.pending = false;
        e.created_usec = UINT64_MAX;
        e.handle_type = -7;
        e.handle_len = 0;
        strcpy(e.name, "abcdefghi-ABCDEFGHIJ_012345");
        CHECK(strlen(e.name) == QUALIFIED_NAME_MAX);
        free(text);
        text = NULL;
        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(registry_entry_from_json(text, &back) == 0);
        CHECK(entries_equal(&e, &back));

        e.kind = NS_KIND_REGISTERED;
        e.handle_len = NS_HANDLE_MAX;
        memset(e.handle, 0xab, NS_HANDLE_MAX);
        free(text);
        text = NULL;
        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(registry_entry_from_json(text, &back) == 0);
        CHECK(entries_equal(&e, &back));

        /* Unknown fields are tolerated (a newer writer), whitespace too. */
        {
                _cleanup_free_ char *s = with_field("future_field", json_object_new_int(1));
                _cleanup_free_ char *padded = NULL;

                CHECK(registry_entry_from_json(s, &back) == 0);
                CHECK(asprintf(&padded, " \n%s \n", s) > 0);
                CHECK(registry_entry_from_json(padded, &back) == 0);
        }

        CHECK(strcmp(ns_kind_to_string(NS_KIND_TRANSIENT), "transient") == 0);
        CHECK(strcmp(ns_kind_to_string(NS_KIND_SELF), "self") == 0);
        CHECK(strcmp(ns_kind_to_string(NS_KIND_REGISTERED), "registered") == 0);
        CHECK(ns_kind_to_string(_NS_KIND_MAX) == NULL);
        CHECK(ns_kind_from_string("self") == NS_KIND_SELF);
        CHECK(ns_kind_from_string("registered") == NS_KIND_REGISTERED);
        CHECK(ns_kind_from_string("transient") == NS_KIND_TRANSIENT);
        CHECK((int) ns_kind_from_string("Transient") == -1);
        CHECK((int) ns_kind_from_string(NULL) == -1);

        /* An entry we could not read back is refused at write time. */
        e = sample_entry();
        e.kind = (NsKind) 9;
        CHECK(registry_entry_to_json(&e, &text) == -EINVAL);
        e = sample_entry();
        strcpy(e.name, "bad name");
        CHECK(registry_entry_to_json(&e, &text) == -EINVAL);
}

static void test_json_mounts(void) {
        static const uint64_t ids[] = { 1, UINT64_C(0x100000000), UINT64_MAX };
        NsEntry e = sample_entry(), back, copy;
        _cleanup_free_ char *text = NULL;
        _cleanup_free_ uint64_t *many = NULL;

        /* None: an empty list, written all the same. */
        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(strstr(text, "\"mounts\":[]"));
        CHECK(registry_entry_from_json(text, &back) == 0);
        CHECK(back.n_mounts == 0 && back.mounts == NULL);

        /* Written before mounts could be delegated: loads with none. */
        {
                _cleanup_free_ char *old = with_field("mounts", NULL);

                CHECK(!strstr(old, "mounts"));
                memset(&back, 0xa5, sizeof(back));
                CHECK(registry_entry_from_json(old, &back) == 0);
                CHECK(back.n_mounts == 0 && back.mounts == NULL);
                CHECK(entries_equal(&e, &back));
        }

        /* 64-bit ids as strings, in order. */
        e.mounts = (uint64_t *) ids;
        e.n_mounts = ELEMENTSOF(ids);
        free(text);
        text = NULL;
        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(strstr(text, "\"mounts\":[\"1\",\"4294967296\",\"18446744073709551615\"]"));
        CHECK(registry_entry_from_json(text, &back) == 0);
        CHECK(back.mounts != e.mounts);
        CHECK(entries_equal(&e, &back));

        /* Copies own their list. */
        CHECK(ns_entry_copy(&copy, &back) == 0);
        CHECK(copy.mounts != back.mounts);
        CHECK(entries_equal(&copy, &back));
        ns_entry_done(&back);
        CHECK(back.mounts == NULL && back.n_mounts == 0);
        CHECK(ns_entry_has_mount(&copy, UINT64_MAX));
        CHECK(!ns_entry_has_mount(&copy, 2));
        CHECK(ns_entry_add_mount(&copy, 2) == 0);
        CHECK(copy.n_mounts == 4 && ns_entry_has_mount(&copy, 2));
        ns_entry_done(&copy);
        ns_entry_done(&copy);

        /* As many as a namespace may have, through a file that must hold them. */
        many = calloc(NS_MOUNTS_MAX + 1, sizeof(uint64_t));
        CHECK(many);
        for (unsigned i = 0; i <= NS_MOUNTS_MAX; i++)
                many[i] = UINT64_MAX - i;
        e.mounts = many;
        e.n_mounts = NS_MOUNTS_MAX;
        free(text);
        text = NULL;
        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(registry_entry_from_json(text, &back) == 0);
        CHECK(entries_equal(&e, &back));
        CHECK(ns_entry_add_mount(&back, 7) == -E2BIG);
        CHECK(back.n_mounts == NS_MOUNTS_MAX);
        ns_entry_done(&back);

        /* One more is refused both ways. */
        e.n_mounts = NS_MOUNTS_MAX + 1;
        CHECK(registry_entry_to_json(&e, &text) == -EINVAL);
        {
                struct json_object *a = json_object_new_array();

                for (unsigned i = 0; i <= NS_MOUNTS_MAX; i++)
                        json_object_array_add(a, json_object_new_string("1"));
                check_field_rejected("mounts", a);
        }

        /* Anything but a list of decimal strings. */
        {
                struct json_object *a;

                /* json-c has no null object: with_field() would drop the key. */
                {
                        NsEntry n = sample_entry();
                        _cleanup_free_ char *t = NULL, *nulled = NULL;
                        char *at;

                        CHECK(registry_entry_to_json(&n, &t) == 0);
                        at = strstr(t, "\"mounts\":[]");
                        CHECK(at);
                        CHECK(asprintf(&nulled, "%.*s\"mounts\":null%s", (int) (at - t), t,
                                       at + strlen("\"mounts\":[]")) > 0);
                        CHECK(rejected(nulled));
                }
                check_field_rejected("mounts", json_object_new_object());
                check_field_rejected("mounts", json_object_new_string("1"));
                check_field_rejected("mounts", json_object_new_int(1));
                a = json_object_new_array();
                json_object_array_add(a, json_object_new_int(5));
                check_field_rejected("mounts", a);
                a = json_object_new_array();
                json_object_array_add(a, json_object_new_string("5"));
                json_object_array_add(a, json_object_new_null());
                check_field_rejected("mounts", a);
                a = json_object_new_array();
                json_object_array_add(a, json_object_new_array());
                check_field_rejected("mounts", a);
                static const char *const bad[] = { "", "-1", "0x10", "1e3", " 1", "18446744073709551616" };
                for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                        a = json_object_new_array();
                        json_object_array_add(a, json_object_new_string(bad[i]));
                        check_field_rejected("mounts", a);
                }
        }
}

/* A document with "cgroups" holding one record of these fields (a field
 * set to NULL is left out). */
static char *with_cgroup(struct json_object *id, struct json_object *parent, struct json_object *path,
                         struct json_object *created, struct json_object *pending) {
        struct json_object *a = json_object_new_array(), *o = json_object_new_object();

        if (id)
                json_object_object_add(o, "id", id);
        if (parent)
                json_object_object_add(o, "parent", parent);
        if (path)
                json_object_object_add(o, "path", path);
        if (created)
                json_object_object_add(o, "created", created);
        if (pending)
                json_object_object_add(o, "pending", pending);
        json_object_array_add(a, o);
        return with_field("cgroups", a);
}

#define STR(s) json_object_new_string(s)
#define BOOL(b) json_object_new_boolean(b)

static void check_cgroup_rejected(char *text) {
        if (!rejected(text)) {
                fprintf(stderr, "%s:%d: bad cgroup record accepted\n", __FILE__, __LINE__);
                exit(EXIT_FAILURE);
        }
        free(text);
}

static void test_json_cgroups(void) {
        NsEntry e = sample_entry(), back, copy;
        _cleanup_free_ char *text = NULL;
        NsCgroup c;

        /* None: an empty list, written all the same. */
        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(strstr(text, "\"cgroups\":[]"));
        CHECK(registry_entry_from_json(text, &back) == 0);
        CHECK(back.n_cgroups == 0 && back.cgroups == NULL);

        /* Written before cgroups could be delegated: loads with none. */
        {
                _cleanup_free_ char *old = with_field("cgroups", NULL);

                CHECK(!strstr(old, "cgroups"));
                memset(&back, 0xa5, sizeof(back));
                CHECK(registry_entry_from_json(old, &back) == 0);
                CHECK(back.n_cgroups == 0 && back.cgroups == NULL);
                CHECK(entries_equal(&e, &back));
                ns_entry_done(&back);
        }

        /* Given as it was; made and delegated; made but its id not known yet
         * (a crash in between); paths with quotes, backslashes and UTF-8. */
        c = (NsCgroup) { .id = UINT64_MAX, .path = (char *) "/user.slice/given" };
        CHECK(ns_entry_add_cgroup(&e, &c) == 0);
        c = (NsCgroup) { .id = 4242, .parent_id = 17, .created = true, .path = (char *) "/a \"b\"\\/nsresd-1000-x" };
        CHECK(ns_entry_add_cgroup(&e, &c) == 0);
        c = (NsCgroup) { .parent_id = 18, .created = true, .pending = true,
                         .path = (char *) "/\xc3\xa9t\xc3\xa9/nsresd-1000-y" };
        CHECK(ns_entry_add_cgroup(&e, &c) == 0);
        CHECK(e.n_cgroups == 3);
        CHECK(e.cgroups[0].path != c.path);
        free(text);
        text = NULL;
        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(strstr(text, "\"cgroups\":[{\"id\":\"18446744073709551615\",\"parent\":\"0\","
                           "\"path\":\"/user.slice/given\",\"created\":false,\"pending\":false},"));
        CHECK(strstr(text, "{\"id\":\"0\",\"parent\":\"18\",\"path\":\"/\xc3\xa9t\xc3\xa9/nsresd-1000-y\","
                           "\"created\":true,\"pending\":true}]"));
        CHECK(registry_entry_from_json(text, &back) == 0);
        CHECK(entries_equal(&e, &back));

        /* Copies own their records and paths. */
        CHECK(ns_entry_copy(&copy, &back) == 0);
        CHECK(copy.cgroups != back.cgroups && copy.cgroups[1].path != back.cgroups[1].path);
        CHECK(entries_equal(&copy, &back));
        ns_entry_done(&back);
        CHECK(back.cgroups == NULL && back.n_cgroups == 0);
        CHECK(ns_entry_find_cgroup(&copy, 4242) == 1);
        CHECK(ns_entry_find_cgroup(&copy, UINT64_MAX) == 0);
        /* An unknown id is no id. */
        CHECK(ns_entry_find_cgroup(&copy, 0) == -1);
        CHECK(ns_entry_find_cgroup(&copy, 4243) == -1);
        ns_entry_remove_cgroup(&copy, 0);
        CHECK(copy.n_cgroups == 2 && ns_entry_find_cgroup(&copy, 4242) == 0);
        CHECK(strcmp(copy.cgroups[1].path, "/\xc3\xa9t\xc3\xa9/nsresd-1000-y") == 0);
        ns_entry_remove_cgroup(&copy, 5);
        CHECK(copy.n_cgroups == 2);
        ns_entry_done(&copy);
        ns_entry_done(&copy);

        /* Records that could not be read back are refused when added. */
        {
                static const NsCgroup bad[] = {
                        { .id = 1, .path = (char *) "" },
                        { .id = 1, .path = (char *) "relative" },
                        { .id = 1, .path = (char *) "/new\nline" },
                        { .id = 1, .path = (char *) "/del\x7f" },
                        /* Not UTF-8: a stray byte, a cut sequence, an overlong '/', a surrogate. */
                        { .id = 1, .path = (char *) "/\xff" },
                        { .id = 1, .path = (char *) "/\xc3" },
                        { .id = 1, .path = (char *) "/\xc0\xaf" },
                        { .id = 1, .path = (char *) "/\xed\xa0\x80" },
                        { .id = 1, .path = (char *) "/\xf4\x90\x80\x80" },
                        { .id = 1, .created = true, .path = (char *) "/made/without/parent" },
                        { .id = 0, .path = (char *) "/unknown/and/not/made" },
                        { .id = 0, .parent_id = 2, .created = true, .path = (char *) "/not/pending" },
                        { .id = 0, .created = true, .pending = true, .path = (char *) "/no/parent" },
                        { .id = 0, .parent_id = 2, .created = true, .pending = true, .path = (char *) "/a/" },
                        { .id = 0, .parent_id = 2, .created = true, .pending = true, .path = (char *) "/a/.." },
                        { .id = 1, .path = NULL },
                };
                static const char *const good[] = {
                        "/", "/a", "/\xc3\xa9", "/\xe2\x82\xac", "/\xf0\x9f\x90\xa7", "/\xf4\x8f\xbf\xbf", "/a \"b\" \\c",
                };
                NsEntry t = sample_entry();

                for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                        CHECK(!ns_cgroup_is_valid(&bad[i]));
                        CHECK(ns_entry_add_cgroup(&t, &bad[i]) == -EINVAL);
                }
                CHECK(t.n_cgroups == 0);
                for (size_t i = 0; i < ELEMENTSOF(good); i++)
                        CHECK(ns_cgroup_path_is_valid(good[i]));
        }

        /* As many as a namespace may have, with the longest paths escaping
         * worst, next to as many mounts as it may have: the file holds them. */
        {
                _cleanup_free_ char *longest = malloc(NS_CGROUP_PATH_MAX + 2);
                _cleanup_free_ uint64_t *mounts = calloc(NS_MOUNTS_MAX, sizeof(uint64_t));
                NsEntry t = sample_entry();

                CHECK(longest && mounts);
                longest[0] = '/';
                memset(longest + 1, '"', NS_CGROUP_PATH_MAX - 1);
                longest[NS_CGROUP_PATH_MAX] = '\0';
                for (unsigned i = 0; i < NS_CGROUPS_MAX; i++) {
                        c = (NsCgroup) { .id = UINT64_MAX - i, .parent_id = UINT64_MAX, .created = true,
                                         .path = longest };
                        CHECK(ns_entry_add_cgroup(&t, &c) == 0);
                }
                c.id = 1;
                CHECK(ns_entry_add_cgroup(&t, &c) == -E2BIG);
                for (unsigned i = 0; i < NS_MOUNTS_MAX; i++)
                        mounts[i] = UINT64_MAX - i;
                t.mounts = mounts;
                t.n_mounts = NS_MOUNTS_MAX;
                free(text);
                text = NULL;
                CHECK(registry_entry_to_json(&t, &text) == 0);
                CHECK(registry_entry_from_json(text, &back) == 0);
                CHECK(entries_equal(&t, &back));
                ns_entry_done(&back);

                /* One character more is too long. */
                longest[NS_CGROUP_PATH_MAX] = 'x';
                longest[NS_CGROUP_PATH_MAX + 1] = '\0';
                c.path = longest;
                CHECK(ns_entry_add_cgroup(&t, &c) == -EINVAL);
                free(t.cgroups[0].path);
                t.cgroups[0].path = strdup(longest);
                CHECK(registry_entry_to_json(&t, &text) == -EINVAL);
                /* And one record more. */
                t.cgroups[0].path[1] = '\0';
                t.n_cgroups = NS_CGROUPS_MAX + 1;
                CHECK(registry_entry_to_json(&t, &text) == -EINVAL);
                t.n_cgroups = NS_CGROUPS_MAX;
                t.mounts = NULL;
                t.n_mounts = 0;
                ns_entry_done(&t);
        }
        {
                struct json_object *a = json_object_new_array();

                for (unsigned i = 0; i <= NS_CGROUPS_MAX; i++) {
                        struct json_object *o = json_object_new_object();

                        json_object_object_add(o, "id", STR("1"));
                        json_object_object_add(o, "parent", STR("0"));
                        json_object_object_add(o, "path", STR("/x"));
                        json_object_object_add(o, "created", BOOL(false));
                        json_object_object_add(o, "pending", BOOL(false));
                        json_object_array_add(a, o);
                }
                check_field_rejected("cgroups", a);
        }

        /* A good record, to start from. */
        {
                NsEntry t;
                char *good = with_cgroup(STR("5"), STR("0"), STR("/x"), BOOL(false), BOOL(false));

                CHECK(registry_entry_from_json(good, &t) == 0);
                CHECK(t.n_cgroups == 1 && t.cgroups[0].id == 5 && strcmp(t.cgroups[0].path, "/x") == 0);
                ns_entry_done(&t);
                free(good);
        }
        /* Each field missing, or of another type, or out of range. */
        check_cgroup_rejected(with_cgroup(NULL, STR("0"), STR("/x"), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), NULL, STR("/x"), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), NULL, BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), STR("/x"), NULL, BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), STR("/x"), BOOL(false), NULL));
        check_cgroup_rejected(with_cgroup(json_object_new_int(5), STR("0"), STR("/x"), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("-5"), STR("0"), STR("/x"), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0x1"), STR("/x"), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), json_object_new_int(1), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), STR("x"), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), STR(""), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), json_object_new_string_len("/a\0b", 4),
                                          BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), STR("/a\tb"), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), STR("/a\xff" "b"), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), STR("/x"), json_object_new_int(0), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), STR("/x"), BOOL(false), STR("false")));
        /* Unknown id without being a pending leaf of a known parent. */
        check_cgroup_rejected(with_cgroup(STR("0"), STR("0"), STR("/x"), BOOL(false), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("0"), STR("3"), STR("/x"), BOOL(true), BOOL(false)));
        check_cgroup_rejected(with_cgroup(STR("0"), STR("3"), STR("/x/.."), BOOL(true), BOOL(true)));
        check_cgroup_rejected(with_cgroup(STR("5"), STR("0"), STR("/x"), BOOL(true), BOOL(false)));
        check_field_rejected("cgroups", json_object_new_object());
        check_field_rejected("cgroups", STR("/x"));
        {
                struct json_object *a = json_object_new_array();

                json_object_array_add(a, STR("/x"));
                check_field_rejected("cgroups", a);
        }
        /* One cgroup, one record. */
        {
                struct json_object *a = json_object_new_array();

                for (unsigned i = 0; i < 2; i++) {
                        struct json_object *o = json_object_new_object();

                        json_object_object_add(o, "id", STR("9"));
                        json_object_object_add(o, "parent", STR("0"));
                        json_object_object_add(o, "path", STR(i ? "/y" : "/x"));
                        json_object_object_add(o, "created", BOOL(false));
                        json_object_object_add(o, "pending", BOOL(false));
                        json_object_array_add(a, o);
                }
                check_field_rejected("cgroups", a);
        }
        ns_entry_done(&e);
}

static void test_json_rejects(void) {
        static const char *const fields[] = {
                "id", "inode", "name", "owner", "kind", "uid_start", "gid_start", "size", "target",
                "map_caller", "caller_uid", "caller_gid", "pending", "created_usec", "handle_type", "handle",
        };
        static const char *const numeric[] = {
                "owner", "uid_start", "gid_start", "size", "target", "caller_uid", "caller_gid", "handle_type",
        };
        static const char *const stringy[] = { "id", "inode", "name", "kind", "created_usec", "handle" };
        NsEntry e = sample_entry();
        _cleanup_free_ char *text = NULL;

        CHECK(registry_entry_to_json(&e, &text) == 0);

        /* Not a document at all, or not all of one. */
        CHECK(rejected(""));
        CHECK(rejected("{"));
        CHECK(rejected("{}"));
        CHECK(rejected("[]"));
        CHECK(rejected("null"));
        CHECK(rejected("42"));
        CHECK(rejected("\"x\""));
        for (size_t cut = 1; cut < strlen(text) - 1; cut += 7) {
                _cleanup_free_ char *truncated = strndup(text, cut);

                CHECK(truncated);
                CHECK(rejected(truncated));
        }
        {
                _cleanup_free_ char *trailing = NULL;

                CHECK(asprintf(&trailing, "%s}", text) > 0);
                CHECK(rejected(trailing));
                free(trailing);
                CHECK(asprintf(&trailing, "%s%s", text, text) > 0);
                CHECK(rejected(trailing));
        }

        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                check_field_rejected(fields[i], NULL);
                check_field_rejected(fields[i], json_object_new_array());
                check_field_rejected(fields[i], json_object_new_object());
                check_field_rejected(fields[i], json_object_new_null());
        }
        for (size_t i = 0; i < ELEMENTSOF(numeric); i++) {
                check_field_rejected(numeric[i], json_object_new_string("5"));
                check_field_rejected(numeric[i], json_object_new_double(1.5));
                check_field_rejected(numeric[i], json_object_new_boolean(true));
        }
        for (size_t i = 0; i < ELEMENTSOF(stringy); i++)
                check_field_rejected(stringy[i], json_object_new_int(5));
        check_field_rejected("pending", json_object_new_int(1));
        check_field_rejected("map_caller", json_object_new_string("true"));

        /* Out of range or unknown values. */
        check_field_rejected("kind", json_object_new_string("bogus"));
        check_field_rejected("kind", json_object_new_string(""));
        check_field_rejected("size", json_object_new_int(7));
        check_field_rejected("size", json_object_new_int(0));
        check_field_rejected("size", json_object_new_int(65537));
        check_field_rejected("uid_start", json_object_new_int64(-1));
        check_field_rejected("uid_start", json_object_new_int64(INT64_C(4294967296)));
        check_field_rejected("uid_start", json_object_new_int64(INT64_C(4294901761)));
        check_field_rejected("gid_start", json_object_new_int64(INT64_C(4294967295)));
        check_field_rejected("target", json_object_new_int64(INT64_C(4294967290)));
        check_field_rejected("owner", json_object_new_int64(INT64_C(4294967296)));
        check_field_rejected("owner", json_object_new_uint64(UINT64_MAX));
        check_field_rejected("caller_gid", json_object_new_int64(-5));
        check_field_rejected("handle_type", json_object_new_int64(INT64_C(1) << 40));
        check_field_rejected("id", json_object_new_string("-1"));
        check_field_rejected("id", json_object_new_string("18446744073709551616"));
        check_field_rejected("id", json_object_new_string("12a"));
        check_field_rejected("id", json_object_new_string(" 12"));
        check_field_rejected("id", json_object_new_string(""));
        check_field_rejected("inode", json_object_new_string("0x10"));
        check_field_rejected("created_usec", json_object_new_string("1e6"));
        check_field_rejected("name", json_object_new_string(""));
        check_field_rejected("name", json_object_new_string("a b"));
        check_field_rejected("name", json_object_new_string("../etc"));
        check_field_rejected("name", json_object_new_string("a\nb"));
        check_field_rejected("name", json_object_new_string_len("ab\0cd", 5));
        check_field_rejected("name", json_object_new_string("0123456789012345678901234567"));
        check_field_rejected("handle", json_object_new_string("abc"));
        check_field_rejected("handle", json_object_new_string("zz"));
        check_field_rejected("handle", json_object_new_string("0G"));
        check_field_rejected("handle", json_object_new_string("AB"));
        check_field_rejected("handle", json_object_new_string("0x12"));
        {
                char longhex[2 * NS_HANDLE_MAX + 3];

                memset(longhex, 'a', sizeof(longhex) - 1);
                longhex[sizeof(longhex) - 1] = '\0';
                check_field_rejected("handle", json_object_new_string(longhex));
        }
}

/* ---- on disk ------------------------------------------------------------ */

typedef struct Seen {
        NsEntry entries[16];
        size_t n_entries;
        char corrupt_files[16][512];
        uint32_t corrupt_start[16];
        uint32_t corrupt_size[16];
        size_t n_corrupt;
} Seen;

/* The registry releases an entry after the callback: keep a copy. */
static void on_entry(const NsEntry *e, void *userdata) {
        Seen *s = userdata;

        CHECK(s->n_entries < ELEMENTSOF(s->entries));
        CHECK(ns_entry_copy(&s->entries[s->n_entries++], e) == 0);
}

static void seen_reset(Seen *s) {
        for (size_t i = 0; i < s->n_entries; i++)
                ns_entry_done(&s->entries[i]);
        memset(s, 0, sizeof(*s));
}

static void on_corrupt(const char *file, uint32_t uid_start, uint32_t size, void *userdata) {
        Seen *s = userdata;

        CHECK(s->n_corrupt < ELEMENTSOF(s->corrupt_files));
        snprintf(s->corrupt_files[s->n_corrupt], sizeof(s->corrupt_files[0]), "%s", file);
        s->corrupt_start[s->n_corrupt] = uid_start;
        s->corrupt_size[s->n_corrupt] = size;
        s->n_corrupt++;
}

static const RegistryLoadCallbacks callbacks = {
        .entry = on_entry,
        .corrupt = on_corrupt,
};

static const NsEntry *seen_entry(const Seen *s, uint64_t id) {
        for (size_t i = 0; i < s->n_entries; i++)
                if (s->entries[i].id == id)
                        return &s->entries[i];
        return NULL;
}

/* The report for a file whose name ends in `name`, or -1. */
static int seen_corrupt(const Seen *s, const char *name) {
        for (size_t i = 0; i < s->n_corrupt; i++) {
                size_t a = strlen(s->corrupt_files[i]), b = strlen(name);

                if (a >= b && strcmp(s->corrupt_files[i] + a - b, name) == 0)
                        return (int) i;
        }
        return -1;
}

static mode_t mode_of(const char *path) {
        struct stat st;

        if (lstat(path, &st) < 0)
                return (mode_t) -1;
        return st.st_mode & 07777;
}

static bool exists(const char *path) {
        return access(path, F_OK) == 0;
}

static char *read_text(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t n = 0;

        if (!f)
                return NULL;
        if (getdelim(&buf, &n, '\0', f) < 0) {
                free(buf);
                buf = strdup("");
        }
        fclose(f);
        return buf;
}

static void test_on_disk(void) {
        _cleanup_free_ char *state = test_path_join(tmp_root, "run/nsresd");
        _cleanup_free_ char *regdir = test_path_join(state, "registry");
        _cleanup_free_ char *quarantine = test_path_join(regdir, "quarantine");
        _cleanup_free_ char *index = test_path_join(state, "index");
        NsEntry transient = sample_entry(), pending, self, registered;
        uint64_t transient_mounts[] = { UINT64_C(0x8000000000000001), 42 };
        NsCgroup transient_cgroups[] = {
                { .id = 77, .path = (char *) "/user.slice/box" },
                { .parent_id = 78, .created = true, .pending = true, .path = (char *) "/p/nsresd-1000-one" },
        };
        Registry *reg = NULL;
        Seen seen = {};

        transient.id = 1000;
        transient.mounts = transient_mounts;
        transient.n_mounts = ELEMENTSOF(transient_mounts);
        transient.cgroups = transient_cgroups;
        transient.n_cgroups = ELEMENTSOF(transient_cgroups);
        transient.pending = false;
        transient.uid_start = transient.gid_start = 589824;
        strcpy(transient.name, "1000-one");

        pending = sample_entry();       /* id above 2^63, pending */
        strcpy(pending.name, "1000-two");

        self = sample_entry();
        self.id = 1002;
        self.kind = NS_KIND_SELF;
        self.size = 1;
        self.uid_start = 1000;
        self.gid_start = 1001;
        self.pending = false;
        self.map_caller = false;
        strcpy(self.name, "1000-three");

        registered = self;
        registered.id = 1003;
        registered.kind = NS_KIND_REGISTERED;
        strcpy(registered.name, "1000-four");

        /* Created from nothing, nested. */
        umask(077);
        CHECK(registry_open(state, &reg) == 0);
        CHECK(mode_of(state) == 0755 || mode_of(state) == 0700);
        CHECK(mode_of(regdir) == 0700);
        CHECK(mode_of(quarantine) == 0700);

        CHECK(registry_save(reg, &transient) == 0);
        CHECK(registry_save(reg, &pending) == 0);
        CHECK(registry_save(reg, &self) == 0);
        CHECK(registry_save(reg, &registered) == 0);
        /* Saving again replaces the file. */
        transient.created_usec = 42;
        CHECK(registry_save(reg, &transient) == 0);
        {
                _cleanup_free_ char *p = test_path_join(regdir, "1000-589824-65536.json");
                _cleanup_free_ char *p2 = test_path_join(regdir, "9223372036854776099-524288-65536.json");
                _cleanup_free_ char *p3 = test_path_join(regdir, "1002-1000-1.json");
                _cleanup_free_ char *tmp = test_path_join(regdir, "1000-589824-65536.json.tmp");

                CHECK(exists(p));
                CHECK(exists(p2));
                CHECK(exists(p3));
                CHECK(!exists(tmp));
                CHECK(mode_of(p) == 0600);
        }

        /* The NSS index: transient entries only, world-readable despite the umask. */
        {
                const NsEntry *list[] = { &transient, &self, &registered, &pending };
                _cleanup_free_ char *content = NULL;
                _cleanup_free_ char *tmp = test_path_join(state, "index.tmp");

                CHECK(registry_write_index(reg, list, ELEMENTSOF(list)) == 0);
                content = read_text(index);
                CHECK(content);
                CHECK(strcmp(content, "589824 65536 1000-one\n524288 65536 1000-two\n") == 0);
                CHECK(mode_of(index) == 0644);
                CHECK(!exists(tmp));

                free(content);
                CHECK(registry_write_index(reg, list, 0) == 0);
                content = read_text(index);
                CHECK(content);
                CHECK(strcmp(content, "") == 0);
                CHECK(mode_of(index) == 0644);
        }
        reg = registry_close(reg);
        CHECK(reg == NULL);

        /* Damage: a crash's leftover, garbage, a truncated file, a file whose
         * content disagrees with its name, a name we cannot parse. */
        {
                _cleanup_free_ char *good = NULL;
                _cleanup_free_ char *stale = test_path_join(regdir, "1004-655360-65536.json.tmp");
                _cleanup_free_ char *garbage = test_path_join(regdir, "1005-720896-65536.json");
                _cleanup_free_ char *truncated = test_path_join(regdir, "1006-786432-65536.json");
                _cleanup_free_ char *mismatch = test_path_join(regdir, "1007-851968-65536.json");
                _cleanup_free_ char *noname = test_path_join(regdir, "garbage.json");
                NsEntry t = transient;

                test_write_text(stale, "{\"id\":");
                test_write_text(garbage, "this is not json\n");
                t.id = 1006;
                t.uid_start = t.gid_start = 786432;
                CHECK(registry_entry_to_json(&t, &good) == 0);
                good[strlen(good) / 2] = '\0';
                test_write_text(truncated, good);
                free(good);
                t.id = 1008;    /* name says 1007 */
                t.uid_start = t.gid_start = 851968;
                CHECK(registry_entry_to_json(&t, &good) == 0);
                test_write_text(mismatch, good);
                test_write_text(noname, "{}");
        }

        /* An existing registry directory with a lax mode is fixed. */
        CHECK(chmod(regdir, 0755) == 0);
        CHECK(registry_open(state, &reg) == 0);
        CHECK(mode_of(regdir) == 0700);

        CHECK(registry_load(reg, &callbacks, &seen) == 0);
        CHECK(seen.n_entries == 4);
        {
                const NsEntry *e = seen_entry(&seen, 1000);

                CHECK(e && entries_equal(e, &transient) && !e->pending);
                e = seen_entry(&seen, UINT64_C(0x8000000000000123));
                CHECK(e && entries_equal(e, &pending) && e->pending);
                e = seen_entry(&seen, 1002);
                CHECK(e && entries_equal(e, &self));
                e = seen_entry(&seen, 1003);
                CHECK(e && entries_equal(e, &registered));
        }
        CHECK(seen.n_corrupt == 4);
        {
                int i;

                i = seen_corrupt(&seen, "/registry/quarantine/1005-720896-65536.json");
                CHECK(i >= 0 && seen.corrupt_start[i] == 720896 && seen.corrupt_size[i] == 65536);
                i = seen_corrupt(&seen, "/registry/quarantine/1006-786432-65536.json");
                CHECK(i >= 0 && seen.corrupt_start[i] == 786432 && seen.corrupt_size[i] == 65536);
                i = seen_corrupt(&seen, "/registry/quarantine/1007-851968-65536.json");
                CHECK(i >= 0 && seen.corrupt_start[i] == 851968 && seen.corrupt_size[i] == 65536);
                i = seen_corrupt(&seen, "/registry/quarantine/garbage.json");
                CHECK(i >= 0 && seen.corrupt_start[i] == 0 && seen.corrupt_size[i] == 0);
                CHECK(seen_corrupt(&seen, "1004-655360-65536.json.tmp") < 0);
        }
        {
                _cleanup_free_ char *stale = test_path_join(regdir, "1004-655360-65536.json.tmp");
                _cleanup_free_ char *moved = test_path_join(quarantine, "1005-720896-65536.json");
                _cleanup_free_ char *gone = test_path_join(regdir, "1005-720896-65536.json");
                _cleanup_free_ char *moved2 = test_path_join(quarantine, "1006-786432-65536.json");

                CHECK(!exists(stale));
                CHECK(exists(moved));
                CHECK(!exists(gone));
                CHECK(exists(moved2));
        }

        /* Next start: the quarantined ranges are reported again, good entries still load. */
        seen_reset(&seen);
        CHECK(registry_load(reg, &callbacks, &seen) == 0);
        CHECK(seen.n_entries == 4);
        CHECK(seen.n_corrupt == 4);
        {
                int i = seen_corrupt(&seen, "/registry/quarantine/1006-786432-65536.json");

                CHECK(i >= 0 && seen.corrupt_start[i] == 786432 && seen.corrupt_size[i] == 65536);
        }

        /* Removal, twice: the second finds nothing and is fine. */
        CHECK(registry_remove(reg, &transient) == 0);
        CHECK(registry_remove(reg, &transient) == 0);
        seen_reset(&seen);
        CHECK(registry_load(reg, &callbacks, &seen) == 0);
        CHECK(seen.n_entries == 3);
        CHECK(!seen_entry(&seen, 1000));

        /* Callbacks are optional. */
        CHECK(registry_load(reg, &(RegistryLoadCallbacks) {}, NULL) == 0);
        CHECK(registry_load(reg, NULL, NULL) == 0);

        seen_reset(&seen);
        registry_close(reg);
}

/* A document with "netifs" holding one record of these fields (a field set
 * to NULL is left out). */
static char *with_netif(struct json_object *host, struct json_object *kind, struct json_object *inside) {
        struct json_object *a = json_object_new_array(), *o = json_object_new_object();

        if (host)
                json_object_object_add(o, "host", host);
        if (kind)
                json_object_object_add(o, "kind", kind);
        if (inside)
                json_object_object_add(o, "inside", inside);
        json_object_array_add(a, o);
        return with_field("netifs", a);
}

static void check_netif_rejected(char *text) {
        if (!rejected(text)) {
                fprintf(stderr, "%s:%d: bad network interface record accepted\n", __FILE__, __LINE__);
                exit(EXIT_FAILURE);
        }
        free(text);
}

static void test_json_netifs(void) {
        NsEntry e = sample_entry(), back, copy;
        _cleanup_free_ char *text = NULL;
        NsNetif n;

        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(strstr(text, "\"netifs\":[]"));
        CHECK(registry_entry_from_json(text, &back) == 0);
        CHECK(back.n_netifs == 0 && back.netifs == NULL);

        /* Written before links could be made: loads with none. */
        {
                _cleanup_free_ char *old = with_field("netifs", NULL);

                CHECK(!strstr(old, "netifs"));
                memset(&back, 0xa5, sizeof(back));
                CHECK(registry_entry_from_json(old, &back) == 0);
                CHECK(back.n_netifs == 0 && back.netifs == NULL);
                CHECK(entries_equal(&e, &back));
                ns_entry_done(&back);
        }

        n = (NsNetif) { .kind = NS_NETIF_VETH, .host = "ns-0123456789ab", .inside = "host0" };
        CHECK(ns_entry_add_netif(&e, &n) == 0);
        /* One record per host name. */
        CHECK(ns_entry_add_netif(&e, &n) == -EEXIST);
        n = (NsNetif) { .kind = NS_NETIF_TAP, .host = "ns-ba9876543210", .inside = "tap0" };
        CHECK(ns_entry_add_netif(&e, &n) == 0);
        n = (NsNetif) { .kind = NS_NETIF_VETH, .host = "ns-000000000000", .inside = "a-very-long-nam" };
        CHECK(ns_entry_add_netif(&e, &n) == 0);
        CHECK(e.n_netifs == 3);
        free(text);
        text = NULL;
        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(strstr(text, "\"netifs\":[{\"host\":\"ns-0123456789ab\",\"kind\":\"veth\",\"inside\":\"host0\"},"
                           "{\"host\":\"ns-ba9876543210\",\"kind\":\"tap\",\"inside\":\"tap0\"},"));
        CHECK(registry_entry_from_json(text, &back) == 0);
        CHECK(entries_equal(&e, &back));

        CHECK(ns_entry_copy(&copy, &back) == 0);
        CHECK(copy.netifs != back.netifs);
        CHECK(entries_equal(&copy, &back));
        ns_entry_done(&back);
        CHECK(back.netifs == NULL && back.n_netifs == 0);
        CHECK(ns_entry_find_netif(&copy, "ns-ba9876543210") == 1);
        CHECK(ns_entry_find_netif(&copy, "ns-ffffffffffff") == -1);
        ns_entry_remove_netif(&copy, 0);
        CHECK(copy.n_netifs == 2 && ns_entry_find_netif(&copy, "ns-ba9876543210") == 0);
        CHECK(strcmp(copy.netifs[1].inside, "a-very-long-nam") == 0);
        ns_entry_remove_netif(&copy, 7);
        CHECK(copy.n_netifs == 2);
        ns_entry_done(&copy);
        ns_entry_done(&e);

        /* Records that could not be read back are refused when added. */
        {
                static const char *const bad_names[] = {
                        "", ".", "..", "a/b", "a:b", "a%d", "a b", "tab\t", "del\x7f", "\xc3\xa9",
                };
                NsEntry t = sample_entry();

                for (size_t i = 0; i < ELEMENTSOF(bad_names); i++) {
                        n = (NsNetif) { .kind = NS_NETIF_VETH, .host = "ns-0123456789ab" };
                        strcpy(n.inside, bad_names[i]);
                        CHECK(!ns_netif_name_is_valid(bad_names[i]));
                        CHECK(ns_entry_add_netif(&t, &n) == -EINVAL);
                        n = (NsNetif) { .kind = NS_NETIF_VETH, .inside = "host0" };
                        strcpy(n.host, bad_names[i]);
                        CHECK(ns_entry_add_netif(&t, &n) == -EINVAL);
                }
                CHECK(!ns_netif_name_is_valid("sixteen-chars-xx"));
                CHECK(ns_netif_name_is_valid("fifteen-chars-x"));
                n = (NsNetif) { .kind = (NsNetifKind) 2, .host = "ns-0123456789ab", .inside = "host0" };
                CHECK(ns_entry_add_netif(&t, &n) == -EINVAL);
                CHECK(t.n_netifs == 0);
                /* A record too many. */
                for (unsigned i = 0; i < NS_NETIFS_MAX; i++) {
                        n = (NsNetif) { .kind = NS_NETIF_TAP };
                        snprintf(n.host, sizeof(n.host), "ns-%012x", i);
                        snprintf(n.inside, sizeof(n.inside), "tap%u", i);
                        CHECK(ns_entry_add_netif(&t, &n) == 0);
                }
                n = (NsNetif) { .kind = NS_NETIF_TAP, .host = "ns-ffffffffffff", .inside = "tapx" };
                CHECK(ns_entry_add_netif(&t, &n) == -E2BIG);
                ns_entry_done(&t);
        }

        /* Malformed records on disk. */
        check_netif_rejected(with_netif(NULL, STR("veth"), STR("host0")));
        check_netif_rejected(with_netif(STR("ns-0123456789ab"), NULL, STR("host0")));
        check_netif_rejected(with_netif(STR("ns-0123456789ab"), STR("veth"), NULL));
        check_netif_rejected(with_netif(STR("ns-0123456789ab"), STR("bridge"), STR("host0")));
        check_netif_rejected(with_netif(STR("ns-0123456789ab"), STR("veth"), STR("sixteen-chars-xx")));
        check_netif_rejected(with_netif(STR("ns-0123456789ab"), STR("veth"), STR("a/b")));
        check_netif_rejected(with_netif(json_object_new_int(1), STR("veth"), STR("host0")));
        check_netif_rejected(with_netif(STR("ns-0123456789ab"), BOOL(true), STR("host0")));
        check_netif_rejected(with_netif(STR(""), STR("tap"), STR("tap0")));
        check_netif_rejected(with_field("netifs", json_object_new_object()));
        {
                struct json_object *a = json_object_new_array();

                json_object_array_add(a, json_object_new_string("ns-0123456789ab"));
                check_netif_rejected(with_field("netifs", a));
        }
        {
                /* Two records of one link. */
                struct json_object *a = json_object_new_array();

                for (int i = 0; i < 2; i++) {
                        struct json_object *o = json_object_new_object();

                        json_object_object_add(o, "host", STR("ns-0123456789ab"));
                        json_object_object_add(o, "kind", STR("veth"));
                        json_object_object_add(o, "inside", STR(i ? "eth1" : "eth0"));
                        json_object_array_add(a, o);
                }
                check_netif_rejected(with_field("netifs", a));
        }
        {
                _cleanup_free_ char *good = with_netif(STR("ns-0123456789ab"), STR("tap"), STR("tap3"));

                CHECK(registry_entry_from_json(good, &back) == 0);
                CHECK(back.n_netifs == 1 && back.netifs[0].kind == NS_NETIF_TAP &&
                      strcmp(back.netifs[0].inside, "tap3") == 0);
                ns_entry_done(&back);
        }
}

static struct json_object *bpf_object(int64_t delegations, const char *cmds) {
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "delegations", json_object_new_int64(delegations));
        if (cmds)
                json_object_object_add(o, "cmds", json_object_new_string(cmds));
        json_object_object_add(o, "maps", json_object_new_string("0"));
        json_object_object_add(o, "progs", json_object_new_string("2"));
        json_object_object_add(o, "attachs", json_object_new_string("0"));
        return o;
}

static void test_json_bpf(void) {
        NsEntry e = sample_entry(), back;
        _cleanup_free_ char *text = NULL, *again = NULL, *older = NULL;

        /* Nothing delegated: no "bpf" at all, as in entries written before. */
        CHECK(registry_entry_to_json(&e, &text) == 0);
        CHECK(!strstr(text, "\"bpf\""));
        older = with_field("bpf", NULL);
        CHECK(registry_entry_from_json(older, &back) == 0);
        CHECK(back.n_bpf == 0 && back.bpf_masks[0] == 0);

        e.n_bpf = 3;
        e.bpf_masks[0] = UINT64_MAX;    /* "any" */
        e.bpf_masks[1] = UINT64_C(1) << 2;
        e.bpf_masks[2] = UINT64_C(1) << 1;
        CHECK(registry_entry_to_json(&e, &again) == 0);
        CHECK(strstr(again, "\"bpf\":{\"delegations\":3,\"cmds\":\"18446744073709551615\",\"maps\":\"4\","
                            "\"progs\":\"2\",\"attachs\":\"0\"}"));
        CHECK(registry_entry_from_json(again, &back) == 0);
        CHECK(entries_equal(&e, &back));
        ns_entry_done(&back);

        e.n_bpf = NS_BPF_MAX + 1;
        CHECK(registry_entry_to_json(&e, &text) == -EINVAL);

        check_field_rejected("bpf", json_object_new_int(1));
        check_field_rejected("bpf", bpf_object(0, "1"));
        check_field_rejected("bpf", bpf_object(NS_BPF_MAX + 1, "1"));
        check_field_rejected("bpf", bpf_object(1, NULL));
        check_field_rejected("bpf", bpf_object(1, "-1"));
        check_field_rejected("bpf", bpf_object(1, "0x10"));
        {
                _cleanup_free_ char *s = with_field("bpf", bpf_object(2, "33"));

                CHECK(registry_entry_from_json(s, &back) == 0);
                CHECK(back.n_bpf == 2 && back.bpf_masks[0] == 33 && back.bpf_masks[2] == 2);
                ns_entry_done(&back);
        }
}

int main(void) {
        tmp_root = test_tmpdir();

        RUN_TEST(test_json_round_trip);
        RUN_TEST(test_json_rejects);
        RUN_TEST(test_json_mounts);
        RUN_TEST(test_json_cgroups);
        RUN_TEST(test_json_netifs);
        RUN_TEST(test_json_bpf);
        RUN_TEST(test_on_disk);
        return EXIT_SUCCESS;
}
