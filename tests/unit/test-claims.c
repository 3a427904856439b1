/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "claims.h"
#include "test-util.h"
#include "util.h"

static const char *tmp_root;

static bool claimed(const Claims *c, uint32_t id) {
        for (size_t i = 0; i < c->n_ranges; i++)
                if (id >= c->ranges[i].start && (uint64_t) id < (uint64_t) c->ranges[i].start + c->ranges[i].count)
                        return true;
        return false;
}

/* Sorted by start, disjoint and not touching: what merging promises. */
static bool ranges_normalised(const Claims *c) {
        for (size_t i = 1; i < c->n_ranges; i++)
                if ((uint64_t) c->ranges[i - 1].start + c->ranges[i - 1].count >= c->ranges[i].start)
                        return false;
        return true;
}

static void write_text(const char *dir, const char *name, const char *text) {
        _cleanup_free_ char *path = test_path_join(dir, name);

        test_write_text(path, text);
}

static char *make_dir(const char *name) {
        char *path = test_path_join(tmp_root, name);

        CHECK(mkdir(path, 0755) == 0);
        return path;
}

static int parse_text(const char *text, Claims *c, unsigned *bad) {
        FILE *f = fmemopen((void *) text, strlen(text), "r");
        int r;

        CHECK(f);
        r = claims_parse_subid(f, c, bad);
        fclose(f);
        return r;
}

static void test_parse_subid(void) {
        static const char text[] =
                "# comment\n"
                "\n"
                "   \t\n"
                "alice:100000:65536\n"
                "1000:165536:65536\n"
                "  bob:231072:65536  \r\n"
                "   # indented comment\n"
                "top:4294901760:65536\n"        /* ends exactly at 2^32 */
                "nocolon\n"
                "a:b:c\n"
                "zero:300000:0\n"
                "over:4294967295:2\n"
                "over2:4294901761:65536\n"
                ":400000:10\n"
                "extra:1:2:3\n"
                "neg:-1:5\n"
                "big:1:99999999999\n"
                "plus:+5:5\n"
                "space:5 :5\n"
                "short:5\n"
                "last:500000:7";                /* no trailing newline */
        Claims c = {};
        unsigned bad = 12345;

        CHECK(parse_text(text, &c, &bad) == 0);
        CHECK(bad == 12);
        CHECK(c.n_ranges == 5);
        CHECK(c.ranges[0].start == 100000 && c.ranges[0].count == 65536);
        CHECK(c.ranges[1].start == 165536 && c.ranges[1].count == 65536);
        CHECK(c.ranges[2].start == 231072 && c.ranges[2].count == 65536);
        CHECK(c.ranges[3].start == 4294901760u && c.ranges[3].count == 65536);
        CHECK(c.ranges[4].start == 500000 && c.ranges[4].count == 7);
        claims_done(&c);
        CHECK(c.ranges == NULL && c.n_ranges == 0);

        /* Counting is optional; an empty file is fine. */
        CHECK(parse_text("x:1:1\nbad\n", &c, NULL) == 0);
        CHECK(c.n_ranges == 1);
        claims_done(&c);
        bad = 7;
        CHECK(parse_text("", &c, &bad) == 0);
        CHECK(bad == 0 && c.n_ranges == 0);
        claims_done(&c);

        /* Binary junk does not crash. */
        {
                char junk[4096];

                for (size_t i = 0; i < sizeof(junk); i++)
                        junk[i] = (char) ((i * 7919 + 13) % 255 + 1);
                junk[sizeof(junk) - 1] = '\0';
                CHECK(parse_text(junk, &c, &bad) == 0);
                claims_done(&c);
        }
}

static void test_add(void) {
        Claims c = {};
        gid_t gid = 4242;

        CHECK(claims_add(&c, 5, 0) == -EINVAL);
        CHECK(claims_add(&c, 4294967295u, 2) == -EINVAL);
        CHECK(claims_add(&c, 4294967295u, 1) == 0);
        for (uint32_t i = 0; i < 1000; i++)
                CHECK(claims_add(&c, i * 2, 1) == 0);
        CHECK(c.n_ranges == 1001);
        CHECK(claimed(&c, 1998) && !claimed(&c, 1999));

        /* Out of order and duplicate users: sorted, first one wins. */
        CHECK(claims_add_user(&c, 1000, 100) == 0);
        CHECK(claims_add_user(&c, 5, 50) == 0);
        CHECK(claims_add_user(&c, 70000, 700) == 0);
        CHECK(claims_add_user(&c, 1000, 999) == 0);
        CHECK(claims_add_user(&c, 0, 0) == 0);
        CHECK(c.n_users == 4);
        for (size_t i = 1; i < c.n_users; i++)
                CHECK(c.users[i - 1].uid < c.users[i].uid);
        CHECK(claims_user_gid(&c, 1000, &gid) == 0 && gid == 100);
        CHECK(claims_user_gid(&c, 0, &gid) == 0 && gid == 0);
        CHECK(claims_user_gid(&c, 70000, &gid) == 0 && gid == 700);
        gid = 4242;
        CHECK(claims_user_gid(&c, 6, &gid) == -ENOENT && gid == 4242);
        CHECK(claims_user_gid(&c, 4294967294u, &gid) == -ENOENT);

        /* Many users in descending order stay sorted and searchable. */
        for (uint32_t u = 200000; u > 100000; u -= 3)
                CHECK(claims_add_user(&c, u, u + 1) == 0);
        for (size_t i = 1; i < c.n_users; i++)
                CHECK(c.users[i - 1].uid < c.users[i].uid);
        CHECK(claims_user_gid(&c, 150002, &gid) == 0 && gid == 150003);
        CHECK(claims_user_gid(&c, 150001, &gid) == -ENOENT);
        claims_done(&c);

        /* An empty table answers too. */
        CHECK(claims_user_gid(&c, 0, &gid) == -ENOENT);
}

static void test_collect_dirs(void) {
        _cleanup_free_ char *subuid = test_path_join(tmp_root, "subuid");
        _cleanup_free_ char *subgid = test_path_join(tmp_root, "subgid");
        _cleanup_free_ char *dynamic = make_dir("dynamic-uid");
        _cleanup_free_ char *nsres = make_dir("nsresource");
        _cleanup_free_ char *nspawn = make_dir("nspawn-uid");
        _cleanup_free_ char *missing = test_path_join(tmp_root, "does-not-exist");
        ClaimSources src = {
                .subuid_path = subuid,
                .subgid_path = subgid,
                .dynamic_uid_dir = dynamic,
                .nsresourced_dir = nsres,
                .nspawn_uid_dir = nspawn,
                .use_nss = 0,
        };
        Claims c = {};

        write_text(tmp_root, "subuid", "alice:100000:65536\nbroken line\n");
        write_text(tmp_root, "subgid", "alice:1000000:10\n");

        /* DynamicUser: numeric lock files are ids, name links are not. */
        write_text(dynamic, "61200", "");
        write_text(dynamic, "61201", "");
        write_text(dynamic, "65000", "");
        write_text(dynamic, "direct:61300", "");
        write_text(dynamic, "6130x", "");
        write_text(dynamic, "99999999999", "");
        {
                _cleanup_free_ char *link = test_path_join(dynamic, "myservice");

                CHECK(symlink("61200", link) == 0);
        }

        /* nsresourced: JSON by inode, symlinks by uid and name, a damaged
         * by-uid file, files of no interest. */
        write_text(nsres, "i4026532100.userns",
                   "{\"name\":\"x\",\"userns\":4026532100,\"start\":2147483648,\"size\":65536,\"target\":0}");
        write_text(nsres, "i4026532101.userns", "{\"start\":2000000000,\"size\":1}");
        write_text(nsres, "u2147614720.userns", "{ not json");
        write_text(nsres, "nbroken.userns", "garbage");
        write_text(nsres, "i1.userns", "{\"start\":-5,\"size\":65536}");
        write_text(nsres, "i2.userns", "{\"start\":4294967295,\"size\":65536}");
        write_text(nsres, "i3.userns", "[1,2]");
        write_text(nsres, "notes.txt", "{\"start\":3000000000,\"size\":65536}");
        {
                _cleanup_free_ char *link = test_path_join(nsres, "u2147483648.userns");
                _cleanup_free_ char *dangling = test_path_join(nsres, "u2684354560.userns");

                CHECK(symlink("i4026532100.userns", link) == 0);
                CHECK(symlink("i-gone.userns", dangling) == 0);
        }

        /* nspawn: a lock per base uid. */
        write_text(nspawn, "1073741824", "");
        write_text(nspawn, "4294967290", "");
        write_text(nspawn, "not-a-number", "");

        CHECK(claims_collect(&src, &c) == 0);
        CHECK(ranges_normalised(&c));
        CHECK(c.n_users == 0);

        CHECK(claimed(&c, 100000) && claimed(&c, 165535) && !claimed(&c, 165536) && !claimed(&c, 99999));
        CHECK(claimed(&c, 1000000) && claimed(&c, 1000009) && !claimed(&c, 1000010));

        CHECK(claimed(&c, 61200) && claimed(&c, 61201) && claimed(&c, 65000));
        CHECK(!claimed(&c, 61202) && !claimed(&c, 61300) && !claimed(&c, 6130));

        CHECK(claimed(&c, 2147483648u) && claimed(&c, 2147549183u));
        CHECK(!claimed(&c, 2147549184u) && !claimed(&c, 2147614719u));
        CHECK(claimed(&c, 2147614720u) && claimed(&c, 2147680255u) && !claimed(&c, 2147680256u));
        CHECK(claimed(&c, 2684354560u) && claimed(&c, 2684420095u) && !claimed(&c, 2684420096u));
        CHECK(claimed(&c, 2000000000) && !claimed(&c, 2000000001) && !claimed(&c, 1999999999));
        CHECK(!claimed(&c, 3000000000u));

        CHECK(claimed(&c, 1073741824) && claimed(&c, 1073807359) && !claimed(&c, 1073807360));
        CHECK(claimed(&c, 4294967295u) && claimed(&c, 4294967290u) && !claimed(&c, 4294967289u));
        claims_done(&c);

        /* Everything missing: nothing claimed, no error. */
        src = (ClaimSources) {
                .subuid_path = missing,
                .subgid_path = missing,
                .dynamic_uid_dir = missing,
                .nsresourced_dir = missing,
                .nspawn_uid_dir = missing,
        };
        CHECK(claims_collect(&src, &c) == 0);
        CHECK(c.n_ranges == 0 && c.n_users == 0);
        claims_done(&c);

        src = (ClaimSources) {};
        CHECK(claims_collect(&src, &c) == 0);
        CHECK(c.n_ranges == 0);
        claims_done(&c);
}

static void test_collect_nss(void) {
        ClaimSources src = { .use_nss = 1 };
        Claims c = {};
        gid_t gid = 4242;

        CHECK(claims_collect(&src, &c) == 0);
        CHECK(claims_user_gid(&c, 0, &gid) == 0 && gid == 0);
        CHECK(claimed(&c, 0));
        CHECK(ranges_normalised(&c));
        for (size_t i = 1; i < c.n_users; i++)
                CHECK(c.users[i - 1].uid < c.users[i].uid);
        CHECK(claims_user_gid(&c, 4000000000u, &gid) == -ENOENT);
        claims_done(&c);

        CHECK(claim_sources_default.use_nss == 1);
        CHECK(strcmp(claim_sources_default.subuid_path, "/etc/subuid") == 0);
        CHECK(strcmp(claim_sources_default.subgid_path, "/etc/subgid") == 0);
        CHECK(strcmp(claim_sources_default.dynamic_uid_dir, "/run/systemd/dynamic-uid") == 0);
        CHECK(strcmp(claim_sources_default.nsresourced_dir, "/run/systemd/nsresource/registry") == 0);
        CHECK(strcmp(claim_sources_default.nspawn_uid_dir, "/run/systemd/nspawn-uid") == 0);
}

int main(void) {
        tmp_root = test_tmpdir();

        RUN_TEST(test_parse_subid);
        RUN_TEST(test_add);
        RUN_TEST(test_collect_dirs);
        RUN_TEST(test_collect_nss);
        return EXIT_SUCCESS;
}
