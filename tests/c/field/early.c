/*
 * The library used before its constructor ran: from a `.preinit_array`
 * function (-DFIELD_PREINIT) or from a constructor of priority 100
 * (-DFIELD_CTOR100), in a program linked with librestartable.a or .so.
 * Every read must be a real CPU, every count exact, the owner the right
 * one, and a TLS module must load afterwards.
 *
 *   early TLS_MODULE      (RESTARTABLE_TEST_EXPECT = libc, library, none)
 */
#define _GNU_SOURCE
#include "common.h"

static intptr_t slots[FIELD_SLOTS];
static int32_t early_cpu = -100;
static int early_counted;

#define EARLY_COUNTS 1000

static void early(void)
{
    int i;
    early_cpu = restartable_cpu();
    for (i = 0; i < EARLY_COUNTS; i++)
        early_counted += field_count(slots);
}

#if defined(FIELD_PREINIT)
__attribute__((section(".preinit_array"), used)) static void (*const early_entry)(void) = early;
#elif defined(FIELD_CTOR100)
/* Priority 100 runs before the library's constructor (101), which is the
   point; compilers reserve it, hence the pragma. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wprio-ctor-dtor"
__attribute__((constructor(100))) static void early_entry(void)
{
    early();
}
#pragma GCC diagnostic pop
#else
#error "define FIELD_PREINIT or FIELD_CTOR100"
#endif

int main(int argc, char **argv)
{
    long ncpus = sysconf(_SC_NPROCESSORS_CONF);
    CHECK(argc == 2);
    CHECK(early_cpu >= 0 && early_cpu < ncpus);
    CHECK_EQ(early_counted, EARLY_COUNTS);
    CHECK_EQ(field_sum(slots), EARLY_COUNTS);
    CHECK_EQ(restartable_owner(), expected_owner());
    field_load_tls_module(argv[1]);
    CHECK_EQ(field_count(slots), 1);
    CHECK_EQ(field_sum(slots), EARLY_COUNTS + 1);
    printf("early: ok (cpu %d, owner %d, thread state %d)\n", early_cpu, restartable_owner(),
           restartable_thread_state());
    return 0;
}
