/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <string.h>

#include "sha256.h"

/* FIPS 180-4 §4.2.2: the first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes. */
static const uint32_t round_constants[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
        0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
        0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
        0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
        0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
        0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t rotr32(uint32_t x, unsigned n) {
        return (x >> n) | (x << (32 - n));
}

static uint32_t load_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static void store_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static void sha256_compress(uint32_t state[static 8], const uint8_t block[static SHA256_BLOCK_SIZE]) {
        uint32_t w[64], a, b, c, d, e, f, g, h;

        for (size_t i = 0; i < 16; i++)
                w[i] = load_be32(block + 4 * i);
        for (unsigned i = 16; i < 64; i++) {
                uint32_t s0 = rotr32(w[i - 15], 7) ^ rotr32(w[i - 15], 18) ^ (w[i - 15] >> 3);
                uint32_t s1 = rotr32(w[i - 2], 17) ^ rotr32(w[i - 2], 19) ^ (w[i - 2] >> 10);

                w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }

        a = state[0];
        b = state[1];
        c = state[2];
        d = state[3];
        e = state[4];
        f = state[5];
        g = state[6];
        h = state[7];

        for (unsigned i = 0; i < 64; i++) {
                uint32_t s1 = rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25);
                uint32_t ch = (e & f) ^ (~e & g);
                uint32_t t1 = h + s1 + ch + round_constants[i] + w[i];
                uint32_t s0 = rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22);
                uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
                uint32_t t2 = s0 + maj;

                h = g;
                g = f;
                f = e;
                e = d + t1;
                d = c;
                c = b;
                b = a;
                a = t1 + t2;
        }

        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;

        /* The schedule is derived from the message, which may be a key. */
        explicit_bzero(w, sizeof(w));
}

void sha256_init(Sha256 *s) {
        /* §5.3.3: the first 32 bits of the fractional parts of the square
         * roots of the first 8 primes. */
        *s = (Sha256) {
                .state = {
                        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
                },
        };
}

void sha256_update(Sha256 *s, const void *data, size_t size) {
        const uint8_t *p = data;

        /* memcpy() may not be handed NULL, even for no bytes. */
        if (size == 0)
                return;

        s->length += size;

        if (s->n_buffered > 0) {
                size_t n = SHA256_BLOCK_SIZE - s->n_buffered;

                if (n > size)
                        n = size;
                memcpy(s->buffer + s->n_buffered, p, n);
                s->n_buffered += n;
                p += n;
                size -= n;
                if (s->n_buffered < SHA256_BLOCK_SIZE)
                        return;
                sha256_compress(s->state, s->buffer);
                s->n_buffered = 0;
        }

        for (; size >= SHA256_BLOCK_SIZE; p += SHA256_BLOCK_SIZE, size -= SHA256_BLOCK_SIZE)
                sha256_compress(s->state, p);

        memcpy(s->buffer, p, size);
        s->n_buffered = size;
}

void sha256_finish(Sha256 *s, uint8_t ret[static SHA256_DIGEST_SIZE]) {
        uint64_t bits = s->length * 8;

        /* §5.1.1: a 1 bit, zeros up to 56 bytes into the last block, then
         * the message length in bits, big-endian. */
        s->buffer[s->n_buffered++] = 0x80;
        if (s->n_buffered > SHA256_BLOCK_SIZE - 8) {
                memset(s->buffer + s->n_buffered, 0, SHA256_BLOCK_SIZE - s->n_buffered);
                sha256_compress(s->state, s->buffer);
                s->n_buffered = 0;
        }
        memset(s->buffer + s->n_buffered, 0, SHA256_BLOCK_SIZE - 8 - s->n_buffered);
        store_be32(s->buffer + SHA256_BLOCK_SIZE - 8, (uint32_t) (bits >> 32));
        store_be32(s->buffer + SHA256_BLOCK_SIZE - 4, (uint32_t) bits);
        sha256_compress(s->state, s->buffer);

        for (size_t i = 0; i < 8; i++)
                store_be32(ret + 4 * i, s->state[i]);

        explicit_bzero(s, sizeof(*s));
}

void sha256(const void *data, size_t size, uint8_t ret[static SHA256_DIGEST_SIZE]) {
        Sha256 s;

        sha256_init(&s);
        sha256_update(&s, data, size);
        sha256_finish(&s, ret);
}

void hmac_sha256_init(HmacSha256 *h, const void *key, size_t key_size) {
        uint8_t block[SHA256_BLOCK_SIZE] = {};

        /* RFC 2104 §2: a key longer than a block is replaced by its hash,
         * a shorter one is padded with zeros. */
        if (key_size > SHA256_BLOCK_SIZE)
                sha256(key, key_size, block);
        else if (key_size > 0)
                memcpy(block, key, key_size);

        for (size_t i = 0; i < SHA256_BLOCK_SIZE; i++)
                block[i] ^= 0x36;
        sha256_init(&h->inner);
        sha256_update(&h->inner, block, sizeof(block));

        /* 0x36 ^ 0x5c turns the inner pad into the outer one. */
        for (size_t i = 0; i < SHA256_BLOCK_SIZE; i++)
                block[i] ^= 0x36 ^ 0x5c;
        sha256_init(&h->outer);
        sha256_update(&h->outer, block, sizeof(block));

        explicit_bzero(block, sizeof(block));
}

void hmac_sha256_update(HmacSha256 *h, const void *data, size_t size) {
        sha256_update(&h->inner, data, size);
}

void hmac_sha256_finish(HmacSha256 *h, uint8_t ret[static SHA256_DIGEST_SIZE]) {
        uint8_t inner[SHA256_DIGEST_SIZE];

        sha256_finish(&h->inner, inner);
        sha256_update(&h->outer, inner, sizeof(inner));
        sha256_finish(&h->outer, ret);
        explicit_bzero(inner, sizeof(inner));
}

void hmac_sha256(const void *key, size_t key_size, const void *data, size_t size,
                 uint8_t ret[static SHA256_DIGEST_SIZE]) {
        HmacSha256 h;

        hmac_sha256_init(&h, key, key_size);
        hmac_sha256_update(&h, data, size);
        hmac_sha256_finish(&h, ret);
}
