/*
 * Transport-agnostic (sans-IO) Nanogridata client.
 *
 * The client never touches a socket or a clock: the application feeds it events (connected,
 * disconnected, bytes received, the current monotonic time) and asks it what to do next with
 * ngd_client_poll(): connect, send these bytes, disconnect, or nothing until a given time.
 *
 * It keeps the unacknowledged frames in a ring buffer (size fixed at compile time), retransmits
 * them in order after a reconnect, drops them on OK/DUPLICATE, backs off on BUSY, sets its clock
 * from ACK timestamps and reconnects with capped exponential back-off. Sequence numbers are
 * reserved in blocks through a persistence callback (flash/NVS), so a reboot never reuses one.
 *
 * Memory: one ngd_client_t, owned by the application (no heap, no static state in the library).
 * sizeof(ngd_client_t) ~= NGD_CLIENT_RING_SLOTS * (NGD_CLIENT_MAX_PAYLOAD + 72) + 248 bytes
 * (1,592 with the defaults, on Cortex-M4 and RV32).
 */
#ifndef NANOGRIDATA_NGD_CLIENT_H
#define NANOGRIDATA_NGD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "ngd_frame.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Compile-time sizing: override with -D or before including this header (same value everywhere). */
#ifndef NGD_CLIENT_RING_SLOTS
#define NGD_CLIENT_RING_SLOTS 8u /* unacknowledged frames kept for retransmission */
#endif
#ifndef NGD_CLIENT_MAX_PAYLOAD
#define NGD_CLIENT_MAX_PAYLOAD 96u /* largest CBOR payload the client stores */
#endif
/* At most 64: the gateway's replay window is 64 sequence numbers wide, so a frame retransmitted
 * after more than 63 newer ones were stored would be answered DUPLICATE without being stored. */
#if NGD_CLIENT_RING_SLOTS < 1 || NGD_CLIENT_RING_SLOTS > 64
#error "NGD_CLIENT_RING_SLOTS must be 1..64 (the gateway's replay window is 64 wide)"
#endif
#if NGD_CLIENT_MAX_PAYLOAD > NGD_MAX_PAYLOAD
#error "NGD_CLIENT_MAX_PAYLOAD must not exceed NGD_MAX_PAYLOAD (1024)"
#endif
#define NGD_CLIENT_SLOT_BYTES (NGD_HEADER_LEN + NGD_CLIENT_MAX_PAYLOAD + NGD_TAG_LEN_LONG)

typedef struct {
    void *user; /* passed back to every callback */
    /*
     * Persist "the first sequence number to use after a reboot". Called before a sequence number
     * at or above the last persisted value is used. Return 0 once it is durably stored.
     * Required.
     */
    int (*persist_seq)(void *user, uint32_t next_seq_after_reboot);
    /* Optional: the gateway's verdict on a frame (NGD_ACK_OK, _DUPLICATE, _STALE, _INVALID). */
    void (*on_result)(void *user, uint32_t seq, uint8_t status);
    /* Optional: a random number for reconnect jitter (avoids thundering herds after failover). */
    uint32_t (*random)(void *user);
} ngd_client_callbacks_t;

typedef struct {
    uint8_t model_id;
    uint32_t device_id;
    uint8_t key[NGD_KEY_LEN]; /* the derived device key (nanogridata-gateway derive-key) */
    uint8_t tag32;            /* 1: 32-byte tags (required by security = "high" models) */
    uint32_t seq_start;       /* the value last given to persist_seq (0 on first boot) */
    uint32_t seq_block;       /* sequence numbers reserved per flash write (0 -> 16) */
    uint32_t ack_timeout_ms;  /* no ACK for this long: drop the connection (0 -> 5000) */
    uint32_t backoff_min_ms;  /* first reconnect delay (0 -> 500) */
    uint32_t backoff_max_ms;  /* reconnect delay cap (0 -> 60000) */
    uint32_t busy_min_ms;     /* first delay after a BUSY ACK (0 -> 200) */
    uint32_t busy_max_ms;     /* BUSY delay cap (0 -> 10000) */
} ngd_client_config_t;

typedef enum {
    NGD_ACTION_NONE = 0,   /* nothing to do before wake_at_ms (or before the next event) */
    NGD_ACTION_CONNECT,    /* open the transport, then call on_connected / on_connect_failed */
    NGD_ACTION_SEND,       /* write data[0..len) completely, then poll again */
    NGD_ACTION_DISCONNECT  /* close the transport (the client already counts it as closed) */
} ngd_action_kind_t;

typedef struct {
    ngd_action_kind_t kind;
    const uint8_t *data; /* SEND: valid until the next call into the client */
    size_t len;
    uint64_t wake_at_ms; /* NONE: call poll again at this time (UINT64_MAX: only on an event) */
} ngd_action_t;

typedef struct {
    uint32_t frames_queued;
    uint32_t frames_sent; /* including retransmissions */
    uint32_t retransmissions;
    uint32_t acks_ok;
    uint32_t acks_duplicate;
    uint32_t acks_stale;
    uint32_t acks_invalid;
    uint32_t acks_busy;
    uint32_t acks_unexpected; /* authentic ACK for a sequence number not in flight */
    uint32_t acks_rejected;   /* forged, corrupted or malformed ACKs (connection dropped) */
    uint32_t ack_timeouts;
    uint32_t connects;
    uint32_t disconnects;
} ngd_client_stats_t;

typedef struct {
    uint32_t seq;
    uint16_t len;
    uint8_t state; /* internal: free / pending / sent */
    uint8_t sent_before;
    uint64_t sent_at_ms;
    uint8_t bytes[NGD_CLIENT_SLOT_BYTES];
} ngd_client_slot_t;

typedef struct {
    ngd_client_config_t cfg;
    ngd_client_callbacks_t cb;
    ngd_client_slot_t ring[NGD_CLIENT_RING_SLOTS];
    uint8_t head;  /* oldest slot */
    uint8_t count; /* slots between head and tail (freed holes included until head passes them) */
    uint8_t conn;  /* internal connection state */
    uint8_t drop_requested;
    uint32_t seq_next;
    uint32_t seq_persisted; /* first sequence number not yet covered by a persisted reservation */
    uint32_t reconnect_attempts;
    uint32_t busy_delay_ms;
    uint64_t next_connect_at_ms;
    uint64_t busy_until_ms;
    uint64_t clock_offset_ms; /* wall clock = monotonic now + offset (mod 2^64), once clock_valid */
    uint8_t clock_valid;
    uint8_t rx_len;
    uint8_t rx[NGD_ACK_MAX_LEN];
    ngd_client_stats_t stats;
} ngd_client_t;

/* Copies cfg (including the key). Starts disconnected, ready to connect at the first poll. */
int ngd_client_init(ngd_client_t *c, const ngd_client_config_t *cfg,
                    const ngd_client_callbacks_t *cb);

/*
 * Queue one frame: assigns the next sequence number (persisting a new block first when needed),
 * stamps it with the client clock (0 until the first ACK set it) and builds it with its tag.
 * NGD_ERR_FULL when all slots hold unacknowledged frames (call ngd_client_drop_oldest() to
 * favour fresh data, or retry later). *seq_out (optional) receives the sequence number.
 */
int ngd_client_queue(ngd_client_t *c, uint8_t type, const uint8_t *payload, size_t payload_len,
                     uint64_t now_ms, uint32_t *seq_out);

/* Discard the oldest unacknowledged frame. Returns 1 if one was dropped, 0 if the ring was empty. */
int ngd_client_drop_oldest(ngd_client_t *c);

/* What to do next. Call after every event and whenever wake_at_ms is reached. */
void ngd_client_poll(ngd_client_t *c, uint64_t now_ms, ngd_action_t *action);

/* Transport events. */
void ngd_client_on_connected(ngd_client_t *c, uint64_t now_ms);
void ngd_client_on_connect_failed(ngd_client_t *c, uint64_t now_ms);
void ngd_client_on_disconnected(ngd_client_t *c, uint64_t now_ms);

/*
 * Bytes received from the gateway (any split). Returns NGD_OK, or the error of a bad ACK; then
 * the next poll asks to disconnect (a stream with a forged or corrupt ACK cannot be trusted).
 */
int ngd_client_on_data(ngd_client_t *c, const uint8_t *data, size_t len, uint64_t now_ms);

/* Wall-clock time in ms since the epoch, or 0 while no ACK has set the clock. */
uint64_t ngd_client_clock_ms(const ngd_client_t *c, uint64_t now_ms);

/* Frames queued and not yet acknowledged. */
size_t ngd_client_unacked(const ngd_client_t *c);

#ifdef __cplusplus
}
#endif

#endif /* NANOGRIDATA_NGD_CLIENT_H */
