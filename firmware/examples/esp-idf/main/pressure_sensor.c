/* Portable part of the ESP-IDF example: sensor STUB + telemetry encoding (no ESP-IDF headers,
 * so it is also cross-compiled for RV32IMC and Cortex-M4 by firmware/scripts/cross-build.sh). */
#include "pressure_sensor.h"

#include "nanogridata/ngd_cbor.h"
#include "nanogridata/ngd_frame.h"

int pressure_sensor_read(pressure_sample_t *out)
{
    /* STUB: a deterministic ramp instead of a real I2C/SPI read. */
    static uint32_t tick;
    tick++;
    out->pressure_hpa = 1013.25f + (float)(tick % 40u) * 0.05f;
    out->temperature_c = 21.5f;
    out->battery_mv = 3712;
    return 0;
}

size_t pressure_sample_encode(const pressure_sample_t *sample, uint8_t *buf, size_t cap)
{
    ngd_cbor_t enc;
    size_t len = 0;
    ngd_cbor_init(&enc, buf, cap);
    ngd_cbor_map(&enc, 3);
    ngd_cbor_text_z(&enc, "p");
    ngd_cbor_float32(&enc, sample->pressure_hpa);
    ngd_cbor_text_z(&enc, "t");
    ngd_cbor_float32(&enc, sample->temperature_c);
    ngd_cbor_text_z(&enc, "bat");
    ngd_cbor_uint(&enc, sample->battery_mv);
    return ngd_cbor_finish(&enc, &len) == NGD_OK ? len : 0;
}
