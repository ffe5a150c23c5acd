/*
 * Nanogridata protocol v1: frame building and ACK verification (docs/protocol.md).
 *
 * Pure functions over caller-owned buffers: no heap, no static state, no I/O.
 * Frame = 24-byte header || CBOR payload || tag, all integers big-endian.
 * tag = leading 16 or 32 bytes of HMAC-SHA256(device_key, header || payload).
 */
#ifndef NANOGRIDATA_NGD_FRAME_H
#define NANOGRIDATA_NGD_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NGD_MAGIC_0 0xC1u
#define NGD_MAGIC_1 0x53u
#define NGD_VERSION 1u
#define NGD_HEADER_LEN 24u
#define NGD_MAX_PAYLOAD 1024u
#define NGD_KEY_LEN 32u
#define NGD_TAG_LEN_SHORT 16u
#define NGD_TAG_LEN_LONG 32u
/* Largest ACK on the wire: header + CBOR [status] (2 bytes) + 32-byte tag. */
#define NGD_ACK_MAX_LEN (NGD_HEADER_LEN + 2u + NGD_TAG_LEN_LONG)

/* Frame types (header byte 4). */
#define NGD_TYPE_TELEMETRY 0x01u
#define NGD_TYPE_EVENT 0x02u
#define NGD_TYPE_CONFIG 0x03u
#define NGD_TYPE_COMMAND 0x04u
#define NGD_TYPE_ACK 0x80u

/* Header byte 5: bit0 selects the 32-byte tag; bits 1-7 are reserved and must be 0. */
#define NGD_FLAG_TAG32 0x01u
#define NGD_FLAGS_RESERVED 0xFEu

/* ACK status (the single element of the ACK payload array). */
#define NGD_ACK_OK 0u
#define NGD_ACK_DUPLICATE 1u
#define NGD_ACK_STALE 2u
#define NGD_ACK_INVALID 3u
#define NGD_ACK_BUSY 4u

/* Return codes: 0 is success, every error is negative. */
typedef enum {
    NGD_OK = 0,
    NGD_ERR_ARG = -1,           /* NULL pointer or out-of-range argument */
    NGD_ERR_BUFFER = -2,        /* output buffer too small */
    NGD_ERR_TOO_LARGE = -3,     /* payload longer than NGD_MAX_PAYLOAD */
    NGD_ERR_CRYPTO = -4,        /* the HMAC backend failed */
    NGD_ERR_NEED_MORE = -5,     /* input holds an incomplete frame: read more bytes */
    NGD_ERR_MAGIC = -6,         /* not a Nanogridata frame: the stream is lost */
    NGD_ERR_VERSION = -7,       /* unsupported protocol version */
    NGD_ERR_FLAGS = -8,         /* reserved flag bits set */
    NGD_ERR_TYPE = -9,          /* not an ACK */
    NGD_ERR_MAC = -10,          /* tag does not verify: forged or corrupted */
    NGD_ERR_PAYLOAD = -11,      /* authentic, but the payload is not CBOR [status] */
    NGD_ERR_MISMATCH = -12,     /* authentic ACK for another model/device or tag length */
    NGD_ERR_FULL = -13,         /* client ring buffer full */
    NGD_ERR_PERSIST = -14,      /* the sequence-number persistence callback failed */
    NGD_ERR_SEQ_EXHAUSTED = -15 /* sequence space used up: the device needs a new key */
} ngd_status_t;

typedef struct {
    uint8_t model_id;
    uint8_t type;
    uint8_t flags;
    uint32_t device_id;
    uint32_t seq;
    uint64_t timestamp_ms; /* ms since Unix epoch UTC; 0 = no clock yet */
} ngd_header_t;

typedef struct {
    ngd_header_t header; /* model/device/seq echo the acknowledged frame; timestamp = gateway time */
    uint8_t status;      /* NGD_ACK_* (values above 4 are passed through; treat as errors) */
} ngd_ack_t;

/* Tag length selected by the flags byte. */
size_t ngd_tag_len(uint8_t flags);

/* Total frame length for a payload of payload_len bytes. */
size_t ngd_frame_len(size_t payload_len, uint8_t flags);

/*
 * Build a complete frame into out[0..out_cap). The payload is copied after the header; payload
 * may point into out + NGD_HEADER_LEN (build in place). On success *out_len = frame length.
 */
int ngd_frame_build(const ngd_header_t *header, const uint8_t *payload, size_t payload_len,
                    const uint8_t key[NGD_KEY_LEN], uint8_t *out, size_t out_cap,
                    size_t *out_len);

/*
 * Parse and verify one ACK at the start of buf[0..len).
 * Checks, in order: magic, version, reserved flags, type, payload length, then the tag (constant
 * time), and only then the payload. Returns NGD_OK and fills *ack, or an error:
 *   NGD_ERR_NEED_MORE  the frame is incomplete (nothing consumed);
 *   any other error    *consumed says how many bytes the bad frame spans (0 when the stream cannot
 *                      be resynchronised, e.g. bad magic): the caller should drop the connection.
 * *consumed is set to the frame length on success.
 */
int ngd_ack_parse(const uint8_t *buf, size_t len, const uint8_t key[NGD_KEY_LEN], ngd_ack_t *ack,
                  size_t *consumed);

/* Constant-time comparison: 0 when equal. Time depends only on len. */
int ngd_ct_compare(const uint8_t *a, const uint8_t *b, size_t len);

/* Big-endian helpers, exposed for ports and tests. */
void ngd_put_be16(uint8_t *p, uint16_t v);
void ngd_put_be32(uint8_t *p, uint32_t v);
void ngd_put_be64(uint8_t *p, uint64_t v);
uint16_t ngd_get_be16(const uint8_t *p);
uint32_t ngd_get_be32(const uint8_t *p);
uint64_t ngd_get_be64(const uint8_t *p);

#ifdef __cplusplus
}
#endif

#endif /* NANOGRIDATA_NGD_FRAME_H */
