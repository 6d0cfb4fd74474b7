/*
 * The contract of the header's inline operations and section macros, run by
 * tests/c_abi.rs (RESTARTABLE_TEST_EXPECT names the owner to expect):
 *
 *   contract_test negative N   a negative CPU is refused and touches
 *                              nothing; two threads on one CPU, N updates
 *                              each, whatever CPU value the area holds:
 *                              the words end exact
 *   contract_test mm_cid       a section indexed by mm_cid never commits
 *                              on an area that is not registered
 *   contract_test forms N      every inline operation, by CPU and by
 *                              mm_cid, N times on each of 3 threads (and
 *                              the release forms): every count exact, every
 *                              list node kept, every copy whole
 *   contract_test offset       restartable_area_offset read before and
 *                              after the process turns RESTARTABLE_OWNER_NONE
 *                              (library-owned mode): the new value is seen
 *
 * Compiled as C and C++ with -O2, -Wall -Wextra -Werror -pedantic.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/syscall.h>

#include "restartable.h"

#include "check.h"

#define MAX_CPUS 1024

static int owner_expected;

/* ------------------------------------------------------------------------ */
/* negative                                                                  */
/* ------------------------------------------------------------------------ */

/* The values a thread's area holds before or without registration, and one
   more that is never a CPU. */
static const int negative_cpus[] = {RESTARTABLE_CPU_ID_UNINITIALIZED,
                                    RESTARTABLE_CPU_ID_REGISTRATION_FAILED, -7, INT_MIN};

/* Every inline operation of the header refuses `cpu` and leaves memory as
   it was. */
static void check_refused(int cpu)
{
    intptr_t w = 40;
    CHECK_EQ(restartable_load_add_store(&w, 1, cpu), -EINVAL);
    CHECK_EQ(w, 40);
    CHECK_EQ(restartable_load_cbne_store(&w, 40, 41, cpu), -EINVAL);
    CHECK_EQ(w, 40);
    CHECK_EQ(restartable_load_cbne_store(&w, 39, 41, cpu), -EINVAL);
    CHECK_EQ(w, 40);
}

static void check_all_refused(void)
{
    size_t i;
    int raw = restartable_cpu_raw();
    for (i = 0; i < sizeof negative_cpus / sizeof negative_cpus[0]; i++)
        check_refused(negative_cpus[i]);
    /* What the calling thread's area holds, when it is negative. */
    if (raw < 0)
        check_refused(raw);
}

/* A thread that has not used the library yet: its area (library-owned
   mode) or the inert one (no rseq) reads a negative cpu_id. */
static void *fresh_thread(void *arg)
{
    int raw = restartable_cpu_raw();
    (void)arg;
    if (owner_expected == RESTARTABLE_OWNER_LIBC)
        CHECK(raw >= 0); /* glibc registered it in pthread_create */
    else
        CHECK(raw < 0);
    check_all_refused();
    /* Nothing above registered the thread. */
    CHECK_EQ(restartable_cpu_raw(), raw);
    return NULL;
}

static intptr_t shared_add;
static intptr_t shared_cbne;
static long iterations;
static int the_cpu;
static pthread_barrier_t start_line;
static volatile int updaters_done;

/* What one updating thread saw. */
struct tally {
    long raw_committed; /* calls with the area's CPU value that committed */
    long refused;       /* ... that were refused */
    long committed;     /* calls with restartable_cpu() (all commit) */
};

/* Makes `iterations` calls of each operation on the shared words with the
   CPU value the area holds (negative before registration or without rseq),
   and counts what they report; then an eighth as many the usual way, with
   restartable_cpu(). A failed compare reads the word again; an abort (a
   preemption, with rseq) tries again. */
static void *update_thread(void *arg)
{
    struct tally *t = (struct tally *)arg;
    long i;
    int cpu;
    int r;
    pin_to(the_cpu);
    cpu = restartable_cpu_raw();
    pthread_barrier_wait(&start_line);
    for (i = 0; i < iterations; i++) {
        do {
            intptr_t seen = *(volatile intptr_t *)&shared_cbne;
            r = restartable_load_cbne_store(&shared_cbne, seen, seen + 1, cpu);
        } while (r == RESTARTABLE_COMPARE_FAILED || r == RESTARTABLE_ABORTED);
        t->raw_committed += r == RESTARTABLE_COMMITTED;
        t->refused += r == -EINVAL;
        do
            r = restartable_load_add_store(&shared_add, 1, cpu);
        while (r == RESTARTABLE_ABORTED);
        t->raw_committed += r == RESTARTABLE_COMMITTED;
        t->refused += r == -EINVAL;
    }
    for (i = 0; i < iterations / 8; i++) {
        do {
            intptr_t seen = *(volatile intptr_t *)&shared_cbne;
            cpu = restartable_cpu();
            r = restartable_load_cbne_store(&shared_cbne, seen, seen + 1, cpu);
        } while (r != RESTARTABLE_COMMITTED);
        do {
            cpu = restartable_cpu();
            r = restartable_load_add_store(&shared_add, 1, cpu);
        } while (r != RESTARTABLE_COMMITTED);
        t->committed += 2;
    }
    return NULL;
}

/* Wakes up on the updaters' CPU every few microseconds until they finish:
   each wake-up preempts whichever updater runs, wherever it is. */
static void *preempting_thread(void *arg)
{
    struct timespec pause = {0, 20000};
    (void)arg;
    pin_to(the_cpu);
    pthread_barrier_wait(&start_line);
    while (!updaters_done)
        nanosleep(&pause, NULL);
    return NULL;
}

static void negative(long n)
{
    pthread_t threads[3];
    pthread_t fresh;
    struct tally tallies[2];
    int cpus[MAX_CPUS];
    long raw_committed;
    long committed;
    int i;
    CHECK(allowed_cpus(cpus, MAX_CPUS) > 0);

    check_all_refused();
    CHECK(pthread_create(&fresh, NULL, fresh_thread, NULL) == 0);
    CHECK(pthread_join(fresh, NULL) == 0);

    /* Two threads on one CPU: sections on one CPU never overlap, the
       fallback is atomic, so each word counts exactly the calls that
       reported a commit. A refused call touches nothing. */
    iterations = n;
    the_cpu = cpus[0];
    memset(tallies, 0, sizeof tallies);
    CHECK(pthread_barrier_init(&start_line, NULL, 3) == 0);
    for (i = 0; i < 2; i++)
        CHECK(pthread_create(&threads[i], NULL, update_thread, &tallies[i]) == 0);
    CHECK(pthread_create(&threads[2], NULL, preempting_thread, NULL) == 0);
    for (i = 0; i < 2; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);
    updaters_done = 1;
    CHECK(pthread_join(threads[2], NULL) == 0);
    CHECK(pthread_barrier_destroy(&start_line) == 0);
    raw_committed = tallies[0].raw_committed + tallies[1].raw_committed;
    committed = raw_committed + tallies[0].committed + tallies[1].committed;
    printf("negative: %ld calls with the area's CPU value committed, %ld refused\n",
           raw_committed, tallies[0].refused + tallies[1].refused);
    for (i = 0; i < 2; i++) {
        CHECK_EQ(tallies[i].raw_committed + tallies[i].refused, 2 * n);
        CHECK_EQ(tallies[i].committed, 2 * (n / 8));
    }
    CHECK_EQ(shared_cbne + shared_add, committed);
    if (owner_expected != RESTARTABLE_OWNER_LIBC)
        CHECK_EQ(raw_committed, 0); /* no updater registered before its read */
    printf("negative: ok\n");
}

/* ------------------------------------------------------------------------ */
/* mm_cid                                                                    */
/* ------------------------------------------------------------------------ */

#ifdef RESTARTABLE_INLINE_X86_64
/* A section indexed by the concurrency id, written with the header's
   pieces: stores `value` to `*slot` on concurrency id `cid`. */
static int store_on_cid(intptr_t *slot, intptr_t value, int cid)
{
    __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")
                 RESTARTABLE_CS_ARM("3", "rax")
                 RESTARTABLE_CS_START("1")
                 RESTARTABLE_CS_CPU_CHECK(RESTARTABLE_MM_CID_FIELD, "%l[aborted]")
                 "movq %[value], (%[slot])\n\t"
                 RESTARTABLE_CS_POST_COMMIT("2")
                 RESTARTABLE_CS_ABORT("4", "%l[aborted]")
                 :
                 : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cid),
                   [slot] "r"(slot), [value] "r"(value)
                 : "memory", "cc", "rax"
                 : aborted);
    return RESTARTABLE_COMMITTED;
aborted:
    return RESTARTABLE_ABORTED;
}

/* On an area that is not registered: the mm_cid field reads 0, and no
   concurrency id passes the check, 0 included. */
static void check_unregistered_cid(void)
{
    intptr_t w = 5;
    int cid;
    CHECK(restartable_cpu_raw() < 0);
    CHECK_EQ(rseq_location()->mm_cid, 0);
    for (cid = 0; cid < 4; cid++) {
        CHECK_EQ(store_on_cid(&w, 9, cid), RESTARTABLE_ABORTED);
        CHECK_EQ(w, 5);
    }
}

static void *unregistered_cid_thread(void *arg)
{
    (void)arg;
    check_unregistered_cid();
    return NULL;
}

/* A registered thread with mm_cid: its own id commits. */
static void *registered_cid_thread(void *arg)
{
    intptr_t w = 5;
    int tries;
    (void)arg;
    CHECK(restartable_is_available());
    for (tries = 0; tries < 1000; tries++)
        if (store_on_cid(&w, 9, restartable_mm_cid()) == RESTARTABLE_COMMITTED)
            break;
    CHECK(tries < 1000);
    CHECK_EQ(w, 9);
    return NULL;
}

/* A registered thread on a kernel without mm_cid: the library reports
   none. */
static void *no_cid_thread(void *arg)
{
    (void)arg;
    CHECK(restartable_is_available());
    CHECK(restartable_cpu() >= 0); /* registers a library-owned thread */
    CHECK(restartable_cpu_raw() >= 0);
    CHECK_EQ(restartable_mm_cid(), -1);
    CHECK_EQ(restartable_node_id(), -1);
    return NULL;
}
#endif

static void mm_cid(void)
{
#ifdef RESTARTABLE_INLINE_X86_64
    pthread_t t;
    int checked = 0;
    if (owner_expected != RESTARTABLE_OWNER_LIBC) {
        /* A fresh thread: library-owned, not registered yet; or no rseq,
           the inert area. */
        CHECK(pthread_create(&t, NULL, unregistered_cid_thread, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        checked++;
    }
    if (owner_expected == RESTARTABLE_OWNER_LIBRARY) {
        /* Registered, then every hold released: unregistered again. */
        CHECK_EQ(restartable_register(), 0);
        CHECK_EQ(restartable_unregister(), 0);
        if (restartable_thread_state() == RESTARTABLE_THREAD_UNREGISTERED) {
            check_unregistered_cid();
            checked++;
        }
    }
    if (owner_expected != RESTARTABLE_OWNER_NONE && kernel_rseq_feature_size() >= 28) {
        CHECK(restartable_feature_size() >= 28);
        CHECK(pthread_create(&t, NULL, registered_cid_thread, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        checked++;
    } else if (owner_expected != RESTARTABLE_OWNER_NONE) {
        /* Before Linux 6.3 the kernel has no mm_cid: a registered thread
           reports none, so callers take the CPU-indexed forms. */
        CHECK(restartable_feature_size() < 28);
        CHECK(pthread_create(&t, NULL, no_cid_thread, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        checked++;
    }
    CHECK(checked > 0);
    printf("mm_cid: ok (%d checks; kernel feature size %lu: %s)\n", checked,
           kernel_rseq_feature_size(),
           kernel_rseq_feature_size() >= 28 ? "a registered thread's own id commits"
                                            : "no mm_cid, a registered thread reports -1");
#else
    printf("mm_cid: no section macros on this target\n");
#endif
}

/* ------------------------------------------------------------------------ */
/* offset                                                                    */
/* ------------------------------------------------------------------------ */

/* Registers the calling thread's shared area with another signature, as a
   component the library cannot vouch for would: the library, finding it
   registered and confirming with the kernel (EPERM), turns the process to
   fallbacks. The odd registration is undone afterwards. */
static void *odd_signature_thread(void *arg)
{
    struct rseq_area *area = rseq_location();
    (void)arg;
    CHECK(syscall(SYS_rseq, area, 32, 0, 0x12345678) == 0);
    CHECK_EQ(restartable_register(), 0);
    CHECK_EQ(restartable_owner(), RESTARTABLE_OWNER_NONE);
    CHECK_EQ(restartable_unregister(), 0);
    CHECK(syscall(SYS_rseq, area, 32, 1, 0x12345678) == 0);
    return NULL;
}

static uintptr_t thread_pointer(void)
{
    uintptr_t tp;
    __asm__("movq %%fs:0, %0" : "=r"(tp));
    return tp;
}

/* Kept out of line so that the compiler sees only a call between the two
   reads of the offset, as in any program. */
static __attribute__((noinline)) void turn_unavailable(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, odd_signature_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
}

static void offset(void)
{
    intptr_t before = restartable_area_offset;
    intptr_t after;
    CHECK_EQ((uintptr_t)rseq_location(), thread_pointer() + (uintptr_t)before);
    if (owner_expected != RESTARTABLE_OWNER_LIBRARY) {
        /* Only a library-owned process can still turn to fallbacks. */
        printf("offset: owner %d never changes the offset; read it once\n", owner_expected);
        return;
    }
    CHECK_EQ(restartable_owner(), RESTARTABLE_OWNER_LIBRARY);
    turn_unavailable();
    CHECK_EQ(restartable_owner(), RESTARTABLE_OWNER_NONE);
    after = restartable_area_offset;
    CHECK(after != before);
    CHECK_EQ((uintptr_t)rseq_location(), thread_pointer() + (uintptr_t)after);
    /* The inline read follows the new (inert) area: cpu_id -1, fallback. */
    CHECK_EQ((int32_t)RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_CPU_ID_OFFSET), -1);
    CHECK_EQ(restartable_cpu(), sched_getcpu());
    printf("offset: ok (%ld -> %ld)\n", (long)before, (long)after);
}

/* restartable_report's snprintf contract: NULL with 0, a 1-byte buffer, a
   cut, and the whole text, which it prints. */
static void report(void)
{
    char small[16];
    char *whole;
    size_t n;
    (void)restartable_cpu(); /* registers now: the text stays the same below */
    n = restartable_report(NULL, 0);
    CHECK(n > 16);
    memset(small, 'x', sizeof small);
    CHECK_EQ(restartable_report(small, 1), n);
    CHECK_EQ(small[0], 0);
    CHECK_EQ(small[1], 'x');
    CHECK_EQ(restartable_report(small, sizeof small), n);
    CHECK_EQ(strlen(small), sizeof small - 1);
    CHECK(strncmp(small, "verdict", 7) == 0);
    whole = (char *)malloc(n + 1);
    CHECK(whole != NULL);
    whole[n] = 'x';
    CHECK_EQ(restartable_report(whole, n + 1), n);
    CHECK_EQ(strlen(whole), n);
    CHECK(strncmp(whole, small, sizeof small - 1) == 0);
    printf("%s\nreport: ok (%zu bytes)\n", whole, n);
    free(whole);
}

/* ------------------------------------------------------------------------ */
/* forms                                                                     */
/* ------------------------------------------------------------------------ */

#define FORM_THREADS 3
#define FORM_NODES 4
#define FORM_BUFFER 4 /* a buffer's capacity; each starts with one item */

/* One index's words: a count for each operation, a list head and a copy
   buffer, a pointer chain for the pointer-chasing add. */
struct form_slot {
    intptr_t add, cbne, cbne2, zero, ss, ss2, ssr, ssr2, mc, mcr, chased;
    intptr_t head;
    intptr_t lhead; /* the list of the operations that read the index */
    intptr_t bcount, bitems[FORM_BUFFER]; /* a buffer of theirs */
    char buf[16], bufr[16];
    intptr_t *chain[2]; /* chain[1] points at `chased` */
    intptr_t *root;     /* points at chain: *root + off holds &chased */
} __attribute__((aligned(128)));

static struct form_slot form_cpu[MAX_CPUS], form_cid[MAX_CPUS];
static intptr_t form_nodes[2][MAX_CPUS][FORM_NODES][2];
static intptr_t form_lnodes[2][MAX_CPUS][FORM_NODES][2];
static long form_n;
/* The buffer items the threads held at their end (a full buffer leaves
   its item with the thread), by index kind: their number and their sum. */
static intptr_t form_held_count[2], form_held_sum[2];

static void form_init(struct form_slot *slots, intptr_t (*nodes)[FORM_NODES][2],
                      intptr_t (*lnodes)[FORM_NODES][2])
{
    for (int c = 0; c < MAX_CPUS; c++) {
        slots[c].chain[1] = &slots[c].chased;
        slots[c].root = (intptr_t *)slots[c].chain;
        for (int k = 0; k < FORM_NODES; k++) {
            nodes[c][k][0] = slots[c].head;
            slots[c].head = (intptr_t)nodes[c][k];
            lnodes[c][k][0] = slots[c].lhead;
            slots[c].lhead = (intptr_t)lnodes[c][k];
        }
        slots[c].bcount = 1;
        slots[c].bitems[0] = c + 1; /* each item its own value */
    }
}

/* The index a form runs with, and the slot it names; an index that is not
   valid (mm_cid without rseq: -1) becomes 0, which the operation's cold
   path turns into its fallback (cpu ignored). */
static int form_index(int by_cid)
{
    int i = by_cid ? restartable_mm_cid() : restartable_cpu();
    return i < 0 ? 0 : i;
}

#define FORM_RETRY(by_cid, slots, op)                                                                \
    for (;;) {                                                                                       \
        int cpu = form_index(by_cid);                                                                \
        struct form_slot *s = &(slots)[cpu];                                                         \
        int r_ = (op);                                                                               \
        CHECK(r_ == RESTARTABLE_COMMITTED || r_ == RESTARTABLE_COMPARE_FAILED ||                     \
              r_ == RESTARTABLE_ABORTED);                                                            \
        if (r_ == RESTARTABLE_COMMITTED)                                                             \
            break;                                                                                   \
    }

/* FORM_RETRY for the forms that compare `field` and store it plus one: the
   value is read once, into e_, before the call (two reads, in an order C
   leaves open, could see two values and commit no change). */
#define FORM_RETRY_ON(by_cid, slots, field, op)                                                      \
    for (;;) {                                                                                       \
        int cpu = form_index(by_cid);                                                                \
        struct form_slot *s = &(slots)[cpu];                                                         \
        intptr_t e_ = *(volatile intptr_t *)&s->field;                                               \
        int r_ = (op);                                                                               \
        CHECK(r_ == RESTARTABLE_COMMITTED || r_ == RESTARTABLE_COMPARE_FAILED ||                     \
              r_ == RESTARTABLE_ABORTED);                                                            \
        if (r_ == RESTARTABLE_COMMITTED)                                                             \
            break;                                                                                   \
    }

static const char pattern[] = "restartable-copy"; /* 16 bytes and a NUL */

/* One round of every form on the index kind `by_cid`; `held` is the
   thread's buffer item (0: none). */
#define FORM_ROUND(by_cid, slots, sfx, held)                                                         \
    do {                                                                                             \
        intptr_t node = 0;                                                                           \
        FORM_RETRY(by_cid, slots, restartable_load_add_store##sfx(&s->add, 1, cpu))                  \
        FORM_RETRY_ON(by_cid, slots, cbne,                                                           \
                   restartable_load_cbne_store##sfx(&s->cbne, e_,                                    \
                                                    e_ + 1, cpu))                                    \
        FORM_RETRY_ON(by_cid, slots, cbne2,                                                          \
                   restartable_load_cbne_load_cbne_store##sfx(                                       \
                       &s->cbne2, e_, &s->zero, 0,                                                   \
                       e_ + 1, cpu))                                                                 \
        FORM_RETRY_ON(by_cid, slots, ss,                                                             \
                   restartable_load_cbne_store_store##sfx(                                           \
                       &s->ss, e_, &s->ss2, 7,                                                       \
                       e_ + 1, cpu))                                                                 \
        FORM_RETRY_ON(by_cid, slots, ssr,                                                            \
                   restartable_load_cbne_store_store_release##sfx(                                   \
                       &s->ssr, e_, &s->ssr2, 9,                                                     \
                       e_ + 1, cpu))                                                                 \
        FORM_RETRY_ON(by_cid, slots, mc,                                                             \
                   restartable_load_cbne_memcpy_store##sfx(                                          \
                       &s->mc, e_, s->buf, pattern, 16,                                              \
                       e_ + 1, cpu))                                                                 \
        FORM_RETRY_ON(by_cid, slots, mcr,                                                            \
                   restartable_load_cbne_memcpy_store_release##sfx(                                  \
                       &s->mcr, e_, s->bufr, pattern,                                                \
                       16, e_ + 1, cpu))                                                             \
        FORM_RETRY(by_cid, slots,                                                                    \
                   restartable_load_add_load_load_add_store##sfx(                                    \
                       (intptr_t *)&s->root, sizeof(intptr_t *), 1, cpu))                            \
        /* Pop a node from the list of one index and push it on the list of                          \
           the index the thread runs on then (the two may differ); a list                            \
           found empty skips the round's push. */                                                    \
        for (;;) {                                                                                   \
            int cpu = form_index(by_cid);                                                            \
            struct form_slot *s = &(slots)[cpu];                                                     \
            int r_ = restartable_load_cbeq_store_add_load_store##sfx(&s->head, 0, 0, &node,          \
                                                                     cpu);                           \
            if (r_ == RESTARTABLE_COMPARE_FAILED)                                                    \
                node = 0;                                                                            \
            if (r_ != RESTARTABLE_ABORTED)                                                           \
                break;                                                                               \
        }                                                                                            \
        if (node)                                                                                    \
            FORM_RETRY(by_cid, slots,                                                                \
                       (*(volatile intptr_t *)node = *(volatile intptr_t *)&s->head,                 \
                        restartable_load_cbne_store##sfx(&s->head, *(volatile intptr_t *)node,       \
                                                         node, cpu)))                                \
        /* The same with the operations that find their slot themselves. */                          \
        {                                                                                            \
            intptr_t *lnode = NULL;                                                                  \
            int r_;                                                                                  \
            do                                                                                       \
                r_ = restartable_pop_at_current##sfx(&(slots)[0].lhead, sizeof(struct form_slot),    \
                                                     MAX_CPUS, &lnode);                              \
            while (r_ == RESTARTABLE_ABORTED);                                                       \
            CHECK(r_ == RESTARTABLE_COMMITTED || r_ == RESTARTABLE_COMPARE_FAILED);                  \
            CHECK((r_ == RESTARTABLE_COMMITTED) == (lnode != NULL));                                 \
            if (lnode) {                                                                             \
                do                                                                                   \
                    r_ = restartable_push_at_current##sfx(&(slots)[0].lhead,                         \
                                                          sizeof(struct form_slot), MAX_CPUS, lnode);\
                while (r_ == RESTARTABLE_ABORTED);                                                   \
                CHECK_EQ(r_, RESTARTABLE_COMMITTED);                                                 \
            }                                                                                        \
        }                                                                                            \
        /* A buffer item moves the same way; a full buffer leaves it with the                        \
           thread, which stores it on a later round. */                                              \
        {                                                                                            \
            int r_;                                                                                  \
            if (!(held)) {                                                                           \
                do                                                                                   \
                    r_ = restartable_buffer_pop_at_current##sfx(                                     \
                        &(slots)[0].bcount, sizeof(struct form_slot), MAX_CPUS, &(held));            \
                while (r_ == RESTARTABLE_ABORTED);                                                   \
                CHECK(r_ == RESTARTABLE_COMMITTED || r_ == RESTARTABLE_COMPARE_FAILED);              \
                CHECK((r_ == RESTARTABLE_COMMITTED) == ((held) != 0));                               \
            }                                                                                        \
            if (held) {                                                                              \
                do                                                                                   \
                    r_ = restartable_buffer_push_at_current##sfx(                                    \
                        &(slots)[0].bcount, sizeof(struct form_slot), MAX_CPUS, FORM_BUFFER, (held));\
                while (r_ == RESTARTABLE_ABORTED);                                                   \
                CHECK(r_ == RESTARTABLE_COMMITTED || r_ == RESTARTABLE_COMPARE_FAILED);              \
                if (r_ == RESTARTABLE_COMMITTED)                                                     \
                    (held) = 0;                                                                      \
            }                                                                                        \
        }                                                                                            \
    } while (0)

static void *form_thread(void *arg)
{
    intptr_t held[2] = {0, 0};
    (void)arg;
    pthread_barrier_wait(&start_line);
    for (long i = 0; i < form_n; i++) {
        FORM_ROUND(0, form_cpu, , held[0]);
        FORM_ROUND(1, form_cid, _mm_cid, held[1]);
    }
    for (int k = 0; k < 2; k++) {
        __atomic_add_fetch(&form_held_count[k], held[k] != 0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&form_held_sum[k], held[k], __ATOMIC_RELAXED);
    }
    return NULL;
}

static void form_check(const struct form_slot *slots, int by_cid, const char *what)
{
    intptr_t items = form_held_count[by_cid], item_sum = form_held_sum[by_cid];
    intptr_t add = 0, cbne = 0, cbne2 = 0, ss = 0, ssr = 0, mc = 0, mcr = 0, chased = 0;
    long nodes = 0, lnodes = 0;
    long want = (long)FORM_THREADS * form_n;
    for (int c = 0; c < MAX_CPUS; c++) {
        const struct form_slot *s = &slots[c];
        add += s->add;
        cbne += s->cbne;
        cbne2 += s->cbne2;
        ss += s->ss;
        ssr += s->ssr;
        mc += s->mc;
        mcr += s->mcr;
        chased += s->chased;
        CHECK_EQ(s->zero, 0);
        if (s->ss)
            CHECK_EQ(s->ss2, 7);
        if (s->ssr)
            CHECK_EQ(s->ssr2, 9);
        if (s->mc)
            CHECK(memcmp(s->buf, pattern, 16) == 0);
        if (s->mcr)
            CHECK(memcmp(s->bufr, pattern, 16) == 0);
        for (intptr_t n = s->head; n; n = *(intptr_t *)n)
            nodes++;
        for (intptr_t n = s->lhead; n; n = *(intptr_t *)n)
            lnodes++;
        CHECK(s->bcount >= 0 && s->bcount <= FORM_BUFFER);
        items += s->bcount;
        for (intptr_t k = 0; k < s->bcount; k++)
            item_sum += s->bitems[k];
    }
    CHECK_EQ(add, want);
    CHECK_EQ(cbne, want);
    CHECK_EQ(cbne2, want);
    CHECK_EQ(ss, want);
    CHECK_EQ(ssr, want);
    CHECK_EQ(mc, want);
    CHECK_EQ(mcr, want);
    CHECK_EQ(chased, want);
    CHECK_EQ(nodes, (long)MAX_CPUS * FORM_NODES);
    CHECK_EQ(lnodes, (long)MAX_CPUS * FORM_NODES);
    /* Every item once: as many as there were, with the same sum. */
    CHECK_EQ(items, MAX_CPUS);
    CHECK_EQ(item_sum, (intptr_t)MAX_CPUS * (MAX_CPUS + 1) / 2);
    printf("forms %s: %ld each, exact\n", what, want);
}

static void forms(long n)
{
    pthread_t t[FORM_THREADS];
    form_n = n;
    form_init(form_cpu, form_nodes[0], form_lnodes[0]);
    form_init(form_cid, form_nodes[1], form_lnodes[1]);
    CHECK(restartable_cpu_start() < MAX_CPUS);
    pthread_barrier_init(&start_line, NULL, FORM_THREADS);
    for (int i = 0; i < FORM_THREADS; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, form_thread, NULL), 0);
    for (int i = 0; i < FORM_THREADS; i++)
        CHECK_EQ(pthread_join(t[i], NULL), 0);
    pthread_barrier_destroy(&start_line);
    form_check(form_cpu, 0, "by cpu");
    form_check(form_cid, 1, "by mm_cid");
    /* The inline mm_cid read agrees with the library's. */
    int cid = restartable_mm_cid();
    CHECK(cid >= -1 && cid < MAX_CPUS);
    printf("forms: ok (mm_cid %d, abort count %llu)\n", cid,
           (unsigned long long)restartable_abort_count());
}

int main(int argc, char **argv)
{
    owner_expected = expected_owner();
    CHECK_EQ(restartable_owner(), owner_expected);
    if (argc == 3 && strcmp(argv[1], "negative") == 0)
        negative(atol(argv[2]));
    else if (argc == 2 && strcmp(argv[1], "mm_cid") == 0)
        mm_cid();
    else if (argc == 2 && strcmp(argv[1], "offset") == 0)
        offset();
    else if (argc == 2 && strcmp(argv[1], "report") == 0)
        report();
    else if (argc == 3 && strcmp(argv[1], "forms") == 0)
        forms(atol(argv[2]));
    else {
        fprintf(stderr, "usage: contract_test negative N | mm_cid | offset | report | forms N\n");
        return 2;
    }
    return 0;
}
