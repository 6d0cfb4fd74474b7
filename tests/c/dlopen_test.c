/* dlopen of librestartable.so into a process whose threads already run.
 * Usage: dlopen_test LIB [COPY] local|global
 * Every thread registers through the loaded library (and the copy, if
 * given), counts, and the sums must be exact; the copy's thread state is
 * printed so the caller can check sharing (global) or fallback (local). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                    dlerror());                                                       \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

struct lib {
    void *handle;
    int (*reg)(void);
    int (*unreg)(void);
    int (*state)(void);
    int (*owner)(void);
    void *(*counter_new)(void);
    void (*counter_add)(void *, int64_t);
    int64_t (*counter_sum)(const void *);
    void (*counter_free)(void *);
    void *counter;
};

#define THREADS 4
#define ADDS 100000

static struct lib libs[2];
static int nlibs;
static volatile int loaded;
static int states[2][THREADS];

static void load(struct lib *l, const char *path, int flags)
{
    l->handle = dlopen(path, RTLD_NOW | flags);
    CHECK(l->handle != NULL);
    *(void **)&l->reg = dlsym(l->handle, "restartable_register");
    *(void **)&l->unreg = dlsym(l->handle, "restartable_unregister");
    *(void **)&l->state = dlsym(l->handle, "restartable_thread_state");
    *(void **)&l->owner = dlsym(l->handle, "restartable_owner");
    *(void **)&l->counter_new = dlsym(l->handle, "restartable_percpu_counter_new");
    *(void **)&l->counter_add = dlsym(l->handle, "restartable_percpu_counter_add");
    *(void **)&l->counter_sum = dlsym(l->handle, "restartable_percpu_counter_sum");
    *(void **)&l->counter_free = dlsym(l->handle, "restartable_percpu_counter_free");
    CHECK(l->reg && l->unreg && l->state && l->owner && l->counter_new && l->counter_add &&
          l->counter_sum && l->counter_free);
    l->counter = l->counter_new();
}

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    while (!__atomic_load_n(&loaded, __ATOMIC_ACQUIRE))
        ; /* the thread exists before the library is loaded */
    for (int k = 0; k < nlibs; k++)
        CHECK(libs[k].reg() == 0);
    for (int k = 0; k < nlibs; k++)
        states[k][me] = libs[k].state();
    for (int i = 0; i < ADDS; i++)
        for (int k = 0; k < nlibs; k++)
            libs[k].counter_add(libs[k].counter, 1);
    for (int k = nlibs - 1; k >= 0; k--)
        CHECK(libs[k].unreg() == 0);
    CHECK(libs[0].unreg() == -22); /* unbalanced: -EINVAL */
    return NULL;
}

int main(int argc, char **argv)
{
    CHECK(argc == 3 || argc == 4);
    int flags = strcmp(argv[argc - 1], "global") == 0 ? RTLD_GLOBAL : RTLD_LOCAL;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    load(&libs[0], argv[1], flags);
    nlibs = 1;
    if (argc == 4) {
        load(&libs[1], argv[2], flags);
        nlibs = 2;
    }
    __atomic_store_n(&loaded, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    for (int k = 0; k < nlibs; k++) {
        CHECK(libs[k].counter_sum(libs[k].counter) == (int64_t)THREADS * ADDS);
        printf("lib%d owner=%d states=", k, libs[k].owner());
        for (int i = 0; i < THREADS; i++)
            printf("%d", states[k][i]);
        printf("\n");
        libs[k].counter_free(libs[k].counter);
    }
    for (int k = nlibs - 1; k >= 0; k--)
        CHECK(dlclose(libs[k].handle) == 0);
    printf("dlopen ok\n");
    return 0;
}
