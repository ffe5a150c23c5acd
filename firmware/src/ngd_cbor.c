/* Minimal CBOR encoder. See include/nanogridata/ngd_cbor.h. */
#include "nanogridata/ngd_cbor.h"

#include <string.h>

#include "nanogridata/ngd_frame.h"

void ngd_cbor_init(ngd_cbor_t *enc, uint8_t *buf, size_t cap)
{
    enc->buf = buf;
    enc->cap = buf != NULL ? cap : 0;
    enc->len = 0;
    enc->err = 0;
}

static uint8_t *reserve(ngd_cbor_t *enc, size_t n)
{
    uint8_t *p;
    if (enc->err != 0 || enc->cap - enc->len < n) {
        enc->err = NGD_ERR_BUFFER;
        return NULL;
    }
    p = enc->buf + enc->len;
    enc->len += n;
    return p;
}

/* Major type + argument in its shortest encoding (RFC 8949 section 4.2.1, preferred form). */
static void put_head(ngd_cbor_t *enc, uint8_t major, uint64_t arg)
{
    uint8_t *p;
    uint8_t mt = (uint8_t)(major << 5);
    if (arg < 24u) {
        p = reserve(enc, 1);
        if (p != NULL) {
            p[0] = (uint8_t)(mt | arg);
        }
    } else if (arg <= 0xFFu) {
        p = reserve(enc, 2);
        if (p != NULL) {
            p[0] = (uint8_t)(mt | 24u);
            p[1] = (uint8_t)arg;
        }
    } else if (arg <= 0xFFFFu) {
        p = reserve(enc, 3);
        if (p != NULL) {
            p[0] = (uint8_t)(mt | 25u);
            ngd_put_be16(p + 1, (uint16_t)arg);
        }
    } else if (arg <= 0xFFFFFFFFu) {
        p = reserve(enc, 5);
        if (p != NULL) {
            p[0] = (uint8_t)(mt | 26u);
            ngd_put_be32(p + 1, (uint32_t)arg);
        }
    } else {
        p = reserve(enc, 9);
        if (p != NULL) {
            p[0] = (uint8_t)(mt | 27u);
            ngd_put_be64(p + 1, arg);
        }
    }
}

void ngd_cbor_map(ngd_cbor_t *enc, size_t pairs)
{
    put_head(enc, 5, pairs);
}

void ngd_cbor_array(ngd_cbor_t *enc, size_t items)
{
    put_head(enc, 4, items);
}

void ngd_cbor_uint(ngd_cbor_t *enc, uint64_t value)
{
    put_head(enc, 0, value);
}

void ngd_cbor_int(ngd_cbor_t *enc, int64_t value)
{
    if (value >= 0) {
        put_head(enc, 0, (uint64_t)value);
    } else {
        /* -1 - value without signed overflow: ~value as two's complement bits. */
        put_head(enc, 1, ~(uint64_t)value);
    }
}

void ngd_cbor_bool(ngd_cbor_t *enc, int value)
{
    uint8_t *p = reserve(enc, 1);
    if (p != NULL) {
        p[0] = value ? 0xF5u : 0xF4u;
    }
}

void ngd_cbor_float32(ngd_cbor_t *enc, float value)
{
    uint32_t bits;
    uint8_t *p = reserve(enc, 5);
    if (p != NULL) {
        memcpy(&bits, &value, sizeof bits); /* IEEE 754 binary32 on every supported target */
        p[0] = 0xFAu;
        ngd_put_be32(p + 1, bits);
    }
}

void ngd_cbor_float64(ngd_cbor_t *enc, double value)
{
    uint64_t bits;
    uint8_t *p = reserve(enc, 9);
    if (p != NULL) {
        memcpy(&bits, &value, sizeof bits);
        p[0] = 0xFBu;
        ngd_put_be64(p + 1, bits);
    }
}

void ngd_cbor_text(ngd_cbor_t *enc, const char *text, size_t len)
{
    uint8_t *p;
    if (text == NULL && len != 0) {
        enc->err = NGD_ERR_ARG;
        return;
    }
    put_head(enc, 3, len);
    p = reserve(enc, len);
    if (p != NULL && len != 0) {
        memcpy(p, text, len);
    }
}

void ngd_cbor_text_z(ngd_cbor_t *enc, const char *text)
{
    ngd_cbor_text(enc, text, text != NULL ? strlen(text) : 0);
}

int ngd_cbor_finish(const ngd_cbor_t *enc, size_t *len)
{
    if (enc->err != 0) {
        return enc->err;
    }
    if (len != NULL) {
        *len = enc->len;
    }
    return NGD_OK;
}
