/* Portable part of the STM32 example: sensor STUB + telemetry encoding (no HAL headers, so it is
 * also cross-compiled by firmware/scripts/cross-build.sh). */
#include "gas_sensor.h"

#include "nanogridata/ngd_cbor.h"
#include "nanogridata/ngd_frame.h"

int gas_sensor_read(gas_sample_t *out)
{
    /* STUB: synthetic values instead of an ADC conversion. */
    static uint16_t tick;
    tick++;
    out->co2_ppm = (uint16_t)(420u + tick % 50u);
    out->voc_ppb = 120;
    out->temp_centi_c = 2215;
    out->alarm = out->co2_ppm > 1000u;
    return 0;
}

size_t gas_sample_encode(const gas_sample_t *sample, uint8_t *buf, size_t cap)
{
    ngd_cbor_t enc;
    size_t len = 0;
    ngd_cbor_init(&enc, buf, cap);
    ngd_cbor_map(&enc, 4);
    ngd_cbor_text_z(&enc, "co2");
    ngd_cbor_uint(&enc, sample->co2_ppm);
    ngd_cbor_text_z(&enc, "voc");
    ngd_cbor_uint(&enc, sample->voc_ppb);
    ngd_cbor_text_z(&enc, "t");
    ngd_cbor_int(&enc, sample->temp_centi_c);
    ngd_cbor_text_z(&enc, "alarm");
    ngd_cbor_bool(&enc, sample->alarm);
    return ngd_cbor_finish(&enc, &len) == NGD_OK ? len : 0;
}
