#!/usr/bin/env bash
# Demo of redpak's node model: builds a two-node family (a system node and an application
# node inside it) under ${REDPAK_DEMO_DIR:-/var/tmp/redpak-demo}, then shows it with
# redconf tree, check and mergeconfig. Run `sudo ./tools/setup.sh` once before.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
redconf="$repo/.venv/bin/redconf"
demo=${REDPAK_DEMO_DIR:-/var/tmp/redpak-demo}
marker=.redpak-demo

if [ ! -x "$redconf" ]; then
    echo "demo: $redconf not found: run 'sudo ./tools/setup.sh' first" >&2
    exit 1
fi
case "$demo" in
    /*) ;;
    *) demo="$PWD/$demo" ;;
esac
if [ "$demo" = / ] || [ -z "${demo#/}" ]; then
    echo "demo: refusing to use '/' as the demo directory" >&2
    exit 1
fi

# Remove the previous demo family, and only that: a directory this script made carries a
# marker file; anything else is left alone.
if [ -e "$demo" ] || [ -L "$demo" ]; then
    if [ -L "$demo" ] || [ ! -d "$demo" ]; then
        echo "demo: $demo exists and is not a directory; set REDPAK_DEMO_DIR elsewhere" >&2
        exit 1
    fi
    if [ ! -e "$demo/$marker" ] && [ -n "$(ls -A "$demo")" ]; then
        echo "demo: $demo is not empty and was not made by this script;" \
             "remove it or set REDPAK_DEMO_DIR elsewhere" >&2
        exit 1
    fi
    if ! rm -rf -- "$demo" 2>/dev/null || [ -e "$demo" ]; then
        echo "demo: cannot remove the previous demo in $demo (made by another user?);" \
             "remove it or set REDPAK_DEMO_DIR elsewhere" >&2
        exit 1
    fi
fi
mkdir -p -- "$demo"
: > "$demo/$marker"

bold="" plain=""
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; fi
run() {
    printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"
    "$@"
}

run "$redconf" create --root "$demo/system"
run "$redconf" create --config demo/app/redpak.yaml "$demo/system/app"
run "$redconf" tree "$demo"
run "$redconf" check "$demo"
run "$redconf" mergeconfig --expand "$demo/system/app"
printf '\ndemo: the family is in %s (remove it with: rm -rf %s)\n' "$demo" "$demo"
