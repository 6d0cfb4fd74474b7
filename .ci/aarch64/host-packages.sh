#!/usr/bin/env bash
# Installs the host packages the aarch64 suite needs (Debian 12, as root):
# the cross compilers, the arm64 C library headers, qemu-system-arm and
# cpio. Without recommends, which leaves out qemu's network ROMs (boot.sh
# runs with -nic none).
set -euo pipefail

packages=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-system-arm cpio)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "${packages[*]}: present"
fi
