/*
 * Threads counting on a per-CPU counter: the sum is exact, and each add
 * costs a few nanoseconds, against one shared atomic counter that every
 * thread fights over.
 *
 * Build and run (after `make`, which builds the C libraries):
 *
 *     cc -O2 -Iinclude examples/c/percpu_counter.c -o percpu_counter \
 *        -Ltarget/release -lrestartable -Wl,-rpath,$PWD/target/release -pthread
 *     ./percpu_counter [threads] [adds per thread]
 *
 * or with an installed library: cc -O2 percpu_counter.c $(pkg-config
 * --cflags --libs restartable) -pthread.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <restartable.h>

static restartable_percpu_counter_t *counter;
static int64_t shared_atomic;
static long adds_per_thread = 10 * 1000 * 1000;

static void *add_percpu(void *arg)
{
    long i;
    (void)arg;
    for (i = 0; i < adds_per_thread; i++)
        restartable_percpu_counter_add(counter, 1);
    return NULL;
}

static void *add_atomic(void *arg)
{
    long i;
    (void)arg;
    for (i = 0; i < adds_per_thread; i++)
        __atomic_fetch_add(&shared_atomic, 1, __ATOMIC_RELAXED);
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs `fn` on `threads` threads; returns nanoseconds per add per thread. */
static double run(void *(*fn)(void *), int threads)
{
    pthread_t *t = (pthread_t *)calloc((size_t)threads, sizeof *t);
    double start;
    int i;
    if (t == NULL)
        abort();
    start = now();
    for (i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, fn, NULL) != 0)
            abort();
    for (i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    free(t);
    return (now() - start) * 1e9 / (double)adds_per_thread;
}

/* ns per call of `expr`, one read per iteration (the empty asm keeps the
 * compiler from merging or hoisting the reads). */
#define NS_PER_READ(expr, n, out)                                                  \
    do {                                                                           \
        struct timespec a_, b_;                                                    \
        int sink_ = 0;                                                             \
        clock_gettime(CLOCK_MONOTONIC, &a_);                                       \
        for (long i_ = 0; i_ < (n); i_++) {                                        \
            sink_ += (int)(expr);                                                  \
            __asm__ __volatile__("" : "+r"(sink_));                                \
        }                                                                          \
        clock_gettime(CLOCK_MONOTONIC, &b_);                                       \
        (out) = ((double)(b_.tv_sec - a_.tv_sec) * 1e9 +                           \
                 (double)(b_.tv_nsec - a_.tv_nsec)) / (double)(n);                 \
    } while (0)

int main(int argc, char **argv)
{
    static const char *owners[] = {"?", "libc", "library", "none (fallbacks)"};
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    double percpu_ns, atomic_ns;
    int64_t expect;
    int owner;
    if (argc > 2)
        adds_per_thread = atol(argv[2]);
    if (threads < 1 || adds_per_thread < 1) {
        fprintf(stderr, "usage: %s [threads] [adds per thread]\n", argv[0]);
        return 2;
    }
    expect = (int64_t)threads * adds_per_thread;
    owner = restartable_owner();

    counter = restartable_percpu_counter_new();
    percpu_ns = run(add_percpu, threads);
    atomic_ns = run(add_atomic, threads);

    printf("owner: %s, cpu %d, %d threads x %ld adds\n", owners[owner & 3], restartable_cpu(),
           threads, adds_per_thread);
    printf("per-CPU counter: sum %lld (expected %lld), %.2f ns/add\n",
           (long long)restartable_percpu_counter_sum(counter), (long long)expect, percpu_ns);
    printf("shared atomic:   sum %lld (expected %lld), %.2f ns/add\n", (long long)shared_atomic,
           (long long)expect, atomic_ns);
    printf("speed-up: %.1fx (ns/add: wall time x threads / adds)\n", atomic_ns / percpu_ns);
    {
        double ours, theirs;
        NS_PER_READ(restartable_cpu(), 10 * adds_per_thread, ours);
        NS_PER_READ(sched_getcpu(), 10 * adds_per_thread, theirs);
        printf("restartable_cpu(): %.2f ns/read, sched_getcpu(): %.2f ns/read (%.1fx)\n", ours,
               theirs, theirs / ours);
    }
    if (restartable_percpu_counter_sum(counter) != expect || shared_atomic != expect) {
        fprintf(stderr, "wrong sum\n");
        return 1;
    }
    restartable_percpu_counter_free(counter);
    return 0;
}
