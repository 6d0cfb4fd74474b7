/*
 * Who owns the area, from a program linked in an unusual way: statically
 * (-static, -static-pie) with librestartable.a, or carrying stand-in
 * definitions of glibc's __rseq_* symbols (-DFIELD_STAND_INS, as the
 * kernel's rseq selftests define them). The owner must be the one the
 * harness expects, and every thread must run on rseq where it can: no
 * thread may end up served by fallbacks because the probe was fooled.
 *
 *   owner            (RESTARTABLE_TEST_EXPECT = libc, library, none)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>

#include "common.h"

#ifdef FIELD_STAND_INS
/* Zero stand-ins, weak, for a libc that has none. */
__attribute__((weak)) ptrdiff_t __rseq_offset;
__attribute__((weak)) unsigned int __rseq_size;
__attribute__((weak)) unsigned int __rseq_flags;
#endif

#define THREADS 2
#define COUNTS 100000

static intptr_t slots[FIELD_SLOTS];
static restartable_percpu_counter_t *counter;

static void check_thread(void)
{
    int owner = expected_owner();
    int state = restartable_thread_state();
    if (owner == RESTARTABLE_OWNER_NONE) {
        CHECK_EQ(state, RESTARTABLE_THREAD_UNREGISTERED);
        CHECK_EQ(restartable_is_available(), 0);
    } else {
        CHECK(restartable_is_available());
        state = restartable_thread_state();
        CHECK_EQ(state, owner == RESTARTABLE_OWNER_LIBC ? RESTARTABLE_THREAD_BORROWED
                                                        : RESTARTABLE_THREAD_REGISTERED);
    }
}

static void *worker(void *arg)
{
    int i;
    (void)arg;
    for (i = 0; i < COUNTS; i++)
        restartable_percpu_counter_add(counter, 1);
    check_thread();
    return NULL;
}

int main(void)
{
    pthread_t threads[THREADS];
    int i;
    counter = restartable_percpu_counter_new();
    CHECK(counter != NULL);
    CHECK_EQ(restartable_owner(), expected_owner());
    CHECK_EQ(field_count(slots), 1);
    check_thread();
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_create(&threads[i], NULL, worker, NULL) == 0);
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);
    CHECK_EQ(restartable_percpu_counter_sum(counter), (long)THREADS * COUNTS);
    printf("owner: ok (owner %d)\n", restartable_owner());
    return 0;
}
