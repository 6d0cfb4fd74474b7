/*
 * Every inline operation of the header, each called from 16 functions of
 * its own with a retry loop, as a program with many call sites calls them.
 * tests/c_abi.rs compiles this at -O2 and -Os and reads the object's
 * symbol table: it must define no function of the header (a defined
 * `restartable_*` symbol is an out-of-line copy, whose every use is a
 * call). The object is not linked or run.
 */
#include <stdint.h>

#include "restartable.h"

#define SLOTS 1024

struct slot {
    intptr_t v, v2, head, count, items[8];
    intptr_t *popped;
    char buf[16];
} __attribute__((aligned(128)));

struct slot slots[SLOTS];
restartable_percpu_counter_t *counter;
static const char src[16] = "0123456789abcde";

#define CALLER(op, k, retry)                                                                     \
    static __attribute__((noinline)) long op##_##k(long n)                                       \
    {                                                                                            \
        long done = 0;                                                                           \
        for (long i = 0; i < n; i++) {                                                           \
            for (;;) {                                                                           \
                int cpu = (int)restartable_cpu_start();                                          \
                struct slot *s = &slots[cpu % SLOTS];                                            \
                (void)s;                                                                         \
                if ((retry) == 0)                                                                \
                    break;                                                                       \
            }                                                                                    \
            done++;                                                                              \
        }                                                                                        \
        return done;                                                                             \
    }
#define CALLERS(op, retry)                                                                       \
    CALLER(op, 0, retry) CALLER(op, 1, retry) CALLER(op, 2, retry) CALLER(op, 3, retry)          \
    CALLER(op, 4, retry) CALLER(op, 5, retry) CALLER(op, 6, retry) CALLER(op, 7, retry)          \
    CALLER(op, 8, retry) CALLER(op, 9, retry) CALLER(op, 10, retry) CALLER(op, 11, retry)        \
    CALLER(op, 12, retry) CALLER(op, 13, retry) CALLER(op, 14, retry) CALLER(op, 15, retry)      \
    long (*op##s[16])(long) = {                                                                   \
        op##_0, op##_1, op##_2,  op##_3,  op##_4,  op##_5,  op##_6,  op##_7,                     \
        op##_8, op##_9, op##_10, op##_11, op##_12, op##_13, op##_14, op##_15,                    \
    };

/* Each operation in its CPU form and its mm_cid form. */
#define BOTH(op, retry, retry_mm_cid) CALLERS(op, retry) CALLERS(op##_mm_cid, retry_mm_cid)

CALLERS(cpu_read, restartable_cpu() < 0)
CALLERS(mm_cid_read, restartable_mm_cid() < 0)
BOTH(add, restartable_load_add_store(&s->v, 1, cpu),
     restartable_load_add_store_mm_cid(&s->v, 1, cpu))
BOTH(cbne, restartable_load_cbne_store(&s->v, s->v, s->v + 1, cpu),
     restartable_load_cbne_store_mm_cid(&s->v, s->v, s->v + 1, cpu))
BOTH(cbne2, restartable_load_cbne_load_cbne_store(&s->v, s->v, &s->v2, s->v2, 1, cpu),
     restartable_load_cbne_load_cbne_store_mm_cid(&s->v, s->v, &s->v2, s->v2, 1, cpu))
BOTH(pop, restartable_load_cbeq_store_add_load_store(&s->head, 0, 0, &s->v, cpu) < 0,
     restartable_load_cbeq_store_add_load_store_mm_cid(&s->head, 0, 0, &s->v, cpu) < 0)
BOTH(ss, restartable_load_cbne_store_store(&s->v, s->v, &s->v2, 2, 3, cpu),
     restartable_load_cbne_store_store_mm_cid(&s->v, s->v, &s->v2, 2, 3, cpu))
BOTH(ssr, restartable_load_cbne_store_store_release(&s->v, s->v, &s->v2, 2, 3, cpu),
     restartable_load_cbne_store_store_release_mm_cid(&s->v, s->v, &s->v2, 2, 3, cpu))
BOTH(mc, restartable_load_cbne_memcpy_store(&s->v, s->v, s->buf, src, 16, 1, cpu),
     restartable_load_cbne_memcpy_store_mm_cid(&s->v, s->v, s->buf, src, 16, 1, cpu))
BOTH(mcr, restartable_load_cbne_memcpy_store_release(&s->v, s->v, s->buf, src, 16, 1, cpu),
     restartable_load_cbne_memcpy_store_release_mm_cid(&s->v, s->v, s->buf, src, 16, 1, cpu))
BOTH(chase, restartable_load_add_load_load_add_store(&s->head, 0, 1, cpu),
     restartable_load_add_load_load_add_store_mm_cid(&s->head, 0, 1, cpu))
BOTH(pop_here,
     restartable_pop_at_current(&slots[0].head, sizeof(struct slot), SLOTS, &s->popped) < 0,
     restartable_pop_at_current_mm_cid(&slots[0].head, sizeof(struct slot), SLOTS,
                                       &s->popped) < 0)
BOTH(push_here,
     restartable_push_at_current(&slots[0].head, sizeof(struct slot), SLOTS, &s->v2) < 0,
     restartable_push_at_current_mm_cid(&slots[0].head, sizeof(struct slot), SLOTS,
                                        &s->v2) < 0)
BOTH(bpush,
     restartable_buffer_push_at_current(&slots[0].count, sizeof(struct slot), SLOTS, 8, 7) < 0,
     restartable_buffer_push_at_current_mm_cid(&slots[0].count, sizeof(struct slot), SLOTS, 8,
                                               7) < 0)
BOTH(bpop,
     restartable_buffer_pop_at_current(&slots[0].count, sizeof(struct slot), SLOTS, &s->v) < 0,
     restartable_buffer_pop_at_current_mm_cid(&slots[0].count, sizeof(struct slot), SLOTS,
                                              &s->v) < 0)
CALLERS(count, (restartable_percpu_counter_add(counter, 1), 0))
