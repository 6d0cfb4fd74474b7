/*
 * A classic rseq user, loaded with dlopen after the program started: it
 * defines __rseq_abi and __rseq_refcount the classic way (weak,
 * initial-exec) and registers through the refcount convention, or
 * unconditionally (plugin_register_uncounted), as older components do.
 * Bound to the program's exported symbols, it shares the program's area.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restartable.h"

__attribute__((weak, tls_model("initial-exec"))) __thread struct rseq_area __rseq_abi = {
    0, (uint32_t)-1, 0, 0, 0, 0, 0};
__attribute__((weak, tls_model("initial-exec"))) __thread uint32_t __rseq_refcount;

/* The classic convention: the first holder registers. Returns 0 or the
   errno of a failed registration. */
int plugin_register(void)
{
    if (__rseq_refcount++ > 0)
        return 0;
    if (syscall(SYS_rseq, &__rseq_abi, 32, 0, RESTARTABLE_SIG) != 0) {
        __rseq_refcount--;
        return errno;
    }
    return 0;
}

void plugin_unregister(void)
{
    if (--__rseq_refcount == 0)
        syscall(SYS_rseq, &__rseq_abi, 32, 1, RESTARTABLE_SIG);
}

/* Registers without looking at the refcount: 0, or EBUSY when the very
   same area is registered already (shared), or EINVAL when another is. */
int plugin_register_uncounted(void)
{
    return syscall(SYS_rseq, &__rseq_abi, 32, 0, RESTARTABLE_SIG) == 0 ? 0 : errno;
}

int32_t plugin_cpu(void)
{
    return (int32_t)__rseq_abi.cpu_id;
}

struct rseq_area *plugin_area(void)
{
    return &__rseq_abi;
}
