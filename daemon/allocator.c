/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "allocator.h"

/* 64^6 = 2^36 slots is more than any pool of 32-bit ids can hold. */
#define FREE_INDEX_MAX_LEVELS 6

/*
 * Bit i of level 0 is set when slot i is free; bit i of level l > 0 is set
 * when word i of level l - 1 is non-zero. The top level is a single word, so
 * the lowest free slot is found by following the lowest set bit down.
 */
typedef struct FreeIndex {
        unsigned n_levels;
        size_t n_words[FREE_INDEX_MAX_LEVELS];
        uint64_t *words[FREE_INDEX_MAX_LEVELS];
} FreeIndex;

typedef struct Pool {
        uint32_t first;         /* first id of slot 0 */
        uint32_t unit;          /* ids per slot */
        size_t n_slots;
        size_t n_bitmap_words;
        uint64_t *tags;         /* valid where taken */
        uint64_t *taken;
        uint64_t *excluded;     /* in force */
        uint64_t *pending;      /* being collected between begin() and end() */
        size_t n_free;
        FreeIndex index;
} Pool;

typedef struct OwnerSlot {
        uid_t owner;
        unsigned count;         /* 0 = empty slot */
} OwnerSlot;

struct Allocator {
        Pool blocks;
        Pool singles;
        bool refreshing;

        unsigned max_per_owner;
        OwnerSlot *owners;
        size_t n_owner_slots;   /* power of two, or 0 before the first charge */
        size_t n_owners;
};

static inline bool bit_test(const uint64_t *bits, size_t i) {
        return bits[i / 64] & (UINT64_C(1) << (i % 64));
}

static inline void bit_set(uint64_t *bits, size_t i) {
        bits[i / 64] |= UINT64_C(1) << (i % 64);
}

static inline void bit_clear(uint64_t *bits, size_t i) {
        bits[i / 64] &= ~(UINT64_C(1) << (i % 64));
}

static void free_index_done(FreeIndex *idx) {
        for (unsigned l = 0; l < idx->n_levels; l++)
                free(idx->words[l]);
        *idx = (FreeIndex) {};
}

static int free_index_init(FreeIndex *idx, size_t n_slots) {
        size_t n = n_slots;

        *idx = (FreeIndex) {};
        do {
                n = (n + 63) / 64;
                if (idx->n_levels >= FREE_INDEX_MAX_LEVELS) {
                        free_index_done(idx);
                        return -E2BIG;
                }
                idx->words[idx->n_levels] = calloc(n, sizeof(uint64_t));
                if (!idx->words[idx->n_levels]) {
                        free_index_done(idx);
                        return -ENOMEM;
                }
                idx->n_words[idx->n_levels++] = n;
        } while (n > 1);

        return 0;
}

static void free_index_set(FreeIndex *idx, size_t i) {
        for (unsigned l = 0; l < idx->n_levels; l++) {
                uint64_t *w = &idx->words[l][i / 64];
                bool was_empty = *w == 0;

                *w |= UINT64_C(1) << (i % 64);
                if (!was_empty)
                        return;
                i /= 64;
        }
}

static void free_index_clear(FreeIndex *idx, size_t i) {
        for (unsigned l = 0; l < idx->n_levels; l++) {
                uint64_t *w = &idx->words[l][i / 64];

                *w &= ~(UINT64_C(1) << (i % 64));
                if (*w != 0)
                        return;
                i /= 64;
        }
}

static bool free_index_first(const FreeIndex *idx, size_t *ret) {
        size_t i = 0;

        if (idx->words[idx->n_levels - 1][0] == 0)
                return false;

        for (unsigned l = idx->n_levels; l > 0; l--)
                i = i * 64 + (size_t) __builtin_ctzll(idx->words[l - 1][i]);

        *ret = i;
        return true;
}

static void pool_rebuild(Pool *p) {
        FreeIndex *idx = &p->index;

        p->n_free = 0;
        for (size_t w = 0; w < p->n_bitmap_words; w++) {
                uint64_t v = ~(p->taken[w] | p->excluded[w]);

                if (w == p->n_bitmap_words - 1 && p->n_slots % 64 != 0)
                        v &= (UINT64_C(1) << (p->n_slots % 64)) - 1;
                idx->words[0][w] = v;
                p->n_free += (size_t) __builtin_popcountll(v);
        }

        for (unsigned l = 1; l < idx->n_levels; l++) {
                memset(idx->words[l], 0, idx->n_words[l] * sizeof(uint64_t));
                for (size_t w = 0; w < idx->n_words[l - 1]; w++)
                        if (idx->words[l - 1][w] != 0)
                                bit_set(idx->words[l], w);
        }
}

static void pool_done(Pool *p) {
        free(p->tags);
        free(p->taken);
        free(p->excluded);
        free(p->pending);
        free_index_done(&p->index);
        *p = (Pool) {};
}

static int pool_init(Pool *p, uint32_t first, uint32_t unit, size_t n_slots) {
        int r;

        *p = (Pool) {
                .first = first,
                .unit = unit,
                .n_slots = n_slots,
                .n_bitmap_words = (n_slots + 63) / 64,
        };

        p->tags = calloc(n_slots, sizeof(uint64_t));
        p->taken = calloc(p->n_bitmap_words, sizeof(uint64_t));
        p->excluded = calloc(p->n_bitmap_words, sizeof(uint64_t));
        p->pending = calloc(p->n_bitmap_words, sizeof(uint64_t));
        if (!p->tags || !p->taken || !p->excluded || !p->pending) {
                pool_done(p);
                return -ENOMEM;
        }

        r = free_index_init(&p->index, n_slots);
        if (r < 0) {
                pool_done(p);
                return r;
        }

        pool_rebuild(p);
        return 0;
}

static uint64_t pool_last_id(const Pool *p) {
        return (uint64_t) p->first + (uint64_t) p->n_slots * p->unit - 1;
}

/* The slot whose range starts exactly at `start`, for a range of `size`. */
static bool pool_slot_of_range(const Pool *p, uint32_t start, uint32_t size, size_t *ret) {
        if (size != p->unit || start < p->first || start > pool_last_id(p))
                return false;
        if ((start - p->first) % p->unit != 0)
                return false;

        *ret = (start - p->first) / p->unit;
        return true;
}

static bool pool_slot_of_id(const Pool *p, uint32_t id, size_t *ret) {
        if (id < p->first || id > pool_last_id(p))
                return false;

        *ret = (id - p->first) / p->unit;
        return true;
}

static bool pool_slot_is_free(const Pool *p, size_t i) {
        return !bit_test(p->taken, i) && !bit_test(p->excluded, i);
}

static void pool_take_slot(Pool *p, size_t i, uint64_t tag) {
        if (pool_slot_is_free(p, i)) {
                free_index_clear(&p->index, i);
                p->n_free--;
        }
        bit_set(p->taken, i);
        p->tags[i] = tag;
}

static void pool_release_slot(Pool *p, size_t i) {
        bit_clear(p->taken, i);
        p->tags[i] = 0;
        if (pool_slot_is_free(p, i)) {
                free_index_set(&p->index, i);
                p->n_free++;
        }
}

/* Marks every slot overlapping [start, end] (64-bit: a range may end at 2^32). */
static void pool_exclude(Pool *p, uint64_t start, uint64_t end, bool live) {
        uint64_t lo, hi;

        lo = start > p->first ? start : p->first;
        hi = end < pool_last_id(p) ? end : pool_last_id(p);
        if (lo > hi)
                return;

        for (size_t i = (lo - p->first) / p->unit; i <= (hi - p->first) / p->unit; i++) {
                if (!live) {
                        bit_set(p->pending, i);
                        continue;
                }
                if (pool_slot_is_free(p, i)) {
                        free_index_clear(&p->index, i);
                        p->n_free--;
                }
                bit_set(p->excluded, i);
        }
}

static bool config_is_valid(const AllocatorConfig *c) {
        if (!c || c->max_per_owner == 0)
                return false;
        if (c->range_start % ALLOCATOR_BLOCK_SIZE != 0 ||
            ((uint64_t) c->range_end + 1) % ALLOCATOR_BLOCK_SIZE != 0)
                return false;
        if (c->range_end < c->range_start || c->single_end < c->single_start)
                return false;
        /* Overlap: the later start lies at or before the earlier end. */
        if ((c->range_start > c->single_start ? c->range_start : c->single_start) <=
            (c->range_end < c->single_end ? c->range_end : c->single_end))
                return false;
        return true;
}

int allocator_new(const AllocatorConfig *config, Allocator **ret) {
        Allocator *a;
        int r;

        if (!config_is_valid(config))
                return -EINVAL;

        a = calloc(1, sizeof(Allocator));
        if (!a)
                return -ENOMEM;
        a->max_per_owner = config->max_per_owner;

        r = pool_init(&a->blocks, config->range_start, ALLOCATOR_BLOCK_SIZE,
                      ((size_t) config->range_end - config->range_start + 1) / ALLOCATOR_BLOCK_SIZE);
        if (r < 0) {
                allocator_free(a);
                return r;
        }

        r = pool_init(&a->singles, config->single_start, 1,
                      (size_t) config->single_end - config->single_start + 1);
        if (r < 0) {
                allocator_free(a);
                return r;
        }

        *ret = a;
        return 0;
}

Allocator *allocator_free(Allocator *a) {
        if (!a)
                return NULL;

        pool_done(&a->blocks);
        pool_done(&a->singles);
        free(a->owners);
        free(a);
        return NULL;
}

/* The exclusions in force stay in force until end(), so a range taken while
 * a refresh is being collected is never one that is excluded both before and
 * after it. */
void allocator_exclusions_begin(Allocator *a) {
        memset(a->blocks.pending, 0, a->blocks.n_bitmap_words * sizeof(uint64_t));
        memset(a->singles.pending, 0, a->singles.n_bitmap_words * sizeof(uint64_t));
        a->refreshing = true;
}

void allocator_exclude(Allocator *a, uint32_t start, uint32_t count) {
        uint64_t end;

        if (count == 0)
                return;

        end = (uint64_t) start + count - 1;
        pool_exclude(&a->blocks, start, end, !a->refreshing);
        pool_exclude(&a->singles, start, end, !a->refreshing);
}

static void pool_apply_pending(Pool *p) {
        uint64_t *t = p->excluded;

        p->excluded = p->pending;
        p->pending = t;
        pool_rebuild(p);
}

void allocator_exclusions_end(Allocator *a) {
        if (!a->refreshing)
                return;

        pool_apply_pending(&a->blocks);
        pool_apply_pending(&a->singles);
        a->refreshing = false;
}

static Pool *pool_for_size(Allocator *a, uint32_t size) {
        if (size == ALLOCATOR_BLOCK_SIZE)
                return &a->blocks;
        if (size == 1)
                return &a->singles;
        return NULL;
}

bool allocator_covers(const Allocator *a, uint32_t start, uint32_t size) {
        const Pool *p = size == ALLOCATOR_BLOCK_SIZE ? &a->blocks : size == 1 ? &a->singles : NULL;
        size_t i;

        return p && pool_slot_of_range(p, start, size, &i);
}

int allocator_take(Allocator *a, uint32_t size, uint64_t tag, uint32_t *ret_start) {
        Pool *p;
        size_t i;

        p = pool_for_size(a, size);
        if (!p)
                return -EINVAL;

        if (!free_index_first(&p->index, &i))
                return -ENOSPC;

        pool_take_slot(p, i, tag);
        *ret_start = p->first + (uint32_t) i * p->unit;
        return 0;
}

int allocator_mark(Allocator *a, uint32_t start, uint32_t size, uint64_t tag) {
        Pool *p;
        size_t i;

        p = pool_for_size(a, size);
        if (!p || !pool_slot_of_range(p, start, size, &i))
                return -ERANGE;

        if (bit_test(p->taken, i))
                return -EBUSY;

        pool_take_slot(p, i, tag);
        return 0;
}

int allocator_release(Allocator *a, uint32_t start, uint32_t size) {
        Pool *p;
        size_t i;

        p = pool_for_size(a, size);
        if (!p || !pool_slot_of_range(p, start, size, &i) || !bit_test(p->taken, i))
                return -ENOENT;

        pool_release_slot(p, i);
        return 0;
}

int allocator_lookup(const Allocator *a, uint32_t id, uint64_t *ret_tag, uint32_t *ret_start, uint32_t *ret_size) {
        const Pool *p;
        size_t i;

        if (pool_slot_of_id(&a->blocks, id, &i))
                p = &a->blocks;
        else if (pool_slot_of_id(&a->singles, id, &i))
                p = &a->singles;
        else
                return -ENOENT;

        if (!bit_test(p->taken, i))
                return -ENOENT;

        if (ret_tag)
                *ret_tag = p->tags[i];
        if (ret_start)
                *ret_start = p->first + (uint32_t) i * p->unit;
        if (ret_size)
                *ret_size = p->unit;
        return 0;
}

unsigned allocator_free_blocks(const Allocator *a) {
        return (unsigned) a->blocks.n_free;
}

unsigned allocator_free_singles(const Allocator *a) {
        return (unsigned) a->singles.n_free;
}

/* Owner counts: open addressing with linear probing; an entry whose count
 * drops to zero is deleted by shifting its cluster back, so there are no
 * tombstones and lookups of absent owners stay short. */

static size_t owner_hash(uid_t owner) {
        uint64_t x = (uint64_t) owner + UINT64_C(0x9e3779b97f4a7c15);

        x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
        return (size_t) (x ^ (x >> 31));
}

static OwnerSlot *owner_find(const Allocator *a, uid_t owner) {
        size_t mask = a->n_owner_slots - 1;

        if (a->n_owner_slots == 0)
                return NULL;

        for (size_t i = owner_hash(owner) & mask;; i = (i + 1) & mask) {
                OwnerSlot *s = &a->owners[i];

                if (s->count == 0)
                        return NULL;
                if (s->owner == owner)
                        return s;
        }
}

static OwnerSlot *owner_insert_slot(OwnerSlot *slots, size_t n_slots, uid_t owner) {
        size_t mask = n_slots - 1, i = owner_hash(owner) & mask;

        while (slots[i].count != 0)
                i = (i + 1) & mask;
        return &slots[i];
}

static int owner_grow(Allocator *a) {
        size_t n = a->n_owner_slots == 0 ? 16 : a->n_owner_slots * 2;
        OwnerSlot *slots;

        slots = calloc(n, sizeof(OwnerSlot));
        if (!slots)
                return -ENOMEM;

        for (size_t i = 0; i < a->n_owner_slots; i++)
                if (a->owners[i].count != 0)
                        *owner_insert_slot(slots, n, a->owners[i].owner) = a->owners[i];

        free(a->owners);
        a->owners = slots;
        a->n_owner_slots = n;
        return 0;
}

static int owner_charge(Allocator *a, uid_t owner, bool force) {
        OwnerSlot *s;
        int r;

        s = owner_find(a, owner);
        if (s) {
                if (!force && s->count >= a->max_per_owner)
                        return -EUSERS;
                s->count++;
                return 0;
        }

        /* Keep the load below 70% so probe sequences stay short. */
        if ((a->n_owners + 1) * 10 > a->n_owner_slots * 7) {
                r = owner_grow(a);
                if (r < 0)
                        return r;
        }

        s = owner_insert_slot(a->owners, a->n_owner_slots, owner);
        *s = (OwnerSlot) { .owner = owner, .count = 1 };
        a->n_owners++;
        return 0;
}

int allocator_owner_charge(Allocator *a, uid_t owner) {
        return owner_charge(a, owner, false);
}

int allocator_owner_charge_force(Allocator *a, uid_t owner) {
        return owner_charge(a, owner, true);
}

void allocator_owner_uncharge(Allocator *a, uid_t owner) {
        size_t mask = a->n_owner_slots - 1, hole, i;
        OwnerSlot *s;

        s = owner_find(a, owner);
        if (!s)
                return;
        if (--s->count > 0)
                return;

        /* Backward-shift deletion: move later members of the cluster into the
         * hole unless that would put them before their home slot. */
        hole = (size_t) (s - a->owners);
        for (i = (hole + 1) & mask; a->owners[i].count != 0; i = (i + 1) & mask) {
                size_t home = owner_hash(a->owners[i].owner) & mask;

                /* Cyclic distances from home: the entry may fill the hole only
                 * if the hole lies between its home and its current slot. */
                if (((i - home) & mask) >= ((i - hole) & mask)) {
                        a->owners[hole] = a->owners[i];
                        a->owners[i] = (OwnerSlot) {};
                        hole = i;
                }
        }
        a->owners[hole] = (OwnerSlot) {};
        a->n_owners--;
}

void allocator_set_max_per_owner(Allocator *a, unsigned max_per_owner) {
        a->max_per_owner = max_per_owner;
}

unsigned allocator_owner_count(const Allocator *a, uid_t owner) {
        const OwnerSlot *s = owner_find(a, owner);

        return s ? s->count : 0;
}
