/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* /etc/subuid and /etc/subgid as claims_collect() reads them. The files
 * belong to root, but whatever tools wrote them, a line nsresd does not
 * understand must be skipped, never turned into a wrong claim. */

#include "claims.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Claims c = {};
        unsigned bad = 0;
        FILE *f;
        int r;

        /* fmemopen() wants a non-empty buffer; an empty file says nothing. */
        if (size == 0)
                return 0;
        /* The raw bytes, embedded NULs included, as getline() reads a file. */
        f = fmemopen((void *) data, size, "r");
        FUZZ_CHECK(f);
        r = claims_parse_subid(f, &c, &bad);
        fclose(f);
        FUZZ_CHECK(r == 0);

        for (size_t i = 0; i < c.n_ranges; i++) {
                FUZZ_CHECK(c.ranges[i].count > 0);
                FUZZ_CHECK((uint64_t) c.ranges[i].start + c.ranges[i].count <= (uint64_t) UINT32_MAX + 1);
        }
        /* Every line is a claim, a comment, blank, or counted as bad. */
        FUZZ_CHECK(c.n_ranges + bad <= size);

        claims_done(&c);
        return 0;
}
