#!/usr/bin/env bash
# The library as its users build it: a Rust crate that depends on it, and
# the C libraries from the Makefile, installed and linked as the README
# says.
#
# Usage: .ci/packaging.sh dependent|linkers|readme
#
#   dependent  a tiny crate depending on restartable, built with
#              RUSTFLAGS="-C relocation-model=static", runs and builds no
#              C library
#   linkers    `make` with GNU ld and with LLD: the same exports, the
#              archive's native libraries as the Makefile lists them, and
#              the C tests (tests/c_abi.rs, tests/field.rs) against the
#              release library that GNU ld linked
#   readme     every README block marked ```sh ci (and the ```c ci:FILE
#              sources) run verbatim, in order, in one shell, in a fresh
#              copy of the repository with HOME in a scratch directory;
#              the system-wide install they make lands in overlays of
#              /usr/local and /etc in a private mount namespace, so the
#              machine is left as it was; then the installed layout is
#              checked (SONAME, links, pkg-config prefix)
#
# Work files go to target/packaging/ (RESTARTABLE_PACKAGING_DIR).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
work=${RESTARTABLE_PACKAGING_DIR:-$root/target/packaging}
mkdir -p "$work"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# Dynamic symbols a shared object defines: "TYPE BIND NAME" per line.
exports() {
    readelf --dyn-syms -W "$1" | awk 'NR > 3 && $7 != "UND" && $8 != "" { print $4, $5, $8 }' | sort
}

dependent() {
    local dir=$work/dependent
    rm -rf "$dir/src"
    mkdir -p "$dir/src"
    cat >"$dir/Cargo.toml" <<EOF
[package]
name = "restartable-dependent"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
restartable = { path = "$root" }
EOF
    cat >"$dir/src/main.rs" <<'EOF'
use restartable::PerCpuCounter;

fn main() {
    let hits = PerCpuCounter::new();
    (0..1000).for_each(|_| hits.add(1));
    assert_eq!(hits.sum(), 1000);
    println!("dependent: sum {} on cpu {}", hits.sum(), restartable::current_cpu());
}
EOF
    # The library's own lock file, so that the dependent builds the
    # versions CI tests.
    cp Cargo.lock "$dir/Cargo.lock"
    local target=$dir/target
    rm -rf "$target"
    (cd "$dir" && RUSTFLAGS="-C relocation-model=static" cargo build --target-dir "$target")
    local exe=$target/debug/restartable-dependent
    # A position-dependent executable: the flag reached the link.
    readelf -hW "$exe" | grep -q 'Type: *EXEC' || fail "$exe is not a non-PIE executable"
    "$exe" | grep -q '^dependent: sum 1000 on cpu ' || fail "the dependent did not run"
    local c_libs
    c_libs=$(find "$target" \( -name 'librestartable*.a' -o -name 'librestartable*.so*' \) -print)
    [[ -z $c_libs ]] || fail "a Rust dependent built C libraries: $c_libs"
    echo "dependent: built with -C relocation-model=static and ran; target directory $(du -sh "$target" | cut -f1), no C library in it"
}

linkers() {
    local target=$work/target lib=$work/target/release/librestartable.so.$version
    local gcc_ld lld
    gcc_ld=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld
    if [[ -x $gcc_ld/ld.lld ]]; then
        lld="-fuse-ld=lld -B$gcc_ld"
    elif command -v ld.lld >/dev/null; then
        lld=-fuse-ld=lld
    else
        fail "no LLD (rustup's rust-lld or ld.lld) to compare GNU ld with"
    fi
    # LLD first, its library kept aside; then GNU ld, whose library stays
    # where make put it for the tests below (-W: relink though nothing
    # changed).
    make CARGO_TARGET_DIR="$target" LDFLAGS="$lld"
    mkdir -p "$work/lld"
    cp "$lib" "$work/lld/"
    make CARGO_TARGET_DIR="$target" LDFLAGS=-fuse-ld=bfd -W restartable.map
    readelf -p .comment "$work/lld/librestartable.so.$version" | grep -q 'Linker: LLD' ||
        fail "the LLD build was not linked by LLD"
    if readelf -p .comment "$lib" | grep -q 'Linker: LLD'; then
        fail "the GNU ld build was linked by LLD"
    fi
    exports "$lib" >"$work/exports-gnu-ld.txt"
    exports "$work/lld/librestartable.so.$version" >"$work/exports-lld.txt"
    diff -u "$work/exports-gnu-ld.txt" "$work/exports-lld.txt" ||
        fail "GNU ld and LLD export different symbols"
    # Exactly the C API (every function the header declares or calls,
    # and the area offset), rseq_location and the weak TLS pair.
    local name unexpected=0
    while read -r _ _ name; do
        case $name in
        __rseq_abi | __rseq_refcount | rseq_location) ;;
        restartable_*)
            grep -qE "\b$name\b" include/restartable.h || {
                echo "exported but not in the header: $name"
                unexpected=1
            }
            ;;
        *)
            echo "unexpected export: $name"
            unexpected=1
            ;;
        esac
    done <"$work/exports-gnu-ld.txt"
    ((unexpected == 0)) || fail "librestartable.so exports more than the C API"
    for name in "TLS WEAK __rseq_abi" "TLS WEAK __rseq_refcount" \
        "OBJECT GLOBAL restartable_area_offset" "FUNC GLOBAL restartable_cpu"; do
        grep -qxF "$name" "$work/exports-gnu-ld.txt" || fail "not exported: $name"
    done
    echo "GNU ld and LLD: the same $(wc -l <"$work/exports-gnu-ld.txt") exports"
    readelf -dW "$lib" | grep -q 'Library soname: \[librestartable.so.0\]' || fail "SONAME"
    readelf -dW "$lib" | grep -q 'Flags:.*NODELETE' || fail "not linked -z nodelete"

    # The Makefile's STATIC_LIBS (and restartable.pc's Libs.private) are
    # what rustc says the staticlib needs, less -lgcc_s.
    local printed listed
    # Rebuilt each time: rustc prints the list only when it runs.
    [[ -d $work/native-static-libs ]] &&
        cargo clean --quiet -p restartable --target-dir "$work/native-static-libs"
    printed=$(cargo rustc --quiet --lib --crate-type staticlib \
        --target-dir "$work/native-static-libs" -- --print native-static-libs 2>&1 |
        sed -n 's/.*native-static-libs: //p' | sed -n '$p')
    listed=$(make -s --no-print-directory -f - print-static-libs <<'EOF'
include Makefile
print-static-libs:
	@echo $(STATIC_LIBS)
EOF
)
    [[ -n $printed ]] || fail "rustc printed no native-static-libs"
    [[ $(tr ' ' '\n' <<<"$printed" | grep -vx -- -lgcc_s | xargs) == "$listed" ]] ||
        fail "rustc --print native-static-libs says '$printed'; the Makefile lists '$listed' (+ -lgcc_s)"
    echo "native-static-libs: $printed"

    # Each test runs its C programs in every ownership mode itself.
    RESTARTABLE_C_LIB_DIR=$target/release cargo test --test c_abi --test field
}

# The README's marked blocks: ```sh ci blocks into one script, ```c ci:FILE
# blocks into FILE.
extract_readme() {
    local into=$1
    awk -v dir="$into" '
        /^```/ && open { open = 0; next }
        /^```sh ci$/ { open = 1; out = dir "/readme.sh"; blocks++; next }
        /^```c ci:[A-Za-z0-9_.-]+$/ { open = 1; out = dir "/" substr($2, 4); printf "" > out; next }
        open { print >> out }
        END { if (!blocks) exit 1 }
    ' README.md || fail "README.md has no \`\`\`sh ci block"
}

readme() {
    local scratch=$work/readme
    local src=$scratch/restartable home=$scratch/home over=$scratch/overlay
    command -v sudo >/dev/null || fail "the README's commands use sudo: install it"
    unshare --mount --propagation private true ||
        fail "no private mount namespace (root and CAP_SYS_ADMIN needed) to install into"
    # A fresh copy of the repository (what git tracks, and new files it
    # does not ignore); its target/ is kept from an earlier run, if any.
    mkdir -p "$src"
    find "$src" -mindepth 1 -maxdepth 1 ! -name target -exec rm -rf {} +
    git ls-files -z --cached --others --exclude-standard |
        tar --null -T - -cf - | tar -xf - -C "$src"
    rm -rf "$home" "$over"
    mkdir -p "$home" "$over"/{local,etc}/{upper,work}
    : >"$src/readme.sh"
    extract_readme "$src"
    echo "---- the README's commands:"
    cat "$src/readme.sh"
    echo "----"
    # rustup and cargo keep their homes; everything else sees the new HOME.
    export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup} CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
    unshare --mount --propagation private env HOME="$home" OVER="$over" SRC="$src" bash -euc '
        mount -t overlay overlay -o "lowerdir=/usr/local,upperdir=$OVER/local/upper,workdir=$OVER/local/work" /usr/local
        mount -t overlay overlay -o "lowerdir=/etc,upperdir=$OVER/etc/upper,workdir=$OVER/etc/work" /etc
        cd "$SRC"
        bash -euxo pipefail readme.sh
    ' || fail "the README's C commands (above) failed"

    # What `sudo make install` put in /usr/local (the overlay's upper layer).
    local lib=$over/local/upper/lib
    [[ -f $lib/librestartable.so.$version ]] || fail "lib/librestartable.so.$version not installed"
    [[ $(readlink "$lib/librestartable.so.0") == "librestartable.so.$version" ]] ||
        fail "lib/librestartable.so.0 does not link to librestartable.so.$version"
    [[ $(readlink "$lib/librestartable.so") == "librestartable.so.$version" ]] ||
        fail "lib/librestartable.so does not link to librestartable.so.$version"
    readelf -dW "$lib/librestartable.so.$version" |
        grep -q 'Library soname: \[librestartable.so.0\]' || fail "SONAME is not librestartable.so.0"
    [[ -f $lib/librestartable.a ]] || fail "lib/librestartable.a not installed"
    cmp include/restartable.h "$over/local/upper/include/restartable.h" || fail "header"
    grep -qx 'prefix=/usr/local' "$lib/pkgconfig/restartable.pc" || fail "restartable.pc's prefix"
    grep -q 'librestartable.so.0' "$over/etc/upper/ld.so.cache" ||
        fail "ldconfig did not add librestartable.so.0 to the cache"
    echo "installed layout: SONAME librestartable.so.0, links, archive, header, restartable.pc with prefix=/usr/local"
}

case ${1:-} in
dependent | linkers | readme) "$1" ;;
*)
    echo "usage: $0 dependent|linkers|readme" >&2
    exit 2
    ;;
esac
