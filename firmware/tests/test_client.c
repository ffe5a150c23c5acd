/* Client state machine scenarios: every step is driven by hand (sans-IO), with ACKs built and
 * tagged as the gateway would. */
#include "nanogridata/ngd_client.h"
#include "nanogridata/ngd_frame.h"
#include "ngd_test.h"

#define MODEL 0x10
#define DEVICE 0x00C0FFEEu
#define GW_TIME 1763800000000ull

static uint32_t g_persisted;
static int g_persist_calls;
static int g_persist_fail;
static uint32_t g_result_seq[64];
static uint8_t g_result_status[64];
static int g_results;

static int persist(void *user, uint32_t next_seq)
{
    (void)user;
    g_persist_calls++;
    if (g_persist_fail) {
        return -1;
    }
    g_persisted = next_seq;
    return 0;
}

static void on_result(void *user, uint32_t seq, uint8_t status)
{
    (void)user;
    if (g_results < 64) {
        g_result_seq[g_results] = seq;
        g_result_status[g_results] = status;
    }
    g_results++;
}

static ngd_client_config_t base_config(void)
{
    ngd_client_config_t cfg;
    size_t i;
    memset(&cfg, 0, sizeof cfg);
    cfg.model_id = MODEL;
    cfg.device_id = DEVICE;
    for (i = 0; i < NGD_KEY_LEN; i++) {
        cfg.key[i] = (uint8_t)(0xA0u + i);
    }
    cfg.seq_block = 4;
    cfg.ack_timeout_ms = 1000;
    cfg.backoff_min_ms = 100;
    cfg.backoff_max_ms = 1000;
    cfg.busy_min_ms = 50;
    cfg.busy_max_ms = 300;
    return cfg;
}

static void setup(ngd_client_t *c, const ngd_client_config_t *cfg)
{
    ngd_client_callbacks_t cb;
    memset(&cb, 0, sizeof cb);
    cb.persist_seq = persist;
    cb.on_result = on_result;
    g_persisted = 0;
    g_persist_calls = 0;
    g_persist_fail = 0;
    g_results = 0;
    CHECK_EQ(ngd_client_init(c, cfg, &cb), NGD_OK);
}

/* The gateway's ACK for seq, tagged with the device key. */
static size_t gateway_ack(const ngd_client_t *c, uint32_t seq, uint8_t status, uint64_t ts,
                          uint8_t *out)
{
    ngd_header_t h;
    uint8_t payload[2] = {0x81, status};
    size_t len = 0;
    h.model_id = c->cfg.model_id;
    h.type = NGD_TYPE_ACK;
    h.flags = c->cfg.tag32 ? NGD_FLAG_TAG32 : 0;
    h.device_id = c->cfg.device_id;
    h.seq = seq;
    h.timestamp_ms = ts;
    CHECK_EQ(ngd_frame_build(&h, payload, 2, c->cfg.key, out, NGD_ACK_MAX_LEN, &len), NGD_OK);
    return len;
}

static int ack(ngd_client_t *c, uint32_t seq, uint8_t status, uint64_t now)
{
    uint8_t buf[NGD_ACK_MAX_LEN];
    size_t len = gateway_ack(c, seq, status, GW_TIME + now, buf);
    return ngd_client_on_data(c, buf, len, now);
}

static void connect_now(ngd_client_t *c, uint64_t now)
{
    ngd_action_t a;
    ngd_client_poll(c, now, &a);
    CHECK_EQ(a.kind, NGD_ACTION_CONNECT);
    ngd_client_on_connected(c, now);
}

static uint32_t queue(ngd_client_t *c, uint64_t now)
{
    uint32_t seq = 0;
    static const uint8_t payload[] = {0xa1, 0x61, 0x70, 0x18, 0x64}; /* {"p": 100} */
    CHECK_EQ(ngd_client_queue(c, NGD_TYPE_TELEMETRY, payload, sizeof payload, now, &seq), NGD_OK);
    return seq;
}

/* Poll once, expect a SEND, return the frame's sequence number. */
static uint32_t expect_send(ngd_client_t *c, uint64_t now, uint8_t *copy, size_t *copy_len)
{
    ngd_action_t a;
    ngd_client_poll(c, now, &a);
    CHECK_EQ(a.kind, NGD_ACTION_SEND);
    if (a.kind != NGD_ACTION_SEND) {
        return 0;
    }
    if (copy != NULL) {
        memcpy(copy, a.data, a.len);
        *copy_len = a.len;
    }
    return ngd_get_be32(a.data + 12);
}

static void expect_idle(ngd_client_t *c, uint64_t now)
{
    ngd_action_t a;
    ngd_client_poll(c, now, &a);
    CHECK_EQ(a.kind, NGD_ACTION_NONE);
}

static void test_happy_path_and_clock(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    uint8_t frame[NGD_CLIENT_SLOT_BYTES];
    size_t len = 0;
    setup(&c, &cfg);
    CHECK_EQ(ngd_client_clock_ms(&c, 5), 0);
    connect_now(&c, 0);
    CHECK_EQ(queue(&c, 10), 1);
    CHECK_EQ(queue(&c, 10), 2);
    CHECK_EQ(expect_send(&c, 10, frame, &len), 1);
    CHECK(ngd_get_be64(frame + 16) == 0); /* no clock yet */
    CHECK_EQ(expect_send(&c, 10, NULL, NULL), 2);
    expect_idle(&c, 11);
    CHECK_EQ(ack(&c, 1, NGD_ACK_OK, 20), NGD_OK);
    CHECK_EQ(ack(&c, 2, NGD_ACK_OK, 20), NGD_OK);
    CHECK_EQ(ngd_client_unacked(&c), 0);
    CHECK_EQ(c.stats.acks_ok, 2);
    CHECK_EQ(g_results, 2);
    CHECK_EQ(g_result_seq[1], 2);
    CHECK_EQ(g_result_status[1], NGD_ACK_OK);
    /* Clock set from the ACK timestamp: gateway time at now=20 was GW_TIME+20. */
    CHECK(ngd_client_clock_ms(&c, 520) == GW_TIME + 520);
    CHECK_EQ(queue(&c, 520), 3);
    CHECK_EQ(expect_send(&c, 520, frame, &len), 3);
    CHECK(ngd_get_be64(frame + 16) == GW_TIME + 520);
    CHECK_EQ(len, 24 + 5 + 16);
}

static void test_lost_ack_timeout_then_duplicate(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    uint8_t first[NGD_CLIENT_SLOT_BYTES], again[NGD_CLIENT_SLOT_BYTES];
    size_t first_len = 0, again_len = 0;
    ngd_action_t a;
    setup(&c, &cfg);
    connect_now(&c, 0);
    queue(&c, 0);
    queue(&c, 0);
    CHECK_EQ(expect_send(&c, 0, NULL, NULL), 1);
    CHECK_EQ(expect_send(&c, 0, first, &first_len), 2);
    CHECK_EQ(ack(&c, 1, NGD_ACK_OK, 5), NGD_OK);
    /* The ACK for 2 is lost. Before the timeout: wait, with the deadline as wake-up time. */
    ngd_client_poll(&c, 999, &a);
    CHECK_EQ(a.kind, NGD_ACTION_NONE);
    CHECK(a.wake_at_ms == 1000);
    ngd_client_poll(&c, 1000, &a);
    CHECK_EQ(a.kind, NGD_ACTION_DISCONNECT);
    CHECK_EQ(c.stats.ack_timeouts, 1);
    /* Back-off before reconnecting, then the same bytes go out again. */
    ngd_client_poll(&c, 1050, &a);
    CHECK_EQ(a.kind, NGD_ACTION_NONE);
    CHECK(a.wake_at_ms == 1100);
    connect_now(&c, 1100);
    CHECK_EQ(expect_send(&c, 1100, again, &again_len), 2);
    CHECK_BYTES(again, again_len, first, first_len);
    CHECK_EQ(ack(&c, 2, NGD_ACK_DUPLICATE, 1110), NGD_OK);
    CHECK_EQ(ngd_client_unacked(&c), 0);
    CHECK_EQ(c.stats.acks_duplicate, 1);
    CHECK_EQ(c.stats.retransmissions, 1);
    CHECK_EQ(g_result_status[1], NGD_ACK_DUPLICATE);
}

static void test_reconnect_retransmits_in_order(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    uint8_t sent[4][NGD_CLIENT_SLOT_BYTES], resent[NGD_CLIENT_SLOT_BYTES];
    size_t sent_len[4], resent_len = 0;
    uint32_t i;
    setup(&c, &cfg);
    connect_now(&c, 0);
    for (i = 0; i < 4; i++) {
        queue(&c, 0);
        CHECK_EQ(expect_send(&c, 0, sent[i], &sent_len[i]), i + 1);
    }
    CHECK_EQ(ack(&c, 2, NGD_ACK_OK, 1), NGD_OK); /* out of order: 2 done, 1, 3, 4 in flight */
    ngd_client_on_disconnected(&c, 2);
    expect_idle(&c, 2);
    connect_now(&c, 102);
    CHECK_EQ(expect_send(&c, 102, resent, &resent_len), 1);
    CHECK_BYTES(resent, resent_len, sent[0], sent_len[0]);
    CHECK_EQ(expect_send(&c, 102, resent, &resent_len), 3);
    CHECK_BYTES(resent, resent_len, sent[2], sent_len[2]);
    CHECK_EQ(expect_send(&c, 102, resent, &resent_len), 4);
    CHECK_BYTES(resent, resent_len, sent[3], sent_len[3]);
    expect_idle(&c, 102);
    CHECK_EQ(c.stats.retransmissions, 3);
    CHECK_EQ(c.stats.disconnects, 1);
}

static void test_busy_backoff(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    ngd_action_t a;
    setup(&c, &cfg);
    connect_now(&c, 0);
    queue(&c, 0);
    CHECK_EQ(expect_send(&c, 0, NULL, NULL), 1);
    CHECK_EQ(ack(&c, 1, NGD_ACK_BUSY, 10), NGD_OK);
    CHECK_EQ(ngd_client_unacked(&c), 1);
    ngd_client_poll(&c, 59, &a);
    CHECK_EQ(a.kind, NGD_ACTION_NONE);
    CHECK(a.wake_at_ms == 60); /* busy_min 50 ms after the BUSY at t=10 */
    CHECK_EQ(expect_send(&c, 60, NULL, NULL), 1);
    CHECK_EQ(ack(&c, 1, NGD_ACK_BUSY, 70), NGD_OK);
    ngd_client_poll(&c, 169, &a);
    CHECK(a.kind == NGD_ACTION_NONE && a.wake_at_ms == 170); /* doubled: 100 */
    CHECK_EQ(expect_send(&c, 170, NULL, NULL), 1);
    CHECK_EQ(ack(&c, 1, NGD_ACK_BUSY, 170), NGD_OK);
    CHECK_EQ(ack(&c, 1, NGD_ACK_BUSY, 170), NGD_OK); /* not in flight: unexpected, ignored */
    CHECK_EQ(c.stats.acks_unexpected, 1);
    ngd_client_poll(&c, 171, &a);
    CHECK(a.kind == NGD_ACTION_NONE && a.wake_at_ms == 370); /* 200 */
    CHECK_EQ(expect_send(&c, 370, NULL, NULL), 1);
    CHECK_EQ(ack(&c, 1, NGD_ACK_BUSY, 370), NGD_OK);
    ngd_client_poll(&c, 371, &a);
    CHECK(a.kind == NGD_ACTION_NONE && a.wake_at_ms == 670); /* capped at busy_max 300 */
    CHECK_EQ(expect_send(&c, 670, NULL, NULL), 1);
    CHECK_EQ(ack(&c, 1, NGD_ACK_OK, 680), NGD_OK);
    CHECK_EQ(c.stats.acks_busy, 4);
    CHECK_EQ(c.busy_delay_ms, 0); /* reset by OK */
    CHECK_EQ(ngd_client_unacked(&c), 0);
}

static void test_ring_full_and_drop_oldest(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    uint32_t i, seq = 0;
    static const uint8_t payload[] = {0xa0};
    setup(&c, &cfg);
    for (i = 0; i < NGD_CLIENT_RING_SLOTS; i++) {
        queue(&c, 0);
    }
    CHECK_EQ(ngd_client_queue(&c, NGD_TYPE_TELEMETRY, payload, 1, 0, &seq), NGD_ERR_FULL);
    CHECK_EQ(ngd_client_unacked(&c), NGD_CLIENT_RING_SLOTS);
    /* An ACK for a frame in the middle frees nothing until the oldest goes. */
    connect_now(&c, 0);
    for (i = 0; i < NGD_CLIENT_RING_SLOTS; i++) {
        CHECK_EQ(expect_send(&c, 0, NULL, NULL), i + 1);
    }
    CHECK_EQ(ack(&c, 2, NGD_ACK_OK, 1), NGD_OK);
    CHECK_EQ(ngd_client_queue(&c, NGD_TYPE_TELEMETRY, payload, 1, 1, &seq), NGD_ERR_FULL);
    CHECK_EQ(ngd_client_drop_oldest(&c), 1); /* drops 1; the hole of 2 is reclaimed too */
    CHECK_EQ(ngd_client_unacked(&c), NGD_CLIENT_RING_SLOTS - 2);
    CHECK_EQ(ngd_client_queue(&c, NGD_TYPE_TELEMETRY, payload, 1, 1, &seq), NGD_OK);
    CHECK_EQ(seq, NGD_CLIENT_RING_SLOTS + 1);
    CHECK_EQ(ngd_client_queue(&c, NGD_TYPE_TELEMETRY, payload, 1, 1, &seq), NGD_OK);
    CHECK_EQ(ngd_client_queue(&c, NGD_TYPE_TELEMETRY, payload, 1, 1, &seq), NGD_ERR_FULL);
    /* Oversized payloads and ACK-typed frames are refused. */
    {
        static uint8_t big[NGD_CLIENT_MAX_PAYLOAD + 1];
        ngd_client_drop_oldest(&c);
        CHECK_EQ(ngd_client_queue(&c, NGD_TYPE_TELEMETRY, big, sizeof big, 1, &seq),
                 NGD_ERR_TOO_LARGE);
        CHECK_EQ(ngd_client_queue(&c, NGD_TYPE_ACK, payload, 1, 1, &seq), NGD_ERR_ARG);
    }
    while (ngd_client_drop_oldest(&c)) {
    }
    CHECK_EQ(ngd_client_unacked(&c), 0);
    CHECK_EQ(ngd_client_drop_oldest(&c), 0);
}

static void test_sequence_persistence(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    uint32_t i;
    static const uint8_t payload[] = {0xa0};
    uint32_t seq = 0;
    setup(&c, &cfg);
    queue(&c, 0); /* seq 1: reserves 1..4, persists 5 */
    CHECK_EQ(g_persist_calls, 1);
    CHECK_EQ(g_persisted, 5);
    for (i = 0; i < 3; i++) {
        queue(&c, 0); /* 2, 3, 4: inside the block */
    }
    CHECK_EQ(g_persist_calls, 1);
    while (ngd_client_drop_oldest(&c)) {
    }
    g_persist_fail = 1; /* flash write fails: seq 5 must not be used */
    CHECK_EQ(ngd_client_queue(&c, NGD_TYPE_TELEMETRY, payload, 1, 0, &seq), NGD_ERR_PERSIST);
    CHECK_EQ(ngd_client_unacked(&c), 0);
    g_persist_fail = 0;
    CHECK_EQ(queue(&c, 0), 5);
    CHECK_EQ(g_persisted, 9);
    /* Reboot: the device restarts from the persisted value, never below an used number. */
    cfg.seq_start = g_persisted;
    setup(&c, &cfg);
    CHECK_EQ(queue(&c, 0), 9);
    CHECK_EQ(g_persisted, 13);
}

static void test_sequence_exhaustion(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    static const uint8_t payload[] = {0xa0};
    uint32_t seq = 0;
    cfg.seq_start = UINT32_MAX - 2;
    setup(&c, &cfg);
    CHECK_EQ(queue(&c, 0), UINT32_MAX - 2);
    CHECK_EQ(g_persisted, UINT32_MAX);
    CHECK_EQ(queue(&c, 0), UINT32_MAX - 1);
    CHECK_EQ(ngd_client_queue(&c, NGD_TYPE_TELEMETRY, payload, 1, 0, &seq), NGD_ERR_SEQ_EXHAUSTED);
}

static void test_reconnect_backoff_is_capped_and_reset(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    ngd_action_t a;
    uint64_t now = 0;
    static const uint32_t expected[] = {100, 200, 400, 800, 1000, 1000};
    size_t i;
    setup(&c, &cfg);
    for (i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        ngd_client_poll(&c, now, &a);
        CHECK_EQ(a.kind, NGD_ACTION_CONNECT);
        ngd_client_poll(&c, now, &a);
        CHECK_EQ(a.kind, NGD_ACTION_NONE); /* waiting for the transport's verdict */
        ngd_client_on_connect_failed(&c, now);
        ngd_client_poll(&c, now, &a);
        CHECK_EQ(a.kind, NGD_ACTION_NONE);
        CHECK_EQ(a.wake_at_ms - now, expected[i]);
        now = a.wake_at_ms;
    }
    /* A connection that never gets a verified ACK does not reset the back-off... */
    connect_now(&c, now);
    ngd_client_on_disconnected(&c, now);
    ngd_client_poll(&c, now, &a);
    CHECK_EQ(a.wake_at_ms - now, 1000);
    /* ...a verified ACK does. */
    now = a.wake_at_ms;
    connect_now(&c, now);
    queue(&c, now);
    CHECK_EQ(expect_send(&c, now, NULL, NULL), 1);
    CHECK_EQ(ack(&c, 1, NGD_ACK_OK, now), NGD_OK);
    ngd_client_on_disconnected(&c, now);
    ngd_client_poll(&c, now, &a);
    CHECK_EQ(a.wake_at_ms - now, 100);
}

static uint32_t fixed_random(void *user)
{
    return *(uint32_t *)user;
}

static void test_reconnect_jitter_bounds(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    ngd_client_callbacks_t cb;
    ngd_action_t a;
    uint32_t r;
    static const uint32_t randoms[] = {0, 1, 25, 50, 51, 0xFFFFFFFFu};
    size_t i;
    for (i = 0; i < sizeof randoms / sizeof randoms[0]; i++) {
        memset(&cb, 0, sizeof cb);
        r = randoms[i];
        cb.persist_seq = persist;
        cb.random = fixed_random;
        cb.user = &r;
        CHECK_EQ(ngd_client_init(&c, &cfg, &cb), NGD_OK);
        ngd_client_poll(&c, 0, &a);
        ngd_client_on_connect_failed(&c, 0);
        ngd_client_poll(&c, 0, &a);
        CHECK(a.wake_at_ms >= 50 && a.wake_at_ms <= 100);
    }
}

static void test_forged_ack_drops_connection(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    ngd_client_t impostor;
    ngd_client_config_t other = base_config();
    uint8_t buf[NGD_ACK_MAX_LEN];
    size_t len;
    ngd_action_t a;
    setup(&c, &cfg);
    other.key[0] ^= 0xFF;
    setup(&impostor, &other);
    setup(&c, &cfg);
    connect_now(&c, 0);
    queue(&c, 0);
    CHECK_EQ(expect_send(&c, 0, NULL, NULL), 1);
    len = gateway_ack(&impostor, 1, NGD_ACK_OK, GW_TIME, buf);
    CHECK_EQ(ngd_client_on_data(&c, buf, len, 1), NGD_ERR_MAC);
    CHECK_EQ(c.stats.acks_rejected, 1);
    CHECK_EQ(ngd_client_unacked(&c), 1); /* nothing was dropped on a forged word */
    CHECK_EQ(ngd_client_clock_ms(&c, 1), 0); /* nor the clock set */
    ngd_client_poll(&c, 1, &a);
    CHECK_EQ(a.kind, NGD_ACTION_DISCONNECT);
    /* Authentic under our key but for another device (e.g. a key shared by mistake). */
    connect_now(&c, 200);
    CHECK_EQ(expect_send(&c, 200, NULL, NULL), 1);
    impostor = c;
    impostor.cfg.device_id = DEVICE + 1;
    len = gateway_ack(&impostor, 1, NGD_ACK_OK, GW_TIME, buf);
    CHECK_EQ(ngd_client_on_data(&c, buf, len, 201), NGD_ERR_MISMATCH);
    ngd_client_poll(&c, 201, &a);
    CHECK_EQ(a.kind, NGD_ACTION_DISCONNECT);
    /* A 32-byte-tag ACK for a 16-byte-tag device is a mismatch too. */
    connect_now(&c, 600);
    CHECK_EQ(expect_send(&c, 600, NULL, NULL), 1);
    impostor = c;
    impostor.cfg.tag32 = 1;
    len = gateway_ack(&impostor, 1, NGD_ACK_OK, GW_TIME, buf);
    CHECK_EQ(ngd_client_on_data(&c, buf, len, 601), NGD_ERR_MISMATCH);
    ngd_client_poll(&c, 601, &a);
    CHECK_EQ(a.kind, NGD_ACTION_DISCONNECT);
    /* Garbage from the stream. */
    connect_now(&c, 1500);
    CHECK_EQ(ngd_client_on_data(&c, (const uint8_t *)"HTTP/1.1 400", 12, 1501), NGD_ERR_MAGIC);
    CHECK_EQ(c.stats.acks_rejected, 4);
    CHECK_EQ(ngd_client_unacked(&c), 1);
}

static void test_acks_split_and_coalesced(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    uint8_t stream[3 * NGD_ACK_MAX_LEN];
    size_t len = 0, i;
    cfg.tag32 = 1;
    setup(&c, &cfg);
    connect_now(&c, 0);
    for (i = 0; i < 6; i++) {
        queue(&c, 0);
        expect_send(&c, 0, NULL, NULL);
    }
    len += gateway_ack(&c, 1, NGD_ACK_OK, GW_TIME, stream + len);
    len += gateway_ack(&c, 2, NGD_ACK_STALE, GW_TIME, stream + len);
    len += gateway_ack(&c, 3, NGD_ACK_INVALID, GW_TIME, stream + len);
    for (i = 0; i < len; i++) { /* one byte at a time */
        CHECK_EQ(ngd_client_on_data(&c, stream + i, 1, 1), NGD_OK);
    }
    CHECK_EQ(ngd_client_unacked(&c), 3);
    CHECK_EQ(c.stats.acks_ok, 1);
    CHECK_EQ(c.stats.acks_stale, 1);
    CHECK_EQ(c.stats.acks_invalid, 1);
    CHECK_EQ(g_result_status[2], NGD_ACK_INVALID);
    len = 0;
    len += gateway_ack(&c, 4, NGD_ACK_OK, GW_TIME, stream + len);
    len += gateway_ack(&c, 5, NGD_ACK_DUPLICATE, GW_TIME, stream + len);
    len += gateway_ack(&c, 6, NGD_ACK_OK, GW_TIME, stream + len);
    CHECK_EQ(ngd_client_on_data(&c, stream, len, 2), NGD_OK); /* all in one read */
    CHECK_EQ(ngd_client_unacked(&c), 0);
    CHECK_EQ(c.stats.acks_ok, 3);
    CHECK_EQ(c.stats.acks_duplicate, 1);
    /* Two and a half ACKs, then the rest. */
    for (i = 0; i < 3; i++) {
        queue(&c, 3);
        expect_send(&c, 3, NULL, NULL);
    }
    len = 0;
    len += gateway_ack(&c, 7, NGD_ACK_OK, GW_TIME, stream + len);
    len += gateway_ack(&c, 8, NGD_ACK_OK, GW_TIME, stream + len);
    len += gateway_ack(&c, 9, NGD_ACK_OK, GW_TIME, stream + len);
    CHECK_EQ(ngd_client_on_data(&c, stream, len - 20, 4), NGD_OK);
    CHECK_EQ(ngd_client_unacked(&c), 1);
    CHECK_EQ(ngd_client_on_data(&c, stream + len - 20, 20, 4), NGD_OK);
    CHECK_EQ(ngd_client_unacked(&c), 0);
}

static void test_unknown_status_drops_connection(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    ngd_action_t a;
    setup(&c, &cfg);
    connect_now(&c, 0);
    queue(&c, 0);
    expect_send(&c, 0, NULL, NULL);
    CHECK_EQ(ack(&c, 1, 7, 1), NGD_ERR_PAYLOAD);
    CHECK_EQ(ngd_client_unacked(&c), 1);
    ngd_client_poll(&c, 1, &a);
    CHECK_EQ(a.kind, NGD_ACTION_DISCONNECT);
}

static void test_init_rejects_missing_persistence(void)
{
    ngd_client_t c;
    ngd_client_config_t cfg = base_config();
    ngd_client_callbacks_t cb;
    memset(&cb, 0, sizeof cb);
    CHECK_EQ(ngd_client_init(&c, &cfg, &cb), NGD_ERR_ARG);
    CHECK_EQ(ngd_client_init(NULL, &cfg, &cb), NGD_ERR_ARG);
}

TEST_MAIN_BEGIN
RUN_TEST(test_happy_path_and_clock);
RUN_TEST(test_lost_ack_timeout_then_duplicate);
RUN_TEST(test_reconnect_retransmits_in_order);
RUN_TEST(test_busy_backoff);
RUN_TEST(test_ring_full_and_drop_oldest);
RUN_TEST(test_sequence_persistence);
RUN_TEST(test_sequence_exhaustion);
RUN_TEST(test_reconnect_backoff_is_capped_and_reset);
RUN_TEST(test_reconnect_jitter_bounds);
RUN_TEST(test_forged_ack_drops_connection);
RUN_TEST(test_acks_split_and_coalesced);
RUN_TEST(test_unknown_status_drops_connection);
RUN_TEST(test_init_rejects_missing_persistence);
TEST_MAIN_END
