#!/bin/sh
# Builds the C libraries with the documented build (`make`, release) unless
# RESTARTABLE_LIB_DIR names a directory that holds them, then builds
# benches/c/ops.c against the static archive (else the shared object) and runs it in both
# modes where rseq serves the threads, 1 and 2 threads:
#   glibc owns the area, and the library owns it (GLIBC_TUNABLES=glibc.pthread.rseq=0).
# Usage: benches/c/run.sh   (CC overrides gcc)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${RESTARTABLE_LIB_DIR:-}" ]; then
    make -C "$root" --no-print-directory
fi
lib=${RESTARTABLE_LIB_DIR:-$root/target/release}
out=$root/target/c-bench
mkdir -p "$out"
cc=${CC:-gcc}
if [ -f "$lib/librestartable.a" ]; then
    link="$lib/librestartable.a -ldl -lpthread"
elif [ -f "$lib/librestartable.so" ]; then
    link="-L$lib -Wl,-rpath,$lib -lrestartable -lpthread"
else
    echo "no librestartable.a or .so in $lib: build the library first" >&2
    exit 1
fi
# shellcheck disable=SC2086 # $link is a list of arguments
# No alignment of loops, jumps or labels: ops.c places each timed loop
# itself, at 16 offsets across a cache line (see BENCH there).
$cc -O2 -fno-align-loops -fno-align-jumps -fno-align-labels -Wall -Wextra -Werror -std=gnu11 -I"$root/include" "$root/benches/c/ops.c" \
    -o "$out/ops" $link -pthread
for threads in 1 2; do
    echo "== glibc-owned area"
    "$out/ops" "$threads"
    echo "== library-owned area"
    GLIBC_TUNABLES=glibc.pthread.rseq=0 "$out/ops" "$threads"
done
