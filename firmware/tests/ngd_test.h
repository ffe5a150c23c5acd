/* Tiny test harness for the host tests: checks count, failures print file:line and go on. */
#ifndef NGD_TEST_H
#define NGD_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ngd_test_checks;
static int ngd_test_failures;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        ngd_test_checks++;                                                                   \
        if (!(cond)) {                                                                       \
            ngd_test_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                                    \
    } while (0)

#define CHECK_EQ(a, b)                                                                       \
    do {                                                                                     \
        long long ngd_a_ = (long long)(a), ngd_b_ = (long long)(b);                          \
        ngd_test_checks++;                                                                   \
        if (ngd_a_ != ngd_b_) {                                                              \
            ngd_test_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, expected %s == %lld\n",     \
                    __FILE__, __LINE__, #a, ngd_a_, #b, ngd_b_);                             \
        }                                                                                    \
    } while (0)

static inline void ngd_test_hexdump(const char *label, const uint8_t *p, size_t n)
{
    size_t i;
    fprintf(stderr, "  %s (%zu bytes): ", label, n);
    for (i = 0; i < n; i++) {
        fprintf(stderr, "%02x", p[i]);
    }
    fprintf(stderr, "\n");
}

#define CHECK_BYTES(got, got_len, want, want_len)                                            \
    do {                                                                                     \
        ngd_test_checks++;                                                                   \
        if ((size_t)(got_len) != (size_t)(want_len) ||                                       \
            memcmp((got), (want), (size_t)(want_len)) != 0) {                                \
            ngd_test_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK_BYTES failed: %s\n", __FILE__, __LINE__, #got);    \
            ngd_test_hexdump("got ", (const uint8_t *)(got), (size_t)(got_len));             \
            ngd_test_hexdump("want", (const uint8_t *)(want), (size_t)(want_len));           \
        }                                                                                    \
    } while (0)

/* Decode a hex string into out; returns the byte count, or (size_t)-1 on bad input. */
static inline size_t ngd_test_unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex), i;
    if (n % 2 != 0 || n / 2 > cap) {
        return (size_t)-1;
    }
    for (i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            return (size_t)-1;
        }
        out[i] = (uint8_t)v;
    }
    return n / 2;
}

/* Runs one named test when argv selects it (or all when no argument is given). */
#define RUN_TEST(fn)                                                                         \
    do {                                                                                     \
        if (argc < 2 || strcmp(argv[1], #fn) == 0) {                                         \
            int before_ = ngd_test_failures;                                                 \
            ngd_tests_run++;                                                                 \
            fn();                                                                            \
            printf("%s %s\n", ngd_test_failures == before_ ? "PASS" : "FAIL", #fn);          \
        }                                                                                    \
    } while (0)

#define TEST_MAIN_BEGIN                                                                      \
    int main(int argc, char **argv)                                                          \
    {                                                                                        \
        int ngd_tests_run = 0;

#define TEST_MAIN_END                                                                        \
    if (ngd_tests_run == 0) {                                                                \
        fprintf(stderr, "no test named '%s'\n", argc > 1 ? argv[1] : "");                   \
        return 2;                                                                            \
    }                                                                                        \
    printf("%d test(s), %d check(s), %d failure(s)\n", ngd_tests_run, ngd_test_checks,       \
           ngd_test_failures);                                                               \
    return ngd_test_failures == 0 ? 0 : 1;                                                   \
    }

#endif /* NGD_TEST_H */
