/*
 * Drives an ngd_client_t over a BSD-socket TCP connection: POSIX on a host, lwIP sockets on
 * ESP-IDF and STM32 (define NGD_BSD_LWIP to include lwIP's headers instead of the POSIX ones).
 * Blocking connect and send, select() for receive and timers: one task owns one client.
 */
#ifndef NGD_BSD_TRANSPORT_H
#define NGD_BSD_TRANSPORT_H

#include <stdint.h>

#include "nanogridata/ngd_client.h"

typedef struct {
    const char *host;            /* IPv4 address or name (getaddrinfo) */
    uint16_t port;
    uint32_t io_timeout_ms;      /* connect/send timeout (0 -> 5000) */
    uint64_t (*now_ms)(void);    /* monotonic milliseconds */
    int fd;                      /* -1 while closed; initialise with ngd_bsd_link_init() */
} ngd_bsd_link_t;

void ngd_bsd_link_init(ngd_bsd_link_t *link, const char *host, uint16_t port,
                       uint64_t (*now_ms)(void));

/*
 * One turn of the loop: asks the client what to do and does it. Waits at most max_wait_ms for
 * data or a timer. Returns the action kind that was handled (NGD_ACTION_*).
 */
int ngd_bsd_step(ngd_client_t *c, ngd_bsd_link_t *link, uint32_t max_wait_ms);

/* Close the socket without telling the client (tests simulate a lost connection with it). */
void ngd_bsd_close(ngd_bsd_link_t *link);

#endif /* NGD_BSD_TRANSPORT_H */
