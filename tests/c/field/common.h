/* Shared by the field scenarios: a per-CPU tally kept with the header's
   inline operations, and the dlopen of a TLS module that must work after
   any use of the library. */
#ifndef RESTARTABLE_FIELD_COMMON_H
#define RESTARTABLE_FIELD_COMMON_H

#include <dlfcn.h>
#include <stdint.h>
#include <unistd.h>

#include "restartable.h"

#include "../check.h"

#define FIELD_SLOTS 4096

/* One count on the current CPU's slot, through the inline CPU read and
   the inline add; false when the CPU read is out of range (a CPU number
   that cannot be real). */
static inline int field_count(intptr_t *slots)
{
    for (;;) {
        int32_t cpu = restartable_cpu();
        if (cpu < 0 || cpu >= FIELD_SLOTS)
            return 0;
        if (restartable_load_add_store(&slots[cpu], 1, cpu) == RESTARTABLE_COMMITTED)
            return 1;
    }
}

static inline long field_sum(const intptr_t *slots)
{
    long total = 0;
    int i;
    for (i = 0; i < FIELD_SLOTS; i++)
        total += slots[i];
    return total;
}

/* dlopen of a module with TLS, a write and a read of its variable: crashes
   or fails if the thread control block was written over. */
static inline void field_load_tls_module(const char *path)
{
    void *module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    int *(*get)(void);
    if (module == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        exit(1);
    }
    *(void **)&get = dlsym(module, "tls_get");
    CHECK(get != NULL);
    CHECK_EQ(*get(), 7);
    *get() = 11;
    CHECK_EQ(*get(), 11);
}

#endif
