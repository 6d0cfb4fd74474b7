/*
 * librestartable.so loaded at run time, into a process that already runs
 * threads, next to a second copy of itself, and next to a component that
 * registers `__rseq_abi` the classic way. Driven by tests/c_abi.rs:
 *
 *   dlopen_test threads LIB global|local
 *   dlopen_test copies  LIB COPY global|local
 *   dlopen_test classic LIB
 *
 * RESTARTABLE_TEST_EXPECT (libc, library, none) is the owner to expect.
 * The `classic` scenario is built separately, with -DCLASSIC and -rdynamic,
 * so that the library binds to this program's `__rseq_abi`; the others must
 * not have one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define RESTARTABLE_NO_INLINE /* nothing is linked: every call goes through dlsym */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restartable.h"

#include "check.h"

/* Checks that `read` gives the CPU the thread runs on, in a window where
   sched_getcpu() reads the same CPU before and after: a migration between
   two reads is not a failure. */
#define CHECK_CPU_READ(read)                                                                       \
    do {                                                                                           \
        int tries_;                                                                                \
        for (tries_ = 0; tries_ < 1000; tries_++) {                                                \
            int before_ = sched_getcpu();                                                          \
            int got_ = (int)(read);                                                                \
            if (before_ == sched_getcpu()) {                                                       \
                CHECK_EQ(got_, before_);                                                           \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
        CHECK(tries_ < 1000);                                                                      \
    } while (0)

#define THREADS 4
#define ITERATIONS 20000

#ifdef CLASSIC
/* The classic way: an exported, initial-exec TLS area with cpu_id = -1. */
__thread struct rseq_area __rseq_abi __attribute__((tls_model("initial-exec"))) = {
    0, (uint32_t)-1, 0, 0, 0, 0, 0};
/* A private area, as a library that does not share would register. */
static __thread struct rseq_area private_area __attribute__((tls_model("initial-exec"))) = {
    0, (uint32_t)-1, 0, 0, 0, 0, 0};

static long raw_rseq(struct rseq_area *area, int flags)
{
    return syscall(SYS_rseq, area, 32, flags, RESTARTABLE_SIG);
}
#endif

/* The library's functions, looked up with dlsym. */
struct lib {
    void *handle;
    int (*owner)(void);
    int (*thread_state)(void);
    int (*is_available)(void);
    int (*reg)(void);
    int (*unreg)(void);
    uint32_t (*refcount)(void);
    int32_t (*cpu)(void);
    int32_t (*cpu_raw)(void);
    struct rseq_area *(*location)(void);
    int (*load_add_store)(intptr_t *, intptr_t, int);
    restartable_percpu_counter_t *(*counter_new)(void);
    void (*counter_add)(restartable_percpu_counter_t *, int64_t);
    int64_t (*counter_sum)(const restartable_percpu_counter_t *);
    void (*counter_free)(restartable_percpu_counter_t *);
};

static void lookup(void *handle, const char *name, void *fn_ptr)
{
    void *sym = dlsym(handle, name);
    if (sym == NULL) {
        fprintf(stderr, "dlsym(%s): %s\n", name, dlerror());
        exit(1);
    }
    /* Object to function pointer, the way POSIX allows. */
    memcpy(fn_ptr, &sym, sizeof sym);
}

static struct lib load(const char *path, int mode)
{
    struct lib l;
    l.handle = dlopen(path, RTLD_NOW | mode);
    if (l.handle == NULL) {
        fprintf(stderr, "dlopen(%s): %s\n", path, dlerror());
        exit(1);
    }
    lookup(l.handle, "restartable_owner", &l.owner);
    lookup(l.handle, "restartable_thread_state", &l.thread_state);
    lookup(l.handle, "restartable_is_available", &l.is_available);
    lookup(l.handle, "restartable_register", &l.reg);
    lookup(l.handle, "restartable_unregister", &l.unreg);
    lookup(l.handle, "restartable_refcount", &l.refcount);
    lookup(l.handle, "restartable_cpu", &l.cpu);
    lookup(l.handle, "restartable_cpu_raw", &l.cpu_raw);
    lookup(l.handle, "rseq_location", &l.location);
    lookup(l.handle, "restartable_load_add_store", &l.load_add_store);
    lookup(l.handle, "restartable_percpu_counter_new", &l.counter_new);
    lookup(l.handle, "restartable_percpu_counter_add", &l.counter_add);
    lookup(l.handle, "restartable_percpu_counter_sum", &l.counter_sum);
    lookup(l.handle, "restartable_percpu_counter_free", &l.counter_free);
    return l;
}

static int parse_mode(const char *s)
{
    if (strcmp(s, "global") == 0)
        return RTLD_GLOBAL;
    if (strcmp(s, "local") == 0)
        return RTLD_LOCAL;
    fprintf(stderr, "mode %s: want global or local\n", s);
    exit(2);
}

static int owner;
static long ncpus;

/* The state a thread that registered through `l` must report. */
static int registered_state(void)
{
    switch (owner) {
    case RESTARTABLE_OWNER_LIBC:
        return RESTARTABLE_THREAD_BORROWED;
    case RESTARTABLE_OWNER_LIBRARY:
        return RESTARTABLE_THREAD_REGISTERED;
    default:
        return RESTARTABLE_THREAD_UNREGISTERED;
    }
}

/* ---- threads: dlopen while threads run, count through the library ---- */

struct shared {
    struct lib lib;
    pthread_barrier_t loaded; /* main has loaded the library */
    pthread_barrier_t done;   /* threads counted; main may dlclose */
    pthread_barrier_t closed; /* main closed the library; threads exit */
    restartable_percpu_counter_t *counter;
    intptr_t *slots;
};

static struct shared shared;

static void count_through(const struct lib *l, restartable_percpu_counter_t *c, intptr_t *slots)
{
    int i;
    for (i = 0; i < ITERATIONS; i++) {
        int cpu;
        l->counter_add(c, 1);
        do
            cpu = l->cpu();
        while (l->load_add_store(&slots[cpu], 1, cpu) == RESTARTABLE_ABORTED);
    }
}

static void *early_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&shared.loaded);
    const struct lib *l = &shared.lib;
    CHECK_EQ(l->thread_state(), owner == RESTARTABLE_OWNER_LIBC ? RESTARTABLE_THREAD_BORROWED
                                                               : RESTARTABLE_THREAD_UNREGISTERED);
    CHECK_EQ(l->unreg(), -EINVAL);
    CHECK_EQ(l->reg(), 0);
    CHECK_EQ(l->thread_state(), registered_state());
    CHECK_EQ(l->is_available(), owner != RESTARTABLE_OWNER_NONE);
    CHECK(l->cpu() >= 0 && l->cpu() < ncpus);
    count_through(l, shared.counter, shared.slots);
    CHECK_EQ(l->unreg(), 0);
    CHECK_EQ(l->unreg(), -EINVAL);
    pthread_barrier_wait(&shared.done);
    pthread_barrier_wait(&shared.closed);
    /* The library was dlclose'd: still mapped (nodelete), still usable;
       this thread's exit runs the library's thread-exit destructor. */
    CHECK(l->cpu() >= 0 && l->cpu() < ncpus);
    return NULL;
}

static void *late_thread(void *arg)
{
    const struct lib *l = (const struct lib *)arg;
    /* Registers lazily; released by the destructor at exit. */
    CHECK(l->cpu() >= 0 && l->cpu() < ncpus);
    CHECK_EQ(l->is_available(), owner != RESTARTABLE_OWNER_NONE);
    return NULL;
}

static intptr_t sum(const intptr_t *slots)
{
    intptr_t total = 0;
    long i;
    for (i = 0; i < ncpus; i++)
        total += slots[i];
    return total;
}

static void scenario_threads(const char *path, int mode)
{
    pthread_t threads[THREADS];
    pthread_t late;
    void *again;
    int i;
    CHECK(pthread_barrier_init(&shared.loaded, NULL, THREADS + 1) == 0);
    CHECK(pthread_barrier_init(&shared.done, NULL, THREADS + 1) == 0);
    CHECK(pthread_barrier_init(&shared.closed, NULL, THREADS + 1) == 0);
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_create(&threads[i], NULL, early_thread, NULL) == 0);

    shared.lib = load(path, mode);
    CHECK_EQ(shared.lib.owner(), owner);
    shared.counter = shared.lib.counter_new();
    shared.slots = (intptr_t *)calloc((size_t)ncpus, sizeof(intptr_t));
    CHECK(shared.slots != NULL);
    pthread_barrier_wait(&shared.loaded);
    pthread_barrier_wait(&shared.done);
    CHECK_EQ(shared.lib.counter_sum(shared.counter), THREADS * ITERATIONS);
    CHECK_EQ(sum(shared.slots), THREADS * ITERATIONS);
    shared.lib.counter_free(shared.counter);

    CHECK_EQ(dlclose(shared.lib.handle), 0);
    /* -z nodelete: the object stays loaded after its last dlclose. */
    again = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    CHECK(again == shared.lib.handle);
    pthread_barrier_wait(&shared.closed);
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);
    CHECK(pthread_create(&late, NULL, late_thread, &shared.lib) == 0);
    CHECK(pthread_join(late, NULL) == 0);
    /* Loaded again: the same copy, the same decision. */
    CHECK_EQ(shared.lib.owner(), owner);
    CHECK_EQ(dlclose(again), 0);
    printf("threads: ok\n");
}

/* ---- copies: two copies of the library in one process ---- */

struct pair {
    struct lib a, b;
    int global;
};

static void *copies_thread(void *arg)
{
    const struct pair *p = (const struct pair *)arg;
    restartable_percpu_counter_t *c = p->b.counter_new();
    intptr_t *slots = (intptr_t *)calloc((size_t)ncpus, sizeof(intptr_t));
    CHECK(slots != NULL);
    CHECK_EQ(p->a.thread_state(), owner == RESTARTABLE_OWNER_LIBC ? RESTARTABLE_THREAD_BORROWED
                                                                 : RESTARTABLE_THREAD_UNREGISTERED);
    CHECK_EQ(p->a.reg(), 0);
    /* One area, one refcount: both copies see the same registration, loaded
       RTLD_GLOBAL or RTLD_LOCAL (a later copy finds the first copy's area
       in its TLS image); without rseq, local copies each keep their own
       unused inert area. */
    if (p->global || owner != RESTARTABLE_OWNER_NONE)
        CHECK(p->a.location() == p->b.location());
    CHECK_EQ(p->a.refcount(), p->b.refcount());
    CHECK_EQ(p->b.reg(), 0);
    CHECK_EQ(p->b.thread_state(), registered_state());
    if (owner == RESTARTABLE_OWNER_LIBRARY) {
        CHECK_EQ(p->a.refcount(), 2);
        CHECK_EQ(p->b.unreg(), 0);
        CHECK_EQ(p->a.refcount(), 1);
        CHECK(p->b.cpu_raw() >= 0); /* still registered: a holds it */
        CHECK_EQ(p->b.unreg(), -EINVAL);
        CHECK_EQ(p->a.unreg(), 0);
        CHECK_EQ(p->b.refcount(), 0);
        CHECK(p->a.cpu_raw() < 0); /* the last hold unregistered */
    } else {
        CHECK_EQ(p->b.unreg(), 0);
        CHECK_EQ(p->a.unreg(), 0);
    }
    /* Both copies give right CPUs and exact counts, whatever their state. */
    count_through(&p->b, c, slots);
    count_through(&p->a, c, slots);
    CHECK_EQ(p->b.counter_sum(c), 2 * ITERATIONS);
    CHECK_EQ(sum(slots), 2 * ITERATIONS);
    p->b.counter_free(c);
    free(slots);
    return NULL;
}

static void scenario_copies(const char *path, const char *copy, int mode)
{
    struct pair p;
    pthread_t threads[THREADS];
    int i;
    p.global = mode == RTLD_GLOBAL;
    p.a = load(path, mode);
    p.b = load(copy, mode);
    CHECK(p.a.handle != p.b.handle);
    CHECK(p.a.owner != p.b.owner); /* really two copies of the code */
    CHECK_EQ(p.a.owner(), owner);
    CHECK_EQ(p.b.owner(), owner);
    if (owner == RESTARTABLE_OWNER_LIBRARY) {
        /* Neither constructor registered this thread; the first use through
           either copy registers the one shared area, for both. */
        CHECK_EQ(p.a.thread_state(), RESTARTABLE_THREAD_UNREGISTERED);
        CHECK_EQ(p.b.refcount(), 0);
        CHECK_CPU_READ(p.b.cpu());
        CHECK_EQ(p.a.thread_state(), RESTARTABLE_THREAD_REGISTERED);
        CHECK_EQ(p.a.refcount(), 1); /* b's lazy hold */
        CHECK_CPU_READ(p.a.cpu_raw());
        CHECK(p.a.location() == p.b.location());
    }
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_create(&threads[i], NULL, copies_thread, &p) == 0);
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);
    printf("copies (%s): ok\n", p.global ? "global" : "local");
}

/* ---- classic: a component that registers __rseq_abi itself ---- */
#ifdef CLASSIC

static void *foreign_thread(void *arg)
{
    const struct lib *l = (const struct lib *)arg;
    restartable_percpu_counter_t *c = l->counter_new();
    intptr_t *slots = (intptr_t *)calloc((size_t)ncpus, sizeof(intptr_t));
    long ret = raw_rseq(&private_area, 0);
    CHECK(slots != NULL);
    if (owner == RESTARTABLE_OWNER_LIBRARY) {
        CHECK_EQ(ret, 0);
        CHECK_EQ(l->reg(), 0);
        CHECK_EQ(l->thread_state(), RESTARTABLE_THREAD_FOREIGN);
        CHECK_EQ(l->is_available(), 0);
        count_through(l, c, slots);
        CHECK_EQ(l->counter_sum(c), ITERATIONS);
        CHECK_EQ(sum(slots), ITERATIONS);
        CHECK_CPU_READ(l->cpu());
        CHECK_EQ(l->unreg(), 0);
        CHECK_EQ(raw_rseq(&private_area, 1), 0);
    }
    l->counter_free(c);
    free(slots);
    return NULL;
}

static void *classic_thread(void *arg)
{
    const struct lib *l = (const struct lib *)arg;
    long ret = raw_rseq(&__rseq_abi, 0);
    if (owner == RESTARTABLE_OWNER_LIBRARY) {
        CHECK_EQ(ret, 0);
        CHECK_EQ(l->reg(), 0);
        CHECK_EQ(l->thread_state(), RESTARTABLE_THREAD_BORROWED);
        CHECK_EQ(l->refcount(), 1); /* the caller's hold; the classic one is uncounted */
        CHECK_EQ(l->unreg(), 0);
        /* Never unregistered by the library: the classic owner still can. */
        CHECK(l->cpu_raw() >= 0);
        CHECK_EQ(raw_rseq(&__rseq_abi, 1), 0);
    } else if (owner == RESTARTABLE_OWNER_LIBC) {
        CHECK(ret != 0 && errno == EINVAL); /* glibc's area is registered */
    }
    return NULL;
}

static void scenario_classic(const char *path)
{
    struct lib l;
    pthread_t t;
    long ret = raw_rseq(&__rseq_abi, 0);
    if (owner == RESTARTABLE_OWNER_LIBRARY)
        CHECK_EQ(ret, 0);
    l = load(path, RTLD_LOCAL);
    CHECK_EQ(l.owner(), owner);
    if (owner == RESTARTABLE_OWNER_LIBRARY) {
        /* The library bound to this program's __rseq_abi and finds it
           registered by a component that does not count: borrowed. A hold
           is counted (EBUSY confirms the signature) and never unregisters. */
        CHECK(l.location() == &__rseq_abi);
        CHECK_EQ(l.thread_state(), RESTARTABLE_THREAD_BORROWED);
        CHECK_EQ(l.refcount(), 0);
        CHECK_EQ(l.reg(), 0);
        CHECK_EQ(l.thread_state(), RESTARTABLE_THREAD_BORROWED);
        CHECK_EQ(l.refcount(), 1);
        CHECK_EQ(l.unreg(), 0);
        CHECK_CPU_READ((int32_t)__rseq_abi.cpu_id);
        CHECK_CPU_READ(l.cpu());
        CHECK_CPU_READ(l.cpu_raw());
        CHECK_CPU_READ((int32_t)__rseq_abi.cpu_id);
    } else if (owner == RESTARTABLE_OWNER_LIBC) {
        CHECK(l.location() != &__rseq_abi);
        CHECK_EQ(l.thread_state(), RESTARTABLE_THREAD_BORROWED);
    }
    CHECK(pthread_create(&t, NULL, classic_thread, &l) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(pthread_create(&t, NULL, foreign_thread, &l) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    printf("classic: ok\n");
}
#endif

int main(int argc, char **argv)
{
    owner = expected_owner();
    ncpus = sysconf(_SC_NPROCESSORS_CONF);
    if (argc == 4 && strcmp(argv[1], "threads") == 0)
        scenario_threads(argv[2], parse_mode(argv[3]));
    else if (argc == 5 && strcmp(argv[1], "copies") == 0)
        scenario_copies(argv[2], argv[3], parse_mode(argv[4]));
#ifdef CLASSIC
    else if (argc == 3 && strcmp(argv[1], "classic") == 0)
        scenario_classic(argv[2]);
#endif
    else {
        fprintf(stderr, "usage: see the comment at the top of dlopen_test.c\n");
        return 2;
    }
    return 0;
}
