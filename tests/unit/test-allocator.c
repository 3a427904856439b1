/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "allocator.h"
#include "test-util.h"
#include "util.h"

#define RANGE_START 524288u
#define RANGE_END 1879048191u
#define N_BLOCKS 28664u
#define SINGLE_START 61184u
#define SINGLE_END 65519u
#define N_SINGLES 4336u

#define BLOCK(i) (RANGE_START + (uint32_t) (i) * ALLOCATOR_BLOCK_SIZE)

static const AllocatorConfig default_config = {
        .range_start = RANGE_START,
        .range_end = RANGE_END,
        .single_start = SINGLE_START,
        .single_end = SINGLE_END,
        .max_per_owner = 256,
};

static Allocator *new_default(void) {
        Allocator *a = NULL;

        CHECK_EQ(allocator_new(&default_config, &a), 0);
        CHECK(a);
        return a;
}

static void test_bad_config(void) {
        Allocator *sentinel = (Allocator *) &sentinel, *a = sentinel;
        AllocatorConfig c;

        CHECK_EQ(allocator_new(NULL, &a), -EINVAL);

        c = default_config;
        c.range_start += 1;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        c = default_config;
        c.range_start += 4096;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        c = default_config;
        c.range_end -= 1;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        c = default_config;
        c.range_end += 1;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        /* Aligned but empty: the end lies before the start. */
        c = default_config;
        c.range_end = c.range_start - 1;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        c = default_config;
        c.single_end = c.single_start - 1;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        /* Single pool inside the block pool, and touching it at either end. */
        c = default_config;
        c.single_start = RANGE_START + 100;
        c.single_end = RANGE_START + 200;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        c = default_config;
        c.single_end = RANGE_START;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        c = default_config;
        c.single_start = RANGE_END;
        c.single_end = RANGE_END + 10;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        /* Block pool inside the single pool. */
        c = default_config;
        c.single_start = 0;
        c.single_end = 4294967295u;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        c = default_config;
        c.max_per_owner = 0;
        CHECK_EQ(allocator_new(&c, &a), -EINVAL);

        CHECK(a == sentinel);

        /* Edges that are valid: pools adjacent, a pool reaching the last id,
         * one-element pools. */
        c = default_config;
        c.single_start = RANGE_START - 10;
        c.single_end = RANGE_START - 1;
        CHECK_EQ(allocator_new(&c, &a), 0);
        a = allocator_free(a);
        CHECK(!a);

        c = (AllocatorConfig) {
                .range_start = 4294901760u,
                .range_end = 4294967295u,
                .single_start = 0,
                .single_end = 0,
                .max_per_owner = 1,
        };
        CHECK_EQ(allocator_new(&c, &a), 0);
        CHECK_EQ(allocator_free_blocks(a), 1);
        CHECK_EQ(allocator_free_singles(a), 1);
        allocator_free(a);

        CHECK(!allocator_free(NULL));
}

static void test_first_fit(void) {
        Allocator *a = new_default();
        uint32_t start = 0, sentinel = 12345;

        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 1, &start), 0);
        CHECK_EQ(start, BLOCK(0));
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 2, &start), 0);
        CHECK_EQ(start, BLOCK(1));
        CHECK_EQ(allocator_take(a, 1, 3, &start), 0);
        CHECK_EQ(start, SINGLE_START);
        CHECK_EQ(allocator_take(a, 1, 4, &start), 0);
        CHECK_EQ(start, SINGLE_START + 1);

        start = sentinel;
        CHECK_EQ(allocator_take(a, 0, 5, &start), -EINVAL);
        CHECK_EQ(allocator_take(a, 2, 5, &start), -EINVAL);
        CHECK_EQ(allocator_take(a, 65535, 5, &start), -EINVAL);
        CHECK_EQ(allocator_take(a, 65537, 5, &start), -EINVAL);
        CHECK_EQ(start, sentinel);

        allocator_free(a);
}

static void test_exhaustion(void) {
        Allocator *a = new_default();
        uint32_t start, sentinel = 777;

        for (uint32_t i = 0; i < N_BLOCKS; i++) {
                CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, i, &start), 0);
                CHECK_EQ(start, BLOCK(i));
        }
        CHECK_EQ(start, RANGE_END - ALLOCATOR_BLOCK_SIZE + 1);
        CHECK_EQ(allocator_free_blocks(a), 0);
        start = sentinel;
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 0, &start), -ENOSPC);
        CHECK_EQ(start, sentinel);
        /* The single pool is unaffected. */
        CHECK_EQ(allocator_free_singles(a), N_SINGLES);

        for (uint32_t i = 0; i < N_SINGLES; i++) {
                CHECK_EQ(allocator_take(a, 1, i, &start), 0);
                CHECK_EQ(start, SINGLE_START + i);
        }
        CHECK_EQ(start, SINGLE_END);
        CHECK_EQ(allocator_free_singles(a), 0);
        CHECK_EQ(allocator_take(a, 1, 0, &start), -ENOSPC);
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 0, &start), -ENOSPC);

        allocator_free(a);
}

static void test_release_retake(void) {
        Allocator *a = new_default();
        uint32_t start;

        for (unsigned i = 0; i < 4; i++)
                CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, i, &start), 0);

        CHECK_EQ(allocator_release(a, BLOCK(2), ALLOCATOR_BLOCK_SIZE), 0);
        CHECK_EQ(allocator_release(a, BLOCK(2), ALLOCATOR_BLOCK_SIZE), -ENOENT);
        CHECK_EQ(allocator_release(a, BLOCK(1), ALLOCATOR_BLOCK_SIZE), 0);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 2);

        /* The lowest freed block comes back first. */
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 10, &start), 0);
        CHECK_EQ(start, BLOCK(1));
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 11, &start), 0);
        CHECK_EQ(start, BLOCK(2));
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 12, &start), 0);
        CHECK_EQ(start, BLOCK(4));

        /* Releases that name no taken range. */
        CHECK_EQ(allocator_release(a, BLOCK(5), ALLOCATOR_BLOCK_SIZE), -ENOENT);
        CHECK_EQ(allocator_release(a, BLOCK(0) + 1, ALLOCATOR_BLOCK_SIZE), -ENOENT);
        CHECK_EQ(allocator_release(a, BLOCK(0), 1), -ENOENT);
        CHECK_EQ(allocator_release(a, BLOCK(0), 2), -ENOENT);
        CHECK_EQ(allocator_release(a, 0, ALLOCATOR_BLOCK_SIZE), -ENOENT);
        CHECK_EQ(allocator_release(a, 4294901760u, ALLOCATOR_BLOCK_SIZE), -ENOENT);
        CHECK_EQ(allocator_release(a, SINGLE_START, 1), -ENOENT);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 5);

        CHECK_EQ(allocator_take(a, 1, 20, &start), 0);
        CHECK_EQ(allocator_take(a, 1, 21, &start), 0);
        CHECK_EQ(allocator_release(a, SINGLE_START, 1), 0);
        CHECK_EQ(allocator_take(a, 1, 22, &start), 0);
        CHECK_EQ(start, SINGLE_START);

        allocator_free(a);
}

static void test_exclusions(void) {
        Allocator *a = new_default();
        uint32_t start, nss_id = 1000000, last = RANGE_END - ALLOCATOR_BLOCK_SIZE + 1;
        unsigned expected_order[] = { 0, 5, 6, 8, 9 };

        allocator_exclusions_begin(a);
        /* subuid-like: not aligned, covers part of block 1 through part of block 4. */
        allocator_exclude(a, BLOCK(1) + 1000, 3 * ALLOCATOR_BLOCK_SIZE + 1);
        /* A single NSS user inside block 7 takes the whole block out. */
        allocator_exclude(a, nss_id, 1);
        /* Ids in the single pool. */
        allocator_exclude(a, SINGLE_START, 1);
        allocator_exclude(a, SINGLE_START + 10, 5);
        /* Outside both pools: ignored. */
        allocator_exclude(a, 0, 1000);
        allocator_exclude(a, 100000, 65536);
        allocator_exclude(a, SINGLE_END + 1, RANGE_START - SINGLE_END - 1);
        allocator_exclude(a, RANGE_END + 1, 65536);
        allocator_exclude(a, 4294901760u, 65536);
        allocator_exclude(a, 123, 0);
        /* Reaches 4294967295: start + count is 2^32 and must not wrap to 0. */
        allocator_exclude(a, RANGE_END - 5, 4294967295u - (RANGE_END - 5) + 1);
        allocator_exclusions_end(a);

        CHECK_EQ((BLOCK(4) <= BLOCK(1) + 1000 + 3 * ALLOCATOR_BLOCK_SIZE), 1);
        CHECK_EQ((nss_id - RANGE_START) / ALLOCATOR_BLOCK_SIZE, 7);

        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 4 - 1 - 1);
        CHECK_EQ(allocator_free_singles(a), N_SINGLES - 6);

        for (size_t i = 0; i < ELEMENTSOF(expected_order); i++) {
                CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, i, &start), 0);
                CHECK_EQ(start, BLOCK(expected_order[i]));
        }
        CHECK_EQ(allocator_take(a, 1, 0, &start), 0);
        CHECK_EQ(start, SINGLE_START + 1);

        /* Excluded ids are not taken ranges. */
        CHECK_EQ(allocator_lookup(a, nss_id, NULL, NULL, NULL), -ENOENT);
        CHECK_EQ(allocator_lookup(a, BLOCK(3), NULL, NULL, NULL), -ENOENT);
        CHECK_EQ(allocator_release(a, BLOCK(3), ALLOCATOR_BLOCK_SIZE), -ENOENT);

        /* The last block was excluded, nothing else at the top: draining the
         * pool ends one block early. */
        for (;;) {
                uint32_t prev = start;

                if (allocator_take(a, ALLOCATOR_BLOCK_SIZE, 0, &start) < 0) {
                        CHECK_EQ(prev, last - ALLOCATOR_BLOCK_SIZE);
                        break;
                }
        }
        CHECK_EQ(allocator_free_blocks(a), 0);

        allocator_free(a);
}

static void test_exclusion_overflow_at_top(void) {
        AllocatorConfig c = {
                .range_start = 4294967296u - 4 * ALLOCATOR_BLOCK_SIZE,
                .range_end = 4294967295u,
                .single_start = 1000,
                .single_end = 1999,
                .max_per_owner = 8,
        };
        Allocator *a = NULL;
        uint32_t start;

        CHECK_EQ(allocator_new(&c, &a), 0);
        CHECK_EQ(allocator_free_blocks(a), 4);

        /* start + count - 1 is past 2^32: clipped, not wrapped around. */
        allocator_exclusions_begin(a);
        allocator_exclude(a, 4294967290u, 4294967295u);
        allocator_exclusions_end(a);
        CHECK_EQ(allocator_free_blocks(a), 3);

        allocator_exclusions_begin(a);
        allocator_exclude(a, 4294967295u, 1);
        allocator_exclude(a, 1999, 4294967295u - 1999 + 1 - 4 * ALLOCATOR_BLOCK_SIZE);
        allocator_exclusions_end(a);

        /* Only the last block and the last single id are gone. */
        CHECK_EQ(allocator_free_blocks(a), 3);
        CHECK_EQ(allocator_free_singles(a), 999);
        for (unsigned i = 0; i < 3; i++) {
                CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, i, &start), 0);
                CHECK_EQ(start, c.range_start + i * ALLOCATOR_BLOCK_SIZE);
        }
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 0, &start), -ENOSPC);

        /* The last block can still be marked and looked up up to the last id. */
        CHECK_EQ(allocator_mark(a, 4294901760u, ALLOCATOR_BLOCK_SIZE, 99), 0);
        CHECK_EQ(allocator_lookup(a, 4294967295u, NULL, &start, NULL), 0);
        CHECK_EQ(start, 4294901760u);

        allocator_free(a);
}

static void test_exclusions_refresh(void) {
        Allocator *a = new_default();
        uint32_t start;

        allocator_exclusions_begin(a);
        allocator_exclude(a, BLOCK(0), 2 * ALLOCATOR_BLOCK_SIZE);
        allocator_exclude(a, SINGLE_START, 3);
        allocator_exclusions_end(a);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 2);
        CHECK_EQ(allocator_free_singles(a), N_SINGLES - 3);

        /* While a refresh is collected, the exclusions in force still hold. */
        allocator_exclusions_begin(a);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 2);
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 1, &start), 0);
        CHECK_EQ(start, BLOCK(2));
        allocator_exclude(a, BLOCK(5), 1);
        allocator_exclusions_end(a);

        /* The old exclusions are gone, the new one is in force. */
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 2);
        CHECK_EQ(allocator_free_singles(a), N_SINGLES);
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 2, &start), 0);
        CHECK_EQ(start, BLOCK(0));
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 3, &start), 0);
        CHECK_EQ(start, BLOCK(1));
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 4, &start), 0);
        CHECK_EQ(start, BLOCK(3));
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 5, &start), 0);
        CHECK_EQ(start, BLOCK(4));
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 6, &start), 0);
        CHECK_EQ(start, BLOCK(6));
        CHECK_EQ(allocator_take(a, 1, 7, &start), 0);
        CHECK_EQ(start, SINGLE_START);

        /* An empty refresh frees everything that is not taken. */
        allocator_exclusions_begin(a);
        allocator_exclusions_end(a);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 6);
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 8, &start), 0);
        CHECK_EQ(start, BLOCK(5));

        /* end() without begin() changes nothing. */
        allocator_exclusions_end(a);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 7);

        /* Outside a refresh an exclusion applies at once. */
        allocator_exclude(a, BLOCK(7) + 5, 1);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 8);
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 9, &start), 0);
        CHECK_EQ(start, BLOCK(8));

        allocator_free(a);
}

static void test_exclusion_over_taken(void) {
        Allocator *a = new_default();
        uint32_t start, size;
        uint64_t tag;

        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 7, &start), 0);
        CHECK_EQ(start, BLOCK(0));
        CHECK_EQ(allocator_take(a, 1, 8, &start), 0);
        CHECK_EQ(start, SINGLE_START);

        allocator_exclusions_begin(a);
        allocator_exclude(a, BLOCK(0) + 100, 1);
        allocator_exclude(a, SINGLE_START, 1);
        allocator_exclusions_end(a);

        /* Still taken, same tag; counted once, not as excluded and taken. */
        CHECK_EQ(allocator_lookup(a, BLOCK(0) + 100, &tag, &start, &size), 0);
        CHECK_EQ(tag, 7);
        CHECK_EQ(start, BLOCK(0));
        CHECK_EQ(size, ALLOCATOR_BLOCK_SIZE);
        CHECK_EQ(allocator_lookup(a, SINGLE_START, &tag, NULL, NULL), 0);
        CHECK_EQ(tag, 8);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 1);
        CHECK_EQ(allocator_free_singles(a), N_SINGLES - 1);

        /* Released, the exclusion takes over. */
        CHECK_EQ(allocator_release(a, BLOCK(0), ALLOCATOR_BLOCK_SIZE), 0);
        CHECK_EQ(allocator_release(a, SINGLE_START, 1), 0);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 1);
        CHECK_EQ(allocator_free_singles(a), N_SINGLES - 1);
        CHECK_EQ(allocator_lookup(a, BLOCK(0), NULL, NULL, NULL), -ENOENT);
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 9, &start), 0);
        CHECK_EQ(start, BLOCK(1));
        CHECK_EQ(allocator_take(a, 1, 10, &start), 0);
        CHECK_EQ(start, SINGLE_START + 1);

        allocator_free(a);
}

static void test_mark(void) {
        Allocator *a = new_default();
        uint32_t start;
        uint64_t tag;

        allocator_exclusions_begin(a);
        allocator_exclude(a, BLOCK(3), 1);
        allocator_exclude(a, SINGLE_START + 2, 1);
        allocator_exclusions_end(a);

        /* The registry wins over exclusions. */
        CHECK_EQ(allocator_mark(a, BLOCK(3), ALLOCATOR_BLOCK_SIZE, 33), 0);
        CHECK_EQ(allocator_lookup(a, BLOCK(3) + 1, &tag, &start, NULL), 0);
        CHECK_EQ(tag, 33);
        CHECK_EQ(start, BLOCK(3));
        CHECK_EQ(allocator_mark(a, SINGLE_START + 2, 1, 34), 0);
        CHECK_EQ(allocator_lookup(a, SINGLE_START + 2, &tag, NULL, NULL), 0);
        CHECK_EQ(tag, 34);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 1);
        CHECK_EQ(allocator_free_singles(a), N_SINGLES - 1);

        /* Marking a free range takes it out of first fit. */
        CHECK_EQ(allocator_mark(a, BLOCK(0), ALLOCATOR_BLOCK_SIZE, 1), 0);
        CHECK_EQ(allocator_mark(a, SINGLE_START, 1, 2), 0);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 2);
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 3, &start), 0);
        CHECK_EQ(start, BLOCK(1));
        CHECK_EQ(allocator_take(a, 1, 4, &start), 0);
        CHECK_EQ(start, SINGLE_START + 1);

        /* Twice, or over a range handed out by take(). */
        CHECK_EQ(allocator_mark(a, BLOCK(3), ALLOCATOR_BLOCK_SIZE, 5), -EBUSY);
        CHECK_EQ(allocator_mark(a, BLOCK(1), ALLOCATOR_BLOCK_SIZE, 5), -EBUSY);
        CHECK_EQ(allocator_mark(a, SINGLE_START + 1, 1, 5), -EBUSY);
        CHECK_EQ(allocator_lookup(a, BLOCK(3), &tag, NULL, NULL), 0);
        CHECK_EQ(tag, 33);

        /* Not a range of either pool. */
        CHECK_EQ(allocator_mark(a, BLOCK(5) + 1, ALLOCATOR_BLOCK_SIZE, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, BLOCK(5) + 32768, ALLOCATOR_BLOCK_SIZE, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, 0, ALLOCATOR_BLOCK_SIZE, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, RANGE_START - ALLOCATOR_BLOCK_SIZE, ALLOCATOR_BLOCK_SIZE, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, RANGE_END + 1, ALLOCATOR_BLOCK_SIZE, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, 4294901760u, ALLOCATOR_BLOCK_SIZE, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, BLOCK(5), 1, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, SINGLE_START - 1, 1, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, SINGLE_END + 1, 1, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, SINGLE_START + 10, 2, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, BLOCK(5), 0, 5), -ERANGE);
        CHECK_EQ(allocator_mark(a, 0, ALLOCATOR_BLOCK_SIZE, 5), -ERANGE);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 3);

        /* A marked excluded range stays excluded once released. */
        CHECK_EQ(allocator_release(a, BLOCK(3), ALLOCATOR_BLOCK_SIZE), 0);
        CHECK_EQ(allocator_release(a, BLOCK(0), ALLOCATOR_BLOCK_SIZE), 0);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 2);
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 6, &start), 0);
        CHECK_EQ(start, BLOCK(0));
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 7, &start), 0);
        CHECK_EQ(start, BLOCK(2));
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 8, &start), 0);
        CHECK_EQ(start, BLOCK(4));

        /* Marking the last block and the last single id. */
        CHECK_EQ(allocator_mark(a, RANGE_END - ALLOCATOR_BLOCK_SIZE + 1, ALLOCATOR_BLOCK_SIZE, 9), 0);
        CHECK_EQ(allocator_mark(a, SINGLE_END, 1, 10), 0);

        allocator_free(a);
}

static void test_lookup(void) {
        Allocator *a = new_default();
        uint32_t start, block, single, size, u32_sentinel = 4242;
        uint64_t tag, u64_sentinel = 4343;

        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 100, &start), 0);
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, UINT64_MAX, &block), 0);
        CHECK_EQ(allocator_take(a, 1, 0, &single), 0);

        for (uint32_t off = 0; off < ALLOCATOR_BLOCK_SIZE; off += 4095) {
                CHECK_EQ(allocator_lookup(a, block + off, &tag, &start, &size), 0);
                CHECK(tag == UINT64_MAX);
                CHECK_EQ(start, block);
                CHECK_EQ(size, ALLOCATOR_BLOCK_SIZE);
        }
        CHECK_EQ(allocator_lookup(a, block + 32768, &tag, &start, &size), 0);
        CHECK_EQ(allocator_lookup(a, block + 65535, &tag, &start, &size), 0);
        CHECK_EQ(start, block);
        CHECK_EQ(allocator_lookup(a, block - 1, &tag, &start, &size), 0);
        CHECK_EQ(tag, 100);
        CHECK_EQ(start, BLOCK(0));

        CHECK_EQ(allocator_lookup(a, single, &tag, &start, &size), 0);
        CHECK_EQ(tag, 0);
        CHECK_EQ(start, SINGLE_START);
        CHECK_EQ(size, 1);
        CHECK_EQ(allocator_lookup(a, single, NULL, NULL, NULL), 0);

        tag = u64_sentinel;
        start = size = u32_sentinel;
        CHECK_EQ(allocator_lookup(a, block + 65536, &tag, &start, &size), -ENOENT);
        CHECK_EQ(allocator_lookup(a, single + 1, &tag, &start, &size), -ENOENT);
        CHECK_EQ(allocator_lookup(a, 0, &tag, &start, &size), -ENOENT);
        CHECK_EQ(allocator_lookup(a, 1000, &tag, &start, &size), -ENOENT);
        CHECK_EQ(allocator_lookup(a, SINGLE_END + 1, &tag, &start, &size), -ENOENT);
        CHECK_EQ(allocator_lookup(a, RANGE_START - 1, &tag, &start, &size), -ENOENT);
        CHECK_EQ(allocator_lookup(a, RANGE_END, &tag, &start, &size), -ENOENT);
        CHECK_EQ(allocator_lookup(a, RANGE_END + 1, &tag, &start, &size), -ENOENT);
        CHECK_EQ(allocator_lookup(a, 4294967295u, &tag, &start, &size), -ENOENT);
        CHECK_EQ(tag, u64_sentinel);
        CHECK_EQ(start, u32_sentinel);
        CHECK_EQ(size, u32_sentinel);

        CHECK_EQ(allocator_release(a, block, ALLOCATOR_BLOCK_SIZE), 0);
        CHECK_EQ(allocator_lookup(a, block + 1, NULL, NULL, NULL), -ENOENT);

        allocator_free(a);
}

static void test_free_counts(void) {
        Allocator *a = new_default();
        uint32_t start;

        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS);
        CHECK_EQ(allocator_free_singles(a), N_SINGLES);

        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 1, &start), 0);
        CHECK_EQ(allocator_mark(a, BLOCK(10), ALLOCATOR_BLOCK_SIZE, 2), 0);
        CHECK_EQ(allocator_take(a, 1, 3, &start), 0);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 2);
        CHECK_EQ(allocator_free_singles(a), N_SINGLES - 1);

        /* Overlapping exclusions count each block once. */
        allocator_exclusions_begin(a);
        allocator_exclude(a, BLOCK(20), 10);
        allocator_exclude(a, BLOCK(20) + 5, 2 * ALLOCATOR_BLOCK_SIZE);
        allocator_exclude(a, BLOCK(10), 1);
        allocator_exclusions_end(a);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 2 - 3);

        CHECK_EQ(allocator_release(a, BLOCK(0), ALLOCATOR_BLOCK_SIZE), 0);
        CHECK_EQ(allocator_release(a, BLOCK(10), ALLOCATOR_BLOCK_SIZE), 0);
        CHECK_EQ(allocator_release(a, SINGLE_START, 1), 0);
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS - 4);
        CHECK_EQ(allocator_free_singles(a), N_SINGLES);

        allocator_free(a);
}

static void test_owner_quota(void) {
        AllocatorConfig c = default_config;
        Allocator *a = NULL;

        c.max_per_owner = 3;
        CHECK_EQ(allocator_new(&c, &a), 0);

        CHECK_EQ(allocator_owner_count(a, 1000), 0);
        for (unsigned i = 0; i < 3; i++)
                CHECK_EQ(allocator_owner_charge(a, 1000), 0);
        CHECK_EQ(allocator_owner_count(a, 1000), 3);
        CHECK_EQ(allocator_owner_charge(a, 1000), -EUSERS);
        CHECK_EQ(allocator_owner_count(a, 1000), 3);

        allocator_owner_uncharge(a, 1000);
        CHECK_EQ(allocator_owner_count(a, 1000), 2);
        CHECK_EQ(allocator_owner_charge(a, 1000), 0);
        CHECK_EQ(allocator_owner_charge(a, 1000), -EUSERS);

        /* Other owners, root included, are counted on their own. */
        CHECK_EQ(allocator_owner_charge(a, 1001), 0);
        CHECK_EQ(allocator_owner_charge(a, 0), 0);
        CHECK_EQ(allocator_owner_charge(a, 4294967294u), 0);
        CHECK_EQ(allocator_owner_count(a, 1001), 1);
        CHECK_EQ(allocator_owner_count(a, 0), 1);
        CHECK_EQ(allocator_owner_count(a, 4294967294u), 1);
        CHECK_EQ(allocator_owner_count(a, 1000), 3);

        /* Uncharging below zero does nothing. */
        allocator_owner_uncharge(a, 5);
        CHECK_EQ(allocator_owner_count(a, 5), 0);
        allocator_owner_uncharge(a, 1001);
        allocator_owner_uncharge(a, 1001);
        CHECK_EQ(allocator_owner_count(a, 1001), 0);
        CHECK_EQ(allocator_owner_charge(a, 1001), 0);
        CHECK_EQ(allocator_owner_count(a, 1001), 1);

        for (unsigned i = 0; i < 3; i++)
                allocator_owner_uncharge(a, 1000);
        CHECK_EQ(allocator_owner_count(a, 1000), 0);
        allocator_owner_uncharge(a, 1000);
        CHECK_EQ(allocator_owner_count(a, 1000), 0);
        for (unsigned i = 0; i < 3; i++)
                CHECK_EQ(allocator_owner_charge(a, 1000), 0);
        CHECK_EQ(allocator_owner_charge(a, 1000), -EUSERS);

        allocator_free(a);
}

/* Many owners coming and going, against a plain array: exercises growth and
 * deletion from the middle of probe runs. */
static void test_owner_quota_random(void) {
        enum { N_OWNERS = 5000, MAX = 4 };
        AllocatorConfig c = default_config;
        unsigned long long rnd = 0x5eed1234ULL;
        static unsigned counts[N_OWNERS];
        Allocator *a = NULL;

        c.max_per_owner = MAX;
        CHECK_EQ(allocator_new(&c, &a), 0);
        memset(counts, 0, sizeof(counts));

        for (unsigned step = 0; step < 400000; step++) {
                unsigned o = (unsigned) (test_random(&rnd) % N_OWNERS);
                uid_t uid = (uid_t) o * 65536u + 1000u;

                if (test_random(&rnd) % 2 == 0) {
                        int r = allocator_owner_charge(a, uid);

                        if (counts[o] < MAX) {
                                CHECK_EQ(r, 0);
                                counts[o]++;
                        } else
                                CHECK_EQ(r, -EUSERS);
                } else {
                        allocator_owner_uncharge(a, uid);
                        if (counts[o] > 0)
                                counts[o]--;
                }

                if (step % 1000 == 0)
                        for (unsigned i = 0; i < N_OWNERS; i++)
                                CHECK_EQ(allocator_owner_count(a, (uid_t) i * 65536u + 1000u), counts[i]);
        }

        for (unsigned i = 0; i < N_OWNERS; i++) {
                CHECK_EQ(allocator_owner_count(a, (uid_t) i * 65536u + 1000u), counts[i]);
                while (counts[i]-- > 0)
                        allocator_owner_uncharge(a, (uid_t) i * 65536u + 1000u);
                CHECK_EQ(allocator_owner_count(a, (uid_t) i * 65536u + 1000u), 0);
        }

        allocator_free(a);
}

/* Every block taken, all released in random order, all taken again: the
 * order must be exactly first fit at full scale. */
static void test_full_scale(void) {
        Allocator *a = new_default();
        unsigned long long rnd = 0xabcdef987ULL;
        uint32_t *order, start;
        bool *released;

        order = calloc(N_BLOCKS, sizeof(uint32_t));
        released = calloc(N_BLOCKS, sizeof(bool));
        CHECK(order && released);

        for (uint32_t i = 0; i < N_BLOCKS; i++) {
                CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, i, &start), 0);
                CHECK_EQ(start, BLOCK(i));
                order[i] = i;
        }
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 0, &start), -ENOSPC);

        for (uint32_t i = N_BLOCKS - 1; i > 0; i--) {
                uint32_t j = (uint32_t) (test_random(&rnd) % (i + 1)), t = order[i];

                order[i] = order[j];
                order[j] = t;
        }

        /* Half released: each take must return the lowest released block. */
        for (uint32_t i = 0; i < N_BLOCKS / 2; i++) {
                CHECK_EQ(allocator_release(a, BLOCK(order[i]), ALLOCATOR_BLOCK_SIZE), 0);
                released[order[i]] = true;
        }
        CHECK_EQ(allocator_free_blocks(a), N_BLOCKS / 2);
        for (uint32_t b = 0, n = 0; b < N_BLOCKS && n < 1000; b++) {
                uint64_t tag;

                if (!released[b])
                        continue;
                CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, b + 100000, &start), 0);
                CHECK_EQ(start, BLOCK(b));
                CHECK_EQ(allocator_lookup(a, start + 1, &tag, NULL, NULL), 0);
                CHECK_EQ(tag, b + 100000);
                CHECK_EQ(allocator_release(a, start, ALLOCATOR_BLOCK_SIZE), 0);
                CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, b, &start), 0);
                CHECK_EQ(start, BLOCK(b));
                released[b] = false;
                n++;
        }
        for (uint32_t b = 0; b < N_BLOCKS; b++)
                if (released[b]) {
                        CHECK_EQ(allocator_mark(a, BLOCK(b), ALLOCATOR_BLOCK_SIZE, b), 0);
                        released[b] = false;
                }
        CHECK_EQ(allocator_free_blocks(a), 0);

        /* Everything released in random order, then taken again. */
        for (uint32_t i = 0; i < N_BLOCKS; i++) {
                CHECK_EQ(allocator_release(a, BLOCK(order[i]), ALLOCATOR_BLOCK_SIZE), 0);
                CHECK_EQ(allocator_free_blocks(a), i + 1);
        }
        for (uint32_t i = 0; i < N_BLOCKS; i++) {
                CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, i, &start), 0);
                CHECK_EQ(start, BLOCK(i));
        }
        CHECK_EQ(allocator_take(a, ALLOCATOR_BLOCK_SIZE, 0, &start), -ENOSPC);
        CHECK_EQ(allocator_free_blocks(a), 0);

        free(order);
        free(released);
        allocator_free(a);
}

/* A plain model of one pool, checked by linear scans. */
typedef struct ModelPool {
        uint64_t first, unit, n;
        bool *taken, *excluded;
        uint64_t *tags;
} ModelPool;

static void model_pool_init(ModelPool *m, uint64_t first, uint64_t unit, uint64_t n) {
        *m = (ModelPool) { .first = first, .unit = unit, .n = n };
        m->taken = calloc(n, sizeof(bool));
        m->excluded = calloc(n, sizeof(bool));
        m->tags = calloc(n, sizeof(uint64_t));
        CHECK(m->taken && m->excluded && m->tags);
}

static void model_pool_done(ModelPool *m) {
        free(m->taken);
        free(m->excluded);
        free(m->tags);
}

static uint64_t model_pool_free(const ModelPool *m) {
        uint64_t n = 0;

        for (uint64_t i = 0; i < m->n; i++)
                n += !m->taken[i] && !m->excluded[i];
        return n;
}

static void model_check_pool(Allocator *a, ModelPool *m, unsigned long long *rnd, uint64_t *next_tag) {
        uint32_t size = (uint32_t) m->unit, start = 0, got_size;
        uint64_t i, off, tag;
        int r;

        switch (test_random(rnd) % 4) {
        case 0: /* take */
                for (i = 0; i < m->n; i++)
                        if (!m->taken[i] && !m->excluded[i])
                                break;
                r = allocator_take(a, size, *next_tag, &start);
                if (i == m->n)
                        CHECK_EQ(r, -ENOSPC);
                else {
                        CHECK_EQ(r, 0);
                        CHECK_EQ(start, m->first + i * m->unit);
                        m->taken[i] = true;
                        m->tags[i] = (*next_tag)++;
                }
                break;
        case 1: /* release */
                i = test_random(rnd) % m->n;
                r = allocator_release(a, (uint32_t) (m->first + i * m->unit), size);
                CHECK_EQ(r, m->taken[i] ? 0 : -ENOENT);
                m->taken[i] = false;
                break;
        case 2: /* mark */
                i = test_random(rnd) % m->n;
                r = allocator_mark(a, (uint32_t) (m->first + i * m->unit), size, *next_tag);
                CHECK_EQ(r, m->taken[i] ? -EBUSY : 0);
                if (!m->taken[i]) {
                        m->taken[i] = true;
                        m->tags[i] = (*next_tag)++;
                }
                break;
        case 3: /* lookup */
                i = test_random(rnd) % m->n;
                off = test_random(rnd) % m->unit;
                r = allocator_lookup(a, (uint32_t) (m->first + i * m->unit + off), &tag, &start, &got_size);
                if (!m->taken[i])
                        CHECK_EQ(r, -ENOENT);
                else {
                        CHECK_EQ(r, 0);
                        CHECK(tag == m->tags[i]);
                        CHECK_EQ(start, m->first + i * m->unit);
                        CHECK_EQ(got_size, m->unit);
                }
                break;
        }
}

static void model_exclude(ModelPool *m, uint64_t start, uint64_t count) {
        if (count == 0)
                return;
        for (uint64_t i = 0; i < m->n; i++) {
                uint64_t s = m->first + i * m->unit, e = s + m->unit - 1;

                if (s <= start + count - 1 && start <= e)
                        m->excluded[i] = true;
        }
}

/* Random operations against the model, on pool sizes around the edges of
 * the index levels (64, 4096) and with a pool ending at the last id. */
static void test_model(uint32_t n_blocks, bool at_top, uint32_t n_singles) {
        AllocatorConfig c = {
                .range_start = at_top ? (uint32_t) (4294967296ULL - (uint64_t) n_blocks * ALLOCATOR_BLOCK_SIZE)
                                      : 16 * ALLOCATOR_BLOCK_SIZE,
                .single_start = 1000,
                .single_end = 1000 + n_singles - 1,
                .max_per_owner = 1,
        };
        unsigned long long rnd = 0x1234567ULL ^ n_blocks ^ ((unsigned long long) n_singles << 32);
        uint64_t next_tag = 1;
        ModelPool mb, ms;
        Allocator *a = NULL;

        c.range_end = (uint32_t) ((uint64_t) c.range_start + (uint64_t) n_blocks * ALLOCATOR_BLOCK_SIZE - 1);
        CHECK_EQ(allocator_new(&c, &a), 0);
        model_pool_init(&mb, c.range_start, ALLOCATOR_BLOCK_SIZE, n_blocks);
        model_pool_init(&ms, c.single_start, 1, n_singles);

        for (unsigned step = 0; step < 20000; step++) {
                unsigned long long what = test_random(&rnd) % 100;

                if (what < 45)
                        model_check_pool(a, &mb, &rnd, &next_tag);
                else if (what < 90)
                        model_check_pool(a, &ms, &rnd, &next_tag);
                else if (what < 91) {
                        unsigned n = (unsigned) (test_random(&rnd) % 8);

                        memset(mb.excluded, 0, mb.n * sizeof(bool));
                        memset(ms.excluded, 0, ms.n * sizeof(bool));
                        allocator_exclusions_begin(a);
                        for (unsigned k = 0; k < n; k++) {
                                uint64_t start, count;

                                if (test_random(&rnd) % 2) {
                                        start = c.range_start + test_random(&rnd) % ((uint64_t) n_blocks * ALLOCATOR_BLOCK_SIZE);
                                        count = 1 + test_random(&rnd) % (3 * ALLOCATOR_BLOCK_SIZE);
                                } else {
                                        start = 900 + test_random(&rnd) % (n_singles + 200);
                                        count = 1 + test_random(&rnd) % 8;
                                }
                                /* Some reach or would pass the last id. */
                                if (test_random(&rnd) % 16 == 0)
                                        count = 4294967296ULL - start;
                                if (count > UINT32_MAX)
                                        count = UINT32_MAX;
                                allocator_exclude(a, (uint32_t) start, (uint32_t) count);
                                model_exclude(&mb, start, count);
                                model_exclude(&ms, start, count);
                        }
                        allocator_exclusions_end(a);
                }

                if (step % 64 == 0 || what >= 90) {
                        CHECK_EQ(allocator_free_blocks(a), model_pool_free(&mb));
                        CHECK_EQ(allocator_free_singles(a), model_pool_free(&ms));
                }
        }

        model_pool_done(&mb);
        model_pool_done(&ms);
        allocator_free(a);
}

static void test_model_all(void) {
        static const uint32_t blocks[] = { 1, 2, 63, 64, 65, 4095, 4096, 4097 };
        static const uint32_t singles[] = { 1, 64, 65, 300 };

        for (size_t i = 0; i < ELEMENTSOF(blocks); i++)
                for (size_t j = 0; j < ELEMENTSOF(singles); j++)
                        test_model(blocks[i], (i + j) % 2 == 0, singles[j]);
}

int main(void) {
        RUN_TEST(test_bad_config);
        RUN_TEST(test_first_fit);
        RUN_TEST(test_exhaustion);
        RUN_TEST(test_release_retake);
        RUN_TEST(test_exclusions);
        RUN_TEST(test_exclusion_overflow_at_top);
        RUN_TEST(test_exclusions_refresh);
        RUN_TEST(test_exclusion_over_taken);
        RUN_TEST(test_mark);
        RUN_TEST(test_lookup);
        RUN_TEST(test_free_counts);
        RUN_TEST(test_owner_quota);
        RUN_TEST(test_owner_quota_random);
        RUN_TEST(test_full_scale);
        RUN_TEST(test_model_all);
        return EXIT_SUCCESS;
}
