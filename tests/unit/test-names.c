/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "names.h"
#include "test-util.h"
#include "util.h"

static void test_valid(void) {
        static const char *const valid[] = {
                "a", "Z", "0", "_", "a-", "a-b", "a_b", "9lives",
                "abc_DEF-123", "___", "x--y",
                "abcdefghijklmnop",     /* 16 */
                "0123456789_-ABCD",
        };
        static const char *const invalid[] = {
                "", "-", "-a", "--", "abcdefghijklmnopq", /* 17 */
                "0123456789abcdefghij",
                "a/b", "/", ".", "..", "../etc", "a.b", "a b", " a", "a ",
                "a\n", "\t", "a\x01", "\x7f", "a:b", "a@b", "a*", "a$",
                "caf\xc3\xa9",          /* UTF-8 é */
                "\xe6\x97\xa5",         /* UTF-8 日 */
                "a\xff", "\xc0\xaf",
        };

        for (size_t i = 0; i < ELEMENTSOF(valid); i++)
                if (!name_is_valid(valid[i])) {
                        fprintf(stderr, "'%s' should be valid\n", valid[i]);
                        CHECK(name_is_valid(valid[i]));
                }
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++)
                if (name_is_valid(invalid[i])) {
                        fprintf(stderr, "invalid[%zu] should be invalid\n", i);
                        CHECK(!name_is_valid(invalid[i]));
                }

        CHECK(!name_is_valid(NULL));
}

static bool is_lower_hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void check_mangled(const char *in, const char *expected) {
        char out[NAME_MAX_LEN + 1];

        CHECK_EQ(name_mangle(in, out), 0);
        CHECK(name_is_valid(out));
        CHECK_STREQ(out, expected);
}

static void test_mangle(void) {
        char out[NAME_MAX_LEN + 1], again[NAME_MAX_LEN + 1];

        /* Valid names come back unchanged. */
        check_mangled("a", "a");
        check_mangled("abcdefghijklmnop", "abcdefghijklmnop");
        check_mangled("a-", "a-");

        check_mangled("-abc", "abc");
        check_mangled("---abc", "abc");
        check_mangled("-a-b", "a-b");
        check_mangled("a/b", "a_b");
        check_mangled("..", "__");
        check_mangled("/", "_");
        check_mangled("-/", "_");
        check_mangled("a b\tc\n", "a_b_c_");
        check_mangled("x\x7f", "x_");
        /* One '_' per UTF-8 character, not per byte. */
        check_mangled("caf\xc3\xa9", "caf_");
        check_mangled("\xe6\x97\xa5\xe6\x9c\xac", "__");
        check_mangled("a\xf0\x9f\x98\x80z", "a_z");
        /* Leading dashes do not count towards the length. */
        check_mangled("----abcdefghijklmnop", "abcdefghijklmnop");

        /* Nothing usable: -EINVAL, output untouched. */
        memcpy(out, "sentinel", sizeof("sentinel"));
        CHECK_EQ(name_mangle("", out), -EINVAL);
        CHECK_EQ(name_mangle("-", out), -EINVAL);
        CHECK_EQ(name_mangle("-----", out), -EINVAL);
        CHECK_EQ(name_mangle(NULL, out), -EINVAL);
        CHECK_STREQ(out, "sentinel");

        /* Too long: head, '-', four lowercase hex digits of the whole. */
        CHECK_EQ(name_mangle("abcdefghijklmnopq", out), 0);
        CHECK_EQ(strlen(out), NAME_MAX_LEN);
        CHECK(name_is_valid(out));
        CHECK(strncmp(out, "abcdefghijk-", 12) == 0);
        for (size_t i = 12; i < NAME_MAX_LEN; i++)
                CHECK(is_lower_hex(out[i]));

        /* Deterministic. */
        CHECK_EQ(name_mangle("abcdefghijklmnopq", again), 0);
        CHECK_STREQ(out, again);

        /* Different long names stay different, even with the same head, or
         * when they differ only in characters that all become '_'. */
        CHECK_EQ(name_mangle("container-number-one", out), 0);
        CHECK_EQ(name_mangle("container-number-two", again), 0);
        CHECK(strncmp(out, "container-n-", 12) == 0);
        CHECK(strcmp(out, again) != 0);
        CHECK_EQ(name_mangle("my.sandbox.profile", out), 0);
        CHECK_EQ(name_mangle("my/sandbox/profile", again), 0);
        CHECK(strcmp(out, again) != 0);
        CHECK_EQ(name_mangle("abcdefghijklmnopq", out), 0);
        CHECK_EQ(name_mangle("abcdefghijklmnopr", again), 0);
        CHECK(strcmp(out, again) != 0);

        /* A head ending in '-' is still a valid name. */
        CHECK_EQ(name_mangle("abcdefghij-klmnopqrst", out), 0);
        CHECK(name_is_valid(out));
        CHECK(strncmp(out, "abcdefghij--", 12) == 0);
}

/* Whatever the input, the result is a valid name (or -EINVAL when the input
 * is only dashes) and the same every time. */
static void test_mangle_random(void) {
        unsigned long long rnd = 0xfeedULL;

        for (unsigned n = 0; n < 200000; n++) {
                char in[64], out[NAME_MAX_LEN + 1], again[NAME_MAX_LEN + 1];
                size_t len = (size_t) (test_random(&rnd) % (sizeof(in) - 1));
                bool only_dashes = true;
                int r;

                for (size_t i = 0; i < len; i++) {
                        unsigned long long x = test_random(&rnd);

                        /* Bias towards dashes and valid characters so that
                         * interesting cases show up often. */
                        if (x % 4 == 0)
                                in[i] = '-';
                        else if (x % 4 == 1)
                                in[i] = (char) ('a' + (x >> 8) % 26);
                        else
                                in[i] = (char) (1 + (x >> 8) % 255);
                        only_dashes = only_dashes && in[i] == '-';
                }
                in[len] = '\0';

                r = name_mangle(in, out);
                if (only_dashes) {
                        CHECK_EQ(r, -EINVAL);
                        continue;
                }
                CHECK_EQ(r, 0);
                CHECK(name_is_valid(out));
                if (name_is_valid(in))
                        CHECK_STREQ(out, in);
                CHECK_EQ(name_mangle(in, again), 0);
                CHECK_STREQ(out, again);
        }
}

/* Over-long names that share their head: the hashes tell them apart. */
static void test_mangle_distinct(void) {
        enum { N = 200 };
        static char results[N][NAME_MAX_LEN + 1];
        unsigned collisions = 0;

        for (unsigned i = 0; i < N; i++) {
                char in[64];

                snprintf(in, sizeof(in), "my-long-sandbox-name-%u", i);
                CHECK_EQ(name_mangle(in, results[i]), 0);
                CHECK(name_is_valid(results[i]));
                for (unsigned j = 0; j < i; j++)
                        collisions += strcmp(results[i], results[j]) == 0;
        }
        /* 16 bits of hash over 200 names: a collision or two is possible in
         * principle, many would mean the hash ignores the input. */
        CHECK(collisions <= 2);
}

static void test_qualify(void) {
        char out[QUALIFIED_NAME_MAX + 1];

        name_qualify(0, "foo", out);
        CHECK_STREQ(out, "foo");
        name_qualify(1000, "foo", out);
        CHECK_STREQ(out, "1000-foo");
        name_qualify(1, "a", out);
        CHECK_STREQ(out, "1-a");

        /* The longest possible result fits exactly. */
        name_qualify(4294967294u, "abcdefghijklmnop", out);
        CHECK_STREQ(out, "4294967294-abcdefghijklmnop");
        CHECK_EQ(strlen(out), QUALIFIED_NAME_MAX);

        name_qualify(0, "abcdefghijklmnop", out);
        CHECK_STREQ(out, "abcdefghijklmnop");
}

int main(void) {
        RUN_TEST(test_valid);
        RUN_TEST(test_mangle);
        RUN_TEST(test_mangle_random);
        RUN_TEST(test_mangle_distinct);
        RUN_TEST(test_qualify);
        return EXIT_SUCCESS;
}
