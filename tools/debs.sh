# install_debs WHO PKG...: installs the Debian packages missing among PKG (idempotent,
# non-interactive); WHO names the caller in messages. Sourced by tools/setup.sh and
# tools/vm/setup.sh.
install_debs() {
    local who=$1 p missing=()
    shift
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "$who: missing Debian packages: ${missing[*]} (run this script as root)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
