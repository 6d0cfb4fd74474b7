/*
 * The per-CPU memory pool, the always-usable concurrency id, the
 * registration report and the active-table swap, through the C interface,
 * with more threads than cores. Prints "all checks passed". Compiled as C
 * and as C++, inline and out of line (RESTARTABLE_NO_INLINE).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <restartable.h>

#include "check.h"

#define THREADS 8
#define ROUNDS 100
#define OPS 20000

struct pair {
    intptr_t adds;
    intptr_t stores;
};

static restartable_percpu_t *zeroed, *proto_obj, *by_cid;

static void add_one(void)
{
    int cpu;
    struct pair *p;
    do {
        cpu = restartable_cpu();
        p = (struct pair *)restartable_percpu_instance(zeroed, cpu);
        CHECK(p != NULL);
    } while (restartable_load_add_store(&p->adds, 1, cpu) != RESTARTABLE_COMMITTED);
}

static void bump_stores(void)
{
    for (;;) {
        int cpu = restartable_cpu();
        struct pair *p = (struct pair *)restartable_percpu_instance(proto_obj, cpu);
        intptr_t old = __atomic_load_n(&p->stores, __ATOMIC_RELAXED);
        if (restartable_load_cbne_store(&p->stores, old, old + 1, cpu) == RESTARTABLE_COMMITTED)
            return;
    }
}

static void add_by_cid(void)
{
    for (;;) {
        int cid = restartable_current_mm_cid();
        intptr_t *w;
        CHECK(cid >= 0);
        w = (intptr_t *)restartable_percpu_instance(by_cid, cid);
        CHECK(w != NULL);
        if (restartable_load_add_store_mm_cid(w, 1, cid) == RESTARTABLE_COMMITTED)
            return;
    }
}

static void *pool_worker(void *arg)
{
    int i;
    (void)arg;
    for (i = 0; i < OPS; i++) {
        add_one();
        bump_stores();
        add_by_cid();
    }
    return NULL;
}

static void run_threads(void *(*fn)(void *), int n)
{
    pthread_t t[THREADS];
    int i;
    for (i = 0; i < n; i++)
        CHECK(pthread_create(&t[i], NULL, fn, NULL) == 0);
    for (i = 0; i < n; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
}

static void test_pool(void)
{
    restartable_pool_t *pool = restartable_pool_new(0, 0, RESTARTABLE_INDEX_CPU);
    restartable_pool_t *cid_pool = restartable_pool_new(0, 4096, RESTARTABLE_INDEX_MM_CID);
    struct pair proto = {0, 1000};
    intptr_t adds = 0, stores = 0, cids = 0;
    uint32_t i, n, ready = 0;
    CHECK(pool != NULL && cid_pool != NULL);
    zeroed = restartable_percpu_alloc(pool, sizeof(struct pair), sizeof(intptr_t), NULL);
    proto_obj = restartable_percpu_alloc(pool, sizeof(struct pair), sizeof(intptr_t), &proto);
    by_cid = restartable_percpu_alloc(cid_pool, sizeof(intptr_t), sizeof(intptr_t), NULL);
    CHECK(zeroed != NULL && proto_obj != NULL && by_cid != NULL);
    n = restartable_percpu_slots(zeroed);
    CHECK(n >= 1 && n == restartable_percpu_slots(proto_obj));
    /* Fixed stride: instance i is instance 0 + i * 64 KiB. */
    CHECK((char *)restartable_percpu_instance(zeroed, (int)n - 1) ==
          (char *)restartable_percpu_instance(zeroed, 0) + (size_t)(n - 1) * 65536);
    CHECK(restartable_percpu_instance(zeroed, (int)n) == NULL);
    CHECK(restartable_percpu_instance(zeroed, -1) == NULL);
    /* Nothing of the prototype object is built before an access. */
    for (i = 0; i < n; i++)
        CHECK_EQ(restartable_percpu_has_value(proto_obj, (int)i), 0);
    run_threads(pool_worker, THREADS);
    for (i = 0; i < n; i++) {
        adds += ((struct pair *)restartable_percpu_instance(zeroed, (int)i))->adds;
        if (restartable_percpu_has_value(proto_obj, (int)i)) {
            struct pair *p = (struct pair *)restartable_percpu_instance(proto_obj, (int)i);
            ready++;
            CHECK_EQ(p->adds, 0);
            stores += p->stores - 1000;
        }
    }
    for (i = 0; i < restartable_percpu_slots(by_cid); i++)
        cids += *(intptr_t *)restartable_percpu_instance(by_cid, (int)i);
    CHECK_EQ(adds, (intptr_t)THREADS * OPS);
    CHECK_EQ(stores, (intptr_t)THREADS * OPS);
    CHECK_EQ(cids, (intptr_t)THREADS * OPS);
    CHECK(ready >= 1);
    printf("pool: %u slots, %u built from the prototype\n", n, ready);
    CHECK(restartable_percpu_current_slot(zeroed) >= 0);
    CHECK(restartable_percpu_current_slot(zeroed) < (int32_t)n);
    CHECK_EQ(restartable_percpu_current_slot(NULL), -1);

    /* Errors. */
    errno = 0;
    CHECK(restartable_pool_new(4, 100, RESTARTABLE_INDEX_CPU) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(restartable_pool_new(4, 0, 7) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(restartable_percpu_alloc(NULL, 8, 8, NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(restartable_percpu_alloc(pool, 8, 3, NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(restartable_percpu_alloc(cid_pool, 4096, 8, NULL) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK(restartable_percpu_instance(NULL, 0) == NULL);
    CHECK_EQ(restartable_percpu_slots(NULL), 0);

    /* A freed range comes back zeroed. */
    restartable_percpu_free(by_cid);
    by_cid = restartable_percpu_alloc(cid_pool, sizeof(intptr_t), sizeof(intptr_t), NULL);
    CHECK(by_cid != NULL);
    for (i = 0; i < restartable_percpu_slots(by_cid); i++)
        CHECK_EQ(*(intptr_t *)restartable_percpu_instance(by_cid, (int)i), 0);

    restartable_pool_free(pool); /* objects keep the memory */
    CHECK_EQ(((struct pair *)restartable_percpu_instance(zeroed, 0))->stores, 0);
    restartable_percpu_free(zeroed);
    restartable_percpu_free(proto_obj);
    restartable_percpu_free(by_cid);
    restartable_pool_free(cid_pool);
    restartable_percpu_free(NULL);
    restartable_pool_free(NULL);
}

static int disabled_by_env(void)
{
    const char *v = getenv("RESTARTABLE_DISABLE");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static void test_sections(void)
{
    int owner = expected_owner();
    int want = owner == RESTARTABLE_OWNER_NONE
                   ? (disabled_by_env() ? RESTARTABLE_SECTIONS_DISABLED
                                        : RESTARTABLE_SECTIONS_UNAVAILABLE)
                   : RESTARTABLE_SECTIONS_RUN;
    CHECK_EQ(restartable_owner(), owner);
    CHECK_EQ(restartable_register_sections(), want);
    CHECK_EQ(restartable_sections(), want);
    CHECK_EQ(restartable_is_available(), want == RESTARTABLE_SECTIONS_RUN);
    CHECK_EQ(restartable_unregister(), 0);
    CHECK_EQ(restartable_unregister(), -EINVAL); /* the report took one hold */
    CHECK(restartable_current_mm_cid() >= 0);
    if (restartable_mm_cid() >= 0)
        CHECK_EQ(restartable_current_mm_cid(), restartable_mm_cid());
    printf("sections: %d\n", want);
}

/* The membarrier pattern: two tables of per-CPU counter pointers. */
#define MAX_CPUS 4096
static intptr_t counters[2][MAX_CPUS];
static intptr_t *tables[2][MAX_CPUS];
static restartable_active_table_t *active;
static volatile int stop;
static intptr_t done_adds[THREADS];

static void *table_worker(void *arg)
{
    intptr_t n = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        restartable_active_table_add_current(active, sizeof(intptr_t *), 1);
        n++;
    }
    done_adds[(intptr_t)arg] = n;
    return NULL;
}

static intptr_t table_sum(int t)
{
    intptr_t s = 0;
    int i;
    for (i = 0; i < MAX_CPUS; i++)
        s += __atomic_load_n(&counters[t][i], __ATOMIC_SEQ_CST);
    return s;
}

static void test_active_table(void)
{
    pthread_t t[4];
    intptr_t total = 0;
    int i, round, late = 0;
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    CHECK(cpus > 0 && cpus <= MAX_CPUS);
    for (i = 0; i < MAX_CPUS; i++) {
        tables[0][i] = &counters[0][i];
        tables[1][i] = &counters[1][i];
    }
    active = restartable_active_table_new(tables[0]);
    CHECK(active != NULL);
    CHECK(restartable_active_table_get(active) == (void *)tables[0]);
    for (i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, table_worker, (void *)(intptr_t)i) == 0);
    for (round = 0; round < ROUNDS; round++) {
        int next = (round + 1) % 2;
        intptr_t before;
        struct timespec pause = {0, 200000};
        void *old = restartable_active_table_swap(active, tables[next]);
        CHECK(old == (void *)tables[round % 2]);
        before = table_sum(round % 2);
        nanosleep(&pause, NULL);
        if (table_sum(round % 2) != before)
            late++;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (i = 0; i < 4; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        total += done_adds[i];
    }
    CHECK_EQ(late, 0);
    CHECK_EQ(table_sum(0) + table_sum(1), total);
    /* A fixed offset: entry 0 of whichever table is active. */
    restartable_active_table_add(active, 0, 5);
    CHECK_EQ(counters[0][0] + counters[1][0] >= 5, 1);
    restartable_active_table_free(active);
    restartable_active_table_free(NULL);
    printf("active table: %d swaps, %ld adds, none late\n", ROUNDS, (long)total);
}

int main(void)
{
    test_sections();
    test_pool();
    test_active_table();
    printf("all checks passed\n");
    return 0;
}
