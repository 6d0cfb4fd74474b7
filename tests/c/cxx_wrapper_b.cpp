// The other translation unit using tests/c/cxx_wrapper.hpp, with main:
// both units' copies of the wrapper's inline functions and templates meet
// at link time (built at the same or at different optimisation levels),
// and the program runs the functions through both units' tables.
#include <cstdio>

#include "cxx_wrapper.hpp"

#include "check.h"

WrapperTable table_b = {&Words::add, &Words::swap, &Words::max, &wrapper::store_max};

// Runs every function of `t` once on `w`; returns what the sum gained.
static intptr_t exercise(const WrapperTable &t, Words *w)
{
    intptr_t scratch = 0;
    int cpu;
    CHECK((w->*t.add)(3));
    CHECK_EQ((w->*t.swap)(-1, 0), RESTARTABLE_COMPARE_FAILED); /* no word is -1 */
    (w->*t.max)(-1);                                         /* smaller than every word */
    CHECK_EQ(t.store_max(&scratch, 1, -1), -EINVAL);
    if (restartable_is_available()) {
        do
            cpu = restartable_cpu();
        while (t.store_max(&scratch, 2, cpu) == RESTARTABLE_ABORTED);
        CHECK_EQ(scratch, 2);
    } else {
        /* Not registered: the section's CPU check never passes. */
        CHECK_EQ(t.store_max(&scratch, 2, restartable_cpu()), RESTARTABLE_ABORTED);
        CHECK_EQ(scratch, 0);
    }
    return 3;
}

int main()
{
    static Words w;
    intptr_t expected = 0;
    int i;
    CHECK_EQ(restartable_owner(), expected_owner());
    for (i = 0; i < 1000; i++) {
        expected += exercise(table_a, &w);
        expected += exercise(table_b, &w);
    }
    CHECK_EQ(w.sum(), expected);
    std::printf("cxx_wrapper: ok (sum %ld)\n", static_cast<long>(w.sum()));
    return 0;
}
