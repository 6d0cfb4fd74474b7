/*
 * restartable.h - C interface of librestartable: one shared rseq area per
 * thread, the fastest CPU-number read, critical sections, per-CPU counters.
 *
 * Build the library with `cargo build --release`; link with
 * `-Ltarget/release -lrestartable` (or `pkg-config --libs restartable`).
 * C99/C11 and C++ clean. Licensed MIT OR Apache-2.0.
 */
#ifndef RESTARTABLE_H
#define RESTARTABLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The kernel's struct rseq (include/uapi/linux/rseq.h) ------------- */

/* The per-thread area. The kernel writes every field but rseq_cs once the
 * area is registered; user space writes only rseq_cs. */
struct rseq_area {
    uint32_t cpu_id_start;  /* always a valid CPU once registered (0 before) */
    uint32_t cpu_id;        /* CPU, or -1 unregistered, -2 registration failed */
    uint64_t rseq_cs;       /* address of the active descriptor, or 0 */
    uint32_t flags;         /* always 0 */
    uint32_t node_id;       /* NUMA node (feature size >= 24) */
    uint32_t mm_cid;        /* concurrency id (feature size >= 28) */
    uint32_t padding;
} __attribute__((aligned(32)));

#define RESTARTABLE_CPU_ID_OFFSET 4
#define RESTARTABLE_RSEQ_CS_OFFSET 8
#define RESTARTABLE_MM_CID_OFFSET 24
#define RESTARTABLE_RSEQ_SIG 0x53053053

#if defined(__cplusplus)
static_assert(sizeof(struct rseq_area) == 32, "struct rseq is 32 bytes");
static_assert(offsetof(struct rseq_area, cpu_id) == RESTARTABLE_CPU_ID_OFFSET, "cpu_id");
static_assert(offsetof(struct rseq_area, rseq_cs) == RESTARTABLE_RSEQ_CS_OFFSET, "rseq_cs");
static_assert(offsetof(struct rseq_area, mm_cid) == RESTARTABLE_MM_CID_OFFSET, "mm_cid");
#else
_Static_assert(sizeof(struct rseq_area) == 32, "struct rseq is 32 bytes");
_Static_assert(offsetof(struct rseq_area, cpu_id) == RESTARTABLE_CPU_ID_OFFSET, "cpu_id");
_Static_assert(offsetof(struct rseq_area, rseq_cs) == RESTARTABLE_RSEQ_CS_OFFSET, "rseq_cs");
_Static_assert(offsetof(struct rseq_area, mm_cid) == RESTARTABLE_MM_CID_OFFSET, "mm_cid");
#endif

/* ---- Ownership and registration --------------------------------------- */

#define RESTARTABLE_OWNER_LIBC 1    /* glibc registered every thread */
#define RESTARTABLE_OWNER_LIBRARY 2 /* the library registers __rseq_abi */
#define RESTARTABLE_OWNER_NONE 3    /* rseq unavailable: fallbacks */

#define RESTARTABLE_THREAD_UNREGISTERED 0
#define RESTARTABLE_THREAD_REGISTERED 1
#define RESTARTABLE_THREAD_BORROWED 2 /* another registrant of the same area */
#define RESTARTABLE_THREAD_FOREIGN 3  /* a different area: fallbacks */

/* The calling thread's active area; never NULL. */
struct rseq_area *rseq_location(void);
/* 0, or -EOVERFLOW, or the negated errno of an unexpected rseq(2) failure. */
int restartable_register(void);
/* 0, or -EINVAL when the thread holds no registration (nothing changes). */
int restartable_unregister(void);
int restartable_owner(void);
int restartable_thread_state(void);
uint32_t restartable_feature_size(void);
/* Clears the calling thread's rseq_cs before code holding sections unmaps. */
void restartable_prepare_unload(void);

/* ---- CPU numbers ------------------------------------------------------- */

/* Offset of the active area from the thread pointer, set before main. */
extern const ptrdiff_t restartable_area_offset;

int32_t restartable_cpu_slow(void);  /* never negative */
int32_t restartable_cpu_raw(void);   /* negative when not registered */
int32_t restartable_cpu_start(void);
int32_t restartable_node_id(void);   /* -1 when unavailable */
int32_t restartable_mm_cid(void);    /* -1 when unavailable */

/* The CPU the thread runs on: two loads and a branch on x86_64. */
static inline int32_t restartable_cpu(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    int32_t cpu;
    __asm__ __volatile__("movl %%fs:" "4" "(%1), %0"
                         : "=r"(cpu)
                         : "r"(restartable_area_offset));
    if (__builtin_expect(cpu >= 0, 1))
        return cpu;
#endif
    return restartable_cpu_slow();
}

/* ---- Operations: 0 committed, 1 compare failed, -1 aborted -------------- */

/* *v += count on CPU cpu; -EINVAL for NULL v or a negative cpu. */
int restartable_load_add_store(intptr_t *v, intptr_t count, int cpu);
/* if (*v == expect) *v = newv, on CPU cpu; -EINVAL for bad arguments. */
int restartable_load_cbne_store(intptr_t *v, intptr_t expect, intptr_t newv, int cpu);

/* ---- Writing one's own critical section (x86_64, GNU C asm goto) -------
 *
 * A section is one `__asm__ goto` statement built from these fragments:
 *
 *   RESTARTABLE_CS_DESCRIPTOR(3, 1, 2, 4)  descriptor 3: start 1, post-commit 2,
 *                                          abort 4; listed in __rseq_cs_ptr_array
 *   RESTARTABLE_CS_EXIT(1, 5)              exit point: a jump from section 1 to 5
 *   RESTARTABLE_CS_ARM(3)                  store descriptor 3 in the area's rseq_cs
 *   "1:"                                   the section starts
 *   RESTARTABLE_CS_CHECK_CPU(4)            cpu_id != %[cpu]: abort
 *   ... loads and compares ...             "jne %l[failed]" leaves early
 *   "<one store>"                          the commit
 *   "2:"
 *   RESTARTABLE_CS_ABORT(4, aborted)       handler 4 in __rseq_failure, behind
 *                                          the signature, jumps to C label
 *
 * Operands the fragments use: [area] "r"(restartable_area_offset) and
 * [cpu] "r"(cpu); clobbers "memory", "cc" and "rax". The thread must be
 * registered (restartable_cpu_raw() >= 0): otherwise the CPU check fails
 * and the section always aborts. restartable_load_add_store_fast() below
 * is a worked example. Use numeric labels 1 to 9 inside one statement. */
#if defined(__x86_64__) && defined(__GNUC__)

#define RESTARTABLE_STR_(x) #x
#define RESTARTABLE_STR(x) RESTARTABLE_STR_(x)

#define RESTARTABLE_CS_DESCRIPTOR(label, start, post_commit, abort)                  \
    ".pushsection __rseq_cs, \"aw\"\n\t"                                            \
    ".balign 32\n\t" RESTARTABLE_STR(label) ":\n\t"                                  \
    ".long 0, 0\n\t"                                                                 \
    ".quad " RESTARTABLE_STR(start) "f, (" RESTARTABLE_STR(post_commit) "f - "        \
    RESTARTABLE_STR(start) "f), " RESTARTABLE_STR(abort) "f\n\t"                      \
    ".popsection\n\t"                                                                \
    ".pushsection __rseq_cs_ptr_array, \"awR\"\n\t"                                  \
    ".quad " RESTARTABLE_STR(label) "b\n\t"                                          \
    ".popsection\n\t"

#define RESTARTABLE_CS_EXIT(start, exit)                                             \
    ".pushsection __rseq_exit_point_array, \"awR\"\n\t"                              \
    ".quad " RESTARTABLE_STR(start) "f, " RESTARTABLE_STR(exit) "\n\t"                \
    ".popsection\n\t"

#define RESTARTABLE_CS_ARM(label)                                                    \
    "leaq " RESTARTABLE_STR(label) "b(%%rip), %%rax\n\t"                             \
    "movq %%rax, %%fs:" RESTARTABLE_STR(RESTARTABLE_RSEQ_CS_OFFSET) "(%[area])\n\t"

#define RESTARTABLE_CS_CHECK_CPU(abort)                                              \
    "cmpl %[cpu], %%fs:" RESTARTABLE_STR(RESTARTABLE_CPU_ID_OFFSET) "(%[area])\n\t"   \
    "jnz " RESTARTABLE_STR(abort) "f\n\t"

#define RESTARTABLE_CS_ABORT(abort, c_label)                                         \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                        \
    ".byte 0x0f, 0xb9, 0x3d\n\t"                                                     \
    ".long " RESTARTABLE_STR(RESTARTABLE_RSEQ_SIG) "\n\t"                             \
    RESTARTABLE_STR(abort) ":\n\t"                                                   \
    "jmp %l[" #c_label "]\n\t"                                                       \
    ".popsection\n\t"

/* *v += count on CPU cpu, inline: 0 committed, -1 aborted. An unregistered
 * thread goes to the out-of-line restartable_load_add_store(), which
 * registers or falls back. */
static inline int restartable_load_add_store_fast(intptr_t *v, intptr_t count, int cpu)
{
    __asm__ goto(RESTARTABLE_CS_DESCRIPTOR(3, 1, 2, 4)
                 RESTARTABLE_CS_ARM(3)
                 "1:\n\t"
                 RESTARTABLE_CS_CHECK_CPU(4)
                 "addq %[count], %[v]\n\t" /* commit */
                 "2:\n\t"
                 RESTARTABLE_CS_ABORT(4, aborted)
                 :
                 : [area] "r"(restartable_area_offset), [cpu] "r"(cpu), [v] "m"(*v),
                   [count] "r"(count)
                 : "memory", "cc", "rax"
                 : aborted);
    return 0;
aborted:
    if (restartable_cpu_raw() < 0)
        return restartable_load_add_store(v, count, cpu);
    return -1;
}

/* if (*v == expect) *v = newv, on CPU cpu, inline: 0, 1 compare failed,
 * -1 aborted; unregistered threads go out of line. */
static inline int restartable_load_cbne_store_fast(intptr_t *v, intptr_t expect,
                                                   intptr_t newv, int cpu)
{
    __asm__ goto(RESTARTABLE_CS_DESCRIPTOR(3, 1, 2, 4)
                 RESTARTABLE_CS_EXIT(1, %l[failed])
                 RESTARTABLE_CS_ARM(3)
                 "1:\n\t"
                 RESTARTABLE_CS_CHECK_CPU(4)
                 "cmpq %[v], %[expect]\n\t"
                 "jnz %l[failed]\n\t"
                 "movq %[newv], %[v]\n\t" /* commit */
                 "2:\n\t"
                 RESTARTABLE_CS_ABORT(4, aborted)
                 :
                 : [area] "r"(restartable_area_offset), [cpu] "r"(cpu), [v] "m"(*v),
                   [expect] "r"(expect), [newv] "r"(newv)
                 : "memory", "cc", "rax"
                 : aborted, failed);
    return 0;
failed:
    return 1;
aborted:
    if (restartable_cpu_raw() < 0)
        return restartable_load_cbne_store(v, expect, newv, cpu);
    return -1;
}

#else /* other targets: the out-of-line functions */

static inline int restartable_load_add_store_fast(intptr_t *v, intptr_t count, int cpu)
{
    return restartable_load_add_store(v, count, cpu);
}

static inline int restartable_load_cbne_store_fast(intptr_t *v, intptr_t expect,
                                                   intptr_t newv, int cpu)
{
    return restartable_load_cbne_store(v, expect, newv, cpu);
}

#endif

/* ---- Per-CPU counter ---------------------------------------------------- */

struct restartable_percpu_counter;
struct restartable_percpu_counter *restartable_percpu_counter_new(void);
void restartable_percpu_counter_add(struct restartable_percpu_counter *c, int64_t delta);
int64_t restartable_percpu_counter_sum(const struct restartable_percpu_counter *c);
void restartable_percpu_counter_reset(struct restartable_percpu_counter *c);
void restartable_percpu_counter_free(struct restartable_percpu_counter *c);

#ifdef __cplusplus
}
#endif

#endif /* RESTARTABLE_H */
