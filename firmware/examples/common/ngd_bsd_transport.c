/* BSD-socket transport for the sans-IO client. See ngd_bsd_transport.h. */
#include "ngd_bsd_transport.h"

#include <string.h>

#if defined(NGD_BSD_LWIP)
#include "lwip/netdb.h"
#include "lwip/sockets.h"
#else
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#endif

void ngd_bsd_link_init(ngd_bsd_link_t *link, const char *host, uint16_t port,
                       uint64_t (*now_ms)(void))
{
    memset(link, 0, sizeof *link);
    link->host = host;
    link->port = port;
    link->now_ms = now_ms;
    link->fd = -1;
}

void ngd_bsd_close(ngd_bsd_link_t *link)
{
    if (link->fd >= 0) {
        close(link->fd);
        link->fd = -1;
    }
}

static struct timeval to_timeval(uint32_t ms)
{
    struct timeval tv;
    tv.tv_sec = (long)(ms / 1000u);
    tv.tv_usec = (long)((ms % 1000u) * 1000u);
    return tv;
}

static int open_link(ngd_bsd_link_t *link)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[8];
    int fd = -1;
    int one = 1;
    struct timeval tv = to_timeval(link->io_timeout_ms != 0 ? link->io_timeout_ms : 5000u);
    unsigned p = link->port, i = sizeof port - 1;

    port[i] = '\0'; /* itoa without snprintf: keeps the example libc-light */
    do {
        port[--i] = (char)('0' + p % 10u);
        p /= 10u;
    } while (p != 0 && i > 0);

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(link->host, port + i, &hints, &res) != 0 || res == NULL) {
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        /* Timeouts bound connect() and send() on lwIP and Linux alike. */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* small frames, no Nagle */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    link->fd = fd;
    return fd >= 0 ? 0 : -1;
}

static int send_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, 0);
        if (n <= 0) {
#if !defined(NGD_BSD_LWIP)
            if (n < 0 && errno == EINTR) {
                continue;
            }
#endif
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int ngd_bsd_step(ngd_client_t *c, ngd_bsd_link_t *link, uint32_t max_wait_ms)
{
    ngd_action_t act;
    uint64_t now = link->now_ms();
    uint32_t wait_ms = max_wait_ms;
    fd_set readable;
    struct timeval tv;
    int ready;

    ngd_client_poll(c, now, &act);
    switch (act.kind) {
    case NGD_ACTION_CONNECT:
        if (open_link(link) == 0) {
            ngd_client_on_connected(c, link->now_ms());
        } else {
            ngd_client_on_connect_failed(c, link->now_ms());
        }
        return NGD_ACTION_CONNECT;
    case NGD_ACTION_SEND:
        if (send_all(link->fd, act.data, act.len) != 0) {
            ngd_bsd_close(link);
            ngd_client_on_disconnected(c, link->now_ms());
        }
        return NGD_ACTION_SEND;
    case NGD_ACTION_DISCONNECT:
        ngd_bsd_close(link);
        return NGD_ACTION_DISCONNECT;
    case NGD_ACTION_NONE:
        break;
    }
    if (act.wake_at_ms != UINT64_MAX) {
        uint64_t until = act.wake_at_ms > now ? act.wake_at_ms - now : 0;
        if (until < wait_ms) {
            wait_ms = (uint32_t)until;
        }
    }
    tv = to_timeval(wait_ms);
    FD_ZERO(&readable);
    if (link->fd >= 0) {
        FD_SET(link->fd, &readable);
    }
    ready = select(link->fd >= 0 ? link->fd + 1 : 0, &readable, NULL, NULL, &tv);
    if (ready > 0 && link->fd >= 0 && FD_ISSET(link->fd, &readable)) {
        uint8_t buf[512];
        ssize_t n = recv(link->fd, buf, sizeof buf, 0);
        if (n > 0) {
            (void)ngd_client_on_data(c, buf, (size_t)n, link->now_ms());
        } else {
            ngd_bsd_close(link);
            ngd_client_on_disconnected(c, link->now_ms());
        }
    }
    return NGD_ACTION_NONE;
}
