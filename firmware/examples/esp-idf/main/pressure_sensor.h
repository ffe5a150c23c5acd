/* Pressure sensor reading (STUB: replace with your sensor driver, e.g. an I2C BMP280). */
#ifndef PRESSURE_SENSOR_H
#define PRESSURE_SENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float pressure_hpa;
    float temperature_c;
    uint16_t battery_mv;
} pressure_sample_t;

/* Fills *out; 0 on success. The stub returns a slowly varying synthetic value. */
int pressure_sensor_read(pressure_sample_t *out);

/* CBOR map {"p": float32, "t": float32, "bat": uint}; returns the length, 0 if it did not fit. */
size_t pressure_sample_encode(const pressure_sample_t *sample, uint8_t *buf, size_t cap);

#endif /* PRESSURE_SENSOR_H */
