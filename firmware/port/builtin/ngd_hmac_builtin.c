/* HMAC-SHA256 (RFC 2104) on the self-contained SHA-256: the crypto port without mbedTLS. */
#include <string.h>

#include "nanogridata/ngd_crypto.h"
#include "ngd_sha256.h"

int ngd_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                    uint8_t out[NGD_SHA256_LEN])
{
    ngd_sha256_ctx ctx;
    uint8_t pad[64];
    uint8_t inner[32];
    size_t i;

    if ((key == NULL && key_len != 0) || (msg == NULL && msg_len != 0) || out == NULL) {
        return -1;
    }
    memset(pad, 0, sizeof pad);
    if (key_len > sizeof pad) {
        ngd_sha256_init(&ctx);
        ngd_sha256_update(&ctx, key, key_len);
        ngd_sha256_final(&ctx, pad);
    } else if (key_len != 0) {
        memcpy(pad, key, key_len);
    }
    for (i = 0; i < sizeof pad; i++) {
        pad[i] ^= 0x36u;
    }
    ngd_sha256_init(&ctx);
    ngd_sha256_update(&ctx, pad, sizeof pad);
    if (msg_len != 0) {
        ngd_sha256_update(&ctx, msg, msg_len);
    }
    ngd_sha256_final(&ctx, inner);
    for (i = 0; i < sizeof pad; i++) {
        pad[i] ^= 0x36u ^ 0x5cu; /* ipad -> opad */
    }
    ngd_sha256_init(&ctx);
    ngd_sha256_update(&ctx, pad, sizeof pad);
    ngd_sha256_update(&ctx, inner, sizeof inner);
    ngd_sha256_final(&ctx, out);
    memset(pad, 0, sizeof pad);
    memset(inner, 0, sizeof inner);
    return 0;
}
