/*
 * A program linked with the library that registers a private rseq area
 * for its main thread in main(), as a librseq user does: the library must
 * not have registered the thread first. The library then serves the
 * thread by its fallbacks (FOREIGN), exactly, and goes back to rseq once
 * the private area is unregistered.
 *
 *   private          (RESTARTABLE_TEST_EXPECT = libc, library, none)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>

#include "common.h"

static __thread struct rseq_area private_area __attribute__((tls_model("initial-exec"))) = {
    0, (uint32_t)-1, 0, 0, 0, 0, 0};
static intptr_t slots[FIELD_SLOTS];

static long raw_rseq(int flags)
{
    return syscall(SYS_rseq, &private_area, 32, flags, RESTARTABLE_SIG);
}

int main(void)
{
    int owner = expected_owner();
    long ret = raw_rseq(0);
    int i;
    if (owner != RESTARTABLE_OWNER_LIBRARY) {
        /* glibc registered its own area (EINVAL), or rseq is refused. */
        CHECK(ret != 0);
        printf("private: not library-owned (errno %d)\n", errno);
        return 0;
    }
    CHECK_EQ(ret, 0);
    CHECK_EQ(restartable_owner(), owner);
    for (i = 0; i < 1000; i++)
        CHECK(field_count(slots));
    CHECK_EQ(field_sum(slots), 1000);
    CHECK_EQ(restartable_thread_state(), RESTARTABLE_THREAD_FOREIGN);
    CHECK_EQ(restartable_is_available(), 0);
    CHECK((int32_t)private_area.cpu_id >= 0); /* the kernel serves the private area */
    CHECK_EQ(raw_rseq(1), 0);
    CHECK_EQ(restartable_thread_state(), RESTARTABLE_THREAD_UNREGISTERED);
    CHECK_EQ(restartable_register(), 0);
    CHECK_EQ(restartable_thread_state(), RESTARTABLE_THREAD_REGISTERED);
    CHECK(restartable_is_available());
    CHECK_EQ(restartable_unregister(), 0);
    printf("private: ok\n");
    return 0;
}
