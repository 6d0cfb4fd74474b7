/* A component that defines and registers __rseq_abi the classic way (its
 * own strong definition, registered by raw system call, no refcount) in a
 * process that links librestartable: the library must find the area taken
 * (EBUSY), borrow it, count exactly, and never unregister it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restartable.h"

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

/* The classic definition: strong, initial-exec, cpu_id = -1. */
__thread struct rseq_area __rseq_abi __attribute__((tls_model("initial-exec"))) = {
    0, (uint32_t)-1, 0, 0, 0, 0, 0};

static void *component_thread(void *arg)
{
    (void)arg;
    /* The component registers first, before the library is used here. */
    long ret = syscall(SYS_rseq, &__rseq_abi, 32, 0, RESTARTABLE_RSEQ_SIG);
    int owner = restartable_owner();
    if (owner == RESTARTABLE_OWNER_LIBC) {
        CHECK(ret == -1 && errno == EINVAL); /* glibc's area is registered */
    } else if (owner == RESTARTABLE_OWNER_LIBRARY) {
        CHECK(ret == 0);
        CHECK(rseq_location() == &__rseq_abi); /* one area, shared */
    }
    CHECK(restartable_register() == 0);
    int state = restartable_thread_state();
    struct restartable_percpu_counter *c = restartable_percpu_counter_new();
    for (int i = 0; i < 100000; i++)
        restartable_percpu_counter_add(c, 1);
    CHECK(restartable_percpu_counter_sum(c) == 100000);
    restartable_percpu_counter_free(c);
    CHECK(restartable_unregister() == 0);
    CHECK(restartable_unregister() == -EINVAL);
    if (owner == RESTARTABLE_OWNER_LIBRARY) {
        CHECK(state == RESTARTABLE_THREAD_BORROWED);
        /* Never unregistered: the kernel still holds the component's area. */
        CHECK((int32_t)__rseq_abi.cpu_id >= 0);
        CHECK(syscall(SYS_rseq, &__rseq_abi, 32, 0, RESTARTABLE_RSEQ_SIG) == -1 && errno == EBUSY);
        CHECK(syscall(SYS_rseq, &__rseq_abi, 32, 1, RESTARTABLE_RSEQ_SIG) == 0);
    }
    printf("classic ok: owner %d, state %d\n", owner, state);
    return NULL;
}

int main(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, component_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    return 0;
}
