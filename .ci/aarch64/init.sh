#!/bin/sh
# /init of the aarch64 test initramfs (busybox sh): runs every test
# executable in /tests and every prebuilt C program in /c, prints one
# result line each, a summary, and powers the machine off.
#
# The mode comes from the kernel command line, whose NAME=VALUE words are
# this process's environment: RESTARTABLE_EXPECT_OWNER (libc or library)
# and, for the library-owned mode, GLIBC_TUNABLES=glibc.pthread.rseq=0.
# TEST_ARGS (default --test-threads=2) goes to every test executable and
# TEST_TIMEOUT (seconds, default 900) bounds each.
export PATH=/bin
# Every busybox applet (the tests run sh, unshare, mount and the like).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t devtmpfs dev /dev 2>/dev/null
export TMPDIR=/tmp HOME=/tmp RUST_BACKTRACE=1
args=${TEST_ARGS:---test-threads=2}
limit=${TEST_TIMEOUT:-900}
echo "=== kernel $(uname -r), $(nproc) CPUs, owner expected: ${RESTARTABLE_EXPECT_OWNER:-?}," \
    "GLIBC_TUNABLES=${GLIBC_TUNABLES:-}"
failed=0
ran=0

uptime_s() { cut -d' ' -f1 /proc/uptime; }

result() { # NAME STATUS
    ran=$((ran + 1))
    echo "=== $1 exit $2 (at ${uptime}s-$(uptime_s)s of uptime)"
    [ "$2" = 0 ] || failed=$((failed + 1))
}

for t in /tests/*; do
    [ -x "$t" ] || continue
    name=${t##*/}
    echo "=== run $name"
    uptime=$(uptime_s)
    # shellcheck disable=SC2086 # TEST_ARGS is a word list
    timeout "$limit" "$t" $args
    result "$name" $?
done

# The C programs, built ahead of time against the aarch64 library: the
# header's inline paths and calls, in this boot's mode and with the
# library switched off.
for c in /c/*; do
    [ -f "$c" ] && [ -x "$c" ] || continue
    name=${c##*/}
    for disable in 0 1; do
        if [ "$disable" = 1 ]; then
            expect=none
        else
            expect=${RESTARTABLE_EXPECT_OWNER:-library}
        fi
        echo "=== run $name (RESTARTABLE_DISABLE=$disable)"
        uptime=$(uptime_s)
        out=$(RESTARTABLE_DISABLE=$disable RESTARTABLE_TEST_EXPECT=$expect \
            LD_LIBRARY_PATH=/c/lib timeout "$limit" "$c" 2>&1)
        status=$?
        echo "$out"
        case $out in
        *"all checks passed"*) ;;
        *) [ "$status" = 0 ] && status=99 ;;
        esac
        result "$name-disable$disable" "$status"
    done
done

echo "=== summary: $ran run, $failed failed"
sync
poweroff -f
