#!/usr/bin/env bash
# Boots an arm64 kernel with an initramfs under qemu-system-aarch64 (TCG:
# no KVM is assumed) and prints the console.
#
# Usage: .ci/aarch64/boot.sh KERNEL INITRD LIMIT [NAME=VALUE...]
#   LIMIT  seconds before the machine is killed
#   NAME=VALUE words go on the kernel command line, which hands them to
#   /init as its environment.
# Exit status: qemu's (124 when killed at LIMIT).
set -euo pipefail

if (($# < 3)); then
    echo "usage: $0 KERNEL INITRD LIMIT [NAME=VALUE...]" >&2
    exit 2
fi
kernel=$1 initrd=$2 limit=$3
shift 3
# -nic none: without the recommended ipxe ROMs qemu cannot create the
# default network card, and the tests need none.
exec timeout "$limit" qemu-system-aarch64 -M virt -cpu max -smp 2 -m 2048 \
    -nographic -nic none -no-reboot \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyAMA0 panic=-1 loglevel=3 $*"
