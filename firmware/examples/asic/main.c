/*
 * Bare "ASIC" example: only the core library and the builtin SHA-256/HMAC, no RTOS, no libc
 * beyond string.h. A multi-sensor (model 0x30) reads every 10 s and delivers through the client.
 */
#include <string.h>

#include "asic_port.h"
#include "nanogridata/ngd_cbor.h"
#include "nanogridata/ngd_client.h"

#define MODEL_ASIC_MULTI_SENSOR 0x30u
#define SAMPLE_PERIOD_MS 10000u

static ngd_client_t g_client; /* the only RAM the library needs, owned here */

static int persist_seq(void *user, uint32_t next_seq)
{
    (void)user;
    return asic_nvm_store_u32(next_seq);
}

static size_t encode_sample(uint8_t *buf, size_t cap)
{
    int32_t pressure_pa = 0;
    int16_t temp_centi = 0;
    uint16_t supply_mv = 0;
    ngd_cbor_t enc;
    size_t len = 0;
    if (asic_sensor_read(&pressure_pa, &temp_centi, &supply_mv) != 0) {
        return 0;
    }
    ngd_cbor_init(&enc, buf, cap);
    ngd_cbor_map(&enc, 3);
    ngd_cbor_text_z(&enc, "p");
    ngd_cbor_int(&enc, pressure_pa);
    ngd_cbor_text_z(&enc, "t");
    ngd_cbor_int(&enc, temp_centi);
    ngd_cbor_text_z(&enc, "mv");
    ngd_cbor_uint(&enc, supply_mv);
    return ngd_cbor_finish(&enc, &len) == NGD_OK ? len : 0;
}

int main(void)
{
    ngd_client_config_t cfg;
    ngd_client_callbacks_t cb;
    uint8_t payload[NGD_CLIENT_MAX_PAYLOAD];
    uint8_t rx[64];
    uint64_t next_sample = 0;

    memset(&cfg, 0, sizeof cfg);
    memset(&cb, 0, sizeof cb);
    cfg.model_id = MODEL_ASIC_MULTI_SENSOR;
    cfg.device_id = asic_device_id();
    memcpy(cfg.key, asic_device_key(), sizeof cfg.key);
    if (asic_nvm_load_u32(&cfg.seq_start) != 0) {
        cfg.seq_start = 0; /* blank NVM: first boot */
    }
    cb.persist_seq = persist_seq;
    if (ngd_client_init(&g_client, &cfg, &cb) != NGD_OK) {
        return 1;
    }
    for (;;) {
        uint64_t now = asic_millis();
        ngd_action_t act;
        int n;

        if (now >= next_sample) {
            size_t len = encode_sample(payload, sizeof payload);
            if (len != 0 &&
                ngd_client_queue(&g_client, NGD_TYPE_TELEMETRY, payload, len, now, NULL) ==
                    NGD_ERR_FULL) {
                /* Fresh data beats old: make room by dropping the oldest sample. */
                (void)ngd_client_drop_oldest(&g_client);
                (void)ngd_client_queue(&g_client, NGD_TYPE_TELEMETRY, payload, len, now, NULL);
            }
            next_sample = now + SAMPLE_PERIOD_MS;
        }
        ngd_client_poll(&g_client, now, &act);
        switch (act.kind) {
        case NGD_ACTION_CONNECT:
            if (asic_link_open() == 0) {
                ngd_client_on_connected(&g_client, now);
            } else {
                ngd_client_on_connect_failed(&g_client, now);
            }
            continue;
        case NGD_ACTION_SEND:
            if (asic_link_write(act.data, act.len) != 0) {
                asic_link_close();
                ngd_client_on_disconnected(&g_client, now);
            }
            continue;
        case NGD_ACTION_DISCONNECT:
            asic_link_close();
            continue;
        case NGD_ACTION_NONE:
            break;
        }
        n = asic_link_read(rx, sizeof rx);
        if (n > 0) {
            (void)ngd_client_on_data(&g_client, rx, (size_t)n, now);
            continue;
        }
        if (n < 0) {
            asic_link_close();
            ngd_client_on_disconnected(&g_client, now);
            continue;
        }
        asic_wait_until(act.wake_at_ms < next_sample ? act.wake_at_ms : next_sample);
    }
}
