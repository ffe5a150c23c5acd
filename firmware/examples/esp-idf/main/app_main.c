/*
 * ESP-IDF example: an ESP32 pressure sensor (model 0x10) delivering telemetry to the gateway.
 *   Wi-Fi station -> TCP socket (lwIP) -> Nanogridata client, sequence numbers in NVS,
 *   device key in NVS (namespace "ngd", blob "key", written at provisioning time).
 * NOT compiled in this repository's CI (no ESP-IDF here); pressure_sensor.c is (see README).
 */
#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_timer.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/task.h"
#include "nvs.h"
#include "nvs_flash.h"

#include "nanogridata/ngd_client.h"
#include "ngd_bsd_transport.h"
#include "pressure_sensor.h"

#define MODEL_ESP32_PRESSURE 0x10
#define WIFI_UP_BIT BIT0

static const char *TAG = "ngd";
static EventGroupHandle_t s_wifi_events;
static ngd_client_t s_client; /* ~3 KB with 16 slots: static, not on the task stack */

static uint64_t monotonic_ms(void)
{
    return (uint64_t)(esp_timer_get_time() / 1000);
}

static int persist_seq(void *user, uint32_t next_seq)
{
    nvs_handle_t nvs = (nvs_handle_t)(uintptr_t)user;
    if (nvs_set_u32(nvs, "seq", next_seq) != ESP_OK || nvs_commit(nvs) != ESP_OK) {
        return -1;
    }
    return 0;
}

static void on_result(void *user, uint32_t seq, uint8_t status)
{
    (void)user;
    if (status != NGD_ACK_OK && status != NGD_ACK_DUPLICATE) {
        ESP_LOGW(TAG, "frame %u rejected by the gateway (status %u)", (unsigned)seq, status);
    }
}

static void wifi_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)data;
    if (base == WIFI_EVENT && (id == WIFI_EVENT_STA_START || id == WIFI_EVENT_STA_DISCONNECTED)) {
        xEventGroupClearBits(s_wifi_events, WIFI_UP_BIT);
        esp_wifi_connect();
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        xEventGroupSetBits(s_wifi_events, WIFI_UP_BIT);
    }
}

static void wifi_start(void)
{
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    wifi_config_t sta = {0};
    s_wifi_events = xEventGroupCreate();
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    esp_netif_create_default_wifi_sta();
    ESP_ERROR_CHECK(esp_wifi_init(&init));
    ESP_ERROR_CHECK(esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, wifi_event, NULL));
    ESP_ERROR_CHECK(esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, wifi_event, NULL));
    strncpy((char *)sta.sta.ssid, CONFIG_NGD_WIFI_SSID, sizeof sta.sta.ssid);
    strncpy((char *)sta.sta.password, CONFIG_NGD_WIFI_PASSWORD, sizeof sta.sta.password);
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &sta));
    ESP_ERROR_CHECK(esp_wifi_start());
}

static void ngd_task(void *arg)
{
    nvs_handle_t nvs = (nvs_handle_t)(uintptr_t)arg;
    ngd_client_config_t cfg = {0};
    ngd_client_callbacks_t cb = {0};
    ngd_bsd_link_t link;
    size_t key_len = sizeof cfg.key;
    uint8_t payload[NGD_CLIENT_MAX_PAYLOAD];
    uint64_t next_sample = 0;

    if (nvs_get_blob(nvs, "key", cfg.key, &key_len) != ESP_OK || key_len != sizeof cfg.key) {
        ESP_LOGE(TAG, "no device key in NVS (namespace ngd, blob key): provision the device");
        vTaskDelete(NULL);
    }
    if (nvs_get_u32(nvs, "seq", &cfg.seq_start) != ESP_OK) {
        cfg.seq_start = 0; /* first boot */
    }
    cfg.model_id = MODEL_ESP32_PRESSURE;
    cfg.device_id = CONFIG_NGD_DEVICE_ID;
#ifdef CONFIG_NGD_TAG32
    cfg.tag32 = 1;
#endif
    cb.persist_seq = persist_seq;
    cb.on_result = on_result;
    cb.user = (void *)(uintptr_t)nvs;
    cb.random = NULL; /* esp_random() could be wired here for reconnect jitter */
    ESP_ERROR_CHECK(ngd_client_init(&s_client, &cfg, &cb) == NGD_OK ? ESP_OK : ESP_FAIL);
    ngd_bsd_link_init(&link, CONFIG_NGD_GATEWAY_HOST, CONFIG_NGD_GATEWAY_PORT, monotonic_ms);

    for (;;) {
        uint64_t now = monotonic_ms();
        xEventGroupWaitBits(s_wifi_events, WIFI_UP_BIT, pdFALSE, pdTRUE, portMAX_DELAY);
        if (now >= next_sample) {
            pressure_sample_t sample;
            size_t len;
            if (pressure_sensor_read(&sample) == 0 &&
                (len = pressure_sample_encode(&sample, payload, sizeof payload)) != 0) {
                int rc = ngd_client_queue(&s_client, NGD_TYPE_TELEMETRY, payload, len, now, NULL);
                if (rc == NGD_ERR_FULL) {
                    ngd_client_drop_oldest(&s_client); /* keep the freshest samples */
                    rc = ngd_client_queue(&s_client, NGD_TYPE_TELEMETRY, payload, len, now, NULL);
                }
                if (rc != NGD_OK) {
                    ESP_LOGW(TAG, "queue failed: %d", rc);
                }
            }
            next_sample = now + CONFIG_NGD_SAMPLE_PERIOD_MS;
        }
        ngd_bsd_step(&s_client, &link, 250);
    }
}

void app_main(void)
{
    nvs_handle_t nvs;
    /* Never erase NVS to recover: it holds the key and the sequence number; reusing a sequence
     * number makes the gateway answer DUPLICATE and the data is lost. Fail loudly instead. */
    ESP_ERROR_CHECK(nvs_flash_init());
    ESP_ERROR_CHECK(nvs_open("ngd", NVS_READWRITE, &nvs));
    wifi_start();
    xTaskCreate(ngd_task, "ngd", 6144, (void *)(uintptr_t)nvs, 5, NULL);
}
