/*
 * The C interface, end to end: compiled as C11, C99 and C++ with -Wall
 * -Wextra -Werror -pedantic, linked to librestartable.so or .a, and run by
 * tests/c_abi.rs in each ownership mode (RESTARTABLE_TEST_EXPECT says which).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "restartable.h"

#include "check.h"

#define THREADS 4
#define ITERATIONS 100000
#define MAX_CPUS 1024

static int owner_expected;
static long ncpus;

/* Registration from a fresh thread: balanced, refused when unbalanced. */
static void *registration_thread(void *arg)
{
    (void)arg;
    CHECK_EQ(restartable_unregister(), -EINVAL);
    CHECK_EQ(restartable_register(), 0);
    switch (owner_expected) {
    case RESTARTABLE_OWNER_LIBC:
        CHECK_EQ(restartable_thread_state(), RESTARTABLE_THREAD_BORROWED);
        CHECK_EQ(restartable_refcount(), 0);
        break;
    case RESTARTABLE_OWNER_LIBRARY:
        CHECK_EQ(restartable_thread_state(), RESTARTABLE_THREAD_REGISTERED);
        CHECK(restartable_refcount() >= 1);
        CHECK(restartable_cpu_raw() >= 0);
        break;
    default:
        CHECK_EQ(restartable_thread_state(), RESTARTABLE_THREAD_UNREGISTERED);
        CHECK_EQ(restartable_refcount(), 0);
        CHECK(restartable_cpu_raw() < 0);
    }
    CHECK_EQ(restartable_register(), 0);
    CHECK_EQ(restartable_unregister(), 0);
    CHECK_EQ(restartable_unregister(), 0);
    CHECK_EQ(restartable_unregister(), -EINVAL);
    CHECK_EQ(restartable_unregister(), -EINVAL);
    if (owner_expected == RESTARTABLE_OWNER_LIBRARY) {
        /* The last hold unregistered (no lazy hold was taken here). */
        CHECK_EQ(restartable_thread_state(), RESTARTABLE_THREAD_UNREGISTERED);
        CHECK_EQ(restartable_refcount(), 0);
        CHECK(restartable_cpu_raw() < 0);
    }
    /* The CPU read still works: it registers lazily or falls back. */
    CHECK(restartable_cpu() >= 0 && restartable_cpu() < ncpus);
    return NULL;
}

static void check_cpu_reads(void)
{
    int cpus[MAX_CPUS];
    int n = allowed_cpus(cpus, MAX_CPUS);
    int i;
    int rseq = owner_expected != RESTARTABLE_OWNER_NONE;
    /* node_id and mm_cid: where rseq is in use and the kernel fills them. */
    int ids = rseq && kernel_rseq_feature_size() >= 28;
    CHECK(n > 0);
    if (rseq)
        CHECK_EQ(restartable_feature_size() >= 28, ids);
    for (i = 0; i < n; i++) {
        pin_to(cpus[i]);
        CHECK_EQ(restartable_cpu(), cpus[i]);
        CHECK_EQ(restartable_cpu_slow(), cpus[i]);
        CHECK_EQ(sched_getcpu(), cpus[i]);
        if (rseq) {
            CHECK_EQ(restartable_cpu_raw(), cpus[i]);
            CHECK_EQ(restartable_cpu_start(), (uint32_t)cpus[i]);
            CHECK_EQ(rseq_location()->cpu_id, (uint32_t)cpus[i]);
        } else {
            CHECK(restartable_cpu_raw() < 0);
        }
        if (ids) {
            CHECK(restartable_node_id() >= 0);
            CHECK(restartable_mm_cid() >= 0 && restartable_mm_cid() < ncpus);
        } else {
            CHECK_EQ(restartable_node_id(), -1);
            CHECK_EQ(restartable_mm_cid(), -1);
        }
    }
    restore_affinity(cpus, n);
}

static void check_area(void)
{
    struct rseq_area *area = rseq_location();
    CHECK(area != NULL);
    CHECK(((uintptr_t)area & 31) == 0);
#if defined(__x86_64__) && defined(__GNUC__)
    {
        uintptr_t tp;
        __asm__("movq %%fs:0, %0" : "=r"(tp));
        CHECK_EQ((uintptr_t)area, tp + (uintptr_t)restartable_area_offset);
    }
#elif defined(__aarch64__) && defined(__GNUC__)
    CHECK_EQ((uintptr_t)area,
             (uintptr_t)__builtin_thread_pointer() + (uintptr_t)restartable_area_offset);
#endif
    /* Clearing rseq_cs is always allowed and leaves it 0. */
    restartable_prepare_unload();
    CHECK_EQ(area->rseq_cs, 0);
}

static intptr_t *slots;
static restartable_percpu_counter_t *counter;

static void add_on_current_cpu(intptr_t *base, intptr_t count)
{
    for (;;) {
        int cpu = restartable_cpu();
        if (restartable_load_add_store(&base[cpu], count, cpu) == RESTARTABLE_COMMITTED)
            return;
    }
}

/* Increments through compare-and-store: retries on compare failure too. */
static void cbne_increment(intptr_t *base)
{
    for (;;) {
        int cpu = restartable_cpu();
        intptr_t seen = *(volatile intptr_t *)&base[cpu];
        if (restartable_load_cbne_store(&base[cpu], seen, seen + 1, cpu) ==
            RESTARTABLE_COMMITTED)
            return;
    }
}

static void *counting_thread(void *arg)
{
    intptr_t *cbne_slots = (intptr_t *)arg;
    int i;
    for (i = 0; i < ITERATIONS; i++) {
        add_on_current_cpu(slots, 1);
        cbne_increment(cbne_slots);
        restartable_percpu_counter_add(counter, 3);
    }
    return NULL;
}

static intptr_t sum(const intptr_t *base)
{
    intptr_t total = 0;
    long i;
    for (i = 0; i < ncpus; i++)
        total += base[i];
    return total;
}

static void check_counting(void)
{
    pthread_t threads[THREADS];
    intptr_t *cbne_slots = (intptr_t *)calloc((size_t)ncpus, sizeof(intptr_t));
    int i;
    slots = (intptr_t *)calloc((size_t)ncpus, sizeof(intptr_t));
    counter = restartable_percpu_counter_new();
    CHECK(slots != NULL && cbne_slots != NULL && counter != NULL);
    {
        /* The inline add takes the stride as this constant. */
        const struct restartable_percpu_counter_fast *f =
            (const struct restartable_percpu_counter_fast *)(const void *)counter;
        CHECK_EQ((long long)f->stride, 1LL << RESTARTABLE_COUNTER_STRIDE_SHIFT);
        CHECK_EQ((long long)f->stride_shift, RESTARTABLE_COUNTER_STRIDE_SHIFT);
        CHECK(f->base == (const char *)(const void *)counter + RESTARTABLE_COUNTER_SLOTS_OFFSET);
    }
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_create(&threads[i], NULL, counting_thread, cbne_slots) == 0);
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);
    CHECK_EQ(sum(slots), (intptr_t)THREADS * ITERATIONS);
    CHECK_EQ(sum(cbne_slots), (intptr_t)THREADS * ITERATIONS);
    CHECK_EQ(restartable_percpu_counter_sum(counter), 3LL * THREADS * ITERATIONS);
    CHECK_EQ(restartable_percpu_counter_reset(counter), 3LL * THREADS * ITERATIONS);
    CHECK_EQ(restartable_percpu_counter_sum(counter), 0);
    restartable_percpu_counter_add_slow(counter, -7);
    restartable_percpu_counter_add(counter, 2);
    CHECK_EQ(restartable_percpu_counter_sum(counter), -5);
    restartable_percpu_counter_free(counter);
    restartable_percpu_counter_free(NULL);
    free(slots);
    free(cbne_slots);
}

/* Runs `op` until it does not abort. */
#define RETRY(call)                                                                              \
    __extension__({                                                                             \
        int retry_r_;                                                                           \
        do {                                                                                    \
            cpu = restartable_cpu();                                                            \
            retry_r_ = (call);                                                                  \
        } while (retry_r_ == RESTARTABLE_ABORTED);                                              \
        retry_r_;                                                                               \
    })

/* Every out-of-line operation once, single-threaded, on per-CPU words. */
static void check_operations(void)
{
    intptr_t *w = (intptr_t *)calloc((size_t)ncpus, sizeof(intptr_t));
    intptr_t *w2 = (intptr_t *)calloc((size_t)ncpus, sizeof(intptr_t));
    intptr_t node[2];
    intptr_t popped = 0;
    intptr_t target = 0;
    intptr_t *holder[1];
    char dst[8] = "xxxxxxx";
    int cpu = 0;
    int cid;
    CHECK(w != NULL && w2 != NULL);

    CHECK_EQ(RETRY(restartable_load_add_store_slow(&w[cpu], 5, cpu)), 0);
    CHECK_EQ(sum(w), 5);
    CHECK_EQ(RETRY(restartable_load_cbne_store_slow(&w[cpu], w[cpu] + 1, 9, cpu)), 1);
    CHECK_EQ(RETRY(restartable_load_cbne_store_slow(&w[cpu], w[cpu], 0, cpu)), 0);
    CHECK_EQ(sum(w), 0);

    /* Compare-and-compare-and-store. */
    CHECK_EQ(RETRY(restartable_load_cbne_load_cbne_store(&w[cpu], 0, &w2[0], 1, 7, cpu)), 1);
    CHECK_EQ(RETRY(restartable_load_cbne_load_cbne_store(&w[cpu], 0, &w2[0], 0, 7, cpu)), 0);
    CHECK_EQ(sum(w), 7);
    /* Two stores. */
    CHECK_EQ(RETRY(restartable_load_cbne_store_store(&w[cpu], 7, &w2[1], 11, 8, cpu)), 0);
    CHECK_EQ(w2[1], 11);
    CHECK_EQ(RETRY(restartable_load_cbne_store_store_release(&w[cpu], 8, &w2[1], 12, 0, cpu)), 0);
    CHECK_EQ(w2[1], 12);
    CHECK_EQ(sum(w), 0);
    /* memcpy then store. */
    CHECK_EQ(RETRY(restartable_load_cbne_memcpy_store(&w[cpu], 0, dst, "abc", 3, 1, cpu)), 0);
    CHECK(memcmp(dst, "abcxxxx", 7) == 0);
    CHECK_EQ(RETRY(restartable_load_cbne_memcpy_store(&w[cpu], 0, dst, "zzz", 3, 1, cpu)), 1);
    CHECK(memcmp(dst, "abcxxxx", 7) == 0);
    w[cpu] = 0;
    {
        /* Lengths around the eight-byte steps: exactly len bytes copied. */
        static const size_t lens[] = {1, 7, 8, 9, 16, 17, 31};
        static const char from[32] = "0123456789abcdefghijklmnopqrstu";
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            char to[40];
            memset(to, '.', sizeof to);
            CHECK_EQ(RETRY(restartable_load_cbne_memcpy_store(&w[cpu], 0, to, from, lens[k], 0,
                                                              cpu)),
                     0);
            CHECK(memcmp(to, from, lens[k]) == 0);
            for (size_t b = lens[k]; b < sizeof to; b++)
                CHECK_EQ(to[b], '.');
        }
    }
    {
        /* dst 1 to 7 bytes above src, and 8: the bytes of a forward byte
           copy (the first ones repeat). */
        for (size_t d = 1; d <= 8; d++) {
            char buf[32], want[32];
            for (size_t b = 0; b < sizeof buf; b++)
                buf[b] = want[b] = (char)('a' + b);
            for (size_t b = 0; b < 20; b++)
                want[d + b] = want[b];
            CHECK_EQ(RETRY(restartable_load_cbne_memcpy_store(&w[cpu], 0, buf + d, buf, 20, 0, cpu)),
                     0);
            CHECK(memcmp(buf, want, sizeof buf) == 0);
        }
    }
    /* List pop: a one-node list whose `next` is 0. */
    node[0] = 0;
    node[1] = 0;
    w[cpu] = (intptr_t)&node[0];
    CHECK_EQ(RETRY(restartable_load_cbeq_store_add_load_store(&w[cpu], 0, 0, &popped, cpu)), 0);
    CHECK_EQ(popped, (intptr_t)&node[0]);
    CHECK_EQ(sum(w), 0);
    CHECK_EQ(RETRY(restartable_load_cbeq_store_add_load_store(&w[cpu], 0, 0, &popped, cpu)), 1);
    /* Pointer chase then add: *(w[cpu] + 0) holds &target. */
    holder[0] = &target;
    w[cpu] = (intptr_t)&holder[0];
    CHECK_EQ(RETRY(restartable_load_add_load_load_add_store(&w[cpu], 0, 4, cpu)), 0);
    CHECK_EQ(target, 4);
    w[cpu] = 0;

    /* The mm_cid forms, on the slot of the concurrency id. */
    do {
        cid = restartable_mm_cid();
        if (cid < 0)
            cid = 0; /* no mm_cid: the fallback ignores the index */
    } while (restartable_load_add_store_mm_cid(&w[cid], 2, cid) == RESTARTABLE_ABORTED);
    CHECK_EQ(sum(w), 2);
    do {
        cid = restartable_mm_cid();
        if (cid < 0)
            cid = 0;
    } while (restartable_load_cbne_store_mm_cid(&w[cid], w[cid], w[cid] - 2, cid) ==
             RESTARTABLE_ABORTED);
    CHECK_EQ(sum(w), 0);

    /* A section for a CPU the thread is not on aborts and changes nothing
       (without rseq the fallback ignores the CPU and commits). */
    cpu = (int)ncpus + 5; /* no thread runs there */
    if (owner_expected != RESTARTABLE_OWNER_NONE) {
        CHECK_EQ(restartable_load_add_store(&w[0], 1, cpu), RESTARTABLE_ABORTED);
        CHECK_EQ(restartable_load_add_store_slow(&w[0], 1, cpu), RESTARTABLE_ABORTED);
        CHECK_EQ(restartable_load_cbne_store(&w[0], 0, 1, cpu), RESTARTABLE_ABORTED);
        CHECK_EQ(sum(w), 0);
    } else {
        CHECK_EQ(restartable_load_add_store(&w[0], 1, cpu), RESTARTABLE_COMMITTED);
        CHECK_EQ(sum(w), 1);
        w[0] = 0;
    }
    /* A negative CPU or concurrency id is refused, in every mode, touching
       nothing: a retry loop on RESTARTABLE_ABORTED ends. */
    CHECK_EQ(restartable_load_add_store(&w[0], 1, -5), -EINVAL);
    CHECK_EQ(restartable_load_add_store_slow(&w[0], 1, -1), -EINVAL);
    CHECK_EQ(restartable_load_cbne_store(&w[0], 0, 1, -5), -EINVAL);
    CHECK_EQ(restartable_load_cbne_store_slow(&w[0], 0, 1, -5), -EINVAL);
    CHECK_EQ(restartable_load_cbne_store_store(&w[0], 0, &w2[0], 3, 1, -2), -EINVAL);
    CHECK_EQ(restartable_load_add_store_mm_cid(&w[0], 1, -1), -EINVAL);
    CHECK_EQ(sum(w), 0);
    CHECK_EQ(w2[0], 0);
    /* A NULL counter: add does nothing, sum and reset read 0. */
    restartable_percpu_counter_add(NULL, 1);
    restartable_percpu_counter_add_slow(NULL, 1);
    CHECK_EQ(restartable_percpu_counter_sum(NULL), 0);
    CHECK_EQ(restartable_percpu_counter_reset(NULL), 0);
    restartable_percpu_counter_free(NULL);
    free(w);
    free(w2);
}

#ifdef RESTARTABLE_INLINE_X86_64
/* The worked example of the header, verbatim. */
static int store_max(intptr_t *slot, intptr_t value, int cpu)
{
    if (cpu < 0)
        return -EINVAL;
    __asm__ goto(
        RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")
        RESTARTABLE_CS_EXIT_POINT("1", "%l[not_larger]")
        RESTARTABLE_CS_ARM("3", "rax")
        RESTARTABLE_CS_START("1")
        RESTARTABLE_CS_CPU_CHECK(RESTARTABLE_CPU_ID_FIELD, "%l[aborted]")
        "cmpq %[value], (%[slot])\n\t"
        "jge %l[not_larger]\n\t"
        "movq %[value], (%[slot])\n\t"
        RESTARTABLE_CS_POST_COMMIT("2")
        RESTARTABLE_CS_ABORT("4", "%l[aborted]")
        :
        : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu),
          [slot] "r"(slot), [value] "r"(value)
        : "memory", "cc", "rax"
        : aborted, not_larger);
    return RESTARTABLE_COMMITTED;
aborted:
    return RESTARTABLE_ABORTED;
not_larger:
    return RESTARTABLE_COMPARE_FAILED;
}
#elif defined(RESTARTABLE_INLINE_AARCH64)
/* The worked example of the header, in its aarch64 form. */
static int store_max(intptr_t *slot, intptr_t value, int cpu)
{
    if (cpu < 0)
        return -EINVAL;
    __asm__ goto(
        RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")
        RESTARTABLE_CS_EXIT_POINT("1", "%l[not_larger]")
        RESTARTABLE_CS_ARM("3", "x17")
        RESTARTABLE_CS_START("1")
        RESTARTABLE_CS_CPU_CHECK(RESTARTABLE_CPU_ID_FIELD, "%l[aborted]")
        "ldr x17, [%[slot]]\n\t"
        "cmp x17, %[value]\n\t"
        "b.ge %l[not_larger]\n\t"
        "str %[value], [%[slot]]\n\t"
        RESTARTABLE_CS_POST_COMMIT("2")
        RESTARTABLE_CS_ABORT("4", "%l[aborted]")
        :
        : [rseq_area] "r"(restartable_area()), [rseq_cpu] "r"(cpu),
          [slot] "r"(slot), [value] "r"(value)
        : "memory", "cc", "x17"
        : aborted, not_larger);
    return RESTARTABLE_COMMITTED;
aborted:
    return RESTARTABLE_ABORTED;
not_larger:
    return RESTARTABLE_COMPARE_FAILED;
}
#endif

#if defined(RESTARTABLE_INLINE_X86_64) || defined(RESTARTABLE_INLINE_AARCH64)
static void check_own_section(void)
{
    intptr_t *w = (intptr_t *)calloc((size_t)ncpus, sizeof(intptr_t));
    int cpu = 0;
    CHECK(w != NULL);
    /* A negative CPU, which an unregistered area's cpu_id would match, is
       refused before the section. */
    CHECK_EQ(store_max(&w[0], 5, RESTARTABLE_CPU_ID_UNINITIALIZED), -EINVAL);
    CHECK_EQ(store_max(&w[0], 5, RESTARTABLE_CPU_ID_REGISTRATION_FAILED), -EINVAL);
    CHECK_EQ(sum(w), 0);
    if (!restartable_is_available()) {
        /* Not registered: the CPU check can never pass. */
        CHECK_EQ(store_max(&w[0], 5, restartable_cpu()), RESTARTABLE_ABORTED);
        CHECK_EQ(sum(w), 0);
        free(w);
        return;
    }
    CHECK_EQ(RETRY(store_max(&w[cpu], 5, cpu)), RESTARTABLE_COMMITTED);
    CHECK_EQ(sum(w), 5);
    w[cpu] = 0;
    CHECK_EQ(RETRY((w[cpu] = 9, store_max(&w[cpu], 5, cpu))), RESTARTABLE_COMPARE_FAILED);
    CHECK_EQ(sum(w), 9);
    free(w);
}
#endif

/* The list operations that find their slot themselves, on a pinned
   thread: pushes stack up on the pinned CPU's list, pops take them back in
   order, an empty list fails its comparison; nonsense is refused. */
static void check_lists(int cpu)
{
    struct list_slot {
        intptr_t head;
        intptr_t guard;
    };
    uint32_t n = restartable_possible_cpus();
    struct list_slot *slots = (struct list_slot *)calloc(n, sizeof *slots);
    size_t stride = sizeof *slots;
    intptr_t nodes[2][2] = {{0, 10}, {0, 11}};
    intptr_t *popped = NULL;
    intptr_t unaligned[2];
    int r;
    uint32_t i;
    CHECK(slots != NULL);
    CHECK(n >= (uint32_t)ncpus);
    for (i = 0; i < n; i++)
        slots[i].guard = -7;
    do
        r = restartable_push_at_current(slots, stride, n, nodes[0]);
    while (r == RESTARTABLE_ABORTED);
    CHECK_EQ(r, RESTARTABLE_COMMITTED);
    do
        r = restartable_push_at_current_slow(slots, stride, n, nodes[1]);
    while (r == RESTARTABLE_ABORTED);
    CHECK_EQ(r, RESTARTABLE_COMMITTED);
    for (i = 0; i < n; i++) {
        CHECK_EQ(slots[i].guard, -7);
        CHECK_EQ(slots[i].head, i == (uint32_t)cpu ? (intptr_t)nodes[1] : 0);
    }
    CHECK_EQ(nodes[1][0], (intptr_t)nodes[0]);
    CHECK_EQ(nodes[0][0], 0);
    do
        r = restartable_pop_at_current(slots, stride, n, &popped);
    while (r == RESTARTABLE_ABORTED);
    CHECK_EQ(r, RESTARTABLE_COMMITTED);
    CHECK(popped == nodes[1]);
    do
        r = restartable_pop_at_current_slow(slots, stride, n, &popped);
    while (r == RESTARTABLE_ABORTED);
    CHECK_EQ(r, RESTARTABLE_COMMITTED);
    CHECK(popped == nodes[0]);
    do
        r = restartable_pop_at_current(slots, stride, n, &popped);
    while (r == RESTARTABLE_ABORTED);
    CHECK_EQ(r, RESTARTABLE_COMPARE_FAILED);
    CHECK(popped == NULL);
    CHECK_EQ(slots[cpu].head, 0);
    CHECK_EQ(nodes[0][1] + nodes[1][1], 21);
    /* Indexed by concurrency id: a pinned thread's id may still change, so
       only the count is certain. */
    do
        r = restartable_push_at_current_mm_cid(slots, stride, n, nodes[0]);
    while (r == RESTARTABLE_ABORTED);
    CHECK_EQ(r, RESTARTABLE_COMMITTED);
    for (i = 0, r = 0; i < n; i++)
        r += slots[i].head == (intptr_t)nodes[0];
    CHECK_EQ(r, 1);
    for (i = 0; i < n; i++)
        slots[i].head = 0;
    /* Refused, touching nothing: too few slots, a stride that is not whole
       words, NULL or misaligned pointers. */
    CHECK_EQ(restartable_push_at_current_slow(slots, stride, n - 1, nodes[1]), -EINVAL);
    CHECK_EQ(restartable_push_at_current_slow(slots, stride, 0, nodes[1]), -EINVAL);
    CHECK_EQ(restartable_push_at_current_slow(slots, 12, n, nodes[1]), -EINVAL);
    CHECK_EQ(restartable_push_at_current_slow(NULL, stride, n, nodes[1]), -EINVAL);
    CHECK_EQ(restartable_push_at_current_mm_cid_slow(slots, stride, n, NULL), -EINVAL);
    CHECK_EQ(restartable_push_at_current_slow(slots, stride, n,
                                              (intptr_t *)(void *)((char *)unaligned + 1)),
             -EINVAL);
    CHECK_EQ(restartable_pop_at_current_slow(slots, stride, n, NULL), -EINVAL);
    CHECK_EQ(restartable_pop_at_current_mm_cid_slow((char *)slots + 4, stride, n, &popped),
             -EINVAL);
    /* The inline form refuses a slot array too small for this CPU the same
       way (its index check sends it to the cold path). */
    if (cpu > 0)
        CHECK_EQ(restartable_push_at_current(slots, stride, (uint32_t)cpu, nodes[1]), -EINVAL);
    for (i = 0; i < n; i++)
        CHECK(slots[i].head == 0 && slots[i].guard == -7);
    CHECK_EQ(nodes[1][0], (intptr_t)nodes[0]);
    free(slots);
}

/* The per-CPU buffer at the current CPU: pushes fill the pinned CPU's
   buffer up to its capacity, pops take the items back last first, and bad
   arguments are refused. */
#define BUFFER_CAPACITY 3
static void check_buffers(int cpu)
{
    struct buffer_slot {
        intptr_t count;
        intptr_t items[BUFFER_CAPACITY];
        intptr_t guard;
    };
    uint32_t n = restartable_possible_cpus();
    struct buffer_slot *slots = (struct buffer_slot *)calloc(n, sizeof *slots);
    size_t stride = sizeof *slots;
    intptr_t item = -1;
    intptr_t unaligned[2];
    int r, k;
    uint32_t i;
    CHECK(slots != NULL);
    for (i = 0; i < n; i++)
        slots[i].guard = -7;
    for (k = 0; k < BUFFER_CAPACITY; k++) {
        do
            r = k % 2 ? restartable_buffer_push_at_current_slow(slots, stride, n,
                                                                BUFFER_CAPACITY, 10 + k)
                      : restartable_buffer_push_at_current(slots, stride, n, BUFFER_CAPACITY,
                                                           10 + k);
        while (r == RESTARTABLE_ABORTED);
        CHECK_EQ(r, RESTARTABLE_COMMITTED);
    }
    /* Full: refused, with nothing written. */
    do
        r = restartable_buffer_push_at_current(slots, stride, n, BUFFER_CAPACITY, 99);
    while (r == RESTARTABLE_ABORTED);
    CHECK_EQ(r, RESTARTABLE_COMPARE_FAILED);
    for (i = 0; i < n; i++) {
        CHECK_EQ(slots[i].guard, -7);
        CHECK_EQ(slots[i].count, i == (uint32_t)cpu ? BUFFER_CAPACITY : 0);
    }
    for (k = 0; k < BUFFER_CAPACITY; k++)
        CHECK_EQ(slots[cpu].items[k], 10 + k);
    for (k = BUFFER_CAPACITY - 1; k >= 0; k--) {
        do
            r = k % 2 ? restartable_buffer_pop_at_current_slow(slots, stride, n, &item)
                      : restartable_buffer_pop_at_current(slots, stride, n, &item);
        while (r == RESTARTABLE_ABORTED);
        CHECK_EQ(r, RESTARTABLE_COMMITTED);
        CHECK_EQ(item, 10 + k);
    }
    do
        r = restartable_buffer_pop_at_current(slots, stride, n, &item);
    while (r == RESTARTABLE_ABORTED);
    CHECK_EQ(r, RESTARTABLE_COMPARE_FAILED);
    CHECK_EQ(item, 0);
    CHECK_EQ(slots[cpu].count, 0);
    /* Indexed by concurrency id: a pinned thread's id may still change, so
       only the totals are certain. */
    do
        r = restartable_buffer_push_at_current_mm_cid(slots, stride, n, BUFFER_CAPACITY, 5);
    while (r == RESTARTABLE_ABORTED);
    CHECK_EQ(r, RESTARTABLE_COMMITTED);
    for (i = 0, r = 0; i < n; i++)
        r += (int)slots[i].count;
    CHECK_EQ(r, 1);
    for (i = 0; i < n; i++)
        slots[i].count = 0;
    /* Refused, touching nothing: too few slots, a stride that is not whole
       words, a capacity the slots cannot hold, NULL or misaligned pointers;
       the inline form refuses a capacity too large for the slots itself. */
    CHECK_EQ(restartable_buffer_push_at_current_slow(slots, stride, n - 1, 1, 5), -EINVAL);
    CHECK_EQ(restartable_buffer_push_at_current_slow(slots, 12, n, 1, 5), -EINVAL);
    CHECK_EQ(restartable_buffer_push_at_current_slow(NULL, stride, n, 1, 5), -EINVAL);
    CHECK_EQ(restartable_buffer_push_at_current_mm_cid_slow(slots, stride, n, BUFFER_CAPACITY + 2,
                                                            5),
             -EINVAL);
    CHECK_EQ(restartable_buffer_push_at_current(slots, stride, n, BUFFER_CAPACITY + 2, 5),
             -EINVAL);
    CHECK_EQ(restartable_buffer_pop_at_current_slow(slots, stride, n, NULL), -EINVAL);
    CHECK_EQ(restartable_buffer_pop_at_current_slow(slots, stride, n,
                                                    (intptr_t *)(void *)((char *)unaligned + 1)),
             -EINVAL);
    CHECK_EQ(restartable_buffer_pop_at_current_mm_cid_slow((char *)slots + 4, stride, n, &item),
             -EINVAL);
    /* The inline form refuses a slot array too small for this CPU the same
       way (its index check sends it to the cold path). */
    if (cpu > 0)
        CHECK_EQ(restartable_buffer_push_at_current(slots, stride, (uint32_t)cpu, 1, 5), -EINVAL);
    for (i = 0; i < n; i++)
        CHECK(slots[i].count == 0 && slots[i].guard == -7);
    free(slots);
}

int main(void)
{
    pthread_t t;
    owner_expected = expected_owner();
    ncpus = sysconf(_SC_NPROCESSORS_CONF);
    CHECK(ncpus > 0);

    CHECK_EQ(restartable_owner(), owner_expected);
    if (owner_expected == RESTARTABLE_OWNER_NONE) {
        CHECK_EQ(restartable_feature_size(), 0);
        CHECK(!restartable_is_available());
    } else {
        CHECK(restartable_feature_size() >= 20);
        CHECK(restartable_is_available());
        CHECK_EQ(restartable_thread_state(), owner_expected == RESTARTABLE_OWNER_LIBC
                                                 ? RESTARTABLE_THREAD_BORROWED
                                                 : RESTARTABLE_THREAD_REGISTERED);
    }
    check_area();
    check_cpu_reads();
    CHECK(pthread_create(&t, NULL, registration_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    {
        /* The operations below expect the words of one CPU: stay on it. */
        int cpus[MAX_CPUS];
        int n = allowed_cpus(cpus, MAX_CPUS);
        CHECK(n > 0);
        pin_to(cpus[0]);
        check_operations();
        check_lists(cpus[0]);
        check_buffers(cpus[0]);
#if defined(RESTARTABLE_INLINE_X86_64) || defined(RESTARTABLE_INLINE_AARCH64)
        check_own_section();
#endif
        restore_affinity(cpus, n);
    }
    check_counting();
    {
        /* The time-slice extension: a status, an enable that agrees with
           it, and a begin/end pair that is a no-op unless it is enabled. */
        int status = restartable_slice_status();
        int enabled = restartable_slice_enable();
        int token;
        CHECK(status != 0 && status >= RESTARTABLE_SLICE_KERNEL_ERROR &&
              status <= RESTARTABLE_SLICE_ENABLED);
        CHECK(enabled == 0 || enabled == status);
        if (owner_expected == RESTARTABLE_OWNER_NONE)
            CHECK_EQ(status, RESTARTABLE_SLICE_NO_RSEQ);
        token = restartable_slice_begin();
        CHECK_EQ(token, restartable_slice_status() == RESTARTABLE_SLICE_ENABLED);
        restartable_slice_end(token);
        CHECK(restartable_slice_reason(status) != NULL);
        printf("header_test: slice extension %d (%s), registration length %u\n", status,
               restartable_slice_reason(status), restartable_registration_len());
        CHECK(restartable_registration_len() == 0 || restartable_registration_len() >= 32);
    }
    printf("header_test: all checks passed (owner %d, feature size %u, kernel feature size "
           "%lu: node_id and mm_cid %s, aborts %llu)\n",
           restartable_owner(), restartable_feature_size(), kernel_rseq_feature_size(),
           owner_expected != RESTARTABLE_OWNER_NONE && kernel_rseq_feature_size() >= 28
               ? "read"
               : "absent (-1)",
           (unsigned long long)restartable_abort_count());
    return 0;
}
