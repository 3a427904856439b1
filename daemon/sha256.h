/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), for names that must not
 * be predictable from public data: the keyed hash behind network link names
 * and MAC addresses.
 */

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32
#define SHA256_BLOCK_SIZE 64

typedef struct Sha256 {
        uint32_t state[8];
        uint64_t length;        /* bytes hashed so far */
        uint8_t buffer[SHA256_BLOCK_SIZE];
        size_t n_buffered;
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t size);
/* Leaves s wiped: it may have held key material. */
void sha256_finish(Sha256 *s, uint8_t ret[static SHA256_DIGEST_SIZE]);
void sha256(const void *data, size_t size, uint8_t ret[static SHA256_DIGEST_SIZE]);

typedef struct HmacSha256 {
        Sha256 inner;
        Sha256 outer;
} HmacSha256;

void hmac_sha256_init(HmacSha256 *h, const void *key, size_t key_size);
void hmac_sha256_update(HmacSha256 *h, const void *data, size_t size);
void hmac_sha256_finish(HmacSha256 *h, uint8_t ret[static SHA256_DIGEST_SIZE]);
void hmac_sha256(const void *key, size_t key_size, const void *data, size_t size,
                 uint8_t ret[static SHA256_DIGEST_SIZE]);
