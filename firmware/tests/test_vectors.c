/* Every frame and ACK vector of docs/protocol-vectors.json, reproduced byte for byte by the C
 * library (CBOR encoding, header, tag), every ACK verified by the parser, every HKDF key derived. */
#include <inttypes.h>

#include "nanogridata/ngd_cbor.h"
#include "nanogridata/ngd_crypto.h"
#include "nanogridata/ngd_frame.h"
#include "ngd_test.h"
#include "ngd_vectors_data.h"

#define MAX_BYTES (NGD_HEADER_LEN + NGD_MAX_PAYLOAD + NGD_TAG_LEN_LONG)

static int encode_items(const ngd_vec_frame_t *v, uint8_t *out, size_t cap, size_t *len)
{
    ngd_cbor_t enc;
    size_t i;
    ngd_cbor_init(&enc, out, cap);
    ngd_cbor_map(&enc, v->item_count);
    for (i = 0; i < v->item_count; i++) {
        const ngd_vec_item_t *it = &v->items[i];
        ngd_cbor_text(&enc, it->key, it->key_len);
        switch (it->kind) {
        case NGD_VEC_INT:
            if (it->negative) {
                /* -1 - magnitude, kept in range by going through the unsigned bits */
                ngd_cbor_int(&enc, (int64_t)(-1 - (int64_t)it->magnitude));
            } else {
                ngd_cbor_uint(&enc, it->magnitude);
            }
            break;
        case NGD_VEC_F32:
            ngd_cbor_float32(&enc, (float)it->real);
            break;
        case NGD_VEC_F64:
            ngd_cbor_float64(&enc, it->real);
            break;
        case NGD_VEC_BOOL:
            ngd_cbor_bool(&enc, it->magnitude != 0);
            break;
        case NGD_VEC_TEXT:
            ngd_cbor_text(&enc, it->text, it->text_len);
            break;
        }
    }
    return ngd_cbor_finish(&enc, len);
}

static void test_frames(void)
{
    size_t i;
    CHECK(NGD_VEC_FRAME_COUNT > 0);
    for (i = 0; i < NGD_VEC_FRAME_COUNT; i++) {
        const ngd_vec_frame_t *v = &NGD_VEC_FRAMES[i];
        static uint8_t payload[NGD_MAX_PAYLOAD], want_payload[NGD_MAX_PAYLOAD];
        static uint8_t frame[MAX_BYTES], want_frame[MAX_BYTES];
        uint8_t key[NGD_KEY_LEN];
        size_t payload_len = 0, want_payload_len, frame_len = 0, want_frame_len;
        ngd_header_t h;
        int failures_before = ngd_test_failures;

        CHECK_EQ(ngd_test_unhex(v->key_hex, key, sizeof key), NGD_KEY_LEN);
        want_payload_len = ngd_test_unhex(v->payload_hex, want_payload, sizeof want_payload);
        want_frame_len = ngd_test_unhex(v->frame_hex, want_frame, sizeof want_frame);
        CHECK(want_payload_len != (size_t)-1 && want_frame_len != (size_t)-1);

        CHECK_EQ(encode_items(v, payload, sizeof payload, &payload_len), NGD_OK);
        CHECK_BYTES(payload, payload_len, want_payload, want_payload_len);

        h.model_id = (uint8_t)v->model_id;
        h.type = (uint8_t)v->type;
        h.flags = (uint8_t)v->flags;
        h.device_id = v->device_id;
        h.seq = v->seq;
        h.timestamp_ms = v->timestamp_ms;
        CHECK_EQ(ngd_frame_build(&h, payload, payload_len, key, frame, sizeof frame, &frame_len),
                 NGD_OK);
        CHECK_BYTES(frame, frame_len, want_frame, want_frame_len);

        if (v->expect_ack_hex != NULL) {
            /* The gateway's answer to this frame verifies under the device key and echoes it. */
            uint8_t ack_bytes[NGD_ACK_MAX_LEN];
            size_t ack_len = ngd_test_unhex(v->expect_ack_hex, ack_bytes, sizeof ack_bytes);
            size_t used = 0;
            ngd_ack_t ack;
            CHECK(ack_len != (size_t)-1);
            CHECK_EQ(ngd_ack_parse(ack_bytes, ack_len, key, &ack, &used), NGD_OK);
            CHECK_EQ(used, ack_len);
            CHECK_EQ(ack.header.model_id, v->model_id);
            CHECK_EQ(ack.header.device_id, v->device_id);
            CHECK_EQ(ack.header.seq, v->seq);
            CHECK_EQ(ack.header.flags, v->flags);
            CHECK_EQ(ack.status, NGD_ACK_OK);
        }
        printf("  frame %-40s %s\n", v->name, ngd_test_failures == failures_before ? "ok" : "MISMATCH");
    }
}

static void test_acks(void)
{
    size_t i;
    CHECK(NGD_VEC_ACK_COUNT > 0);
    for (i = 0; i < NGD_VEC_ACK_COUNT; i++) {
        const ngd_vec_ack_t *v = &NGD_VEC_ACKS[i];
        uint8_t key[NGD_KEY_LEN], want[MAX_BYTES], built[MAX_BYTES];
        uint8_t payload[4];
        size_t want_len, built_len = 0, payload_len = 0, used = 0;
        ngd_header_t h;
        ngd_ack_t ack;
        ngd_cbor_t enc;
        int failures_before = ngd_test_failures;

        CHECK_EQ(ngd_test_unhex(v->key_hex, key, sizeof key), NGD_KEY_LEN);
        want_len = ngd_test_unhex(v->frame_hex, want, sizeof want);
        CHECK(want_len != (size_t)-1);

        /* The device side parses and verifies the gateway's ACK... */
        CHECK_EQ(ngd_ack_parse(want, want_len, key, &ack, &used), NGD_OK);
        CHECK_EQ(used, want_len);
        CHECK_EQ(ack.header.model_id, v->model_id);
        CHECK_EQ(ack.header.device_id, v->device_id);
        CHECK_EQ(ack.header.seq, v->seq);
        CHECK(ack.header.timestamp_ms == v->timestamp_ms);
        CHECK_EQ(ack.status, v->status);
        CHECK_EQ(ngd_tag_len(ack.header.flags), v->tag_len);

        /* ...and the library reproduces it byte for byte (CBOR [status] + header + tag). */
        ngd_cbor_init(&enc, payload, sizeof payload);
        ngd_cbor_array(&enc, 1);
        ngd_cbor_uint(&enc, v->status);
        CHECK_EQ(ngd_cbor_finish(&enc, &payload_len), NGD_OK);
        h.model_id = (uint8_t)v->model_id;
        h.type = NGD_TYPE_ACK;
        h.flags = v->tag_len == 32 ? NGD_FLAG_TAG32 : 0;
        h.device_id = v->device_id;
        h.seq = v->seq;
        h.timestamp_ms = v->timestamp_ms;
        CHECK_EQ(ngd_frame_build(&h, payload, payload_len, key, built, sizeof built, &built_len),
                 NGD_OK);
        CHECK_BYTES(built, built_len, want, want_len);

        /* A one-bit change of the tag must be refused. */
        want[want_len - 1] ^= 0x01;
        CHECK_EQ(ngd_ack_parse(want, want_len, key, &ack, &used), NGD_ERR_MAC);
        printf("  ack   %-40s %s\n", v->name, ngd_test_failures == failures_before ? "ok" : "MISMATCH");
    }
}

static void test_hkdf(void)
{
    size_t i;
    CHECK(NGD_VEC_HKDF_COUNT > 0);
    for (i = 0; i < NGD_VEC_HKDF_COUNT; i++) {
        const ngd_vec_hkdf_t *v = &NGD_VEC_HKDF[i];
        uint8_t secret[256], want[32], got[32];
        size_t secret_len = ngd_test_unhex(v->master_secret_hex, secret, sizeof secret);
        CHECK(secret_len != (size_t)-1);
        CHECK_EQ(ngd_test_unhex(v->device_key_hex, want, sizeof want), 32);
        CHECK_EQ(ngd_derive_device_key(secret, secret_len, (uint8_t)v->model_id, v->device_id, got),
                 0);
        CHECK_BYTES(got, 32, want, 32);
    }
}

TEST_MAIN_BEGIN
RUN_TEST(test_frames);
RUN_TEST(test_acks);
RUN_TEST(test_hkdf);
TEST_MAIN_END
