#!/usr/bin/env bash
# The test suite on real arm64 kernels, in one command:
#
#     .ci/aarch64/suite.sh
#
# 1. fetch.sh unpacks Debian's rustc-web with its aarch64 standard library,
#    three arm64 kernels and the arm64 runtime into a cache directory;
# 2. the test executables are built for aarch64-unknown-linux-gnu with
#    that rustc, driven by the cargo on PATH (`cargo test --no-run`); the C
#    libraries with the documented build (`make TARGET=... CC=...`, the
#    debug profile the tests use), and the C header test (against both of
#    them) and the pool test (against the shared one) ahead of time with
#    the cross compilers;
# 3. each kernel boots under qemu-system-aarch64 (`-M virt -cpu max -smp
#    2`, TCG) twice, glibc owning the area and the library owning it
#    (GLIBC_TUNABLES=glibc.pthread.rseq=0), and runs every executable.
#
# Exits 0 only if every executable passed in every boot; prints one line
# per kernel and mode, and keeps the consoles in target/aarch64-suite/.
# The machine is emulated: this checks correctness, it measures no speed.
#
# Needs the host packages gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-system-arm and cpio, and cargo on PATH.
#
# Three test executables are not run in the guest: c_abi, c_pool and
# field compile C programs at run time with the host's compiler, which the
# guest lacks (the header test c_abi builds and the pool test c_pool builds
# run as the prebuilt programs of step 2).
#
# Environment:
#   RESTARTABLE_AARCH64_DIR     the cache directory (default
#                               ~/.cache/restartable/aarch64)
#   RESTARTABLE_AARCH64_KERNELS a glob of kernel names to boot (default *)
#   RESTARTABLE_AARCH64_LIMIT   seconds per boot (default 1500)
#   RESTARTABLE_AARCH64_TEST_ARGS  arguments for every test executable
#                               instead of --test-threads=2 (one line, no
#                               double quotes), e.g. to run one test alone
set -euo pipefail

cd "$(dirname "$0")/../.."
start=$SECONDS
cache=${RESTARTABLE_AARCH64_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/restartable/aarch64}
work=target/aarch64-suite
target_dir=target/aarch64
triple=aarch64-unknown-linux-gnu
limit=${RESTARTABLE_AARCH64_LIMIT:-1500}
mkdir -p "$work"

for tool in aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ qemu-system-aarch64 cpio; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool is missing: install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu" \
            "libc6-dev-arm64-cross qemu-system-arm cpio" >&2
        exit 1
    fi
done

.ci/aarch64/fetch.sh "$cache"

# Build with the unpacked rustc (it finds its sysroot, and the aarch64
# standard library in it, from its own path).
export RUSTC=$cache/rust/usr/bin/rustc
export RUSTDOC=$cache/rust/usr/bin/rustdoc
export LD_LIBRARY_PATH=$cache/rust/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
"$RUSTC" --version
cargo test --no-run --target "$triple" --target-dir "$target_dir" \
    --message-format=json-render-diagnostics >"$work/build.json"
# Test executables (profile "test"), less those that run a C compiler.
host_only=(c_abi c_pool field)
grep '"profile":{[^}]*"test":true' "$work/build.json" |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' |
    grep -v -E "/($(IFS='|'; echo "${host_only[*]}"))-[0-9a-f]+\$" >"$work/tests.txt"
echo "$(wc -l <"$work/tests.txt") test executables; not in the guest: ${host_only[*]}" \
    "(they compile C at run time with the host's compiler)"

# The C libraries for aarch64, as the README documents the build (the
# Makefile drives cargo, which uses the RUSTC above, and links the shared
# library with the cross compiler and restartable.map).
make --no-print-directory TARGET="$triple" CC=aarch64-linux-gnu-gcc \
    CARGO_TARGET_DIR="$target_dir" PROFILE=debug
libdir=$target_dir/$triple/debug

# The C header test, built ahead of time against the aarch64 library: as
# C11, C99 and C++17 with the inline fast paths, and with calls only
# (RESTARTABLE_NO_INLINE), against the static library and the shared
# one (which the guest loads from /c/lib under its SONAME).
for f in librestartable.a librestartable.so; do
    if [[ ! -f $libdir/$f ]]; then
        echo "make built no $f for aarch64 in $libdir" >&2
        exit 1
    fi
done
cdir=$work/c
rm -rf "$cdir"
mkdir -p "$cdir/lib"
cflags=(-O2 -Wall -Wextra -Werror -pedantic -g -Iinclude -Itests/c)
static=("$libdir/librestartable.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -pthread)
shared=(-L"$libdir" -lrestartable -pthread)
build_c() { # SOURCE NAME LANG-FLAGS... -- LINK...
    local src=$1 name=$2 compile=() cc=aarch64-linux-gnu-gcc
    shift 2
    while [[ $1 != -- ]]; do
        compile+=("$1")
        shift
    done
    shift
    [[ ${compile[*]} == *c++* ]] && cc=aarch64-linux-gnu-g++
    "$cc" "${compile[@]}" "${cflags[@]}" "$src" -x none "$@" -o "$cdir/$name"
    echo "built $name"
}
for link in static shared; do
    if [[ $link == shared ]]; then
        # The shared library exports what the inline paths read.
        # (nm's whole output first: `grep -q` stopping early would end nm
        # with SIGPIPE, a failure under pipefail.)
        exports=$(aarch64-linux-gnu-nm -D --defined-only "$libdir/librestartable.so")
        for sym in restartable_area_offset __rseq_abi __rseq_refcount; do
            if ! grep -qw "$sym" <<<"$exports"; then
                echo "$libdir/librestartable.so does not export $sym" >&2
                exit 1
            fi
        done
        soname=$(aarch64-linux-gnu-readelf -d "$libdir/librestartable.so" |
            sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
        cp -L "$libdir/librestartable.so" "$cdir/lib/${soname:?no SONAME}"
        set -- "${shared[@]}"
    else
        set -- "${static[@]}"
    fi
    src=tests/c/header_test.c
    build_c "$src" "header_${link}_c11" -x c -std=c11 -- "$@"
    build_c "$src" "header_${link}_c99" -x c -std=c99 -- "$@"
    build_c "$src" "header_${link}_cxx17" -x c++ -std=c++17 -- "$@"
    build_c "$src" "header_${link}_calls" -x c -std=c11 -DRESTARTABLE_NO_INLINE -- "$@"
done
# The pool test (the per-CPU pool, mm_cid, the report and the active-table
# swap through the header), as c_pool builds it: against the shared
# library, as C11, C++17 and calls only.
set -- "${shared[@]}"
src=tests/c/pool_test.c
build_c "$src" pool_shared_c11 -x c -std=c11 -- "$@"
build_c "$src" pool_shared_cxx17 -x c++ -std=c++17 -- "$@"
build_c "$src" pool_shared_calls -x c -std=c11 -DRESTARTABLE_NO_INLINE -- "$@"

.ci/aarch64/initramfs.sh "$work/initrd.gz" "$cache/guest" "$work/tests.txt" "$cdir"
echo "built in $((SECONDS - start))s"

failed=0
cpu_total=0
report=()
for kernel in "$cache"/kernels/vmlinuz-${RESTARTABLE_AARCH64_KERNELS:-*}; do
    version=${kernel##*/vmlinuz-}
    for mode in libc library; do
        # The mix of sections and fence holders in tests/percpu.rs runs
        # 100 operations per thread instead of 20000: under TCG each fence
        # holder's membarrier waits for the other emulated CPU, and the
        # full run takes hours there (the x86_64 runs keep the full count).
        # The tests' limits on their child processes (hang guards) are
        # multiplied by 4 for the same reason.
        words=(RESTARTABLE_EXPECT_OWNER=$mode RESTARTABLE_TEST_MIX_OPS=${RESTARTABLE_TEST_MIX_OPS:-100}
            RESTARTABLE_TEST_TIME_SCALE=${RESTARTABLE_TEST_TIME_SCALE:-4})
        [[ $mode == library ]] && words+=(GLIBC_TUNABLES=glibc.pthread.rseq=0)
        [[ -n ${RESTARTABLE_AARCH64_TEST_ARGS:-} ]] &&
            words+=("TEST_ARGS=\"$RESTARTABLE_AARCH64_TEST_ARGS\"")
        log=$work/$version-$mode.log
        status=0
        # Wall-clock and CPU seconds of the boot (qemu's user + system
        # time: on a busy machine the wall clock says more about the
        # neighbours than about the suite).
        TIMEFORMAT='%R %U %S'
        { time .ci/aarch64/boot.sh "$kernel" "$work/initrd.gz" "$limit" "${words[@]}" \
            </dev/null >"$log" 2>&1 || status=$?; } 2>"$work/boot-time.txt"
        read -r wall user sys <"$work/boot-time.txt"
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", u + s }')
        cpu_total=$((cpu_total + cpu))
        summary=$(sed -n 's/\r$//; s/^=== summary: //p' "$log")
        bad=$(sed -n 's/\r$//; s/^=== \(.*\) exit \([1-9][0-9]*\) .*/\1 (\2)/p' "$log" | tr '\n' ' ')
        line="$version $mode: ${summary:-no summary (qemu status $status)}${bad:+, failed: $bad} (${wall%.*}s wall, ${cpu}s CPU)"
        if [[ -z $summary || -n $bad || $summary != *", 0 failed" ]]; then
            failed=$((failed + 1))
            echo "---- $log (tail)"
            tail -n 60 "$log"
        fi
        echo "$line"
        report+=("$line")
    done
done

printf '\n==== aarch64 (TCG) results\n'
printf '%s\n' "${report[@]}"
echo "total $((SECONDS - start))s wall; the boots took ${cpu_total}s of CPU"
if ((failed)); then
    echo "$failed boot(s) with failures"
    exit 1
fi
