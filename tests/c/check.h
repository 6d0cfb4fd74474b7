/* Small helpers shared by the C tests (compiled as C and as C++). */
#ifndef RESTARTABLE_TEST_CHECK_H
#define RESTARTABLE_TEST_CHECK_H

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);            \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

#define CHECK_EQ(a, b)                                                                           \
    do {                                                                                         \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                          \
        if (check_a_ != check_b_) {                                                              \
            fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", __FILE__,          \
                    __LINE__, #a, #b, check_a_, check_b_);                                       \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

/* The owner the harness expects: RESTARTABLE_TEST_EXPECT = libc, library or
   none (1, 2, 3, as RESTARTABLE_OWNER_*). */
static inline int expected_owner(void)
{
    const char *e = getenv("RESTARTABLE_TEST_EXPECT");
    if (e == NULL) {
        fprintf(stderr, "RESTARTABLE_TEST_EXPECT is not set\n");
        exit(2);
    }
    if (strcmp(e, "libc") == 0)
        return 1;
    if (strcmp(e, "library") == 0)
        return 2;
    if (strcmp(e, "none") == 0)
        return 3;
    fprintf(stderr, "RESTARTABLE_TEST_EXPECT=%s: want libc, library or none\n", e);
    exit(2);
}

/* The kernel's rseq feature size, read from the auxiliary vector
   (AT_RSEQ_FEATURE_SIZE, 27) without the library: 20 where the kernel
   predates that entry (before Linux 6.3), 28 and more with node_id and
   mm_cid. */
static inline unsigned long kernel_rseq_feature_size(void)
{
    unsigned long size = getauxval(27);
    return size != 0 ? size : 20;
}

/* Pins the calling thread to `cpu`; the kernel migrates it before returning. */
static inline void pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
}

/* The CPUs the thread may run on, written to `cpus`; returns how many. */
static inline int allowed_cpus(int *cpus, int max)
{
    cpu_set_t set;
    int n = 0;
    int cpu;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    for (cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++)
        if (CPU_ISSET(cpu, &set))
            cpus[n++] = cpu;
    return n;
}

static inline void restore_affinity(const int *cpus, int n)
{
    cpu_set_t set;
    int i;
    CPU_ZERO(&set);
    for (i = 0; i < n; i++)
        CPU_SET(cpus[i], &set);
    CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
}

#endif
