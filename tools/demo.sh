#!/usr/bin/env bash
# Demo of redpak's node model: builds a two-node family (a system node and an application
# node inside it) under ${REDPAK_DEMO_DIR:-/var/tmp/redpak-demo}, shows it with redconf
# tree, check and mergeconfig, then runs programs in the application node with redwrap
# (the first launch compiles and caches the plan, the next ones run it without Python).
# Run `sudo ./tools/setup.sh` once before.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
redconf="$repo/.venv/bin/redconf"
redwrap="$repo/.venv/bin/redwrap"
dnf="$repo/.venv/bin/redwrap-dnf"
demo=${REDPAK_DEMO_DIR:-/var/tmp/redpak-demo}
marker=.redpak-demo

for tool in "$redconf" "$redwrap"; do
    if [ ! -x "$tool" ]; then
        echo "demo: $tool not found: run 'sudo ./tools/setup.sh' first" >&2
        exit 1
    fi
done
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
    local shown="" arg q="'"
    for arg in "$@"; do  # shown as it could be typed: single-quoted when needed
        case "$arg" in
            ""|*[!A-Za-z0-9_/.:=@%+,-]*) arg="'${arg//$q/$q\\$q$q}'" ;;
        esac
        shown+="${shown:+ }$arg"
    done
    printf '\n%s$ %s%s\n' "$bold" "$shown" "$plain"
    "$@"
}

run "$redconf" create --root "$demo/system"
run "$redconf" create --config demo/app/redpak.yaml "$demo/system/app"
run "$redconf" tree "$demo"
run "$redconf" check "$demo"
run "$redconf" mergeconfig --expand "$demo/system/app"

# Programs in the application node: /bin is the host's /usr/bin, read-only.
app="$demo/system/app"
run "$redwrap" --redpath "$app" -- id
run "$redwrap" --redpath "$app" -- hostname
run "$redwrap" --redpath "$app" -- cat /etc/passwd
run "$redwrap" --redpath "$app" -- ls -a /nodes /nodes/app
run "$redwrap" --redpath "$app" -- sh -c 'echo "cwd: $(pwd)  umask: $(umask)"; env | sort'
run "$redwrap" --redpath "$app" -- sh -c 'echo written > /nodes/app/data/hello; ls -l /nodes/app/data'
run "$redwrap" --verbose --redpath "$app" -- cat /nodes/app/data/hello
run "$redwrap" --redpath "$app" -- sh -c 'exit 7' || printf 'exit status: %s\n' "$?"
# A package, end to end: built here with rpmbuild, published in a local repository with
# createrepo_c, installed into the application node with redwrap-dnf (its files land in
# the node's usr/, recorded in the node's own rpm database), then run inside the node.
if [ "$(id -u)" -eq 0 ]; then
    rpmbuild -bb --quiet --define "_topdir $demo/rpmbuild" demo/rpms/hello-redpak.spec >/dev/null
    mkdir -p "$demo/repo" "$app/etc/yum.repos.d"
    cp "$demo"/rpmbuild/RPMS/noarch/*.rpm "$demo/repo/"
    createrepo_c --quiet "$demo/repo"
    printf '[demo]\nname=redpak demo packages\nbaseurl=file://%s/repo\nenabled=1\ngpgcheck=0\n' \
        "$demo" > "$app/etc/yum.repos.d/demo.repo"
    run "$dnf" --redpath "$app" repolist
    run "$dnf" --redpath "$app" -y install hello-redpak
    run "$dnf" --redpath "$app" list --installed
    run ls -l "$app/usr/bin"
    run "$redwrap" --redpath "$app" -- hello-redpak
else
    printf '\ndemo: installing packages needs root: the package part is skipped\n'
fi
printf '\ndemo: the family is in %s (remove it with: rm -rf %s)\n' "$demo" "$demo"
