#!/usr/bin/env bash
# The kernel matrix: boots Debian-packaged Linux kernels in QEMU (through
# virtme-ng) and runs every test executable of this crate inside each, once
# with glibc owning the rseq area and once with the library owning it.
#
# Usage: .ci/kernel-matrix/run.sh [KERNEL...]
#   KERNEL is an upstream version prefix ("5.10", "6.19", "7.3.4"): the
#   newest linux-image-*-amd64 package of the Debian archive whose version
#   starts with it. Default: $KMATRIX_KERNELS, or the list below.
#
# The guest sees the host's root filesystem read-only (virtio-fs), so the
# host's toolchain, C compilers and glibc are the guest's too; only the
# kernel changes. Results come back through a read-write share, one
# directory per kernel under $KMATRIX_CACHE/results/.
#
# Environment:
#   KMATRIX_CACHE         cache and results (default target/kernel-matrix)
#   KMATRIX_KERNELS       kernels to boot when none are given
#   KMATRIX_ACCEL         kvm or tcg (default: kvm only where the CPU shows
#                         vmx or svm and /dev/kvm opens)
#   KMATRIX_TEST_TIMEOUT  seconds one test executable may run (default 1500)
#   KMATRIX_BOOT_TIMEOUT  seconds one kernel's boot and run may take (2400)
#   KMATRIX_QEMU_OPTS     extra QEMU options
#   KMATRIX_MEMORY        guest memory (default 2G)
#   KMATRIX_JOBS          guests booted at once (default 1)
#   KMATRIX_TESTS         test executables to run (default all), e.g. "cpu cs"
#   KMATRIX_SKIP          test executables not to run, e.g. "c_abi field"
#   KMATRIX_MODES         "libc library" (default), or one of them
#   KMATRIX_RESULTS       where results go (default $KMATRIX_CACHE/results)
#
# Exit status: 0 when every test passed on every kernel, 1 when a test
# failed, 2 when setup, a download or a boot failed.
set -euo pipefail

cd "$(dirname "$0")/../.."
repo=$PWD
here=$repo/.ci/kernel-matrix
cache=${KMATRIX_CACHE:-$repo/target/kernel-matrix}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

DEFAULT_KERNELS="5.10 6.1 6.12 6.19 7.3"
if (($#)); then
    kernels=("$@")
else
    read -r -a kernels <<<"${KMATRIX_KERNELS:-$DEFAULT_KERNELS}"
fi
for k in "${kernels[@]}"; do
    if ! [[ $k =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]]; then
        echo "kernel-matrix: '$k' is not a version prefix such as 6.12 or 7.3.4" >&2
        exit 2
    fi
done

die() {
    echo "kernel-matrix: $*" >&2
    exit 2
}

# --- host tools ------------------------------------------------------------
"$here/setup.sh" || die "setup failed"
export PATH=$cache/tools/bin:$cache/venv/bin:$PATH

# --- a private apt state over the system's own archive ----------------------
# Other suites are read into this state only; the system's sources, lists
# and dpkg status are never touched.
apt_state=$cache/apt
export APT_CONFIG=$apt_state/apt.conf

apt_state_init() {
    local main security codename targets
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    targets=$(env -u APT_CONFIG apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)')
    main=$(awk -v s="$codename" '$2 == s && $3 == "main" {print $1; exit}' <<<"$targets")
    security=$(awk -v s="$codename-security" '$2 == s && $3 == "main" {print $1; exit}' <<<"$targets")
    [[ -n $main && -n $security ]] ||
        die "the system's apt sources name no Debian archive and security archive (run apt-get update)"
    mkdir -p "$apt_state"/{lists/partial,cache/archives/partial,etc/sources.list.d,etc/preferences.d,etc/apt.conf.d}
    : >"$apt_state/status"
    {
        local suite
        for suite in bullseye bookworm trixie trixie-backports; do
            echo "deb [arch=amd64] $main $suite main"
        done
        for suite in bullseye-security bookworm-security trixie-security; do
            echo "deb [arch=amd64] $security $suite main"
        done
    } >"$apt_state/etc/sources.list"
    cat >"$apt_state/apt.conf" <<EOF
Dir::State "$apt_state";
Dir::State::Lists "$apt_state/lists";
Dir::State::status "$apt_state/status";
Dir::Cache "$apt_state/cache";
Dir::Etc::SourceList "$apt_state/etc/sources.list";
Dir::Etc::SourceParts "$apt_state/etc/sources.list.d";
Dir::Etc::Preferences "$apt_state/etc/preferences";
Dir::Etc::PreferencesParts "$apt_state/etc/preferences.d";
Dir::Etc::Parts "$apt_state/etc/apt.conf.d";
Dir::Etc::TrustedParts "/usr/share/keyrings";
Acquire::Languages "none";
APT::Architecture "amd64";
APT::Sandbox::User "root";
EOF
}

# The lists are read again when older than a day; the kernel packages in
# them are indexed once (PACKAGE<TAB>VERSION<TAB>DEPENDS per line).
apt_state_init
index=$apt_state/kernels.tsv
if [[ -z $(find "$apt_state/lists" -maxdepth 1 -name '*_Packages' -mmin -1440 | head -n1) ]]; then
    apt-get update -qq || die "apt-get update (private state) failed"
    rm -f "$index"
fi
if [[ ! -s $index ]]; then
    awk '
        /^Package: / { p = $2 }
        /^Version: / { v = $2 }
        /^Depends: / { d = substr($0, 10) }
        /^$/ {
            if (p ~ /^linux-(image|binary|modules)-[0-9][^ ]*-amd64$/ && p !~ /-(cloud|rt)-amd64$/)
                printf "%s\t%s\t%s\n", p, v, d
            p = ""; v = ""; d = ""
        }' "$apt_state"/lists/*_Packages | sort -u >"$index.new"
    mv "$index.new" "$index"
fi

# Prints "PACKAGE VERSION" of the newest linux-image-*-amd64 whose version
# starts with $1 (followed by '.', '-', '+' or '~').
resolve_kernel() {
    local prefix=$1 best_pkg="" best_ver="" pkg ver
    while read -r pkg ver; do
        if [[ -z $best_ver ]] || dpkg --compare-versions "$ver" gt "$best_ver"; then
            best_pkg=$pkg best_ver=$ver
        fi
    done < <(awk -F'\t' -v prefix="$prefix" '
        $1 ~ /^linux-image-/ && index($2, prefix) == 1 &&
            substr($2, length(prefix) + 1, 1) ~ /[-.+~]/ { print $1, $2 }' "$index")
    [[ -n $best_pkg ]] || return 1
    echo "$best_pkg $best_ver"
}

# The packages that hold the kernel of PACKAGE=VERSION: the package itself
# and, where the image is split (Debian 13's backports from 6.19 on), the
# linux-binary-* (vmlinuz) and linux-modules-* it depends on, at the same
# version. The archive lacks some of those modules packages: the kernel
# then boots with what is built in (virtio-fs is, from 6.12 on).
kernel_parts() {
    local pkg=$1 ver=$2 dep
    echo "$pkg"
    for dep in $(awk -F'\t' -v p="$pkg" -v v="$ver" '$1 == p && $2 == v { print $3 }' "$index" |
        tr ',|' '\n\n' | awk '{print $1}' | grep -E '^linux-(binary|modules)-' | sort -u); do
        if awk -F'\t' -v p="$dep" -v v="$ver" '$1 == p && $2 == v { found = 1 } END { exit !found }' "$index"; then
            echo "$dep"
        else
            echo "note: the archive has no $dep=$ver; booting without it" >&2
        fi
    done
}

# Downloads and unpacks one kernel; prints the unpacked directory.
fetch_kernel() {
    local pkg=$1 ver=$2 dir=$cache/kernels/$1_$2 debs=$cache/debs/$1 part
    if [[ ! -f $dir/.unpacked ]]; then
        rm -rf "$dir" "$debs"
        mkdir -p "$debs" "$dir"
        for part in $(kernel_parts "$pkg" "$ver"); do
            (cd "$debs" && apt-get download -qq "$part=$ver") >&2 ||
                die "apt-get download $part=$ver failed"
        done
        for part in "$debs"/*.deb; do
            dpkg-deb -x "$part" "$dir"
        done
        rm -rf "$debs"
        touch "$dir/.unpacked"
    fi
    echo "$dir"
}

# --- the test executables, built on the host --------------------------------
echo "building the test executables"
build_json=$cache/build.json
cargo test --no-run --message-format=json-render-diagnostics >"$build_json" ||
    die "cargo test --no-run failed"
list=$cache/executables.tsv
python3 "$here/report.py" executables "$build_json" >"$list"
rseq_info=$(awk -F'\t' '$1 == "example:rseq_info" {print $2}' "$list")
[[ -x $rseq_info ]] || die "cargo test --no-run built no rseq_info example"
grep -v '^example:' "$list" >"$cache/tests.tsv"
mkdir -p "$repo/target/tmp" # CARGO_TARGET_TMPDIR: the guest mounts tmpfs there
# The C libraries the tests link their C programs against, built here with
# the documented build into the directory the tests' own `make` uses; the
# guest cannot run cargo on its read-only view, so it is given a writable
# copy of them (RESTARTABLE_C_LIB_DIR, see guest.sh).
echo "building the C libraries"
make -C "$repo" --no-print-directory PROFILE=debug CARGO_TARGET_DIR="$repo/target/c-lib" ||
    die "make failed"
echo "$(wc -l <"$cache/tests.tsv") test executables"

# --- the accelerator --------------------------------------------------------
accel=${KMATRIX_ACCEL:-}
if [[ -z $accel ]]; then
    accel=tcg
    if grep -qwE 'vmx|svm' /proc/cpuinfo && [[ -r /dev/kvm && -w /dev/kvm ]]; then
        accel=kvm
    fi
fi
case $accel in
kvm) accel_opts=() ;;
tcg) accel_opts=(--disable-kvm) ;;
*) die "KMATRIX_ACCEL=$accel: want kvm or tcg" ;;
esac
echo "accelerator: $accel"

# --- one boot per kernel ----------------------------------------------------
results=${KMATRIX_RESULTS:-$cache/results}
mkdir -p "$results"
results=$(cd "$results" && pwd)
modes=${KMATRIX_MODES:-libc library}
for m in $modes; do
    [[ $m == libc || $m == library ]] || die "KMATRIX_MODES: '$m' is neither libc nor library"
done
tests=$cache/tests.tsv
if [[ -n ${KMATRIX_TESTS:-} ]]; then
    tests=$cache/tests-chosen.tsv
    : >"$tests"
    for t in $KMATRIX_TESTS; do
        grep -P "^\Q$t\E\t" "$cache/tests.tsv" >>"$tests" ||
            die "KMATRIX_TESTS: no test executable '$t' (there are: $(cut -f1 "$cache/tests.tsv" | tr '\n' ' '))"
    done
fi
if [[ -n ${KMATRIX_SKIP:-} ]]; then
    for t in $KMATRIX_SKIP; do
        grep -qP "^\Q$t\E\t" "$tests" ||
            die "KMATRIX_SKIP: no test executable '$t' among those chosen"
    done
    # A file per list of names, so that runs with other lists do not share it.
    kept=$cache/tests-without-$(echo "$KMATRIX_SKIP" | tr -cs 'a-z0-9_' '-').tsv
    awk -F'\t' -v skip=" $KMATRIX_SKIP " 'index(skip, " " $1 " ") == 0' "$tests" >"$kept"
    tests=$kept
    echo "not run on these kernels (KMATRIX_SKIP): $KMATRIX_SKIP"
fi
rustc_path=$(rustc --print sysroot)/bin/rustc

# Boots the kernel at $2 with its results in $1; returns vng's status.
# A guest that never reached guest.sh (a boot that failed) is booted once
# more.
boot() {
    local out=$1 vmlinuz=$2 rc try start=$SECONDS
    # The guest's environment: the host's tools, rustc itself (not rustup's
    # proxy, which wants a writable home).
    {
        printf 'export PATH=%q\n' "$PATH"
        printf 'export RUSTC=%q\n' "$rustc_path"
    } >"$out/guest.env"
    for try in 1 2; do
        rc=0
        # The guest writes only into $out (and its own tmpfs mounts). The
        # kernel's console goes to vng.log. no_timer_check: an emulated
        # CPU on a busy host is too slow for the boot's IO-APIC timer
        # check, which then panics.
        timeout "${KMATRIX_BOOT_TIMEOUT:-2400}" \
            vng --run "$vmlinuz" "${accel_opts[@]}" --cpus 2 --memory "${KMATRIX_MEMORY:-2G}" \
            --verbose --append no_timer_check \
            --rwdir="$out" --cwd "$repo" ${KMATRIX_QEMU_OPTS:+--qemu-opts="$KMATRIX_QEMU_OPTS"} \
            --exec "$here/guest.sh $out $repo $rseq_info ${KMATRIX_TEST_TIMEOUT:-1500}" \
            </dev/null >"$out/vng.log" 2>&1 || rc=$?
        [[ -f $out/uname ]] && break
        cp "$out/vng.log" "$out/vng-boot$try.log"
    done
    echo $((SECONDS - start)) >"$out/wall_seconds"
    return "$rc"
}

# Downloads first (one apt at a time), then the boots, KMATRIX_JOBS at a
# time (default 1: on a 2-core machine parallel guests only share it).
outs=()
for k in "${kernels[@]}"; do
    read -r pkg ver < <(resolve_kernel "$k") || die "the archive offers no kernel $k"
    echo "$k: $pkg $ver"
    kdir=$(fetch_kernel "$pkg" "$ver")
    # boot/vmlinuz-<release>, or lib/modules/<release>/vmlinuz in the
    # split packages.
    vmlinuz=$(find "$kdir" -path '*/boot/vmlinuz-*' -o -path '*/lib/modules/*/vmlinuz' | head -n1)
    [[ -n $vmlinuz ]] || die "$pkg has no vmlinuz"
    out=$results/$k
    rm -rf "$out"
    mkdir -p "$out"
    printf '%s\t%s\t%s\n' "$pkg" "$ver" "$accel" >"$out/package"
    cp "$tests" "$out/tests.tsv"
    echo "$modes" >"$out/modes"
    echo "$vmlinuz" >"$out/vmlinuz"
    outs+=("$out")
done

jobs_max=${KMATRIX_JOBS:-1}
running=0
for out in "${outs[@]}"; do
    if ((running >= jobs_max)); then
        wait -n || true
        running=$((running - 1))
    fi
    echo "booting $(basename "$out") ($accel)"
    boot "$out" "$(cat "$out/vmlinuz")" &
    running=$((running + 1))
done
wait || true

status=0
ran=()
for out in "${outs[@]}"; do
    echo
    if [[ ! -f $out/done ]]; then
        echo "$(basename "$out"): the guest did not finish; last lines of $out/vng.log:"
        tail -n 30 "$out/vng.log"
        status=2
        continue
    fi
    ran+=("$out")
    python3 "$here/report.py" kernel "$out" || { [[ $status == 2 ]] || status=1; }
done

echo
echo "== kernel matrix ($accel)"
if ((${#ran[@]})); then
    python3 "$here/report.py" table "${ran[@]}"
fi
exit "$status"
