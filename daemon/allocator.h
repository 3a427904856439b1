/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The range allocator: which UID/GID ranges are free, who holds which.
 * Pure logic, no I/O. Two pools: 65536-aligned blocks of 65536 ids for
 * containers, and single ids. Exclusions (ids claimed outside nsresd:
 * /etc/subuid, NSS users, systemd) are replaced wholesale on refresh; a taken
 * range is never affected by a later exclusion.
 *
 * Free blocks are found through a hierarchical bitmap (64-ary), so taking and
 * releasing cost O(log64 n) and stay flat as the pool fills. First fit: the
 * lowest free block is always the one handed out.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define ALLOCATOR_BLOCK_SIZE 65536u

typedef struct AllocatorConfig {
        uint32_t range_start;   /* 65536-aligned, first id of the block pool */
        uint32_t range_end;     /* last id of the block pool (inclusive) */
        uint32_t single_start;  /* first id of the size-1 pool */
        uint32_t single_end;    /* last id of the size-1 pool (inclusive) */
        unsigned max_per_owner; /* namespaces per owner, all kinds */
} AllocatorConfig;

typedef struct Allocator Allocator;

/* -EINVAL if the config is inconsistent (unaligned, empty or overlapping pools). */
int allocator_new(const AllocatorConfig *config, Allocator **ret);
Allocator *allocator_free(Allocator *a);

/* Exclusions: begin() forgets all of them, exclude() adds one id range (any
 * alignment, clipped to the pools), end() rebuilds the free index. */
void allocator_exclusions_begin(Allocator *a);
void allocator_exclude(Allocator *a, uint32_t start, uint32_t count);
void allocator_exclusions_end(Allocator *a);

/* Take the lowest free range of `size` (1 or 65536) and remember `tag` for it.
 * -EINVAL for another size, -ENOSPC when the pool is exhausted. */
int allocator_take(Allocator *a, uint32_t size, uint64_t tag, uint32_t *ret_start);

/* Claim a specific range (loading the registry). Allowed even if excluded.
 * -ERANGE if it is not a range of either pool, -EBUSY if already taken. */
int allocator_mark(Allocator *a, uint32_t start, uint32_t size, uint64_t tag);

/* -ENOENT if the range is not taken. */
int allocator_release(Allocator *a, uint32_t start, uint32_t size);
/* Whether the pools as configured hold this range. */
bool allocator_covers(const Allocator *a, uint32_t start, uint32_t size);

/* Which taken range holds `id`: -ENOENT if none. */
int allocator_lookup(const Allocator *a, uint32_t id, uint64_t *ret_tag, uint32_t *ret_start, uint32_t *ret_size);

/* Free (neither taken nor excluded) blocks of the 65536 pool / ids of the single pool. */
unsigned allocator_free_blocks(const Allocator *a);
unsigned allocator_free_singles(const Allocator *a);

/* Per-owner quota, counting namespaces of every kind. charge() fails with
 * -EUSERS once the owner holds max_per_owner. */
int allocator_owner_charge(Allocator *a, uid_t owner);
/* Count one that already exists (loading the registry) even past the limit;
 * fails only with -ENOMEM. */
int allocator_owner_charge_force(Allocator *a, uid_t owner);
void allocator_owner_uncharge(Allocator *a, uid_t owner);
/* A new limit applies to later charges; owners above it keep what they hold. */
void allocator_set_max_per_owner(Allocator *a, unsigned max_per_owner);
unsigned allocator_owner_count(const Allocator *a, uid_t owner);
