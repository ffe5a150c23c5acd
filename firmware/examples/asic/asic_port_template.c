/*
 * TEMPLATE port for a hypothetical SoC: every register address below is a placeholder, NOT a real
 * chip's memory map. It exists so the example links into a complete image for the size report;
 * an ASIC team replaces each function with its own drivers.
 */
#include "asic_port.h"

#define REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))
/* Placeholder peripherals. */
#define TIMER_MS_LO REG32(0x40000000u)
#define TIMER_MS_HI REG32(0x40000004u)
#define UART_STATUS REG32(0x40001000u) /* bit0: rx ready, bit1: tx ready, bit2: link up */
#define UART_DATA REG32(0x40001004u)
#define UART_CTRL REG32(0x40001008u) /* bit0: open link */
#define NVM_SEQ REG32(0x40002000u)
#define NVM_BUSY REG32(0x40002004u)
#define SENSOR_P REG32(0x40003000u)
#define SENSOR_T REG32(0x40003004u)
#define SENSOR_MV REG32(0x40003008u)
#define OTP_DEVICE_ID REG32(0x40004000u)
#define OTP_KEY_ADDR 0x40004010u

uint64_t asic_millis(void)
{
    uint32_t hi, lo;
    do { /* re-read when the low word wrapped between the two reads */
        hi = TIMER_MS_HI;
        lo = TIMER_MS_LO;
    } while (hi != TIMER_MS_HI);
    return ((uint64_t)hi << 32) | lo;
}

void asic_wait_until(uint64_t deadline_ms)
{
    while (asic_millis() < deadline_ms && (UART_STATUS & 1u) == 0) {
    }
}

int asic_link_open(void)
{
    UART_CTRL = 1u;
    return (UART_STATUS & 4u) ? 0 : -1;
}

void asic_link_close(void)
{
    UART_CTRL = 0u;
}

int asic_link_write(const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        while ((UART_STATUS & 2u) == 0) {
            if ((UART_STATUS & 4u) == 0) {
                return -1;
            }
        }
        UART_DATA = data[i];
    }
    return 0;
}

int asic_link_read(uint8_t *buf, size_t cap)
{
    size_t n = 0;
    if ((UART_STATUS & 4u) == 0) {
        return -1;
    }
    while (n < cap && (UART_STATUS & 1u) != 0) {
        buf[n++] = (uint8_t)UART_DATA;
    }
    return (int)n;
}

int asic_nvm_load_u32(uint32_t *value)
{
    *value = NVM_SEQ;
    return *value == 0xFFFFFFFFu ? -1 : 0; /* erased flash reads as all ones */
}

int asic_nvm_store_u32(uint32_t value)
{
    NVM_SEQ = value;
    while (NVM_BUSY != 0u) {
    }
    return NVM_SEQ == value ? 0 : -1;
}

uint32_t asic_device_id(void)
{
    return OTP_DEVICE_ID;
}

const uint8_t *asic_device_key(void)
{
    return (const uint8_t *)(uintptr_t)OTP_KEY_ADDR;
}

int asic_sensor_read(int32_t *pressure_pa, int16_t *temp_centi_c, uint16_t *supply_mv)
{
    *pressure_pa = (int32_t)SENSOR_P;
    *temp_centi_c = (int16_t)SENSOR_T;
    *supply_mv = (uint16_t)SENSOR_MV;
    return 0;
}
