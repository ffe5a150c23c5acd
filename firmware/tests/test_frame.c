/* Frame building and ACK verification: layout, hand-computed vectors (Python hmac/struct, an
 * independent implementation), forged, mutated, truncated and mismatched ACKs. */
#include "nanogridata/ngd_cbor.h"
#include "nanogridata/ngd_crypto.h"
#include "nanogridata/ngd_frame.h"
#include "ngd_test.h"

static uint8_t g_key[32];

static void init_key(void)
{
    size_t i;
    for (i = 0; i < sizeof g_key; i++) {
        g_key[i] = (uint8_t)i;
    }
}

/* Computed with: hmac.new(bytes(range(32)), header + payload, hashlib.sha256) in Python. */
static const char *const TELEMETRY_HEX =
    "c15301100100000801020304000000070000018bcfe56800a16170fa42caa666"
    "e044b2a72f685d0443bef6dcf884cc67";
static const char *const ACK_OK_TAG16_HEX =
    "c15301108000000201020304000000070000018bcfe5687b810090359da752961b4525a38f1675f53aef";
static const char *const ACK_DUP_TAG32_HEX =
    "c15301108001000201020304000000070000018bcfe5687b8101e06daed4cd451241081eb7371ce777de"
    "e5c3ea21747797cb62ff709106424827";

static void test_build_hand_computed(void)
{
    ngd_header_t h = {0x10, NGD_TYPE_TELEMETRY, 0, 0x01020304u, 7, 1700000000000ull};
    uint8_t payload[16], frame[128], want[128];
    size_t payload_len = 0, frame_len = 0, want_len;
    ngd_cbor_t enc;

    ngd_cbor_init(&enc, payload, sizeof payload);
    ngd_cbor_map(&enc, 1);
    ngd_cbor_text_z(&enc, "p");
    ngd_cbor_float32(&enc, 101.325f);
    CHECK_EQ(ngd_cbor_finish(&enc, &payload_len), NGD_OK);
    CHECK_EQ(ngd_frame_build(&h, payload, payload_len, g_key, frame, sizeof frame, &frame_len),
             NGD_OK);
    want_len = ngd_test_unhex(TELEMETRY_HEX, want, sizeof want);
    CHECK_BYTES(frame, frame_len, want, want_len);
    CHECK_EQ(frame_len, ngd_frame_len(payload_len, 0));
}

static void test_build_in_place_and_tag32(void)
{
    ngd_header_t h = {0x30, NGD_TYPE_EVENT, NGD_FLAG_TAG32, 0xA1B2C3D4u, 0xFFFFFFFEu,
                      0x0102030405060708ull};
    uint8_t frame[128], mac[32];
    size_t len = 0;
    memcpy(frame + NGD_HEADER_LEN, "\xa1\x61\x65\xf5", 4); /* {"e": true}, built in place */
    CHECK_EQ(ngd_frame_build(&h, frame + NGD_HEADER_LEN, 4, g_key, frame, sizeof frame, &len),
             NGD_OK);
    CHECK_EQ(len, 24 + 4 + 32);
    CHECK_EQ(frame[0], 0xC1);
    CHECK_EQ(frame[1], 0x53);
    CHECK_EQ(frame[2], 1);
    CHECK_EQ(frame[3], 0x30);
    CHECK_EQ(frame[4], NGD_TYPE_EVENT);
    CHECK_EQ(frame[5], 1);
    CHECK_EQ(ngd_get_be16(frame + 6), 4);
    CHECK_EQ(ngd_get_be32(frame + 8), 0xA1B2C3D4u);
    CHECK_EQ(ngd_get_be32(frame + 12), 0xFFFFFFFEu);
    CHECK(ngd_get_be64(frame + 16) == 0x0102030405060708ull);
    CHECK_BYTES(frame + 24, 4, "\xa1\x61\x65\xf5", 4);
    CHECK_EQ(ngd_hmac_sha256(g_key, 32, frame, 28, mac), 0);
    CHECK_BYTES(frame + 28, 32, mac, 32);
}

static void test_build_rejects_bad_arguments(void)
{
    ngd_header_t h = {0x10, NGD_TYPE_TELEMETRY, 0, 1, 1, 0};
    static uint8_t big[NGD_MAX_PAYLOAD + 1];
    uint8_t frame[64];
    size_t len = 0;
    CHECK_EQ(ngd_frame_build(&h, big, sizeof big, g_key, frame, sizeof frame, &len),
             NGD_ERR_TOO_LARGE);
    CHECK_EQ(ngd_frame_build(&h, big, 10, g_key, frame, 24 + 10 + 15, &len), NGD_ERR_BUFFER);
    CHECK_EQ(ngd_frame_build(&h, big, 10, g_key, frame, 24 + 10 + 16, &len), NGD_OK);
    CHECK_EQ(ngd_frame_build(&h, NULL, 3, g_key, frame, sizeof frame, &len), NGD_ERR_ARG);
    CHECK_EQ(ngd_frame_build(&h, big, 1, NULL, frame, sizeof frame, &len), NGD_ERR_ARG);
    h.flags = 0x02; /* reserved bit */
    CHECK_EQ(ngd_frame_build(&h, big, 1, g_key, frame, sizeof frame, &len), NGD_ERR_ARG);
}

static void test_parse_hand_computed_acks(void)
{
    uint8_t buf[128];
    size_t len, used = 0;
    ngd_ack_t ack;

    len = ngd_test_unhex(ACK_OK_TAG16_HEX, buf, sizeof buf);
    CHECK_EQ(ngd_ack_parse(buf, len, g_key, &ack, &used), NGD_OK);
    CHECK_EQ(used, len);
    CHECK_EQ(ack.status, NGD_ACK_OK);
    CHECK_EQ(ack.header.model_id, 0x10);
    CHECK_EQ(ack.header.device_id, 0x01020304);
    CHECK_EQ(ack.header.seq, 7);
    CHECK(ack.header.timestamp_ms == 1700000000123ull);
    CHECK_EQ(ack.header.flags, 0);

    len = ngd_test_unhex(ACK_DUP_TAG32_HEX, buf, sizeof buf);
    CHECK_EQ(ngd_ack_parse(buf, len, g_key, &ack, &used), NGD_OK);
    CHECK_EQ(used, 24 + 2 + 32);
    CHECK_EQ(ack.status, NGD_ACK_DUPLICATE);
    CHECK_EQ(ack.header.flags, NGD_FLAG_TAG32);
}

static size_t make_ack(uint8_t *buf, size_t cap, uint8_t flags, uint8_t status)
{
    ngd_header_t h = {0x20, NGD_TYPE_ACK, flags, 42, 1000, 1763800000000ull};
    uint8_t payload[2] = {0x81, status};
    size_t len = 0;
    CHECK_EQ(ngd_frame_build(&h, payload, 2, g_key, buf, cap, &len), NGD_OK);
    return len;
}

/* Every single-bit flip anywhere in an ACK (header, payload, tag) is rejected. */
static void test_every_bit_flip_is_rejected(void)
{
    uint8_t flags;
    for (flags = 0; flags <= 1; flags++) {
        uint8_t buf[64];
        size_t len = make_ack(buf, sizeof buf, flags, NGD_ACK_OK);
        size_t bit, accepted = 0;
        for (bit = 0; bit < len * 8; bit++) {
            ngd_ack_t ack;
            size_t used;
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            if (ngd_ack_parse(buf, len, g_key, &ack, &used) == NGD_OK) {
                accepted++;
                fprintf(stderr, "accepted a mutation at bit %zu\n", bit);
            }
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        CHECK_EQ(accepted, 0);
    }
}

static void test_forged_and_malformed(void)
{
    uint8_t buf[64], other_key[32];
    size_t len, used = 99;
    ngd_ack_t ack;
    ngd_header_t h = {0x20, NGD_TYPE_ACK, 0, 42, 1000, 1};

    len = make_ack(buf, sizeof buf, 0, NGD_ACK_OK);
    memcpy(other_key, g_key, 32);
    other_key[31] ^= 1;
    CHECK_EQ(ngd_ack_parse(buf, len, other_key, &ack, &used), NGD_ERR_MAC);
    CHECK_EQ(used, len); /* the bad frame's extent is known */

    /* A truncated tag is not accepted as a short tag. */
    CHECK_EQ(ngd_ack_parse(buf, len - 1, g_key, &ack, &used), NGD_ERR_NEED_MORE);
    CHECK_EQ(used, 0);
    /* Every prefix is "need more", never a verdict on partial data. */
    {
        size_t n, wrong = 0;
        for (n = 0; n < len; n++) {
            if (ngd_ack_parse(buf, n, g_key, &ack, &used) != NGD_ERR_NEED_MORE) {
                wrong++;
            }
        }
        CHECK_EQ(wrong, 0);
    }
    /* A correct tag over a device frame type is still not an ACK. */
    h.type = NGD_TYPE_TELEMETRY;
    CHECK_EQ(ngd_frame_build(&h, (const uint8_t *)"\x81\x00", 2, g_key, buf, sizeof buf, &len),
             NGD_OK);
    CHECK_EQ(ngd_ack_parse(buf, len, g_key, &ack, &used), NGD_ERR_TYPE);
    /* Authentic but not [status]: payload errors are reported after the MAC check. */
    h.type = NGD_TYPE_ACK;
    CHECK_EQ(ngd_frame_build(&h, (const uint8_t *)"\x82\x00", 2, g_key, buf, sizeof buf, &len),
             NGD_OK);
    CHECK_EQ(ngd_ack_parse(buf, len, g_key, &ack, &used), NGD_ERR_PAYLOAD);
    CHECK_EQ(ngd_frame_build(&h, (const uint8_t *)"\x81\x18", 2, g_key, buf, sizeof buf, &len),
             NGD_OK);
    CHECK_EQ(ngd_ack_parse(buf, len, g_key, &ack, &used), NGD_ERR_PAYLOAD);
    CHECK_EQ(ngd_frame_build(&h, (const uint8_t *)"\x81\x00\x00", 3, g_key, buf, sizeof buf, &len),
             NGD_OK);
    CHECK_EQ(ngd_ack_parse(buf, len, g_key, &ack, &used), NGD_ERR_PAYLOAD);
    /* Unknown status values < 24 parse; the client decides what they mean. */
    CHECK_EQ(ngd_frame_build(&h, (const uint8_t *)"\x81\x09", 2, g_key, buf, sizeof buf, &len),
             NGD_OK);
    CHECK_EQ(ngd_ack_parse(buf, len, g_key, &ack, &used), NGD_OK);
    CHECK_EQ(ack.status, 9);

    /* Structural errors show as early as the bytes allow. */
    CHECK_EQ(ngd_ack_parse((const uint8_t *)"\xC1\x54", 2, g_key, &ack, &used), NGD_ERR_MAGIC);
    CHECK_EQ(ngd_ack_parse((const uint8_t *)"\x00", 1, g_key, &ack, &used), NGD_ERR_MAGIC);
    CHECK_EQ(ngd_ack_parse((const uint8_t *)"\xC1\x53\x02", 3, g_key, &ack, &used),
             NGD_ERR_VERSION);
    len = make_ack(buf, sizeof buf, 0, NGD_ACK_OK);
    buf[5] = 0x80;
    CHECK_EQ(ngd_ack_parse(buf, len, g_key, &ack, &used), NGD_ERR_FLAGS);
    CHECK_EQ(ngd_ack_parse(NULL, 0, g_key, &ack, &used), NGD_ERR_ARG);
}

static void test_ct_compare(void)
{
    CHECK_EQ(ngd_ct_compare((const uint8_t *)"abcd", (const uint8_t *)"abcd", 4), 0);
    CHECK(ngd_ct_compare((const uint8_t *)"abcd", (const uint8_t *)"abce", 4) != 0);
    CHECK(ngd_ct_compare((const uint8_t *)"xbcd", (const uint8_t *)"abcd", 4) != 0);
    CHECK_EQ(ngd_ct_compare((const uint8_t *)"a", (const uint8_t *)"b", 0), 0);
}

TEST_MAIN_BEGIN
init_key();
RUN_TEST(test_build_hand_computed);
RUN_TEST(test_build_in_place_and_tag32);
RUN_TEST(test_build_rejects_bad_arguments);
RUN_TEST(test_parse_hand_computed_acks);
RUN_TEST(test_every_bit_flip_is_rejected);
RUN_TEST(test_forged_and_malformed);
RUN_TEST(test_ct_compare);
TEST_MAIN_END
