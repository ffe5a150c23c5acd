/* CBOR encoder against RFC 8949 Appendix A examples, plus bounds and sticky errors. */
#include <stdint.h>

#include "nanogridata/ngd_cbor.h"
#include "nanogridata/ngd_frame.h"
#include "ngd_test.h"

#define ENCODE_EXPECT(stmt, want_hex)                                                        \
    do {                                                                                     \
        uint8_t buf_[64], want_[64];                                                         \
        size_t len_ = 0, want_len_;                                                          \
        ngd_cbor_t enc_;                                                                     \
        ngd_cbor_init(&enc_, buf_, sizeof buf_);                                             \
        stmt;                                                                                \
        CHECK_EQ(ngd_cbor_finish(&enc_, &len_), NGD_OK);                                     \
        want_len_ = ngd_test_unhex(want_hex, want_, sizeof want_);                           \
        CHECK_BYTES(buf_, len_, want_, want_len_);                                           \
    } while (0)

static void test_unsigned_shortest_form(void)
{
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 0), "00");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 23), "17");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 24), "1818");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 255), "18ff");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 256), "190100");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 1000), "1903e8");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 65535), "19ffff");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 65536), "1a00010000");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 1000000), "1a000f4240");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 4294967295u), "1affffffff");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, 1000000000000ull), "1b000000e8d4a51000");
    ENCODE_EXPECT(ngd_cbor_uint(&enc_, UINT64_MAX), "1bffffffffffffffff");
}

static void test_signed(void)
{
    ENCODE_EXPECT(ngd_cbor_int(&enc_, 10), "0a");
    ENCODE_EXPECT(ngd_cbor_int(&enc_, -1), "20");
    ENCODE_EXPECT(ngd_cbor_int(&enc_, -10), "29");
    ENCODE_EXPECT(ngd_cbor_int(&enc_, -24), "37");
    ENCODE_EXPECT(ngd_cbor_int(&enc_, -25), "3818");
    ENCODE_EXPECT(ngd_cbor_int(&enc_, -100), "3863");
    ENCODE_EXPECT(ngd_cbor_int(&enc_, -1000), "3903e7");
    ENCODE_EXPECT(ngd_cbor_int(&enc_, INT64_MIN), "3b7fffffffffffffff");
    ENCODE_EXPECT(ngd_cbor_int(&enc_, INT64_MAX), "1b7fffffffffffffff");
}

static void test_floats_bools_text(void)
{
    ENCODE_EXPECT(ngd_cbor_float64(&enc_, 1.1), "fb3ff199999999999a");
    ENCODE_EXPECT(ngd_cbor_float64(&enc_, -4.1), "fbc010666666666666");
    ENCODE_EXPECT(ngd_cbor_float32(&enc_, 100000.0f), "fa47c35000");
    ENCODE_EXPECT(ngd_cbor_float32(&enc_, 3.4028234663852886e+38f), "fa7f7fffff");
    ENCODE_EXPECT(ngd_cbor_float32(&enc_, 1.5f), "fa3fc00000");
    ENCODE_EXPECT(ngd_cbor_bool(&enc_, 0), "f4");
    ENCODE_EXPECT(ngd_cbor_bool(&enc_, 1), "f5");
    ENCODE_EXPECT(ngd_cbor_bool(&enc_, 42), "f5");
    ENCODE_EXPECT(ngd_cbor_text_z(&enc_, ""), "60");
    ENCODE_EXPECT(ngd_cbor_text_z(&enc_, "a"), "6161");
    ENCODE_EXPECT(ngd_cbor_text_z(&enc_, "IETF"), "6449455446");
    ENCODE_EXPECT(ngd_cbor_text_z(&enc_, "\xc3\xbc"), "62c3bc");
    ENCODE_EXPECT(ngd_cbor_text(&enc_, "abc", 2), "626162");
}

static void test_containers(void)
{
    ENCODE_EXPECT(ngd_cbor_array(&enc_, 0), "80");
    ENCODE_EXPECT(ngd_cbor_map(&enc_, 0), "a0");
    ENCODE_EXPECT((ngd_cbor_array(&enc_, 3), ngd_cbor_uint(&enc_, 1), ngd_cbor_uint(&enc_, 2),
                   ngd_cbor_uint(&enc_, 3)),
                  "83010203");
    /* {"a": 1, "b": [2, 3]} */
    ENCODE_EXPECT((ngd_cbor_map(&enc_, 2), ngd_cbor_text_z(&enc_, "a"), ngd_cbor_uint(&enc_, 1),
                   ngd_cbor_text_z(&enc_, "b"), ngd_cbor_array(&enc_, 2), ngd_cbor_uint(&enc_, 2),
                   ngd_cbor_uint(&enc_, 3)),
                  "a26161016162820203");
    /* The ACK payload: [4] */
    ENCODE_EXPECT((ngd_cbor_array(&enc_, 1), ngd_cbor_uint(&enc_, NGD_ACK_BUSY)), "8104");
}

static void test_long_text_headers(void)
{
    static char text[300];
    uint8_t buf[320];
    size_t len = 0;
    ngd_cbor_t enc;
    memset(text, 'x', sizeof text);
    ngd_cbor_init(&enc, buf, sizeof buf);
    ngd_cbor_text(&enc, text, 24);
    CHECK_EQ(ngd_cbor_finish(&enc, &len), NGD_OK);
    CHECK_EQ(len, 26);
    CHECK_EQ(buf[0], 0x78);
    CHECK_EQ(buf[1], 24);
    ngd_cbor_init(&enc, buf, sizeof buf);
    ngd_cbor_text(&enc, text, 300);
    CHECK_EQ(ngd_cbor_finish(&enc, &len), NGD_OK);
    CHECK_EQ(len, 303);
    CHECK_EQ(buf[0], 0x79);
    CHECK_EQ(buf[1], 0x01);
    CHECK_EQ(buf[2], 0x2c);
}

/* Running out of space never writes past the buffer and the error sticks. */
static void test_overflow_is_sticky_and_bounded(void)
{
    uint8_t buf[16];
    size_t cap, len = 99;
    for (cap = 0; cap < 12; cap++) {
        ngd_cbor_t enc;
        memset(buf, 0xEE, sizeof buf);
        ngd_cbor_init(&enc, buf, cap);
        ngd_cbor_map(&enc, 1);
        ngd_cbor_text_z(&enc, "temp");
        ngd_cbor_float32(&enc, 21.5f); /* needs 11 bytes in all */
        if (cap < 11) {
            CHECK_EQ(ngd_cbor_finish(&enc, &len), NGD_ERR_BUFFER);
            ngd_cbor_uint(&enc, 0); /* a later small item must not "fit" after an error */
            CHECK_EQ(ngd_cbor_finish(&enc, &len), NGD_ERR_BUFFER);
        } else {
            CHECK_EQ(ngd_cbor_finish(&enc, &len), NGD_OK);
            CHECK_EQ(len, 11);
        }
        CHECK(enc.len <= cap);
        CHECK_EQ(buf[cap], 0xEE); /* byte after the buffer untouched */
    }
    {
        ngd_cbor_t enc;
        ngd_cbor_init(&enc, NULL, 10);
        ngd_cbor_uint(&enc, 1);
        CHECK_EQ(ngd_cbor_finish(&enc, &len), NGD_ERR_BUFFER);
        ngd_cbor_init(&enc, buf, sizeof buf);
        ngd_cbor_text(&enc, NULL, 3);
        CHECK_EQ(ngd_cbor_finish(&enc, &len), NGD_ERR_ARG);
    }
}

TEST_MAIN_BEGIN
RUN_TEST(test_unsigned_shortest_form);
RUN_TEST(test_signed);
RUN_TEST(test_floats_bools_text);
RUN_TEST(test_containers);
RUN_TEST(test_long_text_headers);
RUN_TEST(test_overflow_is_sticky_and_bounded);
TEST_MAIN_END
