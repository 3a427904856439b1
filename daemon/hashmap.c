/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"

#define HASHMAP_MIN_BUCKETS 8

typedef union Key {
        uint64_t u64;
        const char *string;
} Key;

typedef struct Bucket {
        uint64_t hash;
        Key key;
        void *value;            /* NULL = empty bucket */
} Bucket;

struct Hashmap {
        bool string_keys;
        Bucket *buckets;
        size_t n_buckets;       /* power of two, or 0 until the first put */
        size_t size;
};

/* splitmix64's finaliser: every input bit affects every output bit, so the
 * low bits used as the bucket index are well spread even for sequential
 * keys such as uids and inode numbers. */
static uint64_t mix64(uint64_t x) {
        x ^= x >> 30;
        x *= UINT64_C(0xbf58476d1ce4e5b9);
        x ^= x >> 27;
        x *= UINT64_C(0x94d049bb133111eb);
        x ^= x >> 31;
        return x;
}

static uint64_t hash_u64(uint64_t key) {
        return mix64(key + UINT64_C(0x9e3779b97f4a7c15));
}

static uint64_t hash_string(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037);

        for (; *s != '\0'; s++) {
                h ^= (unsigned char) *s;
                h *= UINT64_C(1099511628211);
        }
        /* FNV-1a's low bits are weak for short keys that differ only at the end. */
        return mix64(h);
}

static Hashmap *hashmap_new(bool string_keys) {
        Hashmap *h = calloc(1, sizeof(Hashmap));

        if (h)
                h->string_keys = string_keys;
        return h;
}

Hashmap *hashmap_new_u64(void) {
        return hashmap_new(false);
}

Hashmap *hashmap_new_string(void) {
        return hashmap_new(true);
}

Hashmap *hashmap_free(Hashmap *h) {
        if (!h)
                return NULL;

        free(h->buckets);
        free(h);
        return NULL;
}

static bool bucket_matches(const Hashmap *h, const Bucket *b, uint64_t hash, Key key) {
        if (b->hash != hash)
                return false;
        if (h->string_keys)
                return strcmp(b->key.string, key.string) == 0;
        return b->key.u64 == key.u64;
}

/* The bucket holding the key, or the empty bucket ending its probe run. */
static size_t find_bucket(const Hashmap *h, uint64_t hash, Key key) {
        size_t mask = h->n_buckets - 1;

        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                const Bucket *b = &h->buckets[i];

                if (!b->value || bucket_matches(h, b, hash, key))
                        return i;
        }
}

static int resize(Hashmap *h, size_t n_buckets) {
        Bucket *buckets;
        size_t mask = n_buckets - 1;

        buckets = calloc(n_buckets, sizeof(Bucket));
        if (!buckets)
                return -ENOMEM;

        for (size_t i = 0; i < h->n_buckets; i++) {
                const Bucket *b = &h->buckets[i];
                size_t j;

                if (!b->value)
                        continue;
                for (j = b->hash & mask; buckets[j].value; j = (j + 1) & mask)
                        ;
                buckets[j] = *b;
        }

        free(h->buckets);
        h->buckets = buckets;
        h->n_buckets = n_buckets;
        return 0;
}

static int put(Hashmap *h, uint64_t hash, Key key, void *value) {
        size_t i;
        int r;

        if (!value)
                return -EINVAL;

        if (h->n_buckets > 0) {
                i = find_bucket(h, hash, key);
                if (h->buckets[i].value)
                        return -EEXIST;
        }

        /* Grow at 70% load: linear probing degrades quickly beyond that. */
        if ((h->size + 1) * 10 > h->n_buckets * 7) {
                r = resize(h, h->n_buckets == 0 ? HASHMAP_MIN_BUCKETS : h->n_buckets * 2);
                if (r < 0)
                        return r;
        }

        i = find_bucket(h, hash, key);
        h->buckets[i] = (Bucket) {
                .hash = hash,
                .key = key,
                .value = value,
        };
        h->size++;
        return 0;
}

static void *get(const Hashmap *h, uint64_t hash, Key key) {
        if (h->size == 0)
                return NULL;

        return h->buckets[find_bucket(h, hash, key)].value;
}

static void *remove_key(Hashmap *h, uint64_t hash, Key key) {
        size_t mask, hole, i;
        void *value;

        if (h->size == 0)
                return NULL;

        mask = h->n_buckets - 1;
        hole = find_bucket(h, hash, key);
        value = h->buckets[hole].value;
        if (!value)
                return NULL;

        /* Backward-shift deletion instead of tombstones: pull later members
         * of the probe run into the hole unless that would place one before
         * its home bucket. */
        for (i = (hole + 1) & mask; h->buckets[i].value; i = (i + 1) & mask) {
                size_t home = h->buckets[i].hash & mask;

                if (((i - home) & mask) >= ((i - hole) & mask)) {
                        h->buckets[hole] = h->buckets[i];
                        hole = i;
                }
        }
        h->buckets[hole] = (Bucket) {};
        h->size--;

        /* Shrink once mostly empty; failing to is harmless, the table just
         * stays larger than needed. */
        if (h->n_buckets > HASHMAP_MIN_BUCKETS && h->size * 8 < h->n_buckets)
                (void) resize(h, h->n_buckets / 2);

        return value;
}

int hashmap_put_u64(Hashmap *h, uint64_t key, void *value) {
        return put(h, hash_u64(key), (Key) { .u64 = key }, value);
}

int hashmap_put_string(Hashmap *h, const char *key, void *value) {
        if (!key)
                return -EINVAL;
        return put(h, hash_string(key), (Key) { .string = key }, value);
}

void *hashmap_get_u64(const Hashmap *h, uint64_t key) {
        if (!h)
                return NULL;
        return get(h, hash_u64(key), (Key) { .u64 = key });
}

void *hashmap_get_string(const Hashmap *h, const char *key) {
        if (!h || !key)
                return NULL;
        return get(h, hash_string(key), (Key) { .string = key });
}

void *hashmap_remove_u64(Hashmap *h, uint64_t key) {
        if (!h)
                return NULL;
        return remove_key(h, hash_u64(key), (Key) { .u64 = key });
}

void *hashmap_remove_string(Hashmap *h, const char *key) {
        if (!h || !key)
                return NULL;
        return remove_key(h, hash_string(key), (Key) { .string = key });
}

size_t hashmap_size(const Hashmap *h) {
        return h ? h->size : 0;
}

bool hashmap_iterate(const Hashmap *h, size_t *state, void **ret_value) {
        if (!h)
                return false;

        for (size_t i = *state; i < h->n_buckets; i++)
                if (h->buckets[i].value) {
                        *state = i + 1;
                        if (ret_value)
                                *ret_value = h->buckets[i].value;
                        return true;
                }

        *state = h->n_buckets;
        return false;
}
