/*
 * What an ASIC / bare-metal integration provides to the example: a byte link to the gateway
 * (e.g. a UART to a cellular/Ethernet bridge that holds the TCP connection), a millisecond
 * timer, 4 bytes of non-volatile memory for the sequence number, and the sensor.
 * asic_port_template.c implements these against a made-up register map: replace it.
 */
#ifndef ASIC_PORT_H
#define ASIC_PORT_H

#include <stddef.h>
#include <stdint.h>

uint64_t asic_millis(void);                          /* monotonic, never wraps in practice */
void asic_wait_until(uint64_t deadline_ms);          /* sleep (WFI) until deadline or an IRQ */
int asic_link_open(void);                            /* 0 when the transport is up */
void asic_link_close(void);
int asic_link_write(const uint8_t *data, size_t len); /* blocking; 0 on success */
int asic_link_read(uint8_t *buf, size_t cap);         /* non-blocking: >0 bytes, 0 none, <0 lost */
int asic_nvm_load_u32(uint32_t *value);               /* 0 on success */
int asic_nvm_store_u32(uint32_t value);               /* 0 once durable */
uint32_t asic_device_id(void);                        /* from OTP/efuses */
const uint8_t *asic_device_key(void);                 /* 32 bytes from OTP/secure storage */
int asic_sensor_read(int32_t *pressure_pa, int16_t *temp_centi_c, uint16_t *supply_mv);

#endif /* ASIC_PORT_H */
