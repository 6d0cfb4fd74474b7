/*
 * The header's inline operations against the same operations written in
 * librseq's shape (read cpu_id_start, run a section that compares cpu_id
 * with it and aborts on a mismatch, retry), side by side in one run. Our
 * loops read restartable_cpu_start(), the header's read for retry loops.
 * Built and run by benches/c/run.sh; prints ns per operation per thread
 * at each side's best placement of its loop and the median over all
 * PLACEMENTS placements (see BENCH), each placement's figure the median of
 * RUNS runs, ours and the shape interleaved, each run the fastest of
 * CHUNKS slices of OPS operations; and, where the kernel lets a process
 * count its own instructions, instructions per operation.
 *
 *     ops [threads]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "restartable.h"

#define OPS 4000000L
#define RUNS 5
#define CHUNKS 20
#define MAX_CPUS 1024
#define NODES 4
#define BUFFER 8 /* a slot's buffer: its capacity; it starts half full */

struct slot {
    intptr_t v, v2, head, lock;
    uint64_t data;
    char buf[16];
    intptr_t bcount, bitems[BUFFER]; /* a buffer: its count, then its items */
} __attribute__((aligned(128)));

static struct slot slots[MAX_CPUS];
/* The list nodes, `next` first, each on cache lines of its own: a node
   that migrations moved to another CPU's list is written from there, and
   nodes sharing a line would time the line's moves. */
static struct {
    intptr_t next;
} __attribute__((aligned(128))) nodes[MAX_CPUS][NODES];
static restartable_percpu_counter_t *counter;
static const char src16[16] = "0123456789abcdef";

/* ------------------------------------------------------------------------ */
/* The librseq shape, written with the header's section pieces               */
/* ------------------------------------------------------------------------ */

static inline int shape_cpu(void)
{
    return (int)RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_CPU_ID_START_OFFSET);
}

/* librseq's rseq_current_cpu(): cpu_id, or sched_getcpu() where it is
   negative (the thread not registered). */
static inline int shape_current_cpu(void)
{
    int cpu = (int)RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_CPU_ID_OFFSET);
    if (__builtin_expect(cpu < 0, 0))
        cpu = sched_getcpu();
    return cpu;
}

/* Every shape section: a failed CPU compare goes to the abort label. */
#define SHAPE_BEGIN                                                                              \
    RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                                                \
    RESTARTABLE_CS_EXIT_POINT("1", "%l[cmpfail]")                                                \
    RESTARTABLE_CS_ARM("3", "rax")                                                               \
    RESTARTABLE_CS_START("1")                                                                    \
    "cmpl %[rseq_cpu], %%fs:" RESTARTABLE_CPU_ID_FIELD "(%[rseq_area])\n\t"                      \
    "jnz 4f\n\t"
#define SHAPE_END RESTARTABLE_CS_POST_COMMIT("2") RESTARTABLE_CS_ABORT("4", "%l[abort]")
#define SHAPE_IN [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu)
#define SHAPE_RETURN                                                                             \
    return 0;                                                                                    \
    abort:                                                                                       \
    return -1;                                                                                   \
    cmpfail:                                                                                     \
    return 1;

static inline int shape_add(intptr_t *v, intptr_t count, int cpu)
{
    __asm__ goto(SHAPE_BEGIN "addq %[count], (%[v])\n\t" SHAPE_END
                 :
                 : SHAPE_IN, [v] "r"(v), [count] "r"(count)
                 : "memory", "cc", "rax"
                 : abort, cmpfail);
    SHAPE_RETURN
}

static inline int shape_cbne_store(intptr_t *v, intptr_t expect, intptr_t newv, int cpu)
{
    __asm__ goto(SHAPE_BEGIN "cmpq %[expect], (%[v])\n\t"
                             "jnz %l[cmpfail]\n\t"
                             "movq %[newv], (%[v])\n\t" SHAPE_END
                 :
                 : SHAPE_IN, [v] "r"(v), [expect] "r"(expect), [newv] "r"(newv)
                 : "memory", "cc", "rax"
                 : abort, cmpfail);
    SHAPE_RETURN
}

static inline int shape_cbne_cbne_store(intptr_t *v, intptr_t expect, intptr_t *v2,
                                        intptr_t expect2, intptr_t newv, int cpu)
{
    __asm__ goto(SHAPE_BEGIN "cmpq %[expect], (%[v])\n\t"
                             "jnz %l[cmpfail]\n\t"
                             "cmpq %[expect2], (%[v2])\n\t"
                             "jnz %l[cmpfail]\n\t"
                             "movq %[newv], (%[v])\n\t" SHAPE_END
                 :
                 : SHAPE_IN, [v] "r"(v), [expect] "r"(expect), [v2] "r"(v2),
                   [expect2] "r"(expect2), [newv] "r"(newv)
                 : "memory", "cc", "rax"
                 : abort, cmpfail);
    SHAPE_RETURN
}

static inline int shape_cbne_store_store(intptr_t *v, intptr_t expect, intptr_t *v2,
                                         intptr_t newv2, intptr_t newv, int cpu)
{
    __asm__ goto(SHAPE_BEGIN "cmpq %[expect], (%[v])\n\t"
                             "jnz %l[cmpfail]\n\t"
                             "movq %[newv2], (%[v2])\n\t"
                             "movq %[newv], (%[v])\n\t" SHAPE_END
                 :
                 : SHAPE_IN, [v] "r"(v), [expect] "r"(expect), [v2] "r"(v2),
                   [newv2] "r"(newv2), [newv] "r"(newv)
                 : "memory", "cc", "rax"
                 : abort, cmpfail);
    SHAPE_RETURN
}

static inline int shape_cbne_memcpy_store(intptr_t *v, intptr_t expect, void *dst,
                                          const void *src, size_t len, intptr_t newv, int cpu)
{
    __asm__ goto(SHAPE_BEGIN "cmpq %[expect], (%[v])\n\t"
                             "jnz %l[cmpfail]\n\t"
                             "xorl %%ecx, %%ecx\n\t"
                             "testq %[len], %[len]\n\t"
                             "jz 6f\n\t"
                             "5:\n\t"
                             "movb (%[src], %%rcx), %%al\n\t"
                             "movb %%al, (%[dst], %%rcx)\n\t"
                             "incq %%rcx\n\t"
                             "cmpq %[len], %%rcx\n\t"
                             "jnz 5b\n\t"
                             "6:\n\t"
                             "movq %[newv], (%[v])\n\t" SHAPE_END
                 :
                 : SHAPE_IN, [v] "r"(v), [expect] "r"(expect), [dst] "r"(dst), [src] "r"(src),
                   [len] "r"(len), [newv] "r"(newv)
                 : "memory", "cc", "rax", "rcx"
                 : abort, cmpfail);
    SHAPE_RETURN
}

static inline int shape_pop(intptr_t *v, intptr_t expectnot, intptr_t voffp, intptr_t *load,
                            int cpu)
{
    __asm__ goto(SHAPE_BEGIN "movq (%[v]), %%rax\n\t"
                             "cmpq %%rax, %[expectnot]\n\t"
                             "jz %l[cmpfail]\n\t"
                             "movq %%rax, (%[load])\n\t"
                             "movq (%%rax, %[voffp]), %%rax\n\t"
                             "movq %%rax, (%[v])\n\t" SHAPE_END
                 :
                 : SHAPE_IN, [v] "r"(v), [expectnot] "r"(expectnot), [voffp] "r"(voffp),
                   [load] "r"(load)
                 : "memory", "cc", "rax"
                 : abort, cmpfail);
    SHAPE_RETURN
}

/* ------------------------------------------------------------------------ */
/* The benchmarks: one loop body each, ours (`o_`) and the shape (`s_`)      */
/* ------------------------------------------------------------------------ */

/* Keeps a value the loop computes, as a store would, without one: a
   shared variable that every thread wrote would move between the CPUs'
   caches and time that instead. */
#define KEEP(x) __asm__ __volatile__("" : : "r"(x))

/* Where a timed loop lies against the fetch and op-cache boundaries moves
   a loop of a nanosecond or so by up to 2x, and a one-byte change of the
   code before it moves it from one placement to another. So every loop is
   built PLACEMENTS times, each copy in a function of its own that starts a
   cache line and runs STEP more bytes of padding (once, before its loop)
   than the copy before: the copies' loops start at offsets 4 bytes apart
   across a whole cache line. Each row reports the best placement of each
   side and the median over all of them. */
#define PLACEMENTS 16
#define STEP 4
#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)

#define BENCH_AT(name, k)                                                                        \
    static __attribute__((noinline, aligned(64))) void name##_##k(long n)                       \
    {                                                                                            \
        __asm__ __volatile__(".if " #k "\n\t.skip " #k " * " TEXT(STEP) ", 0x90\n\t.endif");       \
        for (long i = 0; i < n; i++)                                                             \
            name##_op();                                                                         \
    }
#define BENCH(name, body)                                                                        \
    static inline __attribute__((always_inline)) void name##_op(void)                           \
    {                                                                                            \
        body                                                                                     \
    }                                                                                            \
    BENCH_AT(name, 0) BENCH_AT(name, 1) BENCH_AT(name, 2) BENCH_AT(name, 3)                      \
    BENCH_AT(name, 4) BENCH_AT(name, 5) BENCH_AT(name, 6) BENCH_AT(name, 7)                      \
    BENCH_AT(name, 8) BENCH_AT(name, 9) BENCH_AT(name, 10) BENCH_AT(name, 11)                    \
    BENCH_AT(name, 12) BENCH_AT(name, 13) BENCH_AT(name, 14) BENCH_AT(name, 15)                  \
    static void (*const name[PLACEMENTS])(long) = {                                              \
        name##_0,  name##_1,  name##_2,  name##_3,  name##_4,  name##_5,  name##_6,  name##_7,   \
        name##_8,  name##_9,  name##_10, name##_11, name##_12, name##_13, name##_14, name##_15,  \
    };

BENCH(o_cpu, { KEEP(restartable_cpu()); })
BENCH(s_cpu, { KEEP(shape_current_cpu()); })

#define RETRY_OURS(op)                                                                           \
    for (;;) {                                                                                   \
        int cpu = (int)restartable_cpu_start();                                                  \
        struct slot *s = &slots[cpu];                                                            \
        (void)s;                                                                                 \
        if ((op) == 0)                                                                           \
            break;                                                                               \
    }
#define RETRY_SHAPE(op)                                                                          \
    for (;;) {                                                                                   \
        int cpu = shape_cpu();                                                                   \
        struct slot *s = &slots[cpu];                                                            \
        (void)s;                                                                                 \
        if ((op) == 0)                                                                           \
            break;                                                                               \
    }

BENCH(o_add, RETRY_OURS(restartable_load_add_store(&s->v, 1, cpu)))
BENCH(s_add, RETRY_SHAPE(shape_add(&s->v, 1, cpu)))
BENCH(o_cbne, RETRY_OURS(restartable_load_cbne_store(&s->v, s->v, s->v + 1, cpu)))
BENCH(s_cbne, RETRY_SHAPE(shape_cbne_store(&s->v, s->v, s->v + 1, cpu)))
BENCH(o_cbne2, RETRY_OURS(restartable_load_cbne_load_cbne_store(&s->v, s->v, &s->v2, s->v2,
                                                                 s->v + 1, cpu)))
BENCH(s_cbne2, RETRY_SHAPE(shape_cbne_cbne_store(&s->v, s->v, &s->v2, s->v2, s->v + 1, cpu)))
BENCH(o_ss, RETRY_OURS(restartable_load_cbne_store_store(&s->v, s->v, &s->v2, s->v, s->v + 1,
                                                         cpu)))
BENCH(o_ssr, RETRY_OURS(restartable_load_cbne_store_store_release(&s->v, s->v, &s->v2, s->v,
                                                                  s->v + 1, cpu)))
BENCH(s_ss, RETRY_SHAPE(shape_cbne_store_store(&s->v, s->v, &s->v2, s->v, s->v + 1, cpu)))
BENCH(o_mc, RETRY_OURS(restartable_load_cbne_memcpy_store(&s->v, s->v, s->buf, src16, 16,
                                                          s->v + 1, cpu)))
BENCH(o_mcr, RETRY_OURS(restartable_load_cbne_memcpy_store_release(&s->v, s->v, s->buf, src16,
                                                                   16, s->v + 1, cpu)))
BENCH(s_mc, RETRY_SHAPE(shape_cbne_memcpy_store(&s->v, s->v, s->buf, src16, 16, s->v + 1, cpu)))

/* Pop a node, push it back (the push a compare-store of the head). A list
   found empty (migrations move nodes between lists) skips the push, as a
   caller would, rather than wait for a node: the pop's loop ends unless it
   aborted. */
BENCH(o_list, {
    intptr_t node = 0;
    RETRY_OURS(restartable_load_cbeq_store_add_load_store(&s->head, 0, 0, &node, cpu) ==
               RESTARTABLE_ABORTED)
    if (node)
        RETRY_OURS((*(intptr_t *)node = s->head,
                    restartable_load_cbne_store(&s->head, *(intptr_t *)node, node, cpu)))
})
BENCH(s_list, {
    intptr_t node = 0;
    RETRY_SHAPE(shape_pop(&s->head, 0, 0, &node, cpu) < 0)
    if (node)
        RETRY_SHAPE((*(intptr_t *)node = s->head,
                     shape_cbne_store(&s->head, *(intptr_t *)node, node, cpu)))
})

/* The same with the operations that read the CPU inside their section: no
   CPU read before them, no CPU compare in them. */
BENCH(o_list_here, {
    intptr_t *node = NULL;
    while (restartable_pop_at_current(&slots[0].head, sizeof(struct slot), MAX_CPUS, &node) ==
           RESTARTABLE_ABORTED)
        ;
    if (node)
        while (restartable_push_at_current(&slots[0].head, sizeof(struct slot), MAX_CPUS,
                                           node) != 0)
            ;
})

/* Store an item in the current CPU's buffer and take it back: librseq's
   per-CPU buffer, its push a load_cbne_store_store (the item, then the
   count), its pop a load_cbne_load_cbne_store (the count and the item it
   read, then the count). A full or empty buffer (migrations can move
   items) skips its half. */
#define BUFFER_PUSH(op)                                                                          \
    ({                                                                                           \
        intptr_t n_ = s->bcount;                                                                 \
        n_ >= BUFFER ? 0 : op(&s->bcount, n_, &s->bitems[n_], 7, n_ + 1, cpu);                   \
    })
#define BUFFER_POP(op)                                                                           \
    ({                                                                                           \
        intptr_t n_ = s->bcount;                                                                 \
        n_ == 0 ? 0 : (item = s->bitems[n_ - 1], op(&s->bcount, n_, &s->bitems[n_ - 1], item,    \
                                                     n_ - 1, cpu));                              \
    })
BENCH(o_buffer, {
    intptr_t item = 0;
    RETRY_OURS(BUFFER_PUSH(restartable_load_cbne_store_store))
    RETRY_OURS(BUFFER_POP(restartable_load_cbne_load_cbne_store))
    KEEP(item);
})
BENCH(s_buffer, {
    intptr_t item = 0;
    RETRY_SHAPE(BUFFER_PUSH(shape_cbne_store_store))
    RETRY_SHAPE(BUFFER_POP(shape_cbne_cbne_store))
    KEEP(item);
})
/* The same with the operations that read the CPU inside their section. */
BENCH(o_buffer_here, {
    intptr_t item = 0;
    while (restartable_buffer_push_at_current(&slots[0].bcount, sizeof(struct slot), MAX_CPUS,
                                              BUFFER, 7) == RESTARTABLE_ABORTED)
        ;
    while (restartable_buffer_pop_at_current(&slots[0].bcount, sizeof(struct slot), MAX_CPUS,
                                             &item) == RESTARTABLE_ABORTED)
        ;
    KEEP(item);
})

/* The per-CPU lock of librseq's tests: a section sets the lock word 0 -> 1,
   the holder updates its data, a release store clears the word. */
BENCH(o_lock, {
    struct slot *held = NULL;
    RETRY_OURS((held = s, restartable_load_cbne_store(&s->lock, 0, 1, cpu)))
    held->data++;
    __atomic_store_n(&held->lock, 0, __ATOMIC_RELEASE);
})
BENCH(s_lock, {
    struct slot *held = NULL;
    RETRY_SHAPE((held = s, shape_cbne_store(&s->lock, 0, 1, cpu)))
    held->data++;
    __atomic_store_n(&held->lock, 0, __ATOMIC_RELEASE);
})

/* The counter's slots reached through a pointer in memory, as the
   counter's are through its handle. */
static struct slot *volatile counter_slots = slots;
BENCH(o_counter, { restartable_percpu_counter_add(counter, 1); })
BENCH(s_counter, {
    for (;;) {
        int cpu = shape_cpu();
        if (shape_add(&counter_slots[cpu].v, 1, cpu) == 0)
            break;
    }
})

struct pair {
    const char *name;
    void (*const *ours)(long);  /* PLACEMENTS copies */
    void (*const *shape)(long); /* likewise */
};

static const struct pair pairs[] = {
    {"CPU read (restartable_cpu / rseq_current_cpu)", o_cpu, s_cpu},
    {"load_add_store", o_add, s_add},
    {"load_cbne_store", o_cbne, s_cbne},
    {"load_cbne_load_cbne_store", o_cbne2, s_cbne2},
    {"load_cbne_store_store", o_ss, s_ss},
    {"load_cbne_store_store_release", o_ssr, s_ss},
    {"load_cbne_memcpy_store (16 B)", o_mc, s_mc},
    {"load_cbne_memcpy_store_release (16 B)", o_mcr, s_mc},
    {"list pop + push (at_current)", o_list_here, s_list},
    {"list pop + push (CPU passed)", o_list, s_list},
    {"buffer push + pop (at_current)", o_buffer_here, s_buffer},
    {"buffer push + pop (CPU passed)", o_buffer, s_buffer},
    {"per-CPU lock + unlock", o_lock, s_lock},
    {"counter add / shape add", o_counter, s_counter},
};

/* ------------------------------------------------------------------------ */
/* Timing                                                                    */
/* ------------------------------------------------------------------------ */

static int instructions_fd(void)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_HARDWARE;
    a.size = sizeof a;
    a.config = PERF_COUNT_HW_INSTRUCTIONS;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

struct job {
    void (*fn)(long);
    pthread_barrier_t *barrier;
    double ns;
};

static void *worker(void *arg)
{
    struct job *j = (struct job *)arg;
    /* Registers the thread where the library owns the area: the shape's
       sections have no cold path to do it, and would retry forever. */
    (void)restartable_cpu();
    j->fn(1000); /* warms up */
    pthread_barrier_wait(j->barrier);
    /* The fastest of CHUNKS slices: a slice in which another process took
       the CPU drops out. */
    j->ns = 1e9;
    for (int c = 0; c < CHUNKS; c++) {
        double t = now_ns();
        j->fn(OPS / CHUNKS);
        t = (now_ns() - t) / (OPS / CHUNKS);
        if (t < j->ns)
            j->ns = t;
    }
    return NULL;
}

static double sample(void (*fn)(long), int threads)
{
    pthread_t t[16];
    struct job jobs[16];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) {
        jobs[i].fn = fn;
        jobs[i].barrier = &barrier;
        pthread_create(&t[i], NULL, worker, &jobs[i]);
    }
    double sum = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        sum += jobs[i].ns;
    }
    pthread_barrier_destroy(&barrier);
    return sum / threads;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[n / 2];
}



/* Instructions per operation on this thread, or -1. */
static double instructions(void (*fn)(long))
{
    int fd = instructions_fd();
    if (fd < 0)
        return -1;
    long long before = 0, after = 0;
    fn(1000);
    if (read(fd, &before, sizeof before) != sizeof before)
        return -1;
    fn(OPS / 4);
    if (read(fd, &after, sizeof after) != sizeof after)
        return -1;
    close(fd);
    return (double)(after - before) / (OPS / 4);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 16)
        threads = 1;
    for (int c = 0; c < MAX_CPUS; c++) {
        for (int k = 0; k < NODES; k++) {
            nodes[c][k].next = slots[c].head;
            slots[c].head = (intptr_t)&nodes[c][k];
        }
        slots[c].bcount = BUFFER / 2;
    }
    counter = restartable_percpu_counter_new();
    (void)restartable_cpu();
    if (!restartable_is_available()) {
        printf("rseq not in use (owner %d): the shape has no fallback, nothing to compare\n",
               restartable_owner());
        return 0;
    }
    printf("owner %d | %d thread(s) | %ld ops per thread, %d placements, median of %d runs "
           "each, interleaved\n",
           restartable_owner(), threads, OPS, PLACEMENTS, RUNS);
    printf("%-42s | %8s | %8s | %6s | %8s | %8s | %6s | %s\n", "operation", "ours", "shape",
           "best", "ours", "shape", "median", "instructions/op ours, shape");
    /* Warms the machine up (the first timed row ran slower otherwise): a
       run of the first pair, not counted. */
    (void)sample(pairs[0].ours[0], threads);
    (void)sample(pairs[0].shape[0], threads);
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        double o[PLACEMENTS], s[PLACEMENTS];
        for (int k = 0; k < PLACEMENTS; k++) {
            double a[RUNS], b[RUNS];
            for (int r = 0; r < RUNS; r++) {
                if ((k + r) % 2 == 0) {
                    a[r] = sample(pairs[p].ours[k], threads);
                    b[r] = sample(pairs[p].shape[k], threads);
                } else {
                    b[r] = sample(pairs[p].shape[k], threads);
                    a[r] = sample(pairs[p].ours[k], threads);
                }
            }
            o[k] = median(a, RUNS);
            s[k] = median(b, RUNS);
        }
        /* median() sorts: the lowest, the best placement, comes first. */
        double om = median(o, PLACEMENTS), sm = median(s, PLACEMENTS);
        double ob = o[0], sb = s[0];
        double io = instructions(pairs[p].ours[0]), is = instructions(pairs[p].shape[0]);
        printf("%-42s | %5.2f ns | %5.2f ns | %5.2fx | %5.2f ns | %5.2f ns | %5.2fx | ",
               pairs[p].name, ob, sb, ob / sb, om, sm, om / sm);
        if (io >= 0)
            printf("%.1f, %.1f\n", io, is);
        else
            printf("n/a (perf events refused)\n");
    }
    restartable_percpu_counter_free(counter);
    return 0;
}
