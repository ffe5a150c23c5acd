/*
 * COMPILE-CHECK ONLY: an lwIP configuration like the one STM32CubeMX / ESP-IDF generate for the
 * socket API (RTOS, BSD sockets with POSIX names, DNS, send timeouts). scripts/cross-build.sh uses
 * it to compile examples/common/ngd_bsd_transport.c with -DNGD_BSD_LWIP for Cortex-M4 and RV32IMC
 * against Debian's liblwip-dev headers. It is not linked: nothing here is a network stack.
 */
#ifndef NGD_COMPILE_CHECK_LWIPOPTS_H
#define NGD_COMPILE_CHECK_LWIPOPTS_H

#define NO_SYS 0
#define LWIP_TCP 1
#define LWIP_NETCONN 1
#define LWIP_SOCKET 1
#define LWIP_COMPAT_SOCKETS 1
#define LWIP_POSIX_SOCKETS_IO_NAMES 1
#define LWIP_DNS 1
#define LWIP_SO_SNDTIMEO 1
#define LWIP_SO_RCVTIMEO 1

#endif
