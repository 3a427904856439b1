/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What every harness shares: the entry point libFuzzer calls, and a check
 * that turns a broken property into a crash libFuzzer records. */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(expr)                                                        \
        do {                                                                    \
                if (!(expr)) {                                                  \
                        fprintf(stderr, "%s:%d: %s: check failed: %s\n",        \
                                __FILE__, __LINE__, __func__, #expr);           \
                        abort();                                                \
                }                                                               \
        } while (0)

/* The input as the parsers get text: NUL-terminated, in a buffer of exactly
 * that size so that the sanitizer sees any read past the end. An embedded NUL
 * ends the text early, as it would for the daemon. */
static inline char *fuzz_text(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (!s)
                abort();
        memcpy(s, data, size);
        s[size] = '\0';
        return s;
}
