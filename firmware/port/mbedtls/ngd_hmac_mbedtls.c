/* HMAC-SHA256 through mbedTLS (2.x and 3.x): ESP-IDF, STM32Cube and Debian libmbedtls-dev. */
#include <mbedtls/md.h>

#include "nanogridata/ngd_crypto.h"

int ngd_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                    uint8_t out[NGD_SHA256_LEN])
{
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (info == NULL || out == NULL || (key == NULL && key_len != 0) ||
        (msg == NULL && msg_len != 0)) {
        return -1;
    }
    return mbedtls_md_hmac(info, key, key_len, msg, msg_len, out) == 0 ? 0 : -1;
}
