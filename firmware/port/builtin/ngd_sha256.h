/* Self-contained SHA-256 (FIPS 180-4) for targets without mbedTLS. Internal to the builtin port. */
#ifndef NANOGRIDATA_NGD_SHA256_H
#define NANOGRIDATA_NGD_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[8];
    uint64_t total_len; /* bytes hashed so far */
    uint8_t block[64];
    size_t block_len;
} ngd_sha256_ctx;

void ngd_sha256_init(ngd_sha256_ctx *ctx);
void ngd_sha256_update(ngd_sha256_ctx *ctx, const uint8_t *data, size_t len);
void ngd_sha256_final(ngd_sha256_ctx *ctx, uint8_t out[32]);

#endif /* NANOGRIDATA_NGD_SHA256_H */
