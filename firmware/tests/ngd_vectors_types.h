/* Types of the generated vector table (see scripts/gen_vectors_header.py). */
#ifndef NGD_VECTORS_TYPES_H
#define NGD_VECTORS_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef enum { NGD_VEC_INT, NGD_VEC_F32, NGD_VEC_F64, NGD_VEC_BOOL, NGD_VEC_TEXT } ngd_vec_kind_t;

typedef struct {
    ngd_vec_kind_t kind;
    const char *key;
    size_t key_len;
    int negative;       /* int: value = negative ? -1 - magnitude : magnitude */
    uint64_t magnitude; /* int magnitude, or bool 0/1 */
    double real;        /* float32 / float64 */
    const char *text;
    size_t text_len;
} ngd_vec_item_t;

typedef struct {
    const char *master_secret_hex;
    uint32_t model_id;
    uint32_t device_id;
    const char *device_key_hex;
} ngd_vec_hkdf_t;

typedef struct {
    const char *name;
    uint32_t model_id, type, flags, device_id, seq;
    uint64_t timestamp_ms;
    const char *key_hex;
    const ngd_vec_item_t *items;
    size_t item_count;
    const char *payload_hex;
    const char *frame_hex;
    const char *expect_ack_hex; /* the gateway's OK ACK for this frame, or NULL */
} ngd_vec_frame_t;

typedef struct {
    const char *name;
    uint32_t model_id, device_id, seq;
    uint64_t timestamp_ms;
    uint32_t status, tag_len;
    const char *key_hex;
    const char *frame_hex;
} ngd_vec_ack_t;

#endif /* NGD_VECTORS_TYPES_H */
