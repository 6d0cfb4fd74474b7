#!/usr/bin/env bash
# Installs what the kernel matrix needs on the CI machine (Debian 12, root):
# QEMU and the tools virtme-ng uses to build its initramfs from the system's
# packages, virtme-ng itself in a virtual environment, and the Rust virtiofsd
# (Debian 12 ships none that virtme-ng accepts). Everything but the Debian
# packages lands under the cache directory, so a second run finds it and
# returns in seconds.
#
# Usage: .ci/kernel-matrix/setup.sh
# Environment: KMATRIX_CACHE (default target/kernel-matrix).
set -euo pipefail

cd "$(dirname "$0")/../.."
cache=${KMATRIX_CACHE:-$PWD/target/kernel-matrix}
mkdir -p "$cache"

VIRTME_NG_VERSION=1.42
VIRTIOFSD_VERSION=1.14.0

# Debian packages: the emulator, busybox and kmod for the guest's initramfs,
# python3-venv for virtme-ng, the build dependencies of virtiofsd.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v modprobe >/dev/null || need+=(kmod)
command -v depmod >/dev/null || need+=(kmod)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
dpkg -s libcap-ng-dev >/dev/null 2>&1 || need+=(libcap-ng-dev)
dpkg -s libseccomp-dev >/dev/null 2>&1 || need+=(libseccomp-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v gcc >/dev/null || need+=(gcc)
if ((${#need[@]})); then
    echo "installing: ${need[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${need[@]}"
fi

# virtme-ng, pinned, in its own environment.
venv=$cache/venv
if ! "$venv/bin/vng" --version 2>/dev/null | grep -qF "$VIRTME_NG_VERSION"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "virtme-ng==$VIRTME_NG_VERSION"
fi

# virtiofsd, pinned, built from its crate.
tools=$cache/tools
if ! "$tools/bin/virtiofsd" --version 2>/dev/null | grep -qF "$VIRTIOFSD_VERSION"; then
    cargo install --locked --root "$tools" --target-dir "$cache/virtiofsd-build" \
        "virtiofsd@$VIRTIOFSD_VERSION"
    rm -rf "$cache/virtiofsd-build"
fi

echo "qemu      : $(qemu-system-x86_64 --version | sed -n 1p)"
echo "virtme-ng : $("$venv/bin/vng" --version 2>&1 | sed -n 1p)"
echo "virtiofsd : $("$tools/bin/virtiofsd" --version 2>&1 | sed -n 1p)"
