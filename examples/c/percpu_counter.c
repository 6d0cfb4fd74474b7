/* The per-CPU counter from C. Build and run (after `cargo build --release`):
 *   cc -O2 -Iinclude examples/c/percpu_counter.c -Ltarget/release -lrestartable \
 *      -lpthread -o percpu_counter && LD_LIBRARY_PATH=target/release ./percpu_counter
 * Threads count with a restartable per-CPU counter and with one shared
 * atomic; both sums are checked and the ns per add compared. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "restartable.h"

static struct restartable_percpu_counter *counter;
static uint64_t shared;
static long adds = 1000000;

static void *percpu_worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < adds; i++)
        restartable_percpu_counter_add(counter, 1);
    return NULL;
}

static void *atomic_worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < adds; i++)
        __atomic_fetch_add(&shared, 1, __ATOMIC_RELAXED);
    return NULL;
}

static double run(int threads, void *(*fn)(void *))
{
    pthread_t t[64];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, fn, NULL) != 0)
            exit(1);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    return ns * threads / ((double)threads * adds);
}

#define NS_PER_READ(expr, n, out)                                                  \
    do {                                                                           \
        struct timespec a_, b_;                                                    \
        int sink_ = 0;                                                             \
        clock_gettime(CLOCK_MONOTONIC, &a_);                                       \
        for (long i_ = 0; i_ < (n); i_++) {                                        \
            sink_ += (expr);                                                       \
            __asm__ __volatile__("" : "+r"(sink_)); /* one read per iteration */   \
        }                                                                          \
        clock_gettime(CLOCK_MONOTONIC, &b_);                                       \
        (out) = ((b_.tv_sec - a_.tv_sec) * 1e9 + (b_.tv_nsec - a_.tv_nsec)) / (n); \
    } while (0)

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2)
        adds = atol(argv[2]);
    if (threads < 1 || threads > 64 || adds < 1)
        return 2;
    counter = restartable_percpu_counter_new();
    printf("owner %d, cpu %d, %d threads x %ld adds\n", restartable_owner(), restartable_cpu(),
           threads, adds);
    double p = run(threads, percpu_worker);
    double s = run(threads, atomic_worker);
    int64_t sum = restartable_percpu_counter_sum(counter);
    int ok = sum == (int64_t)threads * adds && shared == (uint64_t)threads * adds;
    printf("per-CPU counter %.2f ns/add, shared atomic %.2f ns/add, speed-up %.1fx, sums %s\n",
           p, s, s / p, ok ? "exact" : "WRONG");
    double r, g;
    NS_PER_READ(restartable_cpu(), adds * 10, r);
    NS_PER_READ(sched_getcpu(), adds * 10, g);
    printf("restartable_cpu() %.2f ns/read, sched_getcpu() %.2f ns/read, %.1fx\n", r, g, g / r);
    restartable_percpu_counter_free(counter);
    return ok ? 0 : 1;
}
