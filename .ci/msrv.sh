#!/usr/bin/env bash
# Runs a command with the oldest Rust the crate supports (`rust-version` in
# Cargo.toml): Debian 12's `rustc-web` 1.85, unpacked into a cache
# directory and driven by the cargo on PATH through `RUSTC=`.
#
# Usage: .ci/msrv.sh [--gnu-ld] COMMAND...
#   e.g. .ci/msrv.sh cargo test --target-dir target/msrv
#
# The first run downloads the packages (about 90 MB) from the Debian
# archive that the system's apt sources already name, through a private
# apt state (its own lists, cache and status under the cache directory),
# and unpacks them with `dpkg-deb -x`: nothing is installed and the
# system's apt and dpkg state are left as they are. Later runs find the
# unpacked toolchain and start at once.
#
# By default rustc links with LLD, as rustc >= 1.90 links on x86_64 Linux
# (rust-lld from the rustup toolchain on PATH, else the system's ld.lld).
# `--gnu-ld` leaves the C compiler's default linker, as rustc 1.85 itself
# does. (The C libraries are linked by the Makefile's `cc` either way.)
#
# Environment: RESTARTABLE_MSRV_DIR, the cache directory (default
# ~/.cache/restartable/rust-1.85).
set -euo pipefail

msrv=1.85
dir=${RESTARTABLE_MSRV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/restartable/rust-$msrv}
root=$dir/root
libdir=$root/usr/lib/x86_64-linux-gnu

gnu_ld=false
if [[ ${1:-} == --gnu-ld ]]; then
    gnu_ld=true
    shift
fi
if (($# == 0)); then
    echo "usage: $0 [--gnu-ld] COMMAND..." >&2
    exit 2
fi

toolchain_works() {
    local info
    [[ -f $dir/done ]] &&
        info=$(LD_LIBRARY_PATH=$libdir "$root/usr/bin/rustc" -vV 2>/dev/null) &&
        [[ $info == *"release: $msrv."* ]]
}

fetch_toolchain() {
    local apt=$dir/apt
    rm -rf "$root" "$dir/done"
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$root"
    : >"$apt/status"
    # A private apt state: the system's sources and keys, everything else
    # (lists, cache, status) here. Only package indexes are fetched.
    cat >"$apt/apt.conf" <<EOF
Dir::State "$apt";
Dir::State::Lists "$apt/lists";
Dir::State::status "$apt/status";
Dir::Cache "$apt";
Dir::Cache::archives "$apt/archives";
Debug::NoLocking "true";
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";
Acquire::IndexTargets::deb::CNF::DefaultEnabled "false";
EOF
    export APT_CONFIG=$apt/apt.conf
    apt-get update -qq
    # The newest 1.85 build the archive offers (point releases change the
    # Debian revision, not the Rust version).
    local version
    version=$(apt-cache madison rustc-web |
        awk -v want="$msrv" 'index($3, want ".") == 1 { print $3; exit }')
    if [[ -z $version ]]; then
        echo "no rustc-web $msrv in the configured Debian archive" >&2
        exit 1
    fi
    # rustc needs its standard library and the LLVM it was built against;
    # everything else it needs (libc6, libstdc++6, gcc) is on the system.
    local llvm
    llvm=$(apt-cache show "libstd-rust-web-$msrv=$version" |
        sed -n 's/^Depends: //p' | grep -o 'libllvm[0-9]*' | sed -n 1p)
    (
        cd "$apt/archives"
        rm -f ./*.deb
        apt-get download -qq "rustc-web=$version" "libstd-rust-web-dev=$version" \
            "libstd-rust-web-$msrv=$version" "$llvm"
        for deb in ./*.deb; do
            dpkg-deb -x "$deb" "$root"
        done
        rm -f ./*.deb
    )
    rm -rf "$apt/lists"
    if ! LD_LIBRARY_PATH=$libdir "$root/usr/bin/rustc" -vV >/dev/null; then
        echo "the unpacked rustc does not run; missing libraries:" >&2
        LD_LIBRARY_PATH=$libdir ldd "$root/usr/bin/rustc" "$libdir"/libLLVM*.so* |
            grep 'not found' >&2 || true
        exit 1
    fi
    echo "$version" >"$dir/done"
}

if ! toolchain_works; then
    echo "unpacking rustc-web $msrv into $dir"
    fetch_toolchain
fi

rustflags=${RUSTFLAGS:-}
if ! $gnu_ld; then
    # rustup's toolchain ships rust-lld behind a `gcc-ld/ld.lld` wrapper,
    # which is how rustc >= 1.90 links; ask the rustc on PATH where it is
    # before RUSTC points elsewhere.
    gcc_ld=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld
    if [[ -x $gcc_ld/ld.lld ]]; then
        rustflags+=" -Clink-arg=-fuse-ld=lld -Clink-arg=-B$gcc_ld"
    elif command -v ld.lld >/dev/null; then
        rustflags+=" -Clink-arg=-fuse-ld=lld"
    else
        echo "no LLD found (rustup's rust-lld or ld.lld); use --gnu-ld" >&2
        exit 1
    fi
fi

export RUSTC=$root/usr/bin/rustc
export RUSTDOC=$root/usr/bin/rustdoc
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export RUSTFLAGS=${rustflags# }
"$RUSTC" --version
exec "$@"
