#!/usr/bin/env bash
# Installs what redpak needs on a Debian 12 machine (idempotent, non-interactive) and
# creates .venv (Debian's python3, so librpm/libsolv bindings and other users can use it).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
    python3 python3-venv python3-dev python3-yaml python3-rpm python3-solv
    gcc make rpm librpm-dev createrepo-c libsolv-dev libsolvext-dev
    libseccomp-dev libcap-dev busybox-static bubblewrap crun hyperfine strace
    util-linux procps musl-tools gnupg iproute2 dnf
    systemd man-db groff-base cpio rpm2cpio
)

. tools/debs.sh
install_debs setup "${DEBS[@]}"

if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel "Cython>=0.29"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation -e ".[test]"
echo "setup: ready (.venv)"
