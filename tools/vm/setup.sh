#!/usr/bin/env bash
# Installs the Debian packages the VM lanes need (idempotent, non-interactive), apart from
# tools/setup.sh's so that the main setup stays light: qemu for both architectures, the
# aarch64 cross compiler, busybox and cpio for the initramfs, and linux-source-6.1 with
# its build tools for the SMACK lane's kernel. Kernels are fetched later, by the lanes.
set -euo pipefail
DEBS=(
    qemu-system-x86 qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    busybox-static cpio gzip xz-utils util-linux gcc make
    linux-source-6.1 flex bison bc libelf-dev libssl-dev
)
. "$(dirname "$0")/../debs.sh"
install_debs "vm setup" "${DEBS[@]}"
echo "vm setup: ready"
