/* Crypto port: RFC 4231 HMAC-SHA256 and FIPS 180-4 SHA-256 vectors, for whichever backend is
 * linked; the builtin backend is also cross-checked against mbedTLS over many lengths. */
#include "nanogridata/ngd_crypto.h"
#include "ngd_test.h"

#ifdef NGD_TEST_BUILTIN
#include "ngd_sha256.h"
#endif
#ifdef NGD_TEST_MBEDTLS_REFERENCE
#include <mbedtls/md.h>
#endif

typedef struct {
    uint8_t key_byte;
    size_t key_len;
    const char *key_text;
    uint8_t msg_byte;
    size_t msg_len;
    const char *msg_text;
    const char *mac_hex;
} rfc4231_case_t;

static void test_rfc4231(void)
{
    static const rfc4231_case_t cases[] = {
        {0x0b, 20, NULL, 0, 0, "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {0, 0, "Jefe", 0, 0, "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {0xaa, 20, NULL, 0xdd, 50, NULL,
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {0xaa, 131, NULL, 0, 0, "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {0xaa, 131, NULL, 0, 0,
         "This is a test using a larger than block-size key and a larger than block-size data. "
         "The key needs to be hashed before being used by the HMAC algorithm.",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t key[131], msg[200], want[32], got[32];
        size_t key_len, msg_len;
        const rfc4231_case_t *tc = &cases[i];
        if (tc->key_text != NULL) {
            key_len = strlen(tc->key_text);
            memcpy(key, tc->key_text, key_len);
        } else {
            key_len = tc->key_len;
            memset(key, tc->key_byte, key_len);
        }
        if (tc->msg_text != NULL) {
            msg_len = strlen(tc->msg_text);
            memcpy(msg, tc->msg_text, msg_len);
        } else {
            msg_len = tc->msg_len;
            memset(msg, tc->msg_byte, msg_len);
        }
        CHECK_EQ(ngd_test_unhex(tc->mac_hex, want, sizeof want), 32);
        CHECK_EQ(ngd_hmac_sha256(key, key_len, msg, msg_len, got), 0);
        CHECK_BYTES(got, 32, want, 32);
    }
}

static void test_hmac_rejects_null(void)
{
    uint8_t out[32];
    CHECK(ngd_hmac_sha256(NULL, 5, (const uint8_t *)"x", 1, out) != 0);
    CHECK(ngd_hmac_sha256((const uint8_t *)"k", 1, NULL, 3, out) != 0);
    CHECK(ngd_hmac_sha256((const uint8_t *)"k", 1, (const uint8_t *)"x", 1, NULL) != 0);
}

#ifdef NGD_TEST_BUILTIN
static void sha256_hex(const char *msg, const char *want_hex)
{
    ngd_sha256_ctx ctx;
    uint8_t got[32], want[32];
    ngd_sha256_init(&ctx);
    ngd_sha256_update(&ctx, (const uint8_t *)msg, strlen(msg));
    ngd_sha256_final(&ctx, got);
    CHECK_EQ(ngd_test_unhex(want_hex, want, sizeof want), 32);
    CHECK_BYTES(got, 32, want, 32);
}

static void test_sha256_fips(void)
{
    sha256_hex("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256_hex("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
               "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
#endif

#ifdef NGD_TEST_MBEDTLS_REFERENCE
/* Every padding boundary (55/56/64 bytes...) and key-length class (empty, short, 64, >64). */
static void test_matches_mbedtls(void)
{
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    uint8_t key[140], msg[300], got[32], want[32];
    size_t i, key_len, msg_len;
    int mismatches = 0;
    for (i = 0; i < sizeof key; i++) {
        key[i] = (uint8_t)(i * 7u + 1u);
    }
    for (i = 0; i < sizeof msg; i++) {
        msg[i] = (uint8_t)(i * 13u + 5u);
    }
    for (key_len = 0; key_len <= sizeof key; key_len += 7) {
        for (msg_len = 0; msg_len <= sizeof msg; msg_len++) {
            if (ngd_hmac_sha256(key, key_len, msg, msg_len, got) != 0 ||
                mbedtls_md_hmac(info, key, key_len, msg, msg_len, want) != 0 ||
                memcmp(got, want, 32) != 0) {
                mismatches++;
            }
        }
    }
    CHECK_EQ(mismatches, 0);
}
#endif

TEST_MAIN_BEGIN
RUN_TEST(test_rfc4231);
RUN_TEST(test_hmac_rejects_null);
#ifdef NGD_TEST_BUILTIN
RUN_TEST(test_sha256_fips);
#endif
#ifdef NGD_TEST_MBEDTLS_REFERENCE
RUN_TEST(test_matches_mbedtls);
#endif
TEST_MAIN_END
