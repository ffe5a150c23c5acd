/*
 * Minimal CBOR (RFC 8949) encoder for telemetry maps and the ACK array.
 *
 * Definite lengths only, integers in their shortest form, floats as given (float32 = 0xfa,
 * float64 = 0xfb). Errors are sticky: encode everything, then check ngd_cbor_finish().
 *
 *   ngd_cbor_t enc;
 *   ngd_cbor_init(&enc, buf, sizeof buf);
 *   ngd_cbor_map(&enc, 2);
 *   ngd_cbor_text_z(&enc, "p");  ngd_cbor_float32(&enc, 101.3f);
 *   ngd_cbor_text_z(&enc, "ok"); ngd_cbor_bool(&enc, 1);
 *   if (ngd_cbor_finish(&enc, &len) != NGD_OK) ...
 */
#ifndef NANOGRIDATA_NGD_CBOR_H
#define NANOGRIDATA_NGD_CBOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err; /* 0 or NGD_ERR_BUFFER */
} ngd_cbor_t;

void ngd_cbor_init(ngd_cbor_t *enc, uint8_t *buf, size_t cap);
void ngd_cbor_map(ngd_cbor_t *enc, size_t pairs);
void ngd_cbor_array(ngd_cbor_t *enc, size_t items);
void ngd_cbor_uint(ngd_cbor_t *enc, uint64_t value);
void ngd_cbor_int(ngd_cbor_t *enc, int64_t value);
void ngd_cbor_bool(ngd_cbor_t *enc, int value);
void ngd_cbor_float32(ngd_cbor_t *enc, float value);
void ngd_cbor_float64(ngd_cbor_t *enc, double value);
void ngd_cbor_text(ngd_cbor_t *enc, const char *text, size_t len);
void ngd_cbor_text_z(ngd_cbor_t *enc, const char *text); /* NUL-terminated */

/* NGD_OK and *len = bytes written, or the first error. */
int ngd_cbor_finish(const ngd_cbor_t *enc, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* NANOGRIDATA_NGD_CBOR_H */
