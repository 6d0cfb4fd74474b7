/*
 * restartable.h - the C interface of librestartable (.so / .a).
 *
 * One restartable-sequences (rseq) area per thread, shared by everyone in the
 * process (glibc, this library, other copies of it, and components that use
 * the classic `__rseq_abi`); the fastest CPU-number read; critical sections
 * with abort handlers; and a per-CPU counter.
 *
 *     #include <restartable.h>
 *     cc prog.c $(pkg-config --cflags --libs restartable)
 *
 * Who owns the area is decided once, before main (or when the library is
 * dlopen'ed): glibc >= 2.35 registers every thread (RESTARTABLE_OWNER_LIBC);
 * otherwise the library registers its own refcounted `__rseq_abi`
 * (RESTARTABLE_OWNER_LIBRARY, e.g. under GLIBC_TUNABLES=glibc.pthread.rseq=0);
 * without rseq (old kernel, valgrind, seccomp, RESTARTABLE_DISABLE=1) every
 * function takes its fallback (RESTARTABLE_OWNER_NONE) and results stay exact.
 * Threads register lazily on first use and release at thread exit.
 *
 * On x86_64 with a GNU C compiler (gcc, clang) restartable_cpu(),
 * restartable_cpu_start(), restartable_mm_cid(), every critical-section
 * operation (by CPU and by mm_cid), the list push and pop at the current CPU
 * and the counter's add are static inline
 * functions; on aarch64 restartable_cpu(), the two basic operations and the
 * counter's add are static inline
 * functions: no call on the fast path. Elsewhere they are calls into the
 * library. Define RESTARTABLE_NO_INLINE before including this header to
 * always call.
 *
 * Compiles warning-free as C99/C11 and C++11 and later, with -pedantic.
 */
#ifndef RESTARTABLE_H
#define RESTARTABLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Constants                                                                 */
/* ------------------------------------------------------------------------ */

/* restartable_owner(): who registered the areas of this process's threads. */
#define RESTARTABLE_OWNER_LIBC 1    /* glibc; read, never (un)registered */
#define RESTARTABLE_OWNER_LIBRARY 2 /* this library's `__rseq_abi`, refcounted */
#define RESTARTABLE_OWNER_NONE 3    /* rseq unavailable: fallbacks */

/* restartable_thread_state(): the calling thread's registration. */
#define RESTARTABLE_THREAD_UNREGISTERED 0 /* not (yet) registered, or no rseq */
#define RESTARTABLE_THREAD_REGISTERED 1   /* registered by this library */
#define RESTARTABLE_THREAD_BORROWED 2     /* same area, registered by glibc or a classic user */
#define RESTARTABLE_THREAD_FOREIGN 3      /* another area is registered: fallbacks */

/* What a critical-section operation did. */
#define RESTARTABLE_COMMITTED 0      /* the commit store happened */
#define RESTARTABLE_COMPARE_FAILED 1 /* a comparison failed; memory unchanged */
#define RESTARTABLE_ABORTED (-1)     /* preempted, migrated, signalled or not on `cpu`:
                                        no commit; read the CPU again, retry. Stores
                                        made before the commit may be done (see
                                        "Critical-section operations") */

/* cpu_id before registration, and after a failed registration. */
#define RESTARTABLE_CPU_ID_UNINITIALIZED (-1)
#define RESTARTABLE_CPU_ID_REGISTRATION_FAILED (-2)

/* The 4 bytes before every abort handler (x86: the immediate of
   `ud1 0x53053053(%rip), %edi`; aarch64: the instruction word itself). */
#if defined(__aarch64__)
#define RESTARTABLE_SIG 0xd428bc00
#else
#define RESTARTABLE_SIG 0x53053053
#endif

/* Byte offsets of the fields of struct rseq_area (kernel ABI). */
#define RESTARTABLE_CPU_ID_START_OFFSET 0
#define RESTARTABLE_CPU_ID_OFFSET 4
#define RESTARTABLE_RSEQ_CS_OFFSET 8
#define RESTARTABLE_FLAGS_OFFSET 16
#define RESTARTABLE_NODE_ID_OFFSET 20
#define RESTARTABLE_MM_CID_OFFSET 24

/* ------------------------------------------------------------------------ */
/* Kernel layouts                                                            */
/* ------------------------------------------------------------------------ */

#if defined(__cplusplus) && __cplusplus >= 201103L
#define RESTARTABLE_ALIGN32 alignas(32)
#define RESTARTABLE_STATIC_ASSERT(expr, msg) static_assert(expr, msg)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define RESTARTABLE_ALIGN32 _Alignas(32)
#define RESTARTABLE_STATIC_ASSERT(expr, msg) _Static_assert(expr, msg)
#else /* C99: a negative array size fails the build */
#define RESTARTABLE_ALIGN32 __attribute__((__aligned__(32)))
#define RESTARTABLE_CAT_(a, b) a##b
#define RESTARTABLE_CAT(a, b) RESTARTABLE_CAT_(a, b)
#define RESTARTABLE_STATIC_ASSERT(expr, msg)                                                     \
    typedef char RESTARTABLE_CAT(restartable_static_assert_, __LINE__)[(expr) ? 1 : -1]
#endif

/*
 * The per-thread area shared with the kernel (`struct rseq` of
 * <linux/rseq.h>, renamed so that both headers can be included). Once the
 * thread is registered the kernel writes cpu_id_start, cpu_id, node_id and
 * mm_cid; user space must never write them (Linux 6.19 enforces this). User
 * space writes only rseq_cs. Read the fields with volatile loads.
 */
struct rseq_area {
    RESTARTABLE_ALIGN32 uint32_t cpu_id_start; /* always a valid CPU once registered */
    uint32_t cpu_id;                           /* current CPU, or -1 / -2 */
    uint64_t rseq_cs;   /* active struct restartable_cs, or 0 */
    uint32_t flags;     /* deprecated; 0 */
    uint32_t node_id;   /* NUMA node (feature size >= 24) */
    uint32_t mm_cid;    /* concurrency id (feature size >= 28) */
    uint32_t reserved;  /* the 32 bytes registered */
};

/* The descriptor of one critical section (`struct rseq_cs`). */
struct restartable_cs {
    RESTARTABLE_ALIGN32 uint32_t version; /* 0 */
    uint32_t flags;                       /* 0 */
    uint64_t start_ip;                    /* first instruction of the section */
    uint64_t post_commit_offset;          /* length up to and including the commit */
    uint64_t abort_ip;                    /* handler, preceded by RESTARTABLE_SIG */
};

RESTARTABLE_STATIC_ASSERT(sizeof(struct rseq_area) == 32, "struct rseq_area is 32 bytes");
RESTARTABLE_STATIC_ASSERT(offsetof(struct rseq_area, cpu_id_start) ==
                              RESTARTABLE_CPU_ID_START_OFFSET, "cpu_id_start offset");
RESTARTABLE_STATIC_ASSERT(offsetof(struct rseq_area, cpu_id) == RESTARTABLE_CPU_ID_OFFSET,
                          "cpu_id offset");
RESTARTABLE_STATIC_ASSERT(offsetof(struct rseq_area, rseq_cs) == RESTARTABLE_RSEQ_CS_OFFSET,
                          "rseq_cs offset");
RESTARTABLE_STATIC_ASSERT(offsetof(struct rseq_area, flags) == RESTARTABLE_FLAGS_OFFSET,
                          "flags offset");
RESTARTABLE_STATIC_ASSERT(offsetof(struct rseq_area, node_id) == RESTARTABLE_NODE_ID_OFFSET,
                          "node_id offset");
RESTARTABLE_STATIC_ASSERT(offsetof(struct rseq_area, mm_cid) == RESTARTABLE_MM_CID_OFFSET,
                          "mm_cid offset");
RESTARTABLE_STATIC_ASSERT(sizeof(struct restartable_cs) == 32, "struct restartable_cs is 32 bytes");
RESTARTABLE_STATIC_ASSERT(offsetof(struct restartable_cs, start_ip) == 8, "start_ip offset");
RESTARTABLE_STATIC_ASSERT(offsetof(struct restartable_cs, post_commit_offset) == 16,
                          "post_commit_offset offset");
RESTARTABLE_STATIC_ASSERT(offsetof(struct restartable_cs, abort_ip) == 24, "abort_ip offset");
#if defined(__cplusplus) && __cplusplus >= 201103L
static_assert(alignof(struct rseq_area) == 32, "struct rseq_area is aligned to 32");
static_assert(alignof(struct restartable_cs) == 32, "struct restartable_cs is aligned to 32");
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(_Alignof(struct rseq_area) == 32, "struct rseq_area is aligned to 32");
_Static_assert(_Alignof(struct restartable_cs) == 32, "struct restartable_cs is aligned to 32");
#endif

/* ------------------------------------------------------------------------ */
/* The area, ownership and registration                                      */
/* ------------------------------------------------------------------------ */

/* The calling thread's active area: glibc's, or the library's `__rseq_abi`
   (cpu_id < 0 until registered), or, where rseq is unavailable, an inert
   area no one registers (cpu_id always < 0). Never NULL. */
struct rseq_area *rseq_location(void);

/*
 * Offset of the active area from the thread pointer, the same for every
 * thread. Read it, never write it. The library sets it in its constructor,
 * before main (or at dlopen), and may change it once more, from whichever
 * thread first finds rseq refused in a library-owned process (a seccomp
 * filter installed later, say): it then names the inert area and the
 * process turns RESTARTABLE_OWNER_NONE.
 *
 * Not const, so the compiler reads it again after any call or asm with a
 * "memory" clobber, as a section has; not volatile, so between those one
 * load serves the CPU read and the section that follows it. A value kept
 * in a register across such a change still names an area of the calling
 * thread (its own, or the inert one), so reads through it stay valid.
 */
extern intptr_t restartable_area_offset;

/* RESTARTABLE_OWNER_LIBC, _LIBRARY or _NONE. */
int restartable_owner(void);

/* RESTARTABLE_THREAD_*: the calling thread's state, without registering. */
int restartable_thread_state(void);

/* 1 if the calling thread's reads and sections use rseq, 0 if they take
   their fallbacks. Registers lazily. */
int restartable_is_available(void);

/*
 * 1 when a classic `__rseq_abi` user loaded later (a plugin that registers
 * the symbol itself) would share this process's area: library-owned mode,
 * and `__rseq_abi` in the global scope is the area the library registers
 * (the library is a shared object, or the program was linked with
 * `pkg-config --static restartable`'s flags, which export it). 0 otherwise.
 * Asks the dynamic linker: call it from main() on.
 */
int restartable_area_is_exported(void);

/* ------------------------------------------------------------------------ */
/* Time-slice extension (Linux 7.x, CONFIG_RSEQ_SLICE_EXTENSION)             */
/* ------------------------------------------------------------------------ */
/*
 * Asks the scheduler not to preempt the thread for a few microseconds more
 * if its slice ends inside a short region (a lock hold):
 *
 *     restartable_slice_enable();               once per thread
 *     int t = restartable_slice_begin();
 *     ... short critical region ...
 *     restartable_slice_end(t);                 yields if an extension was granted
 *
 * A no-op (one load) wherever the kernel does not offer it; the status and
 * enable calls return a negative reason code then.
 */
#define RESTARTABLE_SLICE_ENABLED 2
#define RESTARTABLE_SLICE_AVAILABLE 1
#define RESTARTABLE_SLICE_NO_RSEQ (-1)
#define RESTARTABLE_SLICE_KERNEL_TOO_OLD (-2)
#define RESTARTABLE_SLICE_CLASSIC_REGISTRATION (-3)
#define RESTARTABLE_SLICE_NOT_CONFIGURED (-4)
#define RESTARTABLE_SLICE_KERNEL_ERROR (-5)
/* RESTARTABLE_SLICE_ENABLED, _AVAILABLE, or a negative reason code. */
int restartable_slice_status(void);
/* Enables the extension for the calling thread: 0, or a negative reason. */
int restartable_slice_enable(void);
/* Sets slice_ctrl.request if enabled: returns the token for _end (0: no-op). */
int restartable_slice_begin(void);
/* Clears the request; yields (rseq_slice_yield) if an extension was granted. */
void restartable_slice_end(int token);
/* A static description of a reason code. */
const char *restartable_slice_reason(int code);

/*
 * Writes a diagnostic report into `buf`, as `snprintf` would: who owns the
 * area and why (RESTARTABLE_DISABLE, ENOSYS from valgrind, qemu-user or a
 * seccomp filter, glibc's tunable, a foreign registrant, an executable that
 * does not export the shared symbols), the kernel and C library versions,
 * the seccomp mode and the counters. At most `len` bytes are written, the
 * last a NUL; nothing when `len` is 0 (`buf` may then be NULL). Returns the
 * report's full length, NUL excluded: a result >= len means it was cut
 * short, and len = result + 1 holds it all. UTF-8, lines end with '\n'.
 * Makes a few system calls: not for signal handlers.
 */
size_t restartable_report(char *buf, size_t len);

/*
 * Takes one hold on the calling thread's registration: the first hold in
 * library-owned mode registers `__rseq_abi`; with glibc owning, or without
 * rseq, the hold is only counted. Returns
 *   0            the hold was taken (restartable_thread_state() says whether
 *                rseq serves the thread: FOREIGN and UNREGISTERED take the
 *                fallbacks, correctly);
 *   -EOVERFLOW   too many holds on this thread; nothing changed;
 *   -errno       rseq(2) failed in a way no registrant expects; nothing changed.
 */
int restartable_register(void);

/*
 * Releases one hold taken by restartable_register(); the last hold in the
 * thread unregisters what this library registered (never glibc's, never a
 * classic registrant's). Returns 0, or -EINVAL when this thread holds
 * nothing (an unbalanced call; nothing changed).
 */
int restartable_unregister(void);

/*
 * Whether the calling thread runs critical sections, and if not, why:
 *   RESTARTABLE_SECTIONS_RUN          0  its area is registered: sections run
 *   RESTARTABLE_SECTIONS_FOREIGN      1  another area is registered for it
 *   RESTARTABLE_SECTIONS_REFUSED      2  a seccomp filter refuses rseq to it alone
 *   RESTARTABLE_SECTIONS_DISABLED     3  RESTARTABLE_DISABLE is set
 *   RESTARTABLE_SECTIONS_UNAVAILABLE  4  the kernel refuses rseq to the process
 *                                        (no support, a filter, another signature)
 *   RESTARTABLE_SECTIONS_UNSUPPORTED  5  no rseq code for this architecture
 *   RESTARTABLE_SECTIONS_NOT_YET      6  asked during start-up or from a signal
 *                                        handler inside a registration: ask later
 * Every API stays exact without sections (fallbacks); sections written with
 * the RESTARTABLE_CS_* macros never commit without them. Registers lazily;
 * takes no hold. Rust: sections(), Sections.
 */
#define RESTARTABLE_SECTIONS_RUN 0
#define RESTARTABLE_SECTIONS_FOREIGN 1
#define RESTARTABLE_SECTIONS_REFUSED 2
#define RESTARTABLE_SECTIONS_DISABLED 3
#define RESTARTABLE_SECTIONS_UNAVAILABLE 4
#define RESTARTABLE_SECTIONS_UNSUPPORTED 5
#define RESTARTABLE_SECTIONS_NOT_YET 6
int restartable_sections(void);

/*
 * restartable_register(), then restartable_sections(): takes one hold
 * (release it with restartable_unregister(), whatever the answer) and
 * returns RESTARTABLE_SECTIONS_RUN (0) or why sections do not run; or a
 * negative errno, as restartable_register(), with no hold taken.
 * Rust: register_for_sections().
 *
 *     int why = restartable_register_sections();
 *     if (why < 0) ...                      no hold: -EOVERFLOW, ...
 *     else if (why != RESTARTABLE_SECTIONS_RUN) log("fallbacks: %d", why);
 *     ...
 *     restartable_unregister();
 */
int restartable_register_sections(void);

/* The calling thread's `__rseq_refcount`: holds of every component sharing
   `__rseq_abi` (0 with glibc owning or without rseq). */
uint32_t restartable_refcount(void);

/* Clears the calling thread's rseq_cs. Call it on every thread that ran
   critical sections whose code is about to be unmapped (dlclose of the
   component that contains them). The library itself is never unloaded. */
void restartable_prepare_unload(void);

/* ------------------------------------------------------------------------ */
/* CPU number, node, concurrency id                                          */
/* ------------------------------------------------------------------------ */

/* Cold path of restartable_cpu(): registers lazily or returns sched_getcpu(). */
int32_t restartable_cpu_slow(void);
/* cpu_id as the area holds it: negative when not registered. Never registers. */
int32_t restartable_cpu_raw(void);
/* cpu_id_start: a valid CPU once registered, 0 before (inline on x86_64,
   declared with the inline fast paths below). */
/* NUMA node of the current CPU, or -1 when the kernel does not provide it. */
int32_t restartable_node_id(void);
/* Concurrency id (dense, < threads and CPUs), or -1 when unavailable
   (inline on x86_64, declared with the inline fast paths below). */
/* Usable feature size: 0 without rseq, 20 on old kernels, 28 with node_id
   and mm_cid, 33 with slice_ctrl (Linux 7.x, extensible registration). */
uint32_t restartable_feature_size(void);
/* The process's registration length: max(32, AT_RSEQ_FEATURE_SIZE) for
   the library's own area where the kernel's feature size exceeds 32, else
   32; glibc's max(32, __rseq_size) when glibc owns the area; 0 without
   rseq. */
uint32_t restartable_registration_len(void);
/* The calling thread's registration length: 32 where a classic component
   registered the shared __rseq_abi first; 0 when it uses no area. */
uint32_t restartable_thread_registration_len(void);
/* Critical sections aborted (and retried) inside the library. */
uint64_t restartable_abort_count(void);

/* ------------------------------------------------------------------------ */
/* Critical-section operations                                               */
/* ------------------------------------------------------------------------ */
/*
 * Each runs one critical section on the slot of CPU `cpu` (read it with
 * restartable_cpu() just before): it checks that the thread still runs on
 * `cpu`, does its loads and compares, and ends with a single commit store.
 * Returns RESTARTABLE_COMMITTED (0), RESTARTABLE_COMPARE_FAILED (1) or
 * RESTARTABLE_ABORTED (-1: read the CPU again and retry); -EINVAL, with
 * memory untouched, when `cpu` is negative. Threads without rseq take a
 * fallback (atomics, or a striped lock) and ignore `cpu`. The `_mm_cid`
 * forms index by concurrency id instead. Words passed to these functions
 * must be updated only through them.
 *
 * What each result leaves in memory:
 *   COMMITTED       every store of the operation is done;
 *   COMPARE_FAILED  nothing is written (every comparison comes before the
 *                   first store);
 *   -EINVAL, and ABORTED for a thread not on `cpu`: nothing is written
 *                   (the CPU check comes first);
 *   ABORTED         the commit did not happen: the word it stores (*v, or
 *                   the word found through *ptr) keeps its value. Three
 *                   operations store before their commit, and those stores
 *                   may be done when the kernel aborts the section:
 *                   load_cbne_store_store (and _release): *v2 may hold newv2;
 *                   load_cbne_memcpy_store: the first bytes of dst, up to all
 *                     len of them, may hold those of src;
 *                   load_cbeq_store_add_load_store (the pop): *load may hold
 *                     the head it read.
 *                   Every other operation writes nothing before its commit.
 *
 * Exactness: updates to a word are exact when every thread writing it takes
 * the same path, all sections (RESTARTABLE_OWNER_LIBC or _LIBRARY) or all
 * fallback (RESTARTABLE_OWNER_NONE). A RESTARTABLE_THREAD_FOREIGN thread
 * falls back while its neighbours run sections, and a section's commit is
 * a plain store: the two can lose an update on a shared word. The per-CPU
 * counter below keeps the two paths on separate words and is exact with
 * any mix of threads.
 *
 *     intptr_t *slots = ...;               one word per possible CPU
 *     int cpu;
 *     do cpu = restartable_cpu();
 *     while (restartable_load_add_store(&slots[cpu], 1, cpu) != 0);
 */

/* The operations, each in two forms: indexed by CPU (`cpu`) and by
   concurrency id (`_mm_cid`, `cid`). On x86_64 every one is a static inline
   function (see "Inline fast paths" below) whose cold path calls the
   `_slow` function of the same name; elsewhere they are calls. Their
   prototypes, in the order of the list:

   if (*v == expect) *v = newv;
     int restartable_load_cbne_store(intptr_t *v, intptr_t expect, intptr_t newv, int cpu);
   *v += count;
     int restartable_load_add_store(intptr_t *v, intptr_t count, int cpu);
   List pop: head = *v; fail if head == expectnot; *load = head;
   *v = *(intptr_t *)(head + voffp). Aborted: *load may hold head.
     int restartable_load_cbeq_store_add_load_store(intptr_t *v, intptr_t expectnot,
                                                    intptr_t voffp, intptr_t *load, int cpu);
   if (*v == expect && *v2 == expect2) *v = newv;
     int restartable_load_cbne_load_cbne_store(intptr_t *v, intptr_t expect, intptr_t *v2,
                                               intptr_t expect2, intptr_t newv, int cpu);
   if (*v == expect) { *v2 = newv2; *v = newv; } (the _release form orders
   the store to *v2 before the commit for other threads). Aborted: *v2 may
   hold newv2.
     int restartable_load_cbne_store_store(intptr_t *v, intptr_t expect, intptr_t *v2,
                                           intptr_t newv2, intptr_t newv, int cpu);
     int restartable_load_cbne_store_store_release(...same...);
   if (*v == expect) { memcpy(dst, src, len); *v = newv; } (the _release
   form orders the copy before the commit for other threads: a consumer
   that sees *v sees the bytes). Aborted: the first bytes of dst (any
   number up to len) may hold those of src.
     int restartable_load_cbne_memcpy_store(intptr_t *v, intptr_t expect, void *dst,
                                            const void *src, size_t len, intptr_t newv, int cpu);
     int restartable_load_cbne_memcpy_store_release(...same...);
   p = *ptr; q = *(intptr_t **)(p + off); *q += inc;
     int restartable_load_add_load_load_add_store(intptr_t *ptr, intptr_t off, intptr_t inc,
                                                  int cpu);
*/
/* The `_slow` functions: the same operations, out of line (the cold paths
   of the inline forms; callable directly). */
int restartable_load_cbne_store_slow(intptr_t *v, intptr_t expect, intptr_t newv, int cpu);
int restartable_load_cbne_store_mm_cid_slow(intptr_t *v, intptr_t expect, intptr_t newv, int cid);
int restartable_load_add_store_slow(intptr_t *v, intptr_t count, int cpu);
int restartable_load_add_store_mm_cid_slow(intptr_t *v, intptr_t count, int cid);
int restartable_load_cbeq_store_add_load_store_slow(intptr_t *v, intptr_t expectnot, intptr_t voffp,
                                                    intptr_t *load, int cpu);
int restartable_load_cbeq_store_add_load_store_mm_cid_slow(intptr_t *v, intptr_t expectnot,
                                                           intptr_t voffp, intptr_t *load, int cid);
int restartable_load_cbne_load_cbne_store_slow(intptr_t *v, intptr_t expect, intptr_t *v2,
                                               intptr_t expect2, intptr_t newv, int cpu);
int restartable_load_cbne_load_cbne_store_mm_cid_slow(intptr_t *v, intptr_t expect, intptr_t *v2,
                                                      intptr_t expect2, intptr_t newv, int cid);
int restartable_load_cbne_store_store_slow(intptr_t *v, intptr_t expect, intptr_t *v2,
                                           intptr_t newv2, intptr_t newv, int cpu);
int restartable_load_cbne_store_store_mm_cid_slow(intptr_t *v, intptr_t expect, intptr_t *v2,
                                                  intptr_t newv2, intptr_t newv, int cid);
int restartable_load_cbne_store_store_release_slow(intptr_t *v, intptr_t expect, intptr_t *v2,
                                                   intptr_t newv2, intptr_t newv, int cpu);
int restartable_load_cbne_store_store_release_mm_cid_slow(intptr_t *v, intptr_t expect,
                                                          intptr_t *v2, intptr_t newv2,
                                                          intptr_t newv, int cid);
int restartable_load_cbne_memcpy_store_slow(intptr_t *v, intptr_t expect, void *dst,
                                            const void *src, size_t len, intptr_t newv, int cpu);
int restartable_load_cbne_memcpy_store_mm_cid_slow(intptr_t *v, intptr_t expect, void *dst,
                                                   const void *src, size_t len, intptr_t newv,
                                                   int cid);
int restartable_load_cbne_memcpy_store_release_slow(intptr_t *v, intptr_t expect, void *dst,
                                                    const void *src, size_t len, intptr_t newv,
                                                    int cpu);
int restartable_load_cbne_memcpy_store_release_mm_cid_slow(intptr_t *v, intptr_t expect, void *dst,
                                                           const void *src, size_t len,
                                                           intptr_t newv, int cid);
int restartable_load_add_load_load_add_store_slow(intptr_t *ptr, intptr_t off, intptr_t inc,
                                                  int cpu);
int restartable_load_add_load_load_add_store_mm_cid_slow(intptr_t *ptr, intptr_t off, intptr_t inc,
                                                         int cid);

/* The number of possible CPUs: what a slot array indexed by CPU (or by
   concurrency id) needs. */
uint32_t restartable_possible_cpus(void);

/*
 * Per-CPU lists whose operations find their slot themselves: the section
 * reads the CPU (or mm_cid) after it is armed, so there is no CPU to pass
 * and no CPU compare; a migration aborts it. Slot i starts at
 * (char *)heads + i * stride with the list's head (0: empty); a node's
 * first word is its `next`.
 *
 *   push: node->next = head; head = node. RESTARTABLE_COMMITTED or
 *         RESTARTABLE_ABORTED (retry); node->next may be written either way.
 *   pop:  unlinks the head node into *node: RESTARTABLE_COMMITTED, or
 *         RESTARTABLE_COMPARE_FAILED (empty) or RESTARTABLE_ABORTED (retry)
 *         with *node NULL.
 *
 * Both return -EINVAL, touching nothing, for a NULL or misaligned heads or
 * node, a stride that is not a whole number of words, or fewer slots than
 * restartable_possible_cpus(). On x86_64 they are static inline functions
 * whose cold path calls the `_slow` function of the same name (which
 * checks the arguments); elsewhere they are calls. Threads without rseq
 * push with a compare-exchange and pop under a striped lock, on the slot
 * of their CPU.
 *
 *     int restartable_push_at_current(void *heads, size_t stride, uint32_t slots,
 *                                     intptr_t *node);
 *     int restartable_pop_at_current(void *heads, size_t stride, uint32_t slots,
 *                                    intptr_t **node);
 *     (and the _mm_cid forms, indexed by concurrency id)
 */
int restartable_push_at_current_slow(void *heads, size_t stride, uint32_t slots, intptr_t *node);
int restartable_push_at_current_mm_cid_slow(void *heads, size_t stride, uint32_t slots,
                                            intptr_t *node);
int restartable_pop_at_current_slow(void *heads, size_t stride, uint32_t slots, intptr_t **node);
int restartable_pop_at_current_mm_cid_slow(void *heads, size_t stride, uint32_t slots,
                                           intptr_t **node);

/*
 * Per-CPU buffers of words, the same way: slot i starts at (char *)buffers
 * + i * stride with the buffer's count (0: empty), an intptr_t, and its
 * items follow it, one word each; `capacity` items must fit in the slot
 * after the count (capacity < stride / sizeof(intptr_t)).
 *
 *   push: if count < capacity: items[count] = item; count += 1.
 *         RESTARTABLE_COMMITTED, RESTARTABLE_COMPARE_FAILED (full, nothing
 *         written) or RESTARTABLE_ABORTED (retry; the word past the last
 *         item may hold `item`, which no count covers).
 *   pop:  if count > 0: count -= 1; *item = items[count].
 *         RESTARTABLE_COMMITTED, or RESTARTABLE_COMPARE_FAILED (empty) or
 *         RESTARTABLE_ABORTED (retry) with *item 0.
 *
 * librseq's per-CPU buffer does these with a CPU read, then a
 * load_cbne_store_store (push) or load_cbne_load_cbne_store (pop) with a
 * CPU compare. Both return -EINVAL, touching nothing, for slots as the
 * list operations refuse them, a capacity that does not fit, or a NULL or
 * misaligned `item`; inline on x86_64 as the list operations are. A
 * thread that reads a count with acquire ordering sees the items below
 * it. Threads without rseq take both under a striped lock, on the slot of
 * their CPU.
 *
 *     int restartable_buffer_push_at_current(void *buffers, size_t stride,
 *                                            uint32_t slots, size_t capacity,
 *                                            intptr_t item);
 *     int restartable_buffer_pop_at_current(void *buffers, size_t stride,
 *                                           uint32_t slots, intptr_t *item);
 *     (and the _mm_cid forms, indexed by concurrency id)
 */
int restartable_buffer_push_at_current_slow(void *buffers, size_t stride, uint32_t slots,
                                            size_t capacity, intptr_t item);
int restartable_buffer_push_at_current_mm_cid_slow(void *buffers, size_t stride, uint32_t slots,
                                                   size_t capacity, intptr_t item);
int restartable_buffer_pop_at_current_slow(void *buffers, size_t stride, uint32_t slots,
                                           intptr_t *item);
int restartable_buffer_pop_at_current_mm_cid_slow(void *buffers, size_t stride, uint32_t slots,
                                                  intptr_t *item);

/* ------------------------------------------------------------------------ */
/* Per-CPU counter                                                           */
/* ------------------------------------------------------------------------ */
/*
 * add() touches only the current CPU's slot, with no atomic instruction;
 * sum() adds every slot and is exact once writers are quiescent. reset()
 * zeroes the counter and returns the sum it cleared: an add racing with it
 * is counted in that value or in later sums, never lost. Any number of
 * threads may add, sum and reset concurrently; free once nobody uses it.
 */
typedef struct restartable_percpu_counter restartable_percpu_counter_t;

/* A zeroed counter with a slot per possible CPU; NULL never (aborts on OOM). */
restartable_percpu_counter_t *restartable_percpu_counter_new(void);
/* Cold path of the inline add (thread not registered). */
void restartable_percpu_counter_add_slow(restartable_percpu_counter_t *c, int64_t delta);
/* A NULL counter: add() does nothing, sum() and reset() return 0. */
int64_t restartable_percpu_counter_sum(const restartable_percpu_counter_t *c);
int64_t restartable_percpu_counter_reset(restartable_percpu_counter_t *c);
/* Frees the counter; NULL is ignored. */
void restartable_percpu_counter_free(restartable_percpu_counter_t *c);

/* The first fields of every counter, read by the inline add. */
struct restartable_percpu_counter_fast {
    char *base;         /* slot 0 (handle + RESTARTABLE_COUNTER_SLOTS_OFFSET); each slot
                           starts with the word sections add to */
    size_t stride;      /* bytes per slot: 1 << RESTARTABLE_COUNTER_STRIDE_SHIFT */
    uint32_t slots;     /* number of slots */
    uint32_t stride_shift; /* RESTARTABLE_COUNTER_STRIDE_SHIFT */
};

/* Every counter's slots are 128 bytes apart (two cache lines) and start
   128 bytes after the handle, in the same allocation (base is the handle
   plus RESTARTABLE_COUNTER_SLOTS_OFFSET): the inline add reaches its slot
   from the handle pointer with a constant shift and offset, with no load
   of base or stride. */
#define RESTARTABLE_COUNTER_STRIDE_SHIFT 7
#define RESTARTABLE_COUNTER_SLOTS_OFFSET 128

/* ------------------------------------------------------------------------ */
/* Writing your own critical section (x86_64, GNU C `asm goto`)              */
/* ------------------------------------------------------------------------ */
/*
 * A section is one asm statement built from these pieces, in this order:
 *
 *   RESTARTABLE_CS_DESCRIPTOR(d, s, p, a)  the 32-byte aligned descriptor in
 *        section __rseq_cs, {0, 0, start, post_commit - start, abort}, and a
 *        pointer to it in __rseq_cs_ptr_array (d, s, p, a: numeric labels);
 *   RESTARTABLE_CS_EXIT_POINT(s, exit)     one per early exit, in
 *        __rseq_exit_point_array (for debuggers and DynamoRIO);
 *   RESTARTABLE_CS_ARM(d, reg)             stores the descriptor's address in
 *        the area's rseq_cs (reg: a scratch register you clobber, e.g. "rax");
 *   RESTARTABLE_CS_START(s)                the section starts here;
 *   RESTARTABLE_CS_CPU_CHECK(field, exit)  compares cpu_id (or mm_cid, as
 *        `field` says) with operand [rseq_cpu]; jumps to `exit` if it differs,
 *        or, for mm_cid, if the area is not registered (cpu_id < 0);
 *   your loads and compares, leaving with jumps to C labels (%l[name]);
 *   the single commit store, then RESTARTABLE_CS_POST_COMMIT(p);
 *   RESTARTABLE_CS_ABORT(a, target)        the abort handler, out of line in
 *        __rseq_failure, preceded by the signature `ud1 0x53053053(%rip),%edi`;
 *        it jumps to `target` (a C label).
 *
 * The pieces push their sections into the section group of the code around
 * them, if it has one (flag "?"): in C++ inline functions and templates,
 * whose copies the linker merges, each copy's descriptor, tables and abort
 * handler stay or go with it. The two tables are retained ("R"), so
 * -Wl,--gc-sections keeps them.
 *
 * Operands the pieces use by name: [rseq_area] "r"(restartable_area_offset)
 * and [rseq_cpu] "r"(cpu). Clobber "memory", "cc" and the ARM register.
 *
 * The kernel aborts sections only on a registered area, and an area that
 * is not registered (before the thread's first use, after its last
 * release, without rseq) reads cpu_id -1 or -2 and mm_cid 0. So:
 *   - `cpu` must not be negative: -1 or -2 would pass the CPU check there
 *     and commit unprotected. Refuse it before the section, as the example
 *     does; a value from restartable_cpu() never is, and the compiler then
 *     drops the test;
 *   - with `cpu >= 0` the check of a thread that is not registered fails
 *     for ever: take your fallback then (restartable_cpu_raw() < 0);
 *   - a section that reads the index field itself instead of using
 *     RESTARTABLE_CS_CPU_CHECK puts RESTARTABLE_CS_REGISTERED_CHECK(field,
 *     exit) before that read: for mm_cid it leaves unless cpu_id >= 0
 *     (two instructions), for cpu_id it emits nothing.
 *
 * Worked example, "store `value` if it is larger than the slot's":
 *
 *     static int store_max(intptr_t *slot, intptr_t value, int cpu)
 *     {
 *         if (cpu < 0)                            never a CPU: see above
 *             return -EINVAL;
 *         __asm__ goto(
 *             RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")
 *             RESTARTABLE_CS_EXIT_POINT("1", "%l[not_larger]")
 *             RESTARTABLE_CS_ARM("3", "rax")
 *             RESTARTABLE_CS_START("1")
 *             RESTARTABLE_CS_CPU_CHECK(RESTARTABLE_CPU_ID_FIELD, "%l[aborted]")
 *             "cmpq %[value], (%[slot])\n\t"
 *             "jge %l[not_larger]\n\t"
 *             "movq %[value], (%[slot])\n\t"          the commit
 *             RESTARTABLE_CS_POST_COMMIT("2")
 *             RESTARTABLE_CS_ABORT("4", "%l[aborted]")
 *             :
 *             : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu),
 *               [slot] "r"(slot), [value] "r"(value)
 *             : "memory", "cc", "rax"
 *             : aborted, not_larger);
 *         return RESTARTABLE_COMMITTED;
 *     aborted:
 *         return RESTARTABLE_ABORTED;
 *     not_larger:
 *         return RESTARTABLE_COMPARE_FAILED;
 *     }
 *
 * The inline operations below (RESTARTABLE_INLINE_LOAD_CBNE_STORE_ and
 * the other generators) are more examples.
 */
#define RESTARTABLE_STR_(x) #x
#define RESTARTABLE_STR(x) RESTARTABLE_STR_(x)
#define RESTARTABLE_CPU_ID_FIELD RESTARTABLE_STR(RESTARTABLE_CPU_ID_OFFSET)
#define RESTARTABLE_MM_CID_FIELD RESTARTABLE_STR(RESTARTABLE_MM_CID_OFFSET)

#if !defined(__aarch64__)
#define RESTARTABLE_CS_DESCRIPTOR(desc, start, post_commit, abort)                                \
    ".pushsection __rseq_cs, \"aw?\", @progbits\n\t"                                            \
    ".balign 32\n\t" desc ":\n\t"                                                               \
    ".long 0, 0\n\t"                                                                            \
    ".quad " start "f, (" post_commit "f - " start "f), " abort "f\n\t"                         \
    ".popsection\n\t"                                                                           \
    ".pushsection __rseq_cs_ptr_array, \"awR?\", @progbits\n\t"                                \
    ".quad " desc "b\n\t"                                                                       \
    ".popsection\n\t"

#define RESTARTABLE_CS_EXIT_POINT(start, exit)                                                   \
    ".pushsection __rseq_exit_point_array, \"awR?\", @progbits\n\t"                            \
    ".quad " start "f, " exit "\n\t"                                                            \
    ".popsection\n\t"

#define RESTARTABLE_CS_ARM(desc, reg)                                                            \
    "leaq " desc "b(%%rip), %%" reg "\n\t"                                                      \
    "movq %%" reg ", %%fs:" RESTARTABLE_STR(RESTARTABLE_RSEQ_CS_OFFSET) "(%[rseq_area])\n\t"

#define RESTARTABLE_CS_START(start) start ":\n\t"

#define RESTARTABLE_CS_CPU_CHECK(field, exit)                                                    \
    RESTARTABLE_CS_REGISTERED_CHECK(field, exit)                                                 \
    "cmpl %[rseq_cpu], %%fs:" field "(%[rseq_area])\n\t"                                        \
    "jnz " exit "\n\t"

/* An area that is not registered (or the inert one) reads mm_cid 0, which
   a check of the index alone accepts: a section indexed by mm_cid also
   needs cpu_id >= 0. The assembler keeps the two instructions only when
   `field` is RESTARTABLE_MM_CID_FIELD; for cpu_id a negative value already
   fails the index check. */
#define RESTARTABLE_CS_REGISTERED_CHECK(field, exit)                                             \
    ".if " field " == " RESTARTABLE_MM_CID_FIELD "\n\t"                                         \
    "cmpl $0, %%fs:" RESTARTABLE_CPU_ID_FIELD "(%[rseq_area])\n\t"                              \
    "jl " exit "\n\t"                                                                           \
    ".endif\n\t"

#define RESTARTABLE_CS_POST_COMMIT(post_commit) post_commit ":\n\t"

#define RESTARTABLE_CS_ABORT(abort, target)                                                      \
    ".pushsection __rseq_failure, \"ax?\", @progbits\n\t"                                       \
    ".byte 0x0f, 0xb9, 0x3d\n\t"                                                                \
    ".long " RESTARTABLE_STR(RESTARTABLE_SIG) "\n\t" abort ":\n\t"                              \
    "jmp " target "\n\t"                                                                        \
    ".popsection\n\t"

#else /* aarch64 */
/*
 * The same pieces in A64 assembly, with two differences:
 *   - [rseq_area] is the area's *address*: pass "r"(restartable_area());
 *   - RESTARTABLE_CS_CPU_CHECK and RESTARTABLE_CS_REGISTERED_CHECK load the
 *     field into RESTARTABLE_CS_SCRATCH ("x17"): clobber it.
 * Loads and stores in your part are as weakly ordered as the instructions
 * you write: end with `stlr` where another CPU must see earlier stores
 * before the commit. The worked example, for aarch64:
 *
 *             RESTARTABLE_CS_ARM("3", "x17")
 *             RESTARTABLE_CS_START("1")
 *             RESTARTABLE_CS_CPU_CHECK(RESTARTABLE_CPU_ID_FIELD, "%l[aborted]")
 *             "ldr x17, [%[slot]]\n\t"
 *             "cmp x17, %[value]\n\t"
 *             "b.ge %l[not_larger]\n\t"
 *             "str %[value], [%[slot]]\n\t"          the commit
 *             ...
 *             : [rseq_area] "r"(restartable_area()), [rseq_cpu] "r"(cpu), ...
 *             : "memory", "cc", "x17"
 */
#define RESTARTABLE_CS_SCRATCH "x17"

#define RESTARTABLE_CS_DESCRIPTOR(desc, start, post_commit, abort)                                \
    ".pushsection __rseq_cs, \"aw?\", %%progbits\n\t"                                           \
    ".balign 32\n\t" desc ":\n\t"                                                               \
    ".long 0, 0\n\t"                                                                            \
    ".quad " start "f, (" post_commit "f - " start "f), " abort "f\n\t"                         \
    ".popsection\n\t"                                                                           \
    ".pushsection __rseq_cs_ptr_array, \"awR?\", %%progbits\n\t"                               \
    ".quad " desc "b\n\t"                                                                       \
    ".popsection\n\t"

#define RESTARTABLE_CS_EXIT_POINT(start, exit)                                                   \
    ".pushsection __rseq_exit_point_array, \"awR?\", %%progbits\n\t"                           \
    ".quad " start "f, " exit "\n\t"                                                            \
    ".popsection\n\t"

#define RESTARTABLE_CS_ARM(desc, reg)                                                            \
    "adrp " reg ", " desc "b\n\t"                                                               \
    "add " reg ", " reg ", :lo12:" desc "b\n\t"                                                 \
    "str " reg ", [%[rseq_area], #" RESTARTABLE_STR(RESTARTABLE_RSEQ_CS_OFFSET) "]\n\t"

#define RESTARTABLE_CS_START(start) start ":\n\t"

#define RESTARTABLE_CS_CPU_CHECK(field, exit)                                                    \
    RESTARTABLE_CS_REGISTERED_CHECK(field, exit)                                                 \
    "ldr w17, [%[rseq_area], #" field "]\n\t"                                                   \
    "cmp w17, %w[rseq_cpu]\n\t"                                                                 \
    "b.ne " exit "\n\t"

/* As on x86_64: for mm_cid, also require cpu_id >= 0. */
#define RESTARTABLE_CS_REGISTERED_CHECK(field, exit)                                             \
    ".if " field " == " RESTARTABLE_MM_CID_FIELD "\n\t"                                         \
    "ldr w17, [%[rseq_area], #" RESTARTABLE_CPU_ID_FIELD "]\n\t"                                \
    "cmp w17, #0\n\t"                                                                           \
    "b.lt " exit "\n\t"                                                                         \
    ".endif\n\t"

#define RESTARTABLE_CS_POST_COMMIT(post_commit) post_commit ":\n\t"

#define RESTARTABLE_CS_ABORT(abort, target)                                                      \
    ".pushsection __rseq_failure, \"ax?\", %%progbits\n\t"                                      \
    ".inst " RESTARTABLE_STR(RESTARTABLE_SIG) "\n\t" abort ":\n\t"                              \
    "b " target "\n\t"                                                                          \
    ".popsection\n\t"
#endif

/* ------------------------------------------------------------------------ */
/* Inline fast paths                                                         */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__) && !defined(RESTARTABLE_NO_INLINE)
/* Every inline fast path is always inlined. Left to its heuristics, GCC
   makes one out-of-line copy of a fast path when the translation unit is
   large or has many callers of it, or at -Os, and every use of it is then
   a call: about twice the time of the operation inlined. */
#define RESTARTABLE_ALWAYS_INLINE_ static inline __attribute__((always_inline))
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(RESTARTABLE_NO_INLINE)
#define RESTARTABLE_INLINE_X86_64 1

#define RESTARTABLE_LIKELY(x) __builtin_expect(!!(x), 1)
#define RESTARTABLE_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Reads one 32-bit field of the calling thread's area (volatile: the kernel
   rewrites it whenever the thread is preempted). */
#define RESTARTABLE_AREA_LOAD_U32(offset)                                                        \
    __extension__({                                                                             \
        uint32_t restartable_v_;                                                                \
        __asm__ __volatile__("movl %%fs:%c1(%2), %0"                                            \
                             : "=r"(restartable_v_)                                             \
                             : "i"(offset), "r"(restartable_area_offset));                      \
        restartable_v_;                                                                         \
    })

/* The CPU the calling thread runs on; never fails. Two loads and a branch:
   the area offset, then cpu_id at %fs + offset; registers lazily or falls
   back to sched_getcpu() when cpu_id is negative. */
RESTARTABLE_ALWAYS_INLINE_ int32_t restartable_cpu(void)
{
    int32_t cpu = (int32_t)RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_CPU_ID_OFFSET);
    if (RESTARTABLE_LIKELY(cpu >= 0))
        return cpu;
    cpu = restartable_cpu_slow();
    /* The cold path never returns a negative CPU; saying so lets the
       compiler drop the operations' own `cpu < 0` test. */
    if (cpu < 0)
        __builtin_unreachable();
    return cpu;
}

/* cpu_id_start: one load, no branch. The kernel keeps it a valid CPU once
   the thread is registered; before (and without rseq) it reads 0, on which
   a section's CPU check fails and the operation's cold path registers or
   falls back. So a loop of restartable_cpu_start() and an operation is
   exact too, and one branch shorter than one over restartable_cpu(). */
RESTARTABLE_ALWAYS_INLINE_ uint32_t restartable_cpu_start(void)
{
    uint32_t cpu = RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_CPU_ID_START_OFFSET);
    if (cpu > (uint32_t)INT32_MAX) /* never a CPU number */
        __builtin_unreachable();
    return cpu;
}

/* 1 when the kernel provides mm_cid (feature size >= 28). Asked of the
   library once per translation unit, then one load: an area whose kernel
   does not write mm_cid reads 0 there, which a section's check of the
   concurrency id alone would accept. */
RESTARTABLE_ALWAYS_INLINE_ int restartable_mm_cid_usable_(void)
{
    static int known; /* 0 not asked yet, 1 usable, 2 not */
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (RESTARTABLE_UNLIKELY(k == 0)) {
        k = restartable_feature_size() >= 28 ? 1 : 2;
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k == 1;
}

/* Concurrency id (dense, < threads and CPUs), or -1 when unavailable (not
   registered, or a kernel without mm_cid). */
RESTARTABLE_ALWAYS_INLINE_ int32_t restartable_mm_cid(void)
{
    if (RESTARTABLE_UNLIKELY(
            (int32_t)RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_CPU_ID_OFFSET) < 0 ||
            !restartable_mm_cid_usable_()))
        return -1;
    return (int32_t)RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_MM_CID_OFFSET);
}

/*
 * The operations. Each generator below defines one operation for one index
 * field; every operation is defined twice, for cpu_id (`name`) and for
 * mm_cid (`name_mm_cid`), and calls `name_slow` (the library's out-of-line
 * form) when
 *   - the index is refused before the section (REFUSE): negative (-EINVAL
 *     there; a negative value equals the cpu_id of an area that is not
 *     registered and would pass the check), or, for mm_cid, a kernel that
 *     does not provide it (the fallback there). The compiler drops the
 *     test of the sign when the index comes from restartable_cpu() or
 *     restartable_cpu_start();
 *   - the section's check fails and the area reads cpu_id < 0: the thread
 *     is not registered (register lazily, or fall back).
 * A failed check on a registered area is RESTARTABLE_ABORTED, like an
 * abort by the kernel. See "Critical-section operations" for the results.
 */
#define RESTARTABLE_REFUSE_CPU_(cpu) RESTARTABLE_UNLIKELY((cpu) < 0)
#define RESTARTABLE_REFUSE_MM_CID_(cid) RESTARTABLE_UNLIKELY((cid) < 0 || !restartable_mm_cid_usable_())

/* The exits every operation shares after its committed return, `args`
   the call of its cold path. */
#define RESTARTABLE_OPERATION_EXITS_(slow, args)                                                 \
    mismatch:                                                                                    \
    if ((int32_t)RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_CPU_ID_OFFSET) < 0)                       \
        return slow args;                                                                        \
    aborted:                                                                                     \
    return RESTARTABLE_ABORTED;

/* if (*v == expect) *v = newv; */
#define RESTARTABLE_INLINE_LOAD_CBNE_STORE_(name, slow, field, refuse)                           \
    RESTARTABLE_ALWAYS_INLINE_ int name(intptr_t *v, intptr_t expect, intptr_t newv, int cpu)                 \
    {                                                                                            \
        if (refuse(cpu))                                                                         \
            return slow(v, expect, newv, cpu);                                                   \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[mismatch]")                              \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[differs]")                               \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_CPU_CHECK(field, "%l[mismatch]")                             \
                     "cmpq %[expect], (%[v])\n\t"                                                \
                     "jnz %l[differs]\n\t"                                                       \
                     "movq %[newv], (%[v])\n\t" /* the commit */                                 \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu),            \
                       [v] "r"(v), [expect] "r"(expect), [newv] "r"(newv)                        \
                     : "memory", "cc", "rax"                                                     \
                     : mismatch, differs, aborted);                                              \
        return RESTARTABLE_COMMITTED;                                                            \
    differs:                                                                                     \
        return RESTARTABLE_COMPARE_FAILED;                                                       \
        RESTARTABLE_OPERATION_EXITS_(slow, (v, expect, newv, cpu))                               \
    }

/* *v += count; the commit is the add itself. */
#define RESTARTABLE_INLINE_LOAD_ADD_STORE_(name, slow, field, refuse)                            \
    RESTARTABLE_ALWAYS_INLINE_ int name(intptr_t *v, intptr_t count, int cpu)                                 \
    {                                                                                            \
        if (refuse(cpu))                                                                         \
            return slow(v, count, cpu);                                                          \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[mismatch]")                              \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_CPU_CHECK(field, "%l[mismatch]")                             \
                     "addq %[count], (%[v])\n\t" /* the commit */                                \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu),            \
                       [v] "r"(v), [count] "r"(count)                                            \
                     : "memory", "cc", "rax"                                                     \
                     : mismatch, aborted);                                                       \
        return RESTARTABLE_COMMITTED;                                                            \
        RESTARTABLE_OPERATION_EXITS_(slow, (v, count, cpu))                                      \
    }

/* List pop: head = *v; fail if head == expectnot; *load = head;
   *v = *(intptr_t *)(head + voffp). %rax holds the head once the section
   is armed. */
#define RESTARTABLE_INLINE_LOAD_CBEQ_STORE_ADD_LOAD_STORE_(name, slow, field, refuse)            \
    RESTARTABLE_ALWAYS_INLINE_ int name(intptr_t *v, intptr_t expectnot, intptr_t voffp, intptr_t *load,      \
                           int cpu)                                                              \
    {                                                                                            \
        if (refuse(cpu))                                                                         \
            return slow(v, expectnot, voffp, load, cpu);                                         \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[mismatch]")                              \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[differs]")                               \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_CPU_CHECK(field, "%l[mismatch]")                             \
                     "movq (%[v]), %%rax\n\t"                                                    \
                     "cmpq %%rax, %[expectnot]\n\t"                                              \
                     "jz %l[differs]\n\t"                                                        \
                     "movq %%rax, (%[load])\n\t"                                                 \
                     "movq (%%rax, %[voffp]), %%rax\n\t"                                         \
                     "movq %%rax, (%[v])\n\t" /* the commit */                                   \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu),            \
                       [v] "r"(v), [expectnot] "r"(expectnot), [voffp] "r"(voffp),               \
                       [load] "r"(load)                                                          \
                     : "memory", "cc", "rax"                                                     \
                     : mismatch, differs, aborted);                                              \
        return RESTARTABLE_COMMITTED;                                                            \
    differs:                                                                                     \
        return RESTARTABLE_COMPARE_FAILED;                                                       \
        RESTARTABLE_OPERATION_EXITS_(slow, (v, expectnot, voffp, load, cpu))                     \
    }

/* if (*v == expect && *v2 == expect2) *v = newv; */
#define RESTARTABLE_INLINE_LOAD_CBNE_LOAD_CBNE_STORE_(name, slow, field, refuse)                 \
    RESTARTABLE_ALWAYS_INLINE_ int name(intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t expect2,         \
                           intptr_t newv, int cpu)                                               \
    {                                                                                            \
        if (refuse(cpu))                                                                         \
            return slow(v, expect, v2, expect2, newv, cpu);                                      \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[mismatch]")                              \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[differs]")                               \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_CPU_CHECK(field, "%l[mismatch]")                             \
                     "cmpq %[expect], (%[v])\n\t"                                                \
                     "jnz %l[differs]\n\t"                                                       \
                     "cmpq %[expect2], (%[v2])\n\t"                                              \
                     "jnz %l[differs]\n\t"                                                       \
                     "movq %[newv], (%[v])\n\t" /* the commit */                                 \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu),            \
                       [v] "r"(v), [expect] "r"(expect), [v2] "r"(v2), [expect2] "r"(expect2),   \
                       [newv] "r"(newv)                                                          \
                     : "memory", "cc", "rax"                                                     \
                     : mismatch, differs, aborted);                                              \
        return RESTARTABLE_COMMITTED;                                                            \
    differs:                                                                                     \
        return RESTARTABLE_COMPARE_FAILED;                                                       \
        RESTARTABLE_OPERATION_EXITS_(slow, (v, expect, v2, expect2, newv, cpu))                  \
    }

/* if (*v == expect) { *v2 = newv2; *v = newv; }. x86 keeps stores in
   program order (TSO), so this is the _release form too. */
#define RESTARTABLE_INLINE_LOAD_CBNE_STORE_STORE_(name, slow, field, refuse)                     \
    RESTARTABLE_ALWAYS_INLINE_ int name(intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t newv2,           \
                           intptr_t newv, int cpu)                                               \
    {                                                                                            \
        if (refuse(cpu))                                                                         \
            return slow(v, expect, v2, newv2, newv, cpu);                                        \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[mismatch]")                              \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[differs]")                               \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_CPU_CHECK(field, "%l[mismatch]")                             \
                     "cmpq %[expect], (%[v])\n\t"                                                \
                     "jnz %l[differs]\n\t"                                                       \
                     "movq %[newv2], (%[v2])\n\t"                                                \
                     "movq %[newv], (%[v])\n\t" /* the commit */                                 \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu),            \
                       [v] "r"(v), [expect] "r"(expect), [v2] "r"(v2), [newv2] "r"(newv2),       \
                       [newv] "r"(newv)                                                          \
                     : "memory", "cc", "rax"                                                     \
                     : mismatch, differs, aborted);                                              \
        return RESTARTABLE_COMMITTED;                                                            \
    differs:                                                                                     \
        return RESTARTABLE_COMPARE_FAILED;                                                       \
        RESTARTABLE_OPERATION_EXITS_(slow, (v, expect, v2, newv2, newv, cpu))                    \
    }

/* if (*v == expect) { memcpy(dst, src, len); *v = newv; }, eight bytes
   at a time, then the last ones a byte at a time (%rcx the index, %rax the
   bytes in flight); byte by byte throughout where dst lies 1 to 7 bytes
   above src, so that overlapping ranges come out as a forward byte copy's,
   as on every path. The _release form too (TSO). */
#define RESTARTABLE_INLINE_LOAD_CBNE_MEMCPY_STORE_(name, slow, field, refuse)                    \
    RESTARTABLE_ALWAYS_INLINE_ int name(intptr_t *v, intptr_t expect, void *dst, const void *src, size_t len, \
                           intptr_t newv, int cpu)                                               \
    {                                                                                            \
        if (refuse(cpu))                                                                         \
            return slow(v, expect, dst, src, len, newv, cpu);                                    \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[mismatch]")                              \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[differs]")                               \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_CPU_CHECK(field, "%l[mismatch]")                             \
                     "cmpq %[expect], (%[v])\n\t"                                                \
                     "jnz %l[differs]\n\t"                                                       \
                     "xorl %%ecx, %%ecx\n\t"                                                     \
                     "cmpq $8, %[len]\n\t"                                                       \
                     "jb 7f\n\t"                                                                 \
                     "movq %[dst], %%rax\n\t" /* dst 1 to 7 bytes above src: bytes */           \
                     "subq %[src], %%rax\n\t"                                                    \
                     "decq %%rax\n\t"                                                            \
                     "cmpq $7, %%rax\n\t"                                                        \
                     "jb 7f\n\t"                                                                 \
                     "5:\n\t"                                                                    \
                     "movq (%[src], %%rcx), %%rax\n\t"                                           \
                     "movq %%rax, (%[dst], %%rcx)\n\t"                                           \
                     "addq $8, %%rcx\n\t"                                                        \
                     "leaq 8(%%rcx), %%rax\n\t"                                                  \
                     "cmpq %[len], %%rax\n\t"                                                    \
                     "jbe 5b\n\t"                                                                \
                     "7:\n\t"                                                                    \
                     "cmpq %[len], %%rcx\n\t"                                                    \
                     "jz 6f\n\t"                                                                 \
                     "8:\n\t"                                                                    \
                     "movb (%[src], %%rcx), %%al\n\t"                                            \
                     "movb %%al, (%[dst], %%rcx)\n\t"                                            \
                     "incq %%rcx\n\t"                                                            \
                     "cmpq %[len], %%rcx\n\t"                                                    \
                     "jnz 8b\n\t"                                                                \
                     "6:\n\t"                                                                    \
                     "movq %[newv], (%[v])\n\t" /* the commit */                                 \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu),            \
                       [v] "r"(v), [expect] "r"(expect), [dst] "r"(dst), [src] "r"(src),         \
                       [len] "r"(len), [newv] "r"(newv)                                          \
                     : "memory", "cc", "rax", "rcx"                                              \
                     : mismatch, differs, aborted);                                              \
        return RESTARTABLE_COMMITTED;                                                            \
    differs:                                                                                     \
        return RESTARTABLE_COMPARE_FAILED;                                                       \
        RESTARTABLE_OPERATION_EXITS_(slow, (v, expect, dst, src, len, newv, cpu))                \
    }

/* p = *ptr; q = *(intptr_t **)(p + off); *q += inc; (%rax follows the
   pointers). */
#define RESTARTABLE_INLINE_LOAD_ADD_LOAD_LOAD_ADD_STORE_(name, slow, field, refuse)              \
    RESTARTABLE_ALWAYS_INLINE_ int name(intptr_t *ptr, intptr_t off, intptr_t inc, int cpu)                   \
    {                                                                                            \
        if (refuse(cpu))                                                                         \
            return slow(ptr, off, inc, cpu);                                                     \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[mismatch]")                              \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_CPU_CHECK(field, "%l[mismatch]")                             \
                     "movq (%[ptr]), %%rax\n\t"                                                  \
                     "movq (%%rax, %[off]), %%rax\n\t"                                           \
                     "addq %[inc], (%%rax)\n\t" /* the commit */                                 \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu),            \
                       [ptr] "r"(ptr), [off] "r"(off), [inc] "r"(inc)                            \
                     : "memory", "cc", "rax"                                                     \
                     : mismatch, aborted);                                                       \
        return RESTARTABLE_COMMITTED;                                                            \
        RESTARTABLE_OPERATION_EXITS_(slow, (ptr, off, inc, cpu))                                 \
    }

/* Each operation, by CPU and by concurrency id. */
#define RESTARTABLE_INLINE_BOTH_(gen, name)                                                      \
    gen(name, name##_slow, RESTARTABLE_CPU_ID_FIELD, RESTARTABLE_REFUSE_CPU_)                    \
    gen(name##_mm_cid, name##_mm_cid_slow, RESTARTABLE_MM_CID_FIELD, RESTARTABLE_REFUSE_MM_CID_)

RESTARTABLE_INLINE_BOTH_(RESTARTABLE_INLINE_LOAD_CBNE_STORE_, restartable_load_cbne_store)
RESTARTABLE_INLINE_BOTH_(RESTARTABLE_INLINE_LOAD_ADD_STORE_, restartable_load_add_store)
RESTARTABLE_INLINE_BOTH_(RESTARTABLE_INLINE_LOAD_CBEQ_STORE_ADD_LOAD_STORE_,
                         restartable_load_cbeq_store_add_load_store)
RESTARTABLE_INLINE_BOTH_(RESTARTABLE_INLINE_LOAD_CBNE_LOAD_CBNE_STORE_,
                         restartable_load_cbne_load_cbne_store)
RESTARTABLE_INLINE_BOTH_(RESTARTABLE_INLINE_LOAD_CBNE_STORE_STORE_,
                         restartable_load_cbne_store_store)
RESTARTABLE_INLINE_BOTH_(RESTARTABLE_INLINE_LOAD_CBNE_STORE_STORE_,
                         restartable_load_cbne_store_store_release)
RESTARTABLE_INLINE_BOTH_(RESTARTABLE_INLINE_LOAD_CBNE_MEMCPY_STORE_,
                         restartable_load_cbne_memcpy_store)
RESTARTABLE_INLINE_BOTH_(RESTARTABLE_INLINE_LOAD_CBNE_MEMCPY_STORE_,
                         restartable_load_cbne_memcpy_store_release)
RESTARTABLE_INLINE_BOTH_(RESTARTABLE_INLINE_LOAD_ADD_LOAD_LOAD_ADD_STORE_,
                         restartable_load_add_load_load_add_store)

/* The list operations that read the index inside their section (see "Per-CPU
   lists" above). A failed index check (not registered, or an index beyond
   `slots`) goes to the cold path, which registers, falls back or refuses
   the arguments; so does, before the section, an index the kernel does not
   provide (`refuse`: mm_cid before Linux 6.3, which an area reads as 0 on
   every CPU). */
#define RESTARTABLE_REFUSE_NO_CPU_() 0
#define RESTARTABLE_REFUSE_NO_MM_CID_() RESTARTABLE_UNLIKELY(!restartable_mm_cid_usable_())
#define RESTARTABLE_INLINE_PUSH_AT_CURRENT_(name, slow, field, refuse)                           \
    RESTARTABLE_ALWAYS_INLINE_ int name(void *heads, size_t stride, uint32_t slots, intptr_t *node)           \
    {                                                                                            \
        if (refuse())                                                                            \
            return slow(heads, stride, slots, node);                                             \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[cold]")                                  \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_REGISTERED_CHECK(field, "%l[cold]")                          \
                     "movl %%fs:" field "(%[rseq_area]), %%eax\n\t"                              \
                     "cmpl %[slots], %%eax\n\t" /* also rejects -1, -2: not registered */       \
                     "jae %l[cold]\n\t"                                                          \
                     "imulq %[stride], %%rax\n\t"                                                \
                     "movq (%[heads], %%rax), %%rcx\n\t"                                         \
                     "movq %%rcx, (%[node])\n\t" /* the node's next */                           \
                     "movq %[node], (%[heads], %%rax)\n\t" /* the commit */                      \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [slots] "r"(slots),             \
                       [stride] "r"(stride), [heads] "r"(heads), [node] "r"(node)                \
                     : "memory", "cc", "rax", "rcx"                                              \
                     : cold, aborted);                                                           \
        return RESTARTABLE_COMMITTED;                                                            \
    aborted:                                                                                     \
        return RESTARTABLE_ABORTED;                                                              \
    cold:                                                                                        \
        return slow(heads, stride, slots, node);                                                 \
    }

#define RESTARTABLE_INLINE_POP_AT_CURRENT_(name, slow, field, refuse)                            \
    RESTARTABLE_ALWAYS_INLINE_ int name(void *heads, size_t stride, uint32_t slots, intptr_t **node)          \
    {                                                                                            \
        if (refuse())                                                                            \
            return slow(heads, stride, slots, node);                                             \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[cold]")                                  \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[empty]")                                 \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_REGISTERED_CHECK(field, "%l[cold]")                          \
                     "movl %%fs:" field "(%[rseq_area]), %%eax\n\t"                              \
                     "cmpl %[slots], %%eax\n\t" /* also rejects -1, -2: not registered */       \
                     "jae %l[cold]\n\t"                                                          \
                     "imulq %[stride], %%rax\n\t"                                                \
                     "movq (%[heads], %%rax), %%rcx\n\t"                                         \
                     "testq %%rcx, %%rcx\n\t"                                                    \
                     "jz %l[empty]\n\t"                                                          \
                     "movq %%rcx, (%[node])\n\t" /* the popped node, for the caller */           \
                     "movq (%%rcx), %%rcx\n\t"                                                   \
                     "movq %%rcx, (%[heads], %%rax)\n\t" /* the commit */                        \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [slots] "r"(slots),             \
                       [stride] "r"(stride), [heads] "r"(heads), [node] "r"(node)                \
                     : "memory", "cc", "rax", "rcx"                                              \
                     : cold, empty, aborted);                                                    \
        return RESTARTABLE_COMMITTED;                                                            \
    empty:                                                                                       \
        *node = NULL;                                                                            \
        return RESTARTABLE_COMPARE_FAILED;                                                       \
    aborted:                                                                                     \
        *node = NULL;                                                                            \
        return RESTARTABLE_ABORTED;                                                              \
    cold:                                                                                        \
        return slow(heads, stride, slots, node);                                                 \
    }

RESTARTABLE_INLINE_PUSH_AT_CURRENT_(restartable_push_at_current, restartable_push_at_current_slow,
                                    RESTARTABLE_CPU_ID_FIELD, RESTARTABLE_REFUSE_NO_CPU_)
RESTARTABLE_INLINE_PUSH_AT_CURRENT_(restartable_push_at_current_mm_cid,
                                    restartable_push_at_current_mm_cid_slow,
                                    RESTARTABLE_MM_CID_FIELD, RESTARTABLE_REFUSE_NO_MM_CID_)
RESTARTABLE_INLINE_POP_AT_CURRENT_(restartable_pop_at_current, restartable_pop_at_current_slow,
                                   RESTARTABLE_CPU_ID_FIELD, RESTARTABLE_REFUSE_NO_CPU_)
RESTARTABLE_INLINE_POP_AT_CURRENT_(restartable_pop_at_current_mm_cid,
                                   restartable_pop_at_current_mm_cid_slow, RESTARTABLE_MM_CID_FIELD,
                                   RESTARTABLE_REFUSE_NO_MM_CID_)

/* The buffer operations, as the list operations above; a capacity that
   does not fit in the slots goes to the cold path too, which refuses it
   (the compiler drops the test where both are constants). */
#define RESTARTABLE_INLINE_BUFFER_PUSH_AT_CURRENT_(name, slow, field, refuse)                    \
    RESTARTABLE_ALWAYS_INLINE_ int name(void *buffers, size_t stride, uint32_t slots, size_t capacity,        \
                           intptr_t item)                                                        \
    {                                                                                            \
        if (refuse() || RESTARTABLE_UNLIKELY(capacity >= stride / sizeof(intptr_t)))             \
            return slow(buffers, stride, slots, capacity, item);                                 \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[cold]")                                  \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[full]")                                  \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_REGISTERED_CHECK(field, "%l[cold]")                          \
                     "movl %%fs:" field "(%[rseq_area]), %%eax\n\t"                              \
                     "cmpl %[slots], %%eax\n\t" /* also rejects -1, -2: not registered */        \
                     "jae %l[cold]\n\t"                                                          \
                     "imulq %[stride], %%rax\n\t"                                                \
                     "addq %[buffers], %%rax\n\t"                                                \
                     "movq (%%rax), %%rcx\n\t" /* the count */                                   \
                     "cmpq %[capacity], %%rcx\n\t"                                               \
                     "jae %l[full]\n\t"                                                          \
                     "movq %[item], 8(%%rax, %%rcx, 8)\n\t" /* items[count] */                   \
                     "addq $1, %%rcx\n\t"                                                        \
                     "movq %%rcx, (%%rax)\n\t" /* the commit */                                  \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [slots] "r"(slots),             \
                       [stride] "r"(stride), [buffers] "r"(buffers), [capacity] "r"(capacity),   \
                       [item] "r"(item)                                                          \
                     : "memory", "cc", "rax", "rcx"                                              \
                     : cold, full, aborted);                                                     \
        return RESTARTABLE_COMMITTED;                                                            \
    full:                                                                                        \
        return RESTARTABLE_COMPARE_FAILED;                                                       \
    aborted:                                                                                     \
        return RESTARTABLE_ABORTED;                                                              \
    cold:                                                                                        \
        return slow(buffers, stride, slots, capacity, item);                                     \
    }

#define RESTARTABLE_INLINE_BUFFER_POP_AT_CURRENT_(name, slow, field, refuse)                     \
    RESTARTABLE_ALWAYS_INLINE_ int name(void *buffers, size_t stride, uint32_t slots, intptr_t *item)         \
    {                                                                                            \
        if (refuse())                                                                            \
            return slow(buffers, stride, slots, item);                                           \
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")                               \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[cold]")                                  \
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[empty]")                                 \
                     RESTARTABLE_CS_ARM("3", "rax")                                              \
                     RESTARTABLE_CS_START("1")                                                   \
                     RESTARTABLE_CS_REGISTERED_CHECK(field, "%l[cold]")                          \
                     "movl %%fs:" field "(%[rseq_area]), %%eax\n\t"                              \
                     "cmpl %[slots], %%eax\n\t" /* also rejects -1, -2: not registered */        \
                     "jae %l[cold]\n\t"                                                          \
                     "imulq %[stride], %%rax\n\t"                                                \
                     "addq %[buffers], %%rax\n\t"                                                \
                     "movq (%%rax), %%rcx\n\t" /* the count */                                   \
                     "testq %%rcx, %%rcx\n\t"                                                    \
                     "jz %l[empty]\n\t"                                                          \
                     "movq (%%rax, %%rcx, 8), %%rdx\n\t" /* items[count - 1] */                  \
                     "movq %%rdx, (%[item])\n\t" /* for the caller */                            \
                     "subq $1, %%rcx\n\t"                                                        \
                     "movq %%rcx, (%%rax)\n\t" /* the commit */                                  \
                     RESTARTABLE_CS_POST_COMMIT("2")                                             \
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")                                    \
                     :                                                                           \
                     : [rseq_area] "r"(restartable_area_offset), [slots] "r"(slots),             \
                       [stride] "r"(stride), [buffers] "r"(buffers), [item] "r"(item)            \
                     : "memory", "cc", "rax", "rcx", "rdx"                                       \
                     : cold, empty, aborted);                                                    \
        return RESTARTABLE_COMMITTED;                                                            \
    empty:                                                                                       \
        *item = 0;                                                                               \
        return RESTARTABLE_COMPARE_FAILED;                                                       \
    aborted:                                                                                     \
        *item = 0;                                                                               \
        return RESTARTABLE_ABORTED;                                                              \
    cold:                                                                                        \
        return slow(buffers, stride, slots, item);                                               \
    }

RESTARTABLE_INLINE_BUFFER_PUSH_AT_CURRENT_(restartable_buffer_push_at_current,
                                           restartable_buffer_push_at_current_slow,
                                           RESTARTABLE_CPU_ID_FIELD, RESTARTABLE_REFUSE_NO_CPU_)
RESTARTABLE_INLINE_BUFFER_PUSH_AT_CURRENT_(restartable_buffer_push_at_current_mm_cid,
                                           restartable_buffer_push_at_current_mm_cid_slow,
                                           RESTARTABLE_MM_CID_FIELD, RESTARTABLE_REFUSE_NO_MM_CID_)
RESTARTABLE_INLINE_BUFFER_POP_AT_CURRENT_(restartable_buffer_pop_at_current,
                                          restartable_buffer_pop_at_current_slow,
                                          RESTARTABLE_CPU_ID_FIELD, RESTARTABLE_REFUSE_NO_CPU_)
RESTARTABLE_INLINE_BUFFER_POP_AT_CURRENT_(restartable_buffer_pop_at_current_mm_cid,
                                          restartable_buffer_pop_at_current_mm_cid_slow,
                                          RESTARTABLE_MM_CID_FIELD, RESTARTABLE_REFUSE_NO_MM_CID_)

/* Adds `delta` (wrapping) to the current CPU's slot. The section reads
   cpu_id itself, after arming, so no separate CPU check is needed: any
   migration after that point aborts it. No "memory" clobber: the section
   writes only the area's rseq_cs and a slot, which no C code reads (sum()
   and reset() are calls), so the compiler may keep the handle's fields and
   the area offset in registers across a loop of adds (a kept offset stays
   valid: see restartable_area_offset). The add orders no other memory
   access, as a relaxed atomic add would not. */
RESTARTABLE_ALWAYS_INLINE_ void restartable_percpu_counter_add(restartable_percpu_counter_t *c, int64_t delta)
{
    const struct restartable_percpu_counter_fast *f =
        (const struct restartable_percpu_counter_fast *)(const void *)c;
    if (c == NULL)
        return;
    for (;;) {
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[cold]")
                     RESTARTABLE_CS_ARM("3", "rax")
                     RESTARTABLE_CS_START("1")
                     RESTARTABLE_CS_REGISTERED_CHECK(RESTARTABLE_CPU_ID_FIELD, "%l[cold]")
                     "movl %%fs:" RESTARTABLE_CPU_ID_FIELD "(%[rseq_area]), %%eax\n\t"
                     "cmpl %[slots], %%eax\n\t" /* also rejects -1, -2: not registered */
                     "jae %l[cold]\n\t"
                     /* a constant shift: no load of the stride, one cycle */
                     "shlq $" RESTARTABLE_STR(RESTARTABLE_COUNTER_STRIDE_SHIFT) ", %%rax\n\t"
                     "addq %[delta], " RESTARTABLE_STR(RESTARTABLE_COUNTER_SLOTS_OFFSET)
                     "(%[c], %%rax)\n\t" /* the commit */
                     RESTARTABLE_CS_POST_COMMIT("2")
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")
                     :
                     : [rseq_area] "r"(restartable_area_offset), [slots] "m"(f->slots),
                       [c] "r"(f), [delta] "r"(delta)
                     : "cc", "rax"
                     : cold, aborted);
        return;
    aborted:
        continue;
    cold:
        restartable_percpu_counter_add_slow(c, delta);
        return;
    }
}

#elif defined(__aarch64__) && defined(__GNUC__) && !defined(RESTARTABLE_NO_INLINE)
#define RESTARTABLE_INLINE_AARCH64 1

#define RESTARTABLE_LIKELY(x) __builtin_expect(!!(x), 1)
#define RESTARTABLE_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* The calling thread's active area: the thread pointer (tpidr_el0) plus
   the process-wide offset. */
RESTARTABLE_ALWAYS_INLINE_ char *restartable_area(void)
{
    return (char *)__builtin_thread_pointer() + restartable_area_offset;
}

/* Reads one 32-bit field of the calling thread's area (volatile: the kernel
   rewrites it whenever the thread is preempted). */
#define RESTARTABLE_AREA_LOAD_U32(offset) (*(volatile uint32_t *)(void *)(restartable_area() + (offset)))

/* The CPU the calling thread runs on; never fails. The area offset, the
   thread pointer, then cpu_id; registers lazily or falls back to
   sched_getcpu() when cpu_id is negative. */
RESTARTABLE_ALWAYS_INLINE_ int32_t restartable_cpu(void)
{
    int32_t cpu = (int32_t)RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_CPU_ID_OFFSET);
    if (RESTARTABLE_LIKELY(cpu >= 0))
        return cpu;
    return restartable_cpu_slow();
}

/* *v += count on CPU `cpu`; see "Critical-section operations". */
RESTARTABLE_ALWAYS_INLINE_ int restartable_load_add_store(intptr_t *v, intptr_t count, int cpu)
{
    /* A negative `cpu` is refused out of line (see the x86_64 form). */
    if (RESTARTABLE_UNLIKELY(cpu < 0))
        return restartable_load_add_store_slow(v, count, cpu);
    __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")
                 RESTARTABLE_CS_EXIT_POINT("1", "%l[mismatch]")
                 RESTARTABLE_CS_ARM("3", "x17")
                 RESTARTABLE_CS_START("1")
                 RESTARTABLE_CS_CPU_CHECK(RESTARTABLE_CPU_ID_FIELD, "%l[mismatch]")
                 "ldr x17, [%[v]]\n\t"
                 "add x17, x17, %[count]\n\t"
                 "str x17, [%[v]]\n\t" /* the commit */
                 RESTARTABLE_CS_POST_COMMIT("2")
                 RESTARTABLE_CS_ABORT("4", "%l[aborted]")
                 :
                 : [rseq_area] "r"(restartable_area()), [rseq_cpu] "r"(cpu),
                   [v] "r"(v), [count] "r"(count)
                 : "memory", "cc", "x17"
                 : mismatch, aborted);
    return RESTARTABLE_COMMITTED;
mismatch:
    /* Not registered (cpu_id < 0): register lazily or fall back. */
    if ((int32_t)RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_CPU_ID_OFFSET) < 0)
        return restartable_load_add_store_slow(v, count, cpu);
aborted:
    return RESTARTABLE_ABORTED;
}

/* if (*v == expect) *v = newv; on CPU `cpu`. */
RESTARTABLE_ALWAYS_INLINE_ int restartable_load_cbne_store(intptr_t *v, intptr_t expect, intptr_t newv,
                                              int cpu)
{
    if (RESTARTABLE_UNLIKELY(cpu < 0)) /* as in restartable_load_add_store() */
        return restartable_load_cbne_store_slow(v, expect, newv, cpu);
    __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")
                 RESTARTABLE_CS_EXIT_POINT("1", "%l[mismatch]")
                 RESTARTABLE_CS_EXIT_POINT("1", "%l[differs]")
                 RESTARTABLE_CS_ARM("3", "x17")
                 RESTARTABLE_CS_START("1")
                 RESTARTABLE_CS_CPU_CHECK(RESTARTABLE_CPU_ID_FIELD, "%l[mismatch]")
                 "ldr x17, [%[v]]\n\t"
                 "cmp x17, %[expect]\n\t"
                 "b.ne %l[differs]\n\t"
                 "str %[newv], [%[v]]\n\t" /* the commit */
                 RESTARTABLE_CS_POST_COMMIT("2")
                 RESTARTABLE_CS_ABORT("4", "%l[aborted]")
                 :
                 : [rseq_area] "r"(restartable_area()), [rseq_cpu] "r"(cpu),
                   [v] "r"(v), [expect] "r"(expect), [newv] "r"(newv)
                 : "memory", "cc", "x17"
                 : mismatch, differs, aborted);
    return RESTARTABLE_COMMITTED;
differs:
    return RESTARTABLE_COMPARE_FAILED;
mismatch:
    if ((int32_t)RESTARTABLE_AREA_LOAD_U32(RESTARTABLE_CPU_ID_OFFSET) < 0)
        return restartable_load_cbne_store_slow(v, expect, newv, cpu);
aborted:
    return RESTARTABLE_ABORTED;
}

/* Adds `delta` (wrapping) to the current CPU's slot, reading cpu_id inside
   the section as on x86_64. */
RESTARTABLE_ALWAYS_INLINE_ void restartable_percpu_counter_add(restartable_percpu_counter_t *c, int64_t delta)
{
    const struct restartable_percpu_counter_fast *f =
        (const struct restartable_percpu_counter_fast *)(const void *)c;
    if (c == NULL)
        return;
    for (;;) {
        __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")
                     RESTARTABLE_CS_EXIT_POINT("1", "%l[cold]")
                     RESTARTABLE_CS_ARM("3", "x17")
                     RESTARTABLE_CS_START("1")
                     RESTARTABLE_CS_REGISTERED_CHECK(RESTARTABLE_CPU_ID_FIELD, "%l[cold]")
                     "ldr w17, [%[rseq_area], #" RESTARTABLE_CPU_ID_FIELD "]\n\t"
                     "cmp w17, %w[slots]\n\t" /* also rejects -1, -2: not registered */
                     "b.hs %l[cold]\n\t"
                     "lsl x17, x17, #" RESTARTABLE_STR(RESTARTABLE_COUNTER_STRIDE_SHIFT) "\n\t"
                     "add x17, x17, #" RESTARTABLE_STR(RESTARTABLE_COUNTER_SLOTS_OFFSET) "\n\t"
                     "ldr x16, [%[c], x17]\n\t"
                     "add x16, x16, %[delta]\n\t"
                     "str x16, [%[c], x17]\n\t" /* the commit */
                     RESTARTABLE_CS_POST_COMMIT("2")
                     RESTARTABLE_CS_ABORT("4", "%l[aborted]")
                     :
                     : [rseq_area] "r"(restartable_area()), [slots] "r"(f->slots),
                       [c] "r"(f), [delta] "r"(delta)
                     : "memory", "cc", "x16", "x17"
                     : cold, aborted);
        return;
    aborted:
        continue;
    cold:
        restartable_percpu_counter_add_slow(c, delta);
        return;
    }
}


#else /* out of line */

int32_t restartable_cpu(void);
int restartable_load_cbne_store(intptr_t *v, intptr_t expect, intptr_t newv, int cpu);
int restartable_load_add_store(intptr_t *v, intptr_t count, int cpu);
void restartable_percpu_counter_add(restartable_percpu_counter_t *c, int64_t delta);

#endif

#if !(defined(__x86_64__) && defined(__GNUC__) && !defined(RESTARTABLE_NO_INLINE))
/* Inline only on x86_64: calls into the library elsewhere (aarch64's inline
   paths are the four above). */
uint32_t restartable_cpu_start(void);
int32_t restartable_mm_cid(void);
int restartable_load_cbne_store_mm_cid(intptr_t *v, intptr_t expect, intptr_t newv, int cid);
int restartable_load_add_store_mm_cid(intptr_t *v, intptr_t count, int cid);
int restartable_load_cbeq_store_add_load_store(intptr_t *v, intptr_t expectnot, intptr_t voffp,
                                               intptr_t *load, int cpu);
int restartable_load_cbeq_store_add_load_store_mm_cid(intptr_t *v, intptr_t expectnot,
                                                      intptr_t voffp, intptr_t *load, int cid);
int restartable_load_cbne_load_cbne_store(intptr_t *v, intptr_t expect, intptr_t *v2,
                                          intptr_t expect2, intptr_t newv, int cpu);
int restartable_load_cbne_load_cbne_store_mm_cid(intptr_t *v, intptr_t expect, intptr_t *v2,
                                                 intptr_t expect2, intptr_t newv, int cid);
int restartable_load_cbne_store_store(intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t newv2,
                                      intptr_t newv, int cpu);
int restartable_load_cbne_store_store_mm_cid(intptr_t *v, intptr_t expect, intptr_t *v2,
                                             intptr_t newv2, intptr_t newv, int cid);
int restartable_load_cbne_store_store_release(intptr_t *v, intptr_t expect, intptr_t *v2,
                                              intptr_t newv2, intptr_t newv, int cpu);
int restartable_load_cbne_store_store_release_mm_cid(intptr_t *v, intptr_t expect, intptr_t *v2,
                                                     intptr_t newv2, intptr_t newv, int cid);
int restartable_load_cbne_memcpy_store(intptr_t *v, intptr_t expect, void *dst, const void *src,
                                       size_t len, intptr_t newv, int cpu);
int restartable_load_cbne_memcpy_store_mm_cid(intptr_t *v, intptr_t expect, void *dst,
                                              const void *src, size_t len, intptr_t newv, int cid);
int restartable_load_cbne_memcpy_store_release(intptr_t *v, intptr_t expect, void *dst,
                                               const void *src, size_t len, intptr_t newv, int cpu);
int restartable_load_cbne_memcpy_store_release_mm_cid(intptr_t *v, intptr_t expect, void *dst,
                                                      const void *src, size_t len, intptr_t newv,
                                                      int cid);
int restartable_load_add_load_load_add_store(intptr_t *ptr, intptr_t off, intptr_t inc, int cpu);
int restartable_load_add_load_load_add_store_mm_cid(intptr_t *ptr, intptr_t off, intptr_t inc,
                                                    int cid);
int restartable_push_at_current(void *heads, size_t stride, uint32_t slots, intptr_t *node);
int restartable_push_at_current_mm_cid(void *heads, size_t stride, uint32_t slots, intptr_t *node);
int restartable_pop_at_current(void *heads, size_t stride, uint32_t slots, intptr_t **node);
int restartable_pop_at_current_mm_cid(void *heads, size_t stride, uint32_t slots, intptr_t **node);
int restartable_buffer_push_at_current(void *buffers, size_t stride, uint32_t slots,
                                       size_t capacity, intptr_t item);
int restartable_buffer_push_at_current_mm_cid(void *buffers, size_t stride, uint32_t slots,
                                              size_t capacity, intptr_t item);
int restartable_buffer_pop_at_current(void *buffers, size_t stride, uint32_t slots,
                                      intptr_t *item);
int restartable_buffer_pop_at_current_mm_cid(void *buffers, size_t stride, uint32_t slots,
                                             intptr_t *item);
#endif

/* ------------------------------------------------------------------------ */
/* Per-CPU memory pool                                                       */
/* ------------------------------------------------------------------------ */
/*
 * A pool reserves address space for `slots` slots of `stride` bytes each
 * (MAP_NORESERVE: memory is committed only where it is written). An object
 * allocated from it takes the same offset in every slot, so its instance
 * for slot i is instance(0) + i * stride. Objects are zeroed (nothing is
 * touched until written) or copied from a prototype one slot at a time, on
 * the first access to that slot, so slots of CPUs that never run the
 * process cost nothing. A pool by concurrency id has one slot per possible
 * CPU too (ids are below that; a process with n threads touches n slots).
 * Freeing an object clears it only where it is not zero; free bytes stay
 * zero in every slot. Rust: PerCpuPool, PerCpuBox.
 *
 *     restartable_pool_t *pool = restartable_pool_new(0, 0, RESTARTABLE_INDEX_CPU);
 *     restartable_percpu_t *counts =
 *         restartable_percpu_alloc(pool, sizeof(intptr_t), sizeof(intptr_t), NULL);
 *     int cpu;
 *     do cpu = restartable_cpu();
 *     while (restartable_load_add_store(
 *                (intptr_t *)restartable_percpu_instance(counts, cpu), 1, cpu) != 0);
 *     intptr_t sum = 0;
 *     for (uint32_t i = 0; i < restartable_percpu_slots(counts); i++)
 *         sum += *(intptr_t *)restartable_percpu_instance(counts, (int)i);
 *     restartable_percpu_free(counts);
 *     restartable_pool_free(pool);
 *
 * (A reader of an object with a prototype skips slots for which
 * restartable_percpu_has_value() is 0: they hold the prototype, and reading
 * them through the accessor would copy it in.) Alloc and free are not
 * async-signal-safe; the accessor is, and may run in any thread.
 */
#define RESTARTABLE_INDEX_CPU 0    /* slot i belongs to CPU i */
#define RESTARTABLE_INDEX_MM_CID 1 /* slot i belongs to concurrency id i */

typedef struct restartable_pool restartable_pool_t;
typedef struct restartable_percpu restartable_percpu_t;

/* A pool of `slots` slots (0: one per possible CPU) of `stride` bytes (0:
   64 KiB; else a multiple of the page size). NULL with errno EINVAL (bad
   stride or index) or the mmap errno. */
restartable_pool_t *restartable_pool_new(uint32_t slots, size_t stride, int index);
/* Releases the handle; the memory goes with the pool's last object. NULL
   is ignored. */
void restartable_pool_free(restartable_pool_t *pool);
/* An object of `size` bytes aligned to `align` (a power of two, at most a
   page): zeroed when `proto` is NULL, else each instance a copy of the
   `size` bytes at `proto` (copied now). NULL with errno EINVAL (NULL pool,
   size above the stride, bad alignment) or ENOMEM (slots full). */
restartable_percpu_t *restartable_percpu_alloc(restartable_pool_t *pool, size_t size,
                                               size_t align, const void *proto);
/* Frees every instance at once; NULL is ignored. */
void restartable_percpu_free(restartable_percpu_t *p);
/* Cold path of restartable_percpu_instance(): copies the prototype in on a
   slot's first access; NULL for a NULL object or a slot out of range. */
void *restartable_percpu_instance_slow(restartable_percpu_t *p, int slot);
/* 1 if instance `slot` holds a value (always for zeroed objects), else 0. */
int restartable_percpu_has_value(const restartable_percpu_t *p, int slot);
/* Number of instances (0 for NULL). */
uint32_t restartable_percpu_slots(const restartable_percpu_t *p);
/* The calling thread's slot now: its CPU, or restartable_current_mm_cid()
   for an object by concurrency id, clamped to the slots; -1 for NULL. */
int32_t restartable_percpu_current_slot(const restartable_percpu_t *p);

/*
 * The concurrency id where the kernel provides it and the thread runs
 * sections, otherwise the CPU number (sched_getcpu() without rseq): never
 * negative, always below the number of possible CPUs, so always a usable
 * index. Pass it to the _mm_cid operations: a thread that runs sections
 * has it checked there (and retries on RESTARTABLE_ABORTED); one that
 * cannot takes the operation's fallback (atomics or a striped lock), which
 * is exact whatever index it was given. restartable_mm_cid() stays the raw
 * read (-1 without an id). Rust: current_mm_cid().
 */
int32_t restartable_current_mm_cid(void);

/* The first fields of every object, read by the inline accessor. */
struct restartable_percpu_fast {
    char *base;                /* instance 0 */
    size_t stride;             /* bytes from one instance to the next */
    uint32_t slots;            /* number of instances */
    uint32_t field;            /* RESTARTABLE_CPU_ID_OFFSET or _MM_CID_OFFSET */
    const uintptr_t *states;   /* NULL when zeroed; else 2 once slot i holds a value */
};

#if defined(__GNUC__) && !defined(RESTARTABLE_NO_INLINE)
/* Instance `slot` of `p`: base + slot * stride, after one check that the
   slot is in range and (for objects with a prototype) holds its value. */
RESTARTABLE_ALWAYS_INLINE_ void *restartable_percpu_instance(restartable_percpu_t *p, int slot)
{
    const struct restartable_percpu_fast *f =
        (const struct restartable_percpu_fast *)(const void *)p;
    if (__builtin_expect(p != NULL && (uint32_t)slot < f->slots &&
                             (f->states == NULL ||
                              __atomic_load_n(&f->states[slot], __ATOMIC_ACQUIRE) == 2),
                         1))
        return f->base + (size_t)slot * f->stride;
    return restartable_percpu_instance_slow(p, slot);
}
#else
void *restartable_percpu_instance(restartable_percpu_t *p, int slot);
#endif

/* ------------------------------------------------------------------------ */
/* The membarrier pattern: swapping the active per-CPU table                 */
/* ------------------------------------------------------------------------ */
/*
 * Updaters add through a pointer to the active table: *(*(table + off)) +=
 * inc. A swapper makes another table active and, once the swap returns,
 * no update lands on the old table any more: read it, reset it, free it.
 * Threads that run sections do the update as one critical section, which
 * the swap's membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) commits or
 * aborts; fallback threads (no rseq, another area) announce themselves in
 * a counter of the swap generation that the swap waits on, so the
 * guarantee holds on every thread. (A plain load and atomic add, which
 * restartable_load_add_load_load_add_store() is on fallback threads, can
 * land after the membarrier.) Swaps are serialised; a swap must not run in
 * a signal handler that interrupted an add on its own thread. The counters
 * follow the operations' exactness rule. Rust: ActiveTable.
 *
 *     intptr_t *a[NCPU], *b[NCPU];          entry cpu -> that CPU's counter
 *     restartable_active_table_t *t = restartable_active_table_new(a);
 *     restartable_active_table_add_current(t, sizeof(intptr_t *), 1);  updaters
 *     intptr_t **old = restartable_active_table_swap(t, b);  swapper: old == a,
 *                                                            and a stays still
 */
typedef struct restartable_active_table restartable_active_table_t;

/* A handle whose first active table is `table`; NULL on ENOMEM. */
restartable_active_table_t *restartable_active_table_new(void *table);
/* NULL is ignored. */
void restartable_active_table_free(restartable_active_table_t *t);
/* The table active now. */
void *restartable_active_table_get(const restartable_active_table_t *t);
/* *(*(table + off_per_cpu * cpu)) += inc, for the CPU the update runs on;
   retries until done. Every table that is or becomes active holds, for
   every possible CPU, a pointer to a live aligned intptr_t there. */
void restartable_active_table_add_current(restartable_active_table_t *t,
                                          intptr_t off_per_cpu, intptr_t inc);
/* *(*(table + off)) += inc, with `off` the caller's (the same on every CPU). */
void restartable_active_table_add(restartable_active_table_t *t, intptr_t off, intptr_t inc);
/* Makes `table` active; returns the table that was, which no update
   reaches any more. */
void *restartable_active_table_swap(restartable_active_table_t *t, void *table);

#ifdef __cplusplus
}
#endif

#endif /* RESTARTABLE_H */
