/*
 * The crypto port: the only primitive the core needs is a one-shot HMAC-SHA256.
 *
 * Link exactly one backend:
 *   port/mbedtls/ngd_hmac_mbedtls.c  (ESP-IDF, STM32Cube, Debian libmbedtls-dev)
 *   port/builtin/ngd_hmac_builtin.c  (self-contained SHA-256/HMAC for targets without mbedTLS)
 * or provide your own (e.g. a hardware SHA engine) with the same signature.
 */
#ifndef NANOGRIDATA_NGD_CRYPTO_H
#define NANOGRIDATA_NGD_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NGD_SHA256_LEN 32u

/* out = HMAC-SHA256(key, msg). Returns 0 on success, non-zero on failure. */
int ngd_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                    uint8_t out[NGD_SHA256_LEN]);

/*
 * Device key derivation (provisioning side, not needed on the device):
 * HKDF-SHA256 (RFC 5869), IKM = model master secret, salt = "nanogridata/v1",
 * info = model id || device id (big-endian), L = 32. Built on ngd_hmac_sha256.
 * src/ngd_hkdf.c; the device itself only stores the result.
 */
int ngd_derive_device_key(const uint8_t *master_secret, size_t master_secret_len, uint8_t model_id,
                          uint32_t device_id, uint8_t out_key[32]);

#ifdef __cplusplus
}
#endif

#endif /* NANOGRIDATA_NGD_CRYPTO_H */
