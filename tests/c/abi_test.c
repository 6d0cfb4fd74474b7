/* The C ABI end to end: compiled as C11 and as C++, linked against
 * librestartable.so, run by tests/c_abi.rs in every environment. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "restartable.h"

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define THREADS 8
#define ADDS 200000

static struct restartable_percpu_counter *counter;
static intptr_t words[1024];

static void *worker(void *arg)
{
    (void)arg;
    CHECK(restartable_register() == 0);
    for (int i = 0; i < ADDS; i++) {
        restartable_percpu_counter_add(counter, 1);
        for (;;) {
            int cpu = restartable_cpu();
            if (restartable_load_add_store_fast(&words[cpu], 1, cpu) == 0)
                break;
        }
    }
    CHECK(restartable_unregister() == 0);
    return NULL;
}

int main(void)
{
    int owner = restartable_owner();
    CHECK(owner == RESTARTABLE_OWNER_LIBC || owner == RESTARTABLE_OWNER_LIBRARY ||
          owner == RESTARTABLE_OWNER_NONE);
    CHECK(rseq_location() != NULL);

    /* Pinned to each allowed CPU, the inline read agrees with the kernel. */
    cpu_set_t allowed, one;
    CHECK(sched_getaffinity(0, sizeof allowed, &allowed) == 0);
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &allowed))
            continue;
        CPU_ZERO(&one);
        CPU_SET(c, &one);
        CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
        CHECK(restartable_cpu() == c);
        CHECK(sched_getcpu() == c);
    }
    CHECK(sched_setaffinity(0, sizeof allowed, &allowed) == 0);
    if (owner == RESTARTABLE_OWNER_NONE) {
        CHECK(restartable_cpu_raw() < 0);
        CHECK(restartable_mm_cid() == -1);
        CHECK(restartable_feature_size() == 0);
    } else {
        CHECK(restartable_cpu_raw() >= 0);
        CHECK(restartable_feature_size() >= 20);
    }

    /* Bad input: defined results, nothing changes. */
    CHECK(restartable_unregister() == -EINVAL);
    CHECK(restartable_register() == 0);
    CHECK(restartable_unregister() == 0);
    CHECK(restartable_unregister() == -EINVAL);
    CHECK(restartable_load_add_store(NULL, 1, 0) == -EINVAL);
    CHECK(restartable_load_cbne_store(NULL, 0, 1, 0) == -EINVAL);
    CHECK(restartable_load_add_store(&words[0], 1, -3) == -EINVAL);
    restartable_percpu_counter_add(NULL, 1);
    CHECK(restartable_percpu_counter_sum(NULL) == 0);
    restartable_percpu_counter_free(NULL);

    /* Compare failed leaves memory unchanged; a commit stores. */
    intptr_t w = 5;
    int r;
    do {
        r = restartable_load_cbne_store(&w, 4, 9, restartable_cpu());
    } while (r == -1);
    CHECK(r == 1 && w == 5);
    do {
        r = restartable_load_cbne_store(&w, 5, 9, restartable_cpu());
    } while (r == -1);
    CHECK(r == 0 && w == 9);

    /* The header's inline sections, written with its macros. */
    do {
        r = restartable_load_cbne_store_fast(&w, 1, 2, restartable_cpu());
    } while (r == -1);
    CHECK(r == 1 && w == 9);
    do {
        r = restartable_load_cbne_store_fast(&w, 9, 11, restartable_cpu());
    } while (r == -1);
    CHECK(r == 0 && w == 11);
    do {
        r = restartable_load_add_store_fast(&w, 4, restartable_cpu());
    } while (r == -1);
    CHECK(r == 0 && w == 15);
    if (restartable_cpu_raw() >= 0) {
        /* Another CPU than the current one: always aborted, unchanged. */
        CHECK(restartable_load_add_store_fast(&w, 4, restartable_cpu() + 1) == -1);
        CHECK(w == 15);
    }
    restartable_prepare_unload();

    /* Threads count exactly. */
    counter = restartable_percpu_counter_new();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(restartable_percpu_counter_sum(counter) == (int64_t)THREADS * ADDS);
    intptr_t total = 0;
    for (int i = 0; i < 1024; i++)
        total += words[i];
    CHECK(total == (intptr_t)THREADS * ADDS);
    restartable_percpu_counter_reset(counter);
    CHECK(restartable_percpu_counter_sum(counter) == 0);
    restartable_percpu_counter_free(counter);

    printf("c abi ok: owner %d, state %d\n", owner, restartable_thread_state());
    return 0;
}
