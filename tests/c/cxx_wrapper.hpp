// A header-only C++ wrapper over restartable.h, for tests/c_abi.rs: its
// inline functions and templates hold critical sections, written with the
// header's pieces or taken from its inline operations, so each translation
// unit that uses them emits its own copy in a COMDAT group and the linker
// keeps one. cxx_wrapper_a.cpp and cxx_wrapper_b.cpp both use all of it.
#ifndef RESTARTABLE_TEST_CXX_WRAPPER_HPP
#define RESTARTABLE_TEST_CXX_WRAPPER_HPP

#include <cerrno>
#include <cstdint>

#include "restartable.h"

namespace wrapper {

// Stores `value` in `*slot` if it is larger, on CPU `cpu`: a section of
// its own, in an inline function.
inline int store_max(intptr_t *slot, intptr_t value, int cpu)
{
    if (cpu < 0)
        return -EINVAL;
    __asm__ goto(RESTARTABLE_CS_DESCRIPTOR("3", "1", "2", "4")
                 RESTARTABLE_CS_EXIT_POINT("1", "%l[not_larger]")
                 RESTARTABLE_CS_ARM("3", "rax")
                 RESTARTABLE_CS_START("1")
                 RESTARTABLE_CS_CPU_CHECK(RESTARTABLE_CPU_ID_FIELD, "%l[aborted]")
                 "cmpq %[value], (%[slot])\n\t"
                 "jge %l[not_larger]\n\t"
                 "movq %[value], (%[slot])\n\t"
                 RESTARTABLE_CS_POST_COMMIT("2")
                 RESTARTABLE_CS_ABORT("4", "%l[aborted]")
                 :
                 : [rseq_area] "r"(restartable_area_offset), [rseq_cpu] "r"(cpu),
                   [slot] "r"(slot), [value] "r"(value)
                 : "memory", "cc", "rax"
                 : aborted, not_larger);
    return RESTARTABLE_COMMITTED;
aborted:
    return RESTARTABLE_ABORTED;
not_larger:
    return RESTARTABLE_COMPARE_FAILED;
}

// Per-CPU words of one kind, `Slots` of them; every update runs the
// header's inline operations inside the template's member functions.
template <int Slots>
struct PerCpuWords {
    intptr_t words[Slots];

    // Adds `n` to the current CPU's word; false if the CPU has no word.
    bool add(intptr_t n)
    {
        for (;;) {
            int cpu = restartable_cpu();
            if (cpu >= Slots)
                return false;
            if (restartable_load_add_store(&words[cpu], n, cpu) == RESTARTABLE_COMMITTED)
                return true;
        }
    }

    // Replaces the current CPU's word by `n` if it holds `expect`.
    int swap(intptr_t expect, intptr_t n)
    {
        for (;;) {
            int cpu = restartable_cpu();
            if (cpu >= Slots)
                return -1;
            int r = restartable_load_cbne_store(&words[cpu], expect, n, cpu);
            if (r != RESTARTABLE_ABORTED)
                return r;
        }
    }

    // The larger of the current CPU's word and `value`, kept there. A
    // thread without rseq takes an atomic fallback.
    void max(intptr_t value)
    {
        for (;;) {
            int cpu = restartable_cpu();
            if (cpu >= Slots)
                return;
            if (!restartable_is_available()) {
                intptr_t seen = __atomic_load_n(&words[cpu], __ATOMIC_RELAXED);
                while (seen < value && !__atomic_compare_exchange_n(&words[cpu], &seen, value,
                                                                    false, __ATOMIC_RELAXED,
                                                                    __ATOMIC_RELAXED)) {
                }
                return;
            }
            if (store_max(&words[cpu], value, cpu) != RESTARTABLE_ABORTED)
                return;
        }
    }

    intptr_t sum() const
    {
        intptr_t total = 0;
        for (int i = 0; i < Slots; i++)
            total += words[i];
        return total;
    }
};

} // namespace wrapper

typedef wrapper::PerCpuWords<1024> Words;

// Every wrapper function, as one translation unit sees it. Each unit
// stores the addresses in a table of its own with external linkage, so
// that even an optimised build emits every function out of line, in its
// COMDAT group, in both units.
struct WrapperTable {
    bool (Words::*add)(intptr_t);
    int (Words::*swap)(intptr_t, intptr_t);
    void (Words::*max)(intptr_t);
    int (*store_max)(intptr_t *, intptr_t, int);
};

extern WrapperTable table_a;
extern WrapperTable table_b;

#endif
