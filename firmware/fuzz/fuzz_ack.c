/*
 * libFuzzer target for the ACK path: ngd_ack_parse() and the client's stream reassembly.
 *
 * Invariant checked on every input: an ACK is accepted only if it is byte-identical to the ACK
 * the library itself builds from the parsed fields with the device key (i.e. authentic and
 * canonical). Any violation, crash, overflow or UB aborts.
 *
 * Inputs starting with a byte < 0x40 are "authentic mode": the rest is wrapped into a correctly
 * tagged ACK so the fuzzer reaches the checks that run after the MAC (it cannot forge HMACs).
 */
#include <stdlib.h>
#include <string.h>

#include "nanogridata/ngd_client.h"
#include "nanogridata/ngd_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t FUZZ_KEY[NGD_KEY_LEN] = {
    0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
    0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a};

static int persist_ok(void *user, uint32_t next_seq)
{
    (void)user;
    (void)next_seq;
    return 0;
}

static void check_parse(const uint8_t *buf, size_t len)
{
    ngd_ack_t ack;
    size_t used = 12345;
    int rc = ngd_ack_parse(buf, len, FUZZ_KEY, &ack, &used);
    if (used > len) {
        abort();
    }
    if (rc == NGD_OK) {
        uint8_t rebuilt[NGD_ACK_MAX_LEN];
        uint8_t payload[2];
        size_t rebuilt_len = 0;
        payload[0] = 0x81;
        payload[1] = ack.status;
        if (ngd_frame_build(&ack.header, payload, 2, FUZZ_KEY, rebuilt, sizeof rebuilt,
                            &rebuilt_len) != NGD_OK ||
            rebuilt_len != used || memcmp(rebuilt, buf, used) != 0) {
            abort(); /* accepted something the gateway could not have sent */
        }
    } else if (rc == NGD_ERR_NEED_MORE && used != 0) {
        abort();
    }
}

/* Feed the bytes to a connected client in chunks chosen by the input itself. */
static void check_client(const uint8_t *data, size_t size)
{
    static ngd_client_t c; /* static: keeps the large struct off the fuzzer's stack */
    ngd_client_config_t cfg;
    ngd_client_callbacks_t cb;
    ngd_action_t a;
    size_t pos = 0;
    uint64_t now = 1;

    memset(&cfg, 0, sizeof cfg);
    memset(&cb, 0, sizeof cb);
    cfg.model_id = size > 1 ? data[1] : 0;
    cfg.device_id = 7;
    memcpy(cfg.key, FUZZ_KEY, sizeof cfg.key);
    cb.persist_seq = persist_ok;
    if (ngd_client_init(&c, &cfg, &cb) != NGD_OK) {
        abort();
    }
    ngd_client_poll(&c, now, &a);
    ngd_client_on_connected(&c, now);
    (void)ngd_client_queue(&c, NGD_TYPE_TELEMETRY, (const uint8_t *)"\xa0", 1, now, NULL);
    ngd_client_poll(&c, now, &a);
    while (pos < size) {
        size_t chunk = 1u + data[pos] % 61u;
        if (chunk > size - pos) {
            chunk = size - pos;
        }
        (void)ngd_client_on_data(&c, data + pos, chunk, ++now);
        ngd_client_poll(&c, now, &a);
        if (a.kind == NGD_ACTION_CONNECT) {
            ngd_client_on_connected(&c, now);
        }
        pos += chunk;
    }
    if (ngd_client_unacked(&c) > NGD_CLIENT_RING_SLOTS || c.rx_len > sizeof c.rx) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 12 && data[0] < 0x40) {
        /* Authentic mode: header fields and up to 4 payload bytes from the input, tag correct. */
        ngd_header_t h;
        uint8_t frame[NGD_HEADER_LEN + 4 + NGD_TAG_LEN_LONG];
        size_t payload_len = data[0] % 5u, len = 0;
        h.model_id = data[1];
        h.type = (data[2] & 1u) ? NGD_TYPE_ACK : data[2];
        h.flags = data[3] & NGD_FLAG_TAG32;
        h.device_id = ngd_get_be32(data + 4);
        h.seq = ngd_get_be32(data + 8);
        h.timestamp_ms = data[0];
        if (size - 12 < payload_len) {
            payload_len = size - 12;
        }
        if (ngd_frame_build(&h, data + 12, payload_len, FUZZ_KEY, frame, sizeof frame, &len) !=
            NGD_OK) {
            abort();
        }
        check_parse(frame, len);
        check_client(frame, len);
        return 0;
    }
    check_parse(data, size);
    check_client(data, size);
    return 0;
}
