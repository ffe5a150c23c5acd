/* Nanogridata v1 frame building and ACK verification. See include/nanogridata/ngd_frame.h. */
#include "nanogridata/ngd_frame.h"

#include <string.h>

#include "nanogridata/ngd_crypto.h"

void ngd_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void ngd_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void ngd_put_be64(uint8_t *p, uint64_t v)
{
    ngd_put_be32(p, (uint32_t)(v >> 32));
    ngd_put_be32(p + 4, (uint32_t)v);
}

uint16_t ngd_get_be16(const uint8_t *p)
{
    return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

uint32_t ngd_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint64_t ngd_get_be64(const uint8_t *p)
{
    return ((uint64_t)ngd_get_be32(p) << 32) | ngd_get_be32(p + 4);
}

int ngd_ct_compare(const uint8_t *a, const uint8_t *b, size_t len)
{
    /* volatile keeps the compiler from turning this into an early-exit memcmp. */
    volatile uint8_t diff = 0;
    size_t i;
    for (i = 0; i < len; i++) {
        diff = (uint8_t)(diff | (a[i] ^ b[i]));
    }
    return diff != 0;
}

size_t ngd_tag_len(uint8_t flags)
{
    return (flags & NGD_FLAG_TAG32) ? NGD_TAG_LEN_LONG : NGD_TAG_LEN_SHORT;
}

size_t ngd_frame_len(size_t payload_len, uint8_t flags)
{
    return NGD_HEADER_LEN + payload_len + ngd_tag_len(flags);
}

static void put_header(uint8_t *out, const ngd_header_t *h, size_t payload_len)
{
    out[0] = NGD_MAGIC_0;
    out[1] = NGD_MAGIC_1;
    out[2] = NGD_VERSION;
    out[3] = h->model_id;
    out[4] = h->type;
    out[5] = h->flags;
    ngd_put_be16(out + 6, (uint16_t)payload_len);
    ngd_put_be32(out + 8, h->device_id);
    ngd_put_be32(out + 12, h->seq);
    ngd_put_be64(out + 16, h->timestamp_ms);
}

int ngd_frame_build(const ngd_header_t *header, const uint8_t *payload, size_t payload_len,
                    const uint8_t key[NGD_KEY_LEN], uint8_t *out, size_t out_cap, size_t *out_len)
{
    uint8_t mac[NGD_SHA256_LEN];
    size_t tag_len;
    size_t total;

    if (header == NULL || key == NULL || out == NULL || out_len == NULL ||
        (payload == NULL && payload_len != 0) || (header->flags & NGD_FLAGS_RESERVED) != 0) {
        return NGD_ERR_ARG;
    }
    if (payload_len > NGD_MAX_PAYLOAD) {
        return NGD_ERR_TOO_LARGE;
    }
    tag_len = ngd_tag_len(header->flags);
    total = NGD_HEADER_LEN + payload_len + tag_len;
    if (out_cap < total) {
        return NGD_ERR_BUFFER;
    }
    if (payload_len != 0 && payload != out + NGD_HEADER_LEN) {
        memmove(out + NGD_HEADER_LEN, payload, payload_len); /* may overlap: build in place */
    }
    put_header(out, header, payload_len);
    if (ngd_hmac_sha256(key, NGD_KEY_LEN, out, NGD_HEADER_LEN + payload_len, mac) != 0) {
        return NGD_ERR_CRYPTO;
    }
    memcpy(out + NGD_HEADER_LEN + payload_len, mac, tag_len);
    memset(mac, 0, sizeof mac);
    *out_len = total;
    return NGD_OK;
}

int ngd_ack_parse(const uint8_t *buf, size_t len, const uint8_t key[NGD_KEY_LEN], ngd_ack_t *ack,
                  size_t *consumed)
{
    uint8_t mac[NGD_SHA256_LEN];
    size_t payload_len;
    size_t tag_len;
    size_t total;
    int mac_diff;

    if (buf == NULL || key == NULL || ack == NULL || consumed == NULL) {
        return NGD_ERR_ARG;
    }
    *consumed = 0;
    /* Reject garbage as early as the bytes allow, so a bad stream is dropped without waiting. */
    if ((len >= 1 && buf[0] != NGD_MAGIC_0) || (len >= 2 && buf[1] != NGD_MAGIC_1)) {
        return NGD_ERR_MAGIC;
    }
    if (len >= 3 && buf[2] != NGD_VERSION) {
        return NGD_ERR_VERSION;
    }
    if (len < NGD_HEADER_LEN) {
        return NGD_ERR_NEED_MORE;
    }
    if ((buf[5] & NGD_FLAGS_RESERVED) != 0) {
        return NGD_ERR_FLAGS;
    }
    if (buf[4] != NGD_TYPE_ACK) {
        return NGD_ERR_TYPE;
    }
    payload_len = ngd_get_be16(buf + 6);
    /* An ACK payload is always CBOR [status] with status < 24: exactly 2 bytes. */
    if (payload_len != 2) {
        return NGD_ERR_PAYLOAD;
    }
    tag_len = ngd_tag_len(buf[5]);
    total = NGD_HEADER_LEN + payload_len + tag_len;
    if (len < total) {
        return NGD_ERR_NEED_MORE;
    }
    *consumed = total;
    if (ngd_hmac_sha256(key, NGD_KEY_LEN, buf, NGD_HEADER_LEN + payload_len, mac) != 0) {
        return NGD_ERR_CRYPTO;
    }
    mac_diff = ngd_ct_compare(mac, buf + NGD_HEADER_LEN + payload_len, tag_len);
    memset(mac, 0, sizeof mac);
    if (mac_diff != 0) {
        return NGD_ERR_MAC;
    }
    /* Authentic: now interpret the payload. 0x81 = array(1), then an unsigned int < 24. */
    if (buf[NGD_HEADER_LEN] != 0x81u || buf[NGD_HEADER_LEN + 1] > 0x17u) {
        return NGD_ERR_PAYLOAD;
    }
    ack->header.model_id = buf[3];
    ack->header.type = buf[4];
    ack->header.flags = buf[5];
    ack->header.device_id = ngd_get_be32(buf + 8);
    ack->header.seq = ngd_get_be32(buf + 12);
    ack->header.timestamp_ms = ngd_get_be64(buf + 16);
    ack->status = buf[NGD_HEADER_LEN + 1];
    return NGD_OK;
}
