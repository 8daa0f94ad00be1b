# Shared settings of the VM lane scripts (sourced, not run).
# Cache: downloads, unpacked kernels, built kernels and initramfs live under
# $REDPAK_VM_CACHE (default /var/cache/redpak-vm), each keyed by its content or
# config, so reruns on the same machine reuse them and a fresh machine rebuilds.
REDPAK_VM_CACHE=${REDPAK_VM_CACHE:-/var/cache/redpak-vm}
VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$VM_DIR/../.." && pwd)

vm_log() { printf 'redpak-vm: %s\n' "$*" >&2; }
vm_die() { printf 'redpak-vm: error: %s\n' "$*" >&2; exit 2; }

# hash of files and strings given on the command line (strings prefixed with =)
vm_key() {
    local a
    for a in "$@"; do
        case $a in =*) printf '%s\n' "${a#=}" ;; *) cat "$a" ;; esac
    done | sha256sum | cut -c1-16
}
