/* COMPILE-CHECK ONLY (see ../lwipopts.h): the compiler/platform port header of a GCC target. */
#ifndef NGD_COMPILE_CHECK_ARCH_CC_H
#define NGD_COMPILE_CHECK_ARCH_CC_H

#define BYTE_ORDER LITTLE_ENDIAN /* Cortex-M4 and RV32 are little-endian */
#define LWIP_PLATFORM_DIAG(x)
#define LWIP_PLATFORM_ASSERT(x)

#endif
