/*
 * STM32 example: an STM32 gas sensor (model 0x20) on STM32Cube HAL + FreeRTOS (CMSIS-RTOS v2) +
 * LwIP with the socket API (LWIP_SOCKET = 1, LWIP_DNS = 1 in CubeMX), e.g. a NUCLEO-F429ZI.
 *
 * Add to a CubeMX-generated project: this file, gas_sensor.c, firmware/src/*.c,
 * firmware/port/mbedtls/ngd_hmac_mbedtls.c (enable the MBEDTLS middleware) or
 * firmware/port/builtin/*.c, and firmware/examples/common/ngd_bsd_transport.c compiled with
 * -DNGD_BSD_LWIP; include paths firmware/include and firmware/examples/common. Start the task
 * from MX_FREERTOS_Init():  osThreadNew(ngd_task, NULL, &ngd_task_attributes);
 *
 * NOT compiled in this repository's CI (no STM32Cube here); gas_sensor.c is (see README).
 */
#include <string.h>

#include "cmsis_os2.h"
#include "main.h" /* HAL, hrtc */

#include "gas_sensor.h"
#include "nanogridata/ngd_client.h"
#include "ngd_bsd_transport.h"

#define MODEL_STM32_GAS 0x20u
#define GATEWAY_HOST "192.168.1.10" /* the VIP (keepalived) in front of the gateways */
#define GATEWAY_PORT 5678u          /* ngd_device_port, ansible/group_vars/all/ports.yml */
#define SAMPLE_PERIOD_MS 5000u

extern RTC_HandleTypeDef hrtc;

/* Written by the provisioning tool into a dedicated flash page (see the linker script). */
__attribute__((section(".ngd_provisioning"), used)) static const struct {
    uint32_t device_id;
    uint8_t key[32];
} g_provisioning = {0xFFFFFFFFu, {0}};

static ngd_client_t s_client; /* static: keep it off the task stack */

static uint64_t monotonic_ms(void)
{
    /* osKernelGetTickCount() wraps after 49 days at 1 kHz: extend it to 64 bits. */
    static uint32_t last;
    static uint64_t high;
    uint32_t now = osKernelGetTickCount();
    if (now < last) {
        high += 1ull << 32;
    }
    last = now;
    return (high | now) * 1000u / osKernelGetTickFreq();
}

/* Backup registers survive resets while VBAT is present; products without a battery should use
 * EEPROM emulation (X-CUBE-EEPROM) instead: the contract is only "durable before returning 0". */
static int persist_seq(void *user, uint32_t next_seq)
{
    (void)user;
    HAL_RTCEx_BKUPWrite(&hrtc, RTC_BKP_DR1, next_seq);
    HAL_RTCEx_BKUPWrite(&hrtc, RTC_BKP_DR2, ~next_seq); /* integrity check */
    return HAL_RTCEx_BKUPRead(&hrtc, RTC_BKP_DR1) == next_seq ? 0 : -1;
}

static uint32_t load_seq(void)
{
    uint32_t v = HAL_RTCEx_BKUPRead(&hrtc, RTC_BKP_DR1);
    return HAL_RTCEx_BKUPRead(&hrtc, RTC_BKP_DR2) == ~v ? v : 0;
}

static uint32_t jitter(void *user)
{
    (void)user;
    return HAL_GetTick() * 2654435761u; /* or the RNG peripheral: HAL_RNG_GenerateRandomNumber */
}

void ngd_task(void *argument)
{
    ngd_client_config_t cfg;
    ngd_client_callbacks_t cb;
    ngd_bsd_link_t link;
    uint8_t payload[NGD_CLIENT_MAX_PAYLOAD];
    uint64_t next_sample = 0;
    (void)argument;

    memset(&cfg, 0, sizeof cfg);
    memset(&cb, 0, sizeof cb);
    cfg.model_id = MODEL_STM32_GAS;
    cfg.device_id = g_provisioning.device_id;
    memcpy(cfg.key, g_provisioning.key, sizeof cfg.key);
    cfg.seq_start = load_seq();
    cb.persist_seq = persist_seq;
    cb.random = jitter;
    if (cfg.device_id == 0xFFFFFFFFu || ngd_client_init(&s_client, &cfg, &cb) != NGD_OK) {
        Error_Handler(); /* not provisioned */
    }
    ngd_bsd_link_init(&link, GATEWAY_HOST, GATEWAY_PORT, monotonic_ms);

    for (;;) {
        uint64_t now = monotonic_ms();
        if (now >= next_sample) {
            gas_sample_t sample;
            size_t len;
            if (gas_sensor_read(&sample) == 0 &&
                (len = gas_sample_encode(&sample, payload, sizeof payload)) != 0) {
                /* An alarm is an EVENT; routine readings are TELEMETRY. */
                uint8_t type = sample.alarm ? NGD_TYPE_EVENT : NGD_TYPE_TELEMETRY;
                if (ngd_client_queue(&s_client, type, payload, len, now, NULL) == NGD_ERR_FULL) {
                    ngd_client_drop_oldest(&s_client);
                    (void)ngd_client_queue(&s_client, type, payload, len, now, NULL);
                }
            }
            next_sample = now + SAMPLE_PERIOD_MS;
        }
        ngd_bsd_step(&s_client, &link, 100);
    }
}
