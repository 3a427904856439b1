/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Small open-addressing hash maps for the daemon's in-memory indexes.
 * Keys are either uint64_t or NUL-terminated strings (not copied: the caller
 * keeps the key alive while it is in the map). Values are non-NULL pointers.
 * Insert, lookup and remove are O(1) on average; the table grows and shrinks.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Hashmap Hashmap;

Hashmap *hashmap_new_u64(void);
Hashmap *hashmap_new_string(void);
Hashmap *hashmap_free(Hashmap *h);

/* -EEXIST if the key is present, -ENOMEM. */
int hashmap_put_u64(Hashmap *h, uint64_t key, void *value);
int hashmap_put_string(Hashmap *h, const char *key, void *value);
void *hashmap_get_u64(const Hashmap *h, uint64_t key);
void *hashmap_get_string(const Hashmap *h, const char *key);
/* Returns the removed value, NULL if absent. */
void *hashmap_remove_u64(Hashmap *h, uint64_t key);
void *hashmap_remove_string(Hashmap *h, const char *key);
size_t hashmap_size(const Hashmap *h);

/* Iteration: start with *state = 0; returns false at the end. The map must
 * not be modified while iterating. */
bool hashmap_iterate(const Hashmap *h, size_t *state, void **ret_value);
