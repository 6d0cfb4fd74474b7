#!/usr/bin/env bash
# Builds the aarch64 test initramfs (a gzipped newc cpio).
#
# Usage: .ci/aarch64/initramfs.sh OUT GUEST LIST [CDIR]
#   OUT    the image to write
#   GUEST  the unpacked arm64 runtime (libc6, libgcc-s1, libstdc++6,
#          busybox-static: see fetch.sh)
#   LIST   a file naming one test executable per line (copied, stripped,
#          into /tests under the name before its hash)
#   CDIR   optional: prebuilt C programs (into /c) and, in CDIR/lib, the
#          shared library they load
set -euo pipefail

if (($# < 3)); then
    echo "usage: $0 OUT GUEST LIST [CDIR]" >&2
    exit 2
fi
out=$(realpath -m "$1")
guest=$2
list=$3
cdir=${4:-}
here=$(dirname "$0")
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,dev,proc,sys,tmp,tests,c/lib,lib/aarch64-linux-gnu}
cp "$guest/bin/busybox" "$root/bin/busybox"
# /init installs the other applets.
ln -s busybox "$root/bin/sh"
# The loader where the executables' PT_INTERP names it, and the libraries
# the Rust and C programs link against.
cp "$guest/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1" "$root/lib/"
for lib in libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 libutil.so.1; do
    cp "$guest/lib/aarch64-linux-gnu/$lib" "$root/lib/aarch64-linux-gnu/"
done
cp "$guest"/usr/lib/aarch64-linux-gnu/libstdc++.so.6* "$root/lib/aarch64-linux-gnu/"
while read -r exe; do
    [[ -n $exe ]] || continue
    name=$(basename "$exe")
    name=${name%-*} # drop cargo's hash
    aarch64-linux-gnu-strip -o "$root/tests/$name" "$exe"
done <"$list"
if [[ -n $cdir ]]; then
    find "$cdir" -maxdepth 1 -type f -perm -u+x -exec cp {} "$root/c/" \;
    if [[ -d $cdir/lib ]]; then
        find "$cdir/lib" -maxdepth 1 -type f -exec cp {} "$root/c/lib/" \;
    fi
fi
install -m 755 "$here/init.sh" "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
echo "$out: $(ls "$root/tests" | wc -l) test executables, $(find "$root/c" -maxdepth 1 -type f | wc -l) C programs, $(du -h "$out" | cut -f1)"
