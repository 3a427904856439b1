/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Checks for the unit tests: the first failing one prints where and what,
 * and ends the test with a non-zero status. */

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(expr)                                                             \
        do {                                                                    \
                if (!(expr)) {                                                  \
                        fprintf(stderr, "%s:%d: %s: check failed: %s\n",        \
                                __FILE__, __LINE__, __func__, #expr);           \
                        exit(EXIT_FAILURE);                                     \
                }                                                               \
        } while (0)

/* Compares as signed 64-bit values, which holds every errno, uid and 32-bit id. */
#define CHECK_EQ(a, b)                                                          \
        do {                                                                    \
                long long _check_a = (long long) (a), _check_b = (long long) (b); \
                if (_check_a != _check_b) {                                     \
                        fprintf(stderr, "%s:%d: %s: check failed: %s == %s (%lld != %lld)\n", \
                                __FILE__, __LINE__, __func__, #a, #b,           \
                                _check_a, _check_b);                            \
                        exit(EXIT_FAILURE);                                     \
                }                                                               \
        } while (0)

#define CHECK_STREQ(a, b)                                                       \
        do {                                                                    \
                const char *_check_a = (a), *_check_b = (b);                    \
                if (!_check_a || !_check_b || strcmp(_check_a, _check_b) != 0) { \
                        fprintf(stderr, "%s:%d: %s: check failed: %s == %s ('%s' != '%s')\n", \
                                __FILE__, __LINE__, __func__, #a, #b,           \
                                _check_a ?: "(null)", _check_b ?: "(null)");    \
                        exit(EXIT_FAILURE);                                     \
                }                                                               \
        } while (0)

/* Runs one test function and says so, so a failure can be placed in context. */
#define RUN_TEST(f)                                                             \
        do {                                                                    \
                f();                                                            \
                printf("ok - %s\n", #f);                                        \
        } while (0)

/* A small deterministic generator (xorshift64*): random orders and inputs
 * that are the same on every run, so a failure can be reproduced. */
static inline unsigned long long test_random(unsigned long long *state) {
        unsigned long long x = *state;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        return x * 0x2545f4914f6cdd1dULL;
}

/* "a/b", newly allocated. */
static inline char *test_path_join(const char *a, const char *b) {
        char *s;

        CHECK(asprintf(&s, "%s/%s", a, b) > 0);
        return s;
}

static inline void test_write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        CHECK(f);
        fputs(text, f);
        CHECK(fclose(f) == 0);
}

static inline int test_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(path);
}

/* Kept in a function so that tests without a scratch directory have no unused variable. */
static inline char *test_tmpdir_path(void) {
        static char path[PATH_MAX];

        return path;
}

static inline void test_tmpdir_remove(void) {
        (void) nftw(test_tmpdir_path(), test_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The test's scratch directory, /tmp/<test name>-XXXXXX, made on the first
 * call. It is removed with all it holds when the test exits, also when a
 * check fails. */
static inline const char *test_tmpdir(void) {
        char *path = test_tmpdir_path();

        if (path[0] == '\0') {
                CHECK(snprintf(path, PATH_MAX, "/tmp/%s-XXXXXX", program_invocation_short_name) < PATH_MAX);
                CHECK(mkdtemp(path));
                CHECK(atexit(test_tmpdir_remove) == 0);
        }
        return path;
}
