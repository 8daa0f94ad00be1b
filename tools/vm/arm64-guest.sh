# Run in the ARM64 guest by tools/vm/lane arm64 (busybox sh, in the initramfs): the C unit
# tests, redwrap's native checks and the launch cases listed in $1/bin/cases, each one's
# output in $1/results/NAME.out and its exit status in $1/results/NAME.rc.
d=$1
r=$d/results
mkdir -p "$r"
one() {   # NAME COMMAND...
    name=$1; shift
    "$@" > "$r/$name.out" 2>&1
    echo $? > "$r/$name.rc"
    echo "arm64 case $name: status $(cat "$r/$name.rc")"
}
echo "arm64 guest: $(uname -m) $(uname -r)"
one c_plan "$d/bin/test_plan" "$d/bin/sample.plan"
one redwrap_help "$d/bin/redwrap" --help
one redwrap_badopt "$d/bin/redwrap" --no-such-option
REDPAK_CACHE_DIR=/tmp/rpcache REDPAK_PYTHON=/nonexistent/python3 \
    one redwrap_cold "$d/bin/redwrap" --redpath "$d/bin/families/f1/sys/app" -- /ctl status
while read -r name plan args; do
    # shellcheck disable=SC2086
    one "$name" "$d/bin/rplaunch" "$plan" -- $args
done < "$d/bin/cases"
sync
