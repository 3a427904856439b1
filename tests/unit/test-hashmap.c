/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "hashmap.h"
#include "test-util.h"
#include "util.h"

static void test_u64_basic(void) {
        Hashmap *h = hashmap_new_u64();
        int a = 1, b = 2, c = 3;

        CHECK(h);
        CHECK_EQ(hashmap_size(h), 0);
        CHECK(!hashmap_get_u64(h, 0));
        CHECK(!hashmap_remove_u64(h, 0));

        CHECK_EQ(hashmap_put_u64(h, 0, &a), 0);
        CHECK_EQ(hashmap_put_u64(h, UINT64_MAX, &b), 0);
        CHECK_EQ(hashmap_put_u64(h, 42, &c), 0);
        CHECK_EQ(hashmap_size(h), 3);
        CHECK(hashmap_get_u64(h, 0) == &a);
        CHECK(hashmap_get_u64(h, UINT64_MAX) == &b);
        CHECK(hashmap_get_u64(h, 42) == &c);
        CHECK(!hashmap_get_u64(h, 43));

        /* A duplicate is refused and the first value kept. */
        CHECK_EQ(hashmap_put_u64(h, 42, &a), -EEXIST);
        CHECK(hashmap_get_u64(h, 42) == &c);
        CHECK_EQ(hashmap_size(h), 3);

        /* Values are non-NULL pointers. */
        CHECK_EQ(hashmap_put_u64(h, 7, NULL), -EINVAL);
        CHECK(!hashmap_get_u64(h, 7));

        CHECK(hashmap_remove_u64(h, 42) == &c);
        CHECK(!hashmap_remove_u64(h, 42));
        CHECK(!hashmap_get_u64(h, 42));
        CHECK_EQ(hashmap_size(h), 2);
        CHECK_EQ(hashmap_put_u64(h, 42, &a), 0);
        CHECK(hashmap_get_u64(h, 42) == &a);

        CHECK(!hashmap_free(h));
        CHECK(!hashmap_free(NULL));
        CHECK_EQ(hashmap_size(NULL), 0);
        CHECK(!hashmap_get_u64(NULL, 1));
}

/* Large and sequential, then mostly removed: growth, shrinking and the
 * backward shift on deletion all have to keep every remaining key. */
static void test_u64_many(void) {
        enum { N = 200000 };
        static char values[N];
        Hashmap *h = hashmap_new_u64();

        CHECK(h);
        for (uint64_t i = 0; i < N; i++)
                CHECK_EQ(hashmap_put_u64(h, i * 4096, &values[i]), 0);
        CHECK_EQ(hashmap_size(h), N);
        for (uint64_t i = 0; i < N; i++) {
                CHECK(hashmap_get_u64(h, i * 4096) == &values[i]);
                CHECK(!hashmap_get_u64(h, i * 4096 + 1));
        }

        for (uint64_t i = 0; i < N; i++)
                if (i % 97 != 0)
                        CHECK(hashmap_remove_u64(h, i * 4096) == &values[i]);
        CHECK_EQ(hashmap_size(h), (N + 96) / 97);
        for (uint64_t i = 0; i < N; i++)
                CHECK(hashmap_get_u64(h, i * 4096) == (i % 97 == 0 ? &values[i] : NULL));

        for (uint64_t i = 0; i < N; i += 97)
                CHECK(hashmap_remove_u64(h, i * 4096) == &values[i]);
        CHECK_EQ(hashmap_size(h), 0);
        CHECK(!hashmap_get_u64(h, 0));

        hashmap_free(h);
}

/* Random operations on a small key space against a plain array. */
static void test_u64_random(void) {
        enum { KEYS = 3000 };
        static char values[KEYS];
        static bool present[KEYS];
        unsigned long long rnd = 0xc0ffeeULL;
        Hashmap *h = hashmap_new_u64();
        size_t n = 0;

        CHECK(h);
        memset(present, 0, sizeof(present));

        for (unsigned step = 0; step < 1000000; step++) {
                unsigned k = (unsigned) (test_random(&rnd) % KEYS);
                /* Keys that collide in the low bits before mixing. */
                uint64_t key = (uint64_t) k << 32;

                switch (test_random(&rnd) % 3) {
                case 0:
                        CHECK_EQ(hashmap_put_u64(h, key, &values[k]), present[k] ? -EEXIST : 0);
                        n += !present[k];
                        present[k] = true;
                        break;
                case 1:
                        CHECK(hashmap_remove_u64(h, key) == (present[k] ? &values[k] : NULL));
                        n -= present[k];
                        present[k] = false;
                        break;
                case 2:
                        CHECK(hashmap_get_u64(h, key) == (present[k] ? &values[k] : NULL));
                        break;
                }
                CHECK_EQ(hashmap_size(h), n);
        }

        for (unsigned k = 0; k < KEYS; k++)
                CHECK(hashmap_get_u64(h, (uint64_t) k << 32) == (present[k] ? &values[k] : NULL));

        hashmap_free(h);
}

static void test_string(void) {
        Hashmap *h = hashmap_new_string();
        char key_copy[] = "alpha";
        int a = 1, b = 2, c = 3;

        CHECK(h);
        CHECK(!hashmap_get_string(h, "alpha"));
        CHECK(!hashmap_remove_string(h, "alpha"));

        CHECK_EQ(hashmap_put_string(h, "alpha", &a), 0);
        CHECK_EQ(hashmap_put_string(h, "beta", &b), 0);
        CHECK_EQ(hashmap_put_string(h, "", &c), 0);
        CHECK_EQ(hashmap_size(h), 3);

        /* Compared by content, not by pointer. */
        CHECK(hashmap_get_string(h, key_copy) == &a);
        CHECK_EQ(hashmap_put_string(h, key_copy, &b), -EEXIST);
        CHECK(hashmap_get_string(h, "") == &c);
        CHECK(!hashmap_get_string(h, "alph"));
        CHECK(!hashmap_get_string(h, "alphaa"));
        CHECK(!hashmap_get_string(h, "Alpha"));

        CHECK_EQ(hashmap_put_string(h, NULL, &a), -EINVAL);
        CHECK_EQ(hashmap_put_string(h, "gamma", NULL), -EINVAL);
        CHECK(!hashmap_get_string(h, NULL));
        CHECK(!hashmap_remove_string(h, NULL));

        CHECK(hashmap_remove_string(h, key_copy) == &a);
        CHECK(!hashmap_get_string(h, "alpha"));
        CHECK_EQ(hashmap_size(h), 2);

        hashmap_free(h);
}

static void test_string_many(void) {
        enum { N = 50000 };
        static char keys[N][24];
        Hashmap *h = hashmap_new_string();

        CHECK(h);
        for (unsigned i = 0; i < N; i++) {
                /* Names as the daemon stores them: "<uid>-<name>". */
                snprintf(keys[i], sizeof(keys[i]), "%u-ns%u", 1000 + i % 50, i);
                CHECK_EQ(hashmap_put_string(h, keys[i], keys[i]), 0);
        }
        CHECK_EQ(hashmap_size(h), N);

        for (unsigned i = 0; i < N; i++) {
                char probe[24];

                snprintf(probe, sizeof(probe), "%u-ns%u", 1000 + i % 50, i);
                CHECK(hashmap_get_string(h, probe) == keys[i]);
        }
        for (unsigned i = 0; i < N; i += 2)
                CHECK(hashmap_remove_string(h, keys[i]) == keys[i]);
        for (unsigned i = 0; i < N; i++)
                CHECK(hashmap_get_string(h, keys[i]) == (i % 2 ? keys[i] : NULL));
        CHECK_EQ(hashmap_size(h), N / 2);

        hashmap_free(h);
}

static void test_iterate(void) {
        enum { N = 1000 };
        static int values[N];
        static unsigned seen[N];
        Hashmap *h = hashmap_new_u64();
        size_t state = 0, count = 0;
        void *v = &state;

        CHECK(h);
        CHECK(!hashmap_iterate(h, &state, &v));
        CHECK(v == &state);

        for (unsigned i = 0; i < N; i++)
                CHECK_EQ(hashmap_put_u64(h, i, &values[i]), 0);
        for (unsigned i = 0; i < N; i += 3)
                CHECK(hashmap_remove_u64(h, i) == &values[i]);

        memset(seen, 0, sizeof(seen));
        state = 0;
        while (hashmap_iterate(h, &state, &v)) {
                size_t i = (size_t) ((int *) v - values);

                CHECK(i < N);
                seen[i]++;
                count++;
        }
        CHECK_EQ(count, hashmap_size(h));
        for (unsigned i = 0; i < N; i++)
                CHECK_EQ(seen[i], i % 3 == 0 ? 0 : 1);

        /* Finished iterations stay finished. */
        CHECK(!hashmap_iterate(h, &state, &v));

        CHECK(!hashmap_iterate(NULL, &state, &v));
        hashmap_free(h);
}

int main(void) {
        RUN_TEST(test_u64_basic);
        RUN_TEST(test_u64_many);
        RUN_TEST(test_u64_random);
        RUN_TEST(test_string);
        RUN_TEST(test_string_many);
        RUN_TEST(test_iterate);
        return EXIT_SUCCESS;
}
