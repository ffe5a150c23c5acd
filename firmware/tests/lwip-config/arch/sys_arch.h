/*
 * COMPILE-CHECK ONLY (see ../lwipopts.h): the RTOS types the socket headers name. A real port
 * (e.g. lwIP's FreeRTOS sys_arch in STM32Cube or ESP-IDF) defines them with semaphores and queues;
 * nothing is linked or run against these.
 */
#ifndef NGD_COMPILE_CHECK_SYS_ARCH_H
#define NGD_COMPILE_CHECK_SYS_ARCH_H

typedef void *sys_sem_t;
typedef void *sys_mutex_t;
typedef void *sys_mbox_t;
typedef void *sys_thread_t;
#define sys_sem_valid(s) (*(s) != 0)
#define sys_sem_set_invalid(s) (*(s) = 0)
#define sys_mbox_valid(m) (*(m) != 0)
#define sys_mbox_set_invalid(m) (*(m) = 0)

#endif
