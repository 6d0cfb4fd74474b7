#!/usr/bin/env bash
# Runs inside a kernel-matrix guest (see run.sh): the facts of the booted
# kernel, rseq_info and every test executable in both ownership modes. All
# output goes to OUT, the read-write share; `done` there marks the end.
#
# Usage: guest.sh OUT REPO RSEQ_INFO TIMEOUT
#   OUT/tests.tsv lists the executables: NAME<TAB>PATH per line; OUT/modes
#   the modes (libc, library) to run them in.
#   OUT/guest.env (optional) is sourced first: PATH, RUSTC and the like.
set -u

out=$1 repo=$2 rseq_info=$3 timeout=$4
exec >"$out/guest.log" 2>&1
[[ -f $out/guest.env ]] && . "$out/guest.env"

uname -r >"$out/uname"
getconf GNU_LIBC_VERSION >"$out/libc" 2>/dev/null
echo "kernel $(uname -r), $(nproc) CPUs"

# The root filesystem is the host's, read-only: the tests' scratch space
# (CARGO_TARGET_TMPDIR, TMPDIR, HOME) is tmpfs.
scratch=/run/kernel-matrix
mkdir -p "$scratch" 2>/dev/null || { scratch=/tmp/kernel-matrix && mkdir -p "$scratch"; }
mount -t tmpfs -o size=2g tmpfs "$scratch" || exit 1
mount -t tmpfs -o size=2g tmpfs "$repo/target/tmp" || exit 1
mkdir -p "$scratch/tmp" "$scratch/home"
# The host-built C libraries, copied where the tests may write beside them
# (their make lock, `make install`'s reads): the tests use them instead of
# running make and cargo themselves.
mkdir -p "$scratch/c-lib"
cp -a "$repo/target/c-lib/debug" "$scratch/c-lib/debug" || exit 1
export RESTARTABLE_C_LIB_DIR=$scratch/c-lib/debug
export TMPDIR=$scratch/tmp HOME=$scratch/home
export CARGO_MANIFEST_DIR=$repo
# The tests' bound on one child process (300 s by default): under emulation
# on a busy host, valgrind and the compilers need far longer.
export RESTARTABLE_TEST_CHILD_LIMIT=${RESTARTABLE_TEST_CHILD_LIMIT:-1200}

# AT_RSEQ_FEATURE_SIZE (27) and AT_RSEQ_ALIGN (28) as the kernel hands them
# to a new process (od's own auxiliary vector); 0 where the kernel passes
# none.
od -An -tu8 -v /proc/self/auxv | tr -s ' ' '\n' | sed '/^$/d' | paste - - |
    awk '$1 == 27 {size = $2} $1 == 28 {align = $2}
        END {printf "AT_RSEQ_FEATURE_SIZE %d\nAT_RSEQ_ALIGN %d\n", size, align}' >"$out/auxv"
cat "$out/auxv"

# Passing tests' output is shown too: tests that adapt to the kernel say
# what they asserted.

# mode name -> environment
mode_env() {
    case $1 in
    libc) echo "RESTARTABLE_EXPECT_OWNER=libc" ;;
    library) echo "GLIBC_TUNABLES=glibc.pthread.rseq=0 RESTARTABLE_EXPECT_OWNER=library" ;;
    esac
}

modes=$(cat "$out/modes" 2>/dev/null || echo libc library)
for mode in $modes; do
    read -r -a envs <<<"$(mode_env "$mode")"
    env "${envs[@]}" "$rseq_info" >"$out/info-$mode.txt" 2>&1
    echo "rseq_info ($mode): exit $?"
    : >"$out/status-$mode.tsv"
    while IFS=$'\t' read -r name path; do
        start=$SECONDS
        args=(--show-output)
        # Two c_abi tests say nothing about the kernel and are the slowest
        # under emulation, so the host's own runs cover them: valgrind
        # answers rseq itself (ENOSYS) whatever the kernel, and the inline
        # test only compiles the header (16 builds of a large unit).
        [[ $name == c_abi ]] && args+=(--skip c_example_under_valgrind
            --skip inline_operations_stay_inline_with_many_callers)
        (cd "$repo" && env "${envs[@]}" timeout "$timeout" "$path" "${args[@]}") \
            >"$out/test-$mode-$name.txt" 2>&1 </dev/null
        rc=$?
        printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$out/status-$mode.tsv"
        echo "$mode $name: exit $rc in $((SECONDS - start))s"
    done <"$out/tests.tsv"
done

touch "$out/done"
sync
