/*
 * Device key derivation, HKDF-SHA256 (RFC 5869) with L = 32 (a single expand block).
 * For provisioning tools and tests; a device only stores the result (see ngd_crypto.h).
 */
#include <string.h>

#include "nanogridata/ngd_crypto.h"
#include "nanogridata/ngd_frame.h"

int ngd_derive_device_key(const uint8_t *master_secret, size_t master_secret_len, uint8_t model_id,
                          uint32_t device_id, uint8_t out_key[32])
{
    static const uint8_t salt[] = {'n', 'a', 'n', 'o', 'g', 'r', 'i', 'd', 'a', 't', 'a', '/', 'v', '1'};
    uint8_t prk[NGD_SHA256_LEN];
    uint8_t info_and_counter[6]; /* T(1) = HMAC(PRK, T(0) = "" || info || 0x01) */
    int rc;

    if (master_secret == NULL || out_key == NULL || master_secret_len < 32u) {
        return -1; /* the protocol requires >= 32 random bytes of master secret */
    }
    if (ngd_hmac_sha256(salt, sizeof salt, master_secret, master_secret_len, prk) != 0) {
        return -1;
    }
    info_and_counter[0] = model_id;
    ngd_put_be32(info_and_counter + 1, device_id);
    info_and_counter[5] = 0x01u;
    rc = ngd_hmac_sha256(prk, sizeof prk, info_and_counter, sizeof info_and_counter, out_key);
    memset(prk, 0, sizeof prk);
    return rc != 0 ? -1 : 0;
}
