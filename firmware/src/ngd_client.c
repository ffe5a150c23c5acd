/* Sans-IO Nanogridata client state machine. See include/nanogridata/ngd_client.h. */
#include "nanogridata/ngd_client.h"

#include <string.h>

enum { SLOT_FREE = 0, SLOT_PENDING = 1, SLOT_SENT = 2 };
enum { CONN_DOWN = 0, CONN_CONNECTING = 1, CONN_UP = 2 };

#define NO_WAKE UINT64_MAX

static uint32_t or_default(uint32_t value, uint32_t fallback)
{
    return value != 0 ? value : fallback;
}

int ngd_client_init(ngd_client_t *c, const ngd_client_config_t *cfg,
                    const ngd_client_callbacks_t *cb)
{
    if (c == NULL || cfg == NULL || cb == NULL || cb->persist_seq == NULL) {
        return NGD_ERR_ARG;
    }
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    c->cb = *cb;
    c->cfg.tag32 = cfg->tag32 ? 1u : 0u;
    c->cfg.seq_block = or_default(cfg->seq_block, 16);
    c->cfg.ack_timeout_ms = or_default(cfg->ack_timeout_ms, 5000);
    c->cfg.backoff_min_ms = or_default(cfg->backoff_min_ms, 500);
    c->cfg.backoff_max_ms = or_default(cfg->backoff_max_ms, 60000);
    c->cfg.busy_min_ms = or_default(cfg->busy_min_ms, 200);
    c->cfg.busy_max_ms = or_default(cfg->busy_max_ms, 10000);
    /* Sequence 0 is never sent: a gateway's empty replay window may treat it as seen. */
    c->seq_next = cfg->seq_start != 0 ? cfg->seq_start : 1;
    c->seq_persisted = c->seq_next;
    c->conn = CONN_DOWN;
    c->next_connect_at_ms = 0; /* connect at the first poll */
    return NGD_OK;
}

static ngd_client_slot_t *slot_at(ngd_client_t *c, size_t offset)
{
    return &c->ring[(c->head + offset) % NGD_CLIENT_RING_SLOTS];
}

/* Advance head past freed slots so their space can be reused. */
static void compact(ngd_client_t *c)
{
    while (c->count > 0 && c->ring[c->head].state == SLOT_FREE) {
        c->head = (uint8_t)((c->head + 1u) % NGD_CLIENT_RING_SLOTS);
        c->count--;
    }
}

static int reserve_seq(ngd_client_t *c, uint32_t *seq)
{
    uint32_t limit;
    if (c->seq_next == UINT32_MAX) {
        return NGD_ERR_SEQ_EXHAUSTED;
    }
    if (c->seq_next >= c->seq_persisted) {
        /* Persist the end of a new block before using any number in it. */
        limit = (UINT32_MAX - c->seq_next > c->cfg.seq_block) ? c->seq_next + c->cfg.seq_block
                                                               : UINT32_MAX;
        if (c->cb.persist_seq(c->cb.user, limit) != 0) {
            return NGD_ERR_PERSIST;
        }
        c->seq_persisted = limit;
    }
    *seq = c->seq_next++;
    return NGD_OK;
}

int ngd_client_queue(ngd_client_t *c, uint8_t type, const uint8_t *payload, size_t payload_len,
                     uint64_t now_ms, uint32_t *seq_out)
{
    ngd_client_slot_t *slot;
    ngd_header_t h;
    size_t len = 0;
    int rc;

    if (c == NULL || (payload == NULL && payload_len != 0) || type == NGD_TYPE_ACK) {
        return NGD_ERR_ARG;
    }
    if (payload_len > NGD_CLIENT_MAX_PAYLOAD) {
        return NGD_ERR_TOO_LARGE;
    }
    if (c->count >= NGD_CLIENT_RING_SLOTS) {
        return NGD_ERR_FULL;
    }
    h.model_id = c->cfg.model_id;
    h.type = type;
    h.flags = c->cfg.tag32 ? NGD_FLAG_TAG32 : 0u;
    h.device_id = c->cfg.device_id;
    h.timestamp_ms = ngd_client_clock_ms(c, now_ms);
    rc = reserve_seq(c, &h.seq);
    if (rc != NGD_OK) {
        return rc;
    }
    slot = slot_at(c, c->count);
    rc = ngd_frame_build(&h, payload, payload_len, c->cfg.key, slot->bytes, sizeof slot->bytes,
                         &len);
    if (rc != NGD_OK) {
        return rc; /* the sequence number is burnt: gaps are allowed, reuse is not */
    }
    slot->seq = h.seq;
    slot->len = (uint16_t)len;
    slot->state = SLOT_PENDING;
    slot->sent_at_ms = 0;
    slot->sent_before = 0;
    c->count++;
    c->stats.frames_queued++;
    if (seq_out != NULL) {
        *seq_out = h.seq;
    }
    return NGD_OK;
}

int ngd_client_drop_oldest(ngd_client_t *c)
{
    compact(c);
    if (c->count == 0) {
        return 0;
    }
    c->ring[c->head].state = SLOT_FREE;
    compact(c);
    return 1;
}

static uint32_t backoff_delay(ngd_client_t *c)
{
    uint32_t delay = c->cfg.backoff_min_ms;
    uint32_t i;
    for (i = 1; i < c->reconnect_attempts && delay < c->cfg.backoff_max_ms; i++) {
        delay = delay > c->cfg.backoff_max_ms / 2u ? c->cfg.backoff_max_ms : delay * 2u;
    }
    if (delay > c->cfg.backoff_max_ms) {
        delay = c->cfg.backoff_max_ms;
    }
    if (c->cb.random != NULL && delay >= 2u) {
        /* Keep at least half of the delay, randomise the rest. */
        delay = delay / 2u + c->cb.random(c->cb.user) % (delay / 2u + 1u);
    }
    return delay;
}

static void go_down(ngd_client_t *c, uint64_t now_ms)
{
    size_t i;
    c->conn = CONN_DOWN;
    c->drop_requested = 0;
    c->rx_len = 0;
    c->reconnect_attempts++;
    c->next_connect_at_ms = now_ms + backoff_delay(c);
    /* Whatever was in flight is resent, in order, on the next connection. */
    for (i = 0; i < c->count; i++) {
        ngd_client_slot_t *s = slot_at(c, i);
        if (s->state == SLOT_SENT) {
            s->state = SLOT_PENDING;
        }
    }
}

void ngd_client_on_connected(ngd_client_t *c, uint64_t now_ms)
{
    (void)now_ms;
    c->conn = CONN_UP;
    c->drop_requested = 0;
    c->rx_len = 0;
    c->busy_until_ms = 0;
    c->stats.connects++;
}

void ngd_client_on_connect_failed(ngd_client_t *c, uint64_t now_ms)
{
    go_down(c, now_ms);
}

void ngd_client_on_disconnected(ngd_client_t *c, uint64_t now_ms)
{
    if (c->conn != CONN_DOWN) {
        c->stats.disconnects++;
        go_down(c, now_ms);
    }
}

void ngd_client_poll(ngd_client_t *c, uint64_t now_ms, ngd_action_t *action)
{
    uint64_t wake = NO_WAKE;
    size_t i;

    action->kind = NGD_ACTION_NONE;
    action->data = NULL;
    action->len = 0;
    action->wake_at_ms = NO_WAKE;

    if (c->conn == CONN_DOWN) {
        if (now_ms >= c->next_connect_at_ms) {
            c->conn = CONN_CONNECTING;
            action->kind = NGD_ACTION_CONNECT;
        } else {
            action->wake_at_ms = c->next_connect_at_ms;
        }
        return;
    }
    if (c->conn == CONN_CONNECTING) {
        return; /* the transport reports on_connected / on_connect_failed */
    }
    /* A sent frame without an ACK for too long: the connection is presumed dead. */
    for (i = 0; i < c->count; i++) {
        ngd_client_slot_t *s = slot_at(c, i);
        if (s->state == SLOT_SENT) {
            uint64_t deadline = s->sent_at_ms + c->cfg.ack_timeout_ms;
            if (now_ms >= deadline) {
                c->stats.ack_timeouts++;
                c->drop_requested = 1;
                break;
            }
            if (deadline < wake) {
                wake = deadline;
            }
        }
    }
    if (c->drop_requested) {
        c->stats.disconnects++;
        go_down(c, now_ms);
        action->kind = NGD_ACTION_DISCONNECT;
        return;
    }
    if (now_ms < c->busy_until_ms) {
        action->wake_at_ms = c->busy_until_ms < wake ? c->busy_until_ms : wake;
        return;
    }
    /* Send the oldest frame not yet sent on this connection: retransmissions go out in order. */
    for (i = 0; i < c->count; i++) {
        ngd_client_slot_t *s = slot_at(c, i);
        if (s->state == SLOT_PENDING) {
            if (s->sent_before) {
                c->stats.retransmissions++;
            }
            s->state = SLOT_SENT;
            s->sent_before = 1;
            s->sent_at_ms = now_ms;
            c->stats.frames_sent++;
            action->kind = NGD_ACTION_SEND;
            action->data = s->bytes;
            action->len = s->len;
            return;
        }
    }
    action->wake_at_ms = wake;
}

static void handle_ack(ngd_client_t *c, const ngd_ack_t *ack, uint64_t now_ms)
{
    size_t i;
    ngd_client_slot_t *slot = NULL;

    if (ack->header.timestamp_ms != 0) {
        c->clock_offset_ms = ack->header.timestamp_ms - now_ms; /* modulo 2^64 on purpose */
        c->clock_valid = 1;
    }
    c->reconnect_attempts = 0; /* a verified ACK proves the path works */
    for (i = 0; i < c->count; i++) {
        ngd_client_slot_t *s = slot_at(c, i);
        if (s->state == SLOT_SENT && s->seq == ack->header.seq) {
            slot = s;
            break;
        }
    }
    if (slot == NULL) {
        c->stats.acks_unexpected++;
        return;
    }
    if (ack->status == NGD_ACK_BUSY) {
        c->stats.acks_busy++;
        slot->state = SLOT_PENDING;
        c->busy_delay_ms = c->busy_delay_ms == 0 ? c->cfg.busy_min_ms
                           : (c->busy_delay_ms > c->cfg.busy_max_ms / 2u ? c->cfg.busy_max_ms
                                                                        : c->busy_delay_ms * 2u);
        c->busy_until_ms = now_ms + c->busy_delay_ms;
        return;
    }
    switch (ack->status) {
    case NGD_ACK_OK:
        c->stats.acks_ok++;
        c->busy_delay_ms = 0;
        break;
    case NGD_ACK_DUPLICATE:
        c->stats.acks_duplicate++; /* stored earlier; our ACK was lost */
        c->busy_delay_ms = 0;
        break;
    case NGD_ACK_STALE:
        c->stats.acks_stale++; /* will never be accepted: drop it */
        break;
    default:
        c->stats.acks_invalid++; /* authentic but rejected: resending cannot help */
        break;
    }
    slot->state = SLOT_FREE;
    compact(c);
    if (c->cb.on_result != NULL) {
        c->cb.on_result(c->cb.user, ack->header.seq, ack->status);
    }
}

int ngd_client_on_data(ngd_client_t *c, const uint8_t *data, size_t len, uint64_t now_ms)
{
    ngd_ack_t ack;
    size_t used;
    int rc;

    if (c == NULL || (data == NULL && len != 0)) {
        return NGD_ERR_ARG;
    }
    if (c->conn != CONN_UP || c->drop_requested) {
        return NGD_OK; /* stale bytes from a connection we are closing */
    }
    while (len > 0 || c->rx_len > 0) {
        size_t room = sizeof c->rx - c->rx_len;
        size_t take = len < room ? len : room;
        if (take > 0) {
            memcpy(c->rx + c->rx_len, data, take);
            c->rx_len = (uint8_t)(c->rx_len + take);
            data += take;
            len -= take;
        }

        rc = ngd_ack_parse(c->rx, c->rx_len, c->cfg.key, &ack, &used);
        if (rc == NGD_ERR_NEED_MORE) {
            if (len == 0) {
                return NGD_OK;
            }
            if (take > 0) {
                continue;
            }
            rc = NGD_ERR_PAYLOAD; /* unreachable: a complete ACK always fits in rx */
        }
        if (rc == NGD_OK && (ack.header.model_id != c->cfg.model_id ||
                             ack.header.device_id != c->cfg.device_id ||
                             (ack.header.flags & NGD_FLAG_TAG32) != (c->cfg.tag32 ? 1u : 0u))) {
            rc = NGD_ERR_MISMATCH;
        }
        if (rc == NGD_OK && ack.status > NGD_ACK_BUSY) {
            rc = NGD_ERR_PAYLOAD;
        }
        if (rc != NGD_OK) {
            c->stats.acks_rejected++;
            c->drop_requested = 1;
            c->rx_len = 0;
            return rc;
        }
        memmove(c->rx, c->rx + used, c->rx_len - used);
        c->rx_len = (uint8_t)(c->rx_len - used);
        handle_ack(c, &ack, now_ms);
    }
    return NGD_OK;
}

uint64_t ngd_client_clock_ms(const ngd_client_t *c, uint64_t now_ms)
{
    if (!c->clock_valid) {
        return 0;
    }
    return now_ms + c->clock_offset_ms;
}

size_t ngd_client_unacked(const ngd_client_t *c)
{
    size_t i;
    size_t n = 0;
    for (i = 0; i < c->count; i++) {
        if (c->ring[(c->head + i) % NGD_CLIENT_RING_SLOTS].state != SLOT_FREE) {
            n++;
        }
    }
    return n;
}
