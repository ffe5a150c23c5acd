/*
 * Interop test client: the host build of the firmware library, over a real TCP socket, against a
 * running Python gateway.
 *
 *   phase 1  queue N telemetry frames, expect N OK ACKs;
 *   phase 2  send K more, throw their ACKs away unread ("lost ACKs"), force a disconnect,
 *            reconnect and expect the K retransmissions answered DUPLICATE.
 * Exits 0 only if every count matches; bounded by --timeout seconds.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>

#include "nanogridata/ngd_cbor.h"
#include "nanogridata/ngd_client.h"
#include "nanogridata/ngd_crypto.h"
#include "ngd_bsd_transport.h"

typedef struct {
    uint32_t ok, duplicate, stale, invalid;
} results_t;

static results_t g_results;
static uint32_t g_persisted;
static uint32_t g_persist_writes;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int persist(void *user, uint32_t next_seq)
{
    (void)user;
    g_persisted = next_seq; /* a device writes flash/NVS here */
    g_persist_writes++;
    return 0;
}

static void on_result(void *user, uint32_t seq, uint8_t status)
{
    (void)user;
    (void)seq;
    switch (status) {
    case NGD_ACK_OK: g_results.ok++; break;
    case NGD_ACK_DUPLICATE: g_results.duplicate++; break;
    case NGD_ACK_STALE: g_results.stale++; break;
    default: g_results.invalid++; break;
    }
}

static int unhex(const char *hex, uint8_t *out, size_t n)
{
    size_t i;
    if (strlen(hex) != 2 * n) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            return -1;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

static size_t encode_sample(uint32_t i, uint8_t *buf, size_t cap)
{
    ngd_cbor_t enc;
    size_t len = 0;
    ngd_cbor_init(&enc, buf, cap);
    ngd_cbor_map(&enc, 3);
    ngd_cbor_text_z(&enc, "p");
    ngd_cbor_float32(&enc, 1013.25f + (float)(i % 100u) * 0.01f);
    ngd_cbor_text_z(&enc, "t");
    ngd_cbor_float32(&enc, 21.5f);
    ngd_cbor_text_z(&enc, "bat");
    ngd_cbor_uint(&enc, 3700u + i % 13u);
    return ngd_cbor_finish(&enc, &len) == NGD_OK ? len : 0;
}

/* Queue `count` new frames as ring space allows; drive the loop until nothing is unacknowledged. */
static int deliver(ngd_client_t *c, ngd_bsd_link_t *link, uint32_t count, uint64_t deadline)
{
    uint32_t queued = 0;
    uint8_t payload[NGD_CLIENT_MAX_PAYLOAD];
    while (now_ms() < deadline) {
        if (queued == count && ngd_client_unacked(c) == 0) {
            return 0;
        }
        while (queued < count) {
            size_t len = encode_sample(queued, payload, sizeof payload);
            int rc = ngd_client_queue(c, NGD_TYPE_TELEMETRY, payload, len, now_ms(), NULL);
            if (rc == NGD_ERR_FULL) {
                break;
            }
            if (rc != NGD_OK) {
                fprintf(stderr, "interop: queue failed: %d\n", rc);
                return -1;
            }
            queued++;
        }
        ngd_bsd_step(c, link, 50);
    }
    fprintf(stderr, "interop: timed out with %zu frame(s) unacknowledged\n", ngd_client_unacked(c));
    return -1;
}

/* Send `count` frames, read and discard the ACK bytes, then drop the connection. */
static int lose_acks(ngd_client_t *c, ngd_bsd_link_t *link, uint32_t count, size_t ack_len,
                     uint64_t deadline)
{
    uint8_t payload[NGD_CLIENT_MAX_PAYLOAD];
    size_t want = count * ack_len, got = 0;
    uint32_t i, sent = 0;
    for (i = 0; i < count; i++) {
        size_t len = encode_sample(i, payload, sizeof payload);
        if (ngd_client_queue(c, NGD_TYPE_EVENT, payload, len, now_ms(), NULL) != NGD_OK) {
            fprintf(stderr, "interop: phase 2 queue failed\n");
            return -1;
        }
    }
    while (sent < count && now_ms() < deadline) {
        ngd_action_t act;
        ngd_client_poll(c, now_ms(), &act);
        if (act.kind != NGD_ACTION_SEND || send(link->fd, act.data, act.len, 0) != (ssize_t)act.len) {
            fprintf(stderr, "interop: phase 2 expected to send frame %u\n", sent);
            return -1;
        }
        sent++;
    }
    while (got < want && now_ms() < deadline) { /* the gateway stored them: ACKs are coming */
        uint8_t sink[512];
        fd_set rd;
        struct timeval tv = {0, 100000};
        ssize_t n;
        FD_ZERO(&rd);
        FD_SET(link->fd, &rd);
        if (select(link->fd + 1, &rd, NULL, NULL, &tv) <= 0) {
            continue;
        }
        n = recv(link->fd, sink, sizeof sink, 0);
        if (n <= 0) {
            fprintf(stderr, "interop: connection closed while draining ACKs\n");
            return -1;
        }
        got += (size_t)n;
    }
    if (got != want) {
        fprintf(stderr, "interop: expected %zu ACK bytes to discard, got %zu\n", want, got);
        return -1;
    }
    ngd_bsd_close(link);
    ngd_client_on_disconnected(c, now_ms());
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: interop_client --port P --model ID --device ID --key HEX64 "
            "[--host 127.0.0.1] [--frames 10000] [--lost 50] [--tag32] [--timeout 120] "
            "[--check-secret HEX]\n"
            "  --check-secret: derive the key from this master secret with the C HKDF and require\n"
            "                  it to equal --key (cross-checks the gateway's derive-key)\n");
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    unsigned long port = 0, model = 0x10, device = 1, frames = 10000, lost = 50, timeout_s = 120;
    int tag32 = 0, have_key = 0, i;
    const char *check_secret = NULL;
    ngd_client_config_t cfg;
    ngd_client_callbacks_t cb;
    static ngd_client_t client;
    ngd_bsd_link_t link;
    uint64_t t0, t1, deadline;

    memset(&cfg, 0, sizeof cfg);
    for (i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--tag32") == 0) { tag32 = 1; continue; }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) { usage(); return 0; }
        if (v == NULL) { usage(); return 2; }
        if (strcmp(argv[i], "--host") == 0) host = v;
        else if (strcmp(argv[i], "--port") == 0) port = strtoul(v, NULL, 0);
        else if (strcmp(argv[i], "--model") == 0) model = strtoul(v, NULL, 0);
        else if (strcmp(argv[i], "--device") == 0) device = strtoul(v, NULL, 0);
        else if (strcmp(argv[i], "--frames") == 0) frames = strtoul(v, NULL, 0);
        else if (strcmp(argv[i], "--lost") == 0) lost = strtoul(v, NULL, 0);
        else if (strcmp(argv[i], "--timeout") == 0) timeout_s = strtoul(v, NULL, 0);
        else if (strcmp(argv[i], "--key") == 0) have_key = unhex(v, cfg.key, sizeof cfg.key) == 0;
        else if (strcmp(argv[i], "--check-secret") == 0) check_secret = v;
        else { usage(); return 2; }
        i++;
    }
    if (port == 0 || port > 65535 || !have_key || model > 0xFF || lost > NGD_CLIENT_RING_SLOTS) {
        fprintf(stderr, "interop: need --port, --key (64 hex digits), --model <= 0xff, --lost <= %u\n",
                (unsigned)NGD_CLIENT_RING_SLOTS);
        return 2;
    }
    if (check_secret != NULL) {
        uint8_t secret[128], derived[NGD_KEY_LEN];
        size_t secret_len = strlen(check_secret) / 2;
        if (secret_len > sizeof secret || unhex(check_secret, secret, secret_len) != 0 ||
            ngd_derive_device_key(secret, secret_len, (uint8_t)model, (uint32_t)device, derived) != 0) {
            fprintf(stderr, "interop: --check-secret is not a usable master secret\n");
            return 2;
        }
        if (memcmp(derived, cfg.key, sizeof derived) != 0) {
            fprintf(stderr, "interop: FAIL: C HKDF and the gateway's derive-key disagree\n");
            return 1;
        }
        printf("key: C HKDF-SHA256 derivation matches the gateway's derive-key\n");
    }
    cfg.model_id = (uint8_t)model;
    cfg.device_id = (uint32_t)device;
    cfg.tag32 = (uint8_t)tag32;
    cfg.seq_block = 64;
    cfg.ack_timeout_ms = 5000;
    cfg.backoff_min_ms = 50;
    cfg.backoff_max_ms = 1000;
    memset(&cb, 0, sizeof cb);
    cb.persist_seq = persist;
    cb.on_result = on_result;
    if (ngd_client_init(&client, &cfg, &cb) != NGD_OK) {
        fprintf(stderr, "interop: client init failed\n");
        return 1;
    }
    ngd_bsd_link_init(&link, host, (uint16_t)port, now_ms);
    deadline = now_ms() + timeout_s * 1000u;

    t0 = now_ms();
    if (deliver(&client, &link, (uint32_t)frames, deadline) != 0) {
        return 1;
    }
    t1 = now_ms();
    printf("phase 1: %u OK, %u duplicate, %u stale, %u invalid of %lu frames in %.2f s "
           "(%.0f frames/s), %u retransmissions, %u seq persist writes\n",
           g_results.ok, g_results.duplicate, g_results.stale, g_results.invalid, frames,
           (double)(t1 - t0) / 1000.0, (double)frames * 1000.0 / (double)(t1 - t0 + 1),
           client.stats.retransmissions, g_persist_writes);
    if (g_results.ok != frames || g_results.duplicate + g_results.stale + g_results.invalid != 0) {
        fprintf(stderr, "interop: FAIL phase 1: expected %lu OK ACKs and nothing else\n", frames);
        return 1;
    }
    if (client.clock_valid == 0) {
        fprintf(stderr, "interop: FAIL: ACK timestamps did not set the client clock\n");
        return 1;
    }

    if (lose_acks(&client, &link, (uint32_t)lost, NGD_HEADER_LEN + 2 + (tag32 ? 32u : 16u),
                  deadline) != 0) {
        return 1;
    }
    if (deliver(&client, &link, 0, deadline) != 0) { /* reconnect, retransmit, settle */
        return 1;
    }
    printf("phase 2: %u duplicate of %lu retransmitted after a forced disconnect, "
           "%u retransmissions, %u connects\n",
           g_results.duplicate, lost, client.stats.retransmissions, client.stats.connects);
    if (g_results.duplicate != lost || g_results.ok != frames ||
        client.stats.retransmissions != lost) {
        fprintf(stderr, "interop: FAIL phase 2: expected %lu DUPLICATE ACKs\n", lost);
        return 1;
    }
    ngd_bsd_close(&link);
    printf("interop: PASS\n");
    return 0;
}
