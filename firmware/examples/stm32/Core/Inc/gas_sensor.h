/* Gas sensor reading (STUB: replace with your ADC/I2C driver). */
#ifndef GAS_SENSOR_H
#define GAS_SENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint16_t co2_ppm;
    uint16_t voc_ppb;
    int16_t temp_centi_c;
    uint8_t alarm;
} gas_sample_t;

int gas_sensor_read(gas_sample_t *out);
/* CBOR map {"co2": uint, "voc": uint, "t": int, "alarm": bool}; 0 if it did not fit. */
size_t gas_sample_encode(const gas_sample_t *sample, uint8_t *buf, size_t cap);

#endif /* GAS_SENSOR_H */
