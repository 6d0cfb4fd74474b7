/*
 * An LD_PRELOAD malloc interposer built on librestartable.a: it counts
 * every malloc call per CPU with the header's inline operations, from the
 * first call on (other libraries' initialisation calls malloc before any
 * constructor of this object has run), and in an atomic total, and reports
 * both when the process exits.
 */
#define _GNU_SOURCE
#include <stdatomic.h>

#include "common.h"

extern void *__libc_malloc(size_t size);

static intptr_t slots[FIELD_SLOTS];
static atomic_long calls;
static atomic_long out_of_range;

void *malloc(size_t size)
{
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    if (!field_count(slots))
        atomic_fetch_add_explicit(&out_of_range, 1, memory_order_relaxed);
    return __libc_malloc(size);
}

__attribute__((destructor)) static void report(void)
{
    char line[160];
    int n = snprintf(line, sizeof line, "interposer: %ld calls, %ld counted, %ld out of range\n",
                     (long)atomic_load(&calls), field_sum(slots), (long)atomic_load(&out_of_range));
    if (write(2, line, (size_t)n) != n)
        _exit(4);
}
