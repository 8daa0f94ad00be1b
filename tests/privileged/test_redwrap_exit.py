"""The native redwrap's early exit: with a pid 1 and no cgroup, it returns the program's
status as soon as pid 1 sends it, without waiting for the node's teardown. Checked from
the host: statuses, who reaps pid 1 (a subreaper adopts it only if redwrap did not), /proc,
locks and cgroup directories.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from test_redwrap import (  # noqa: F401  (fixtures used by name)
    _pids_cgroup,
    caller,
    children,
    export,
    family,
    finish,
    in_pid_ns,
    ok,
    program_pid,
    read_until,
    root_caller,
    root_family,
    user_caller,
    value,
)

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the redwrap tests need root (namespaces, mounts, a test user)",
                allow_module_level=True)

# Runs redwrap as a child subreaper: a node's pid 1 that redwrap left to exit on its own
# is re-parented here, and its exit code is reported. With RPT_LOCK set, tries that lock
# right after redwrap returned, before pid 1 is reaped. /usr/bin/python3: the test user
# may not read the venv.
SUBREAPER = r"""
import ctypes, fcntl, os, subprocess, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
status = subprocess.run(sys.argv[1:]).returncode
lock = "-"
if os.environ.get("RPT_LOCK"):
    with open(os.environ["RPT_LOCK"]) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            lock = "free"
        except BlockingIOError:
            lock = "held"
adopted = []
while True:
    try:
        _, wstatus = os.waitpid(-1, 0)
    except ChildProcessError:
        break
    adopted.append(str(os.waitstatus_to_exitcode(wstatus)))
print("redwrap", status, "lock", lock, "adopted", " ".join(adopted), flush=True)
"""


KILLED = -signal.SIGKILL  # os.waitstatus_to_exitcode() of a process killed by SIGKILL


def _subreaper_argv(fam, *args: str) -> list[str]:
    return ["/usr/bin/python3", "-c", SUBREAPER, *fam.argv(*args, opts=("-v",))]


def _report(stdout: str) -> tuple[int, str, list[int]]:
    """(redwrap's status, lock state, exit codes of the processes it left) from SUBREAPER."""
    words = value(stdout.splitlines(), "redwrap").split(" ")
    adopted = words[words.index("adopted") + 1:]
    return int(words[0]), words[2], [int(x) for x in adopted if x]


@pytest.mark.parametrize("args,status", [
    (("exit", "0"), 0), (("exit", "7"), 7), (("kill", "9"), 128 + 9), (("kill", "15"), 128 + 15),
])
def test_status_is_exact_and_sent_before_pid1_is_reaped(family, args, status):
    ok(family.run("probe", "exit", "0"))  # the rest run from the cache
    r = family.caller.run(_subreaper_argv(family, "probe", *args))
    assert "using the cached plan" in r.stderr, r.stderr
    # redwrap returned the program's status and left pid 1 to exit on its own (with the
    # same code, or SIGKILL: its parent-death signal, if redwrap was faster than its _exit)
    assert _report(r.stdout) in ((status, "-", [status]), (status, "-", [KILLED])), \
        r.stdout + r.stderr


def _running(ns: str) -> list[int]:
    """Processes of pid namespace ns that have not fully exited. pid 1, re-parented to the
    host's init, may stay a zombie until that init reaps it (seconds, on some VMs): by then
    its exit killed and reaped the rest of the namespace, and the mounts are gone."""
    alive = []
    for pid in in_pid_ns(ns):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(pid)
    return alive


def test_no_process_of_the_node_outlives_redwrap(family, tmp_path):
    ok(family.run("probe", "exit", "0"))
    out = tmp_path / "out"
    # a file, not a pipe: waiting for its EOF would wait for pid 1's exit
    with open(out, "w") as stdout, open(tmp_path / "err", "w") as stderr:
        proc = family.caller.popen(family.argv("probe", "readlink", "/proc/self/ns/pid",
                                               "exit", "3"), stdout=stdout, stderr=stderr)
        status = proc.wait(timeout=60)
    ns = value(out.read_text().splitlines(), "readlink /proc/self/ns/pid")
    assert status == 3, (tmp_path / "err").read_text()
    deadline = time.monotonic() + 1.0
    while _running(ns) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _running(ns), f"processes of the node survived in {ns}: {_running(ns)}"


def test_orphans_keep_the_full_wait(family):
    """An orphan still running when the program ends is killed by pid 1's exit, after the
    teardown: redwrap waits for that (pid 1 sends no early status)."""
    ok(family.run("probe", "exit", "0"))
    r = family.caller.run(_subreaper_argv(family, "probe", "readlink", "/proc/self/ns/pid",
                                          "orphan", "exit", "3"))
    lines = r.stdout.splitlines()
    assert value(lines, "orphan"), r.stdout + r.stderr
    assert _report(r.stdout) == (3, "-", []), r.stdout + r.stderr
    assert not in_pid_ns(value(lines, "readlink /proc/self/ns/pid"))


def test_locks_are_free_when_redwrap_returns(family):
    locks = family.hostdir("locks")

    def change(d):
        export(d, "Public", "/locks", str(locks))
        export(d, "Lock", "/locks/app.lock")
    family.edit(family.app, change)
    ok(family.run("probe", "exit", "0"))
    for _ in range(5):
        r = family.caller.run(_subreaper_argv(family, "probe", "exit", "0"),
                              env={"RPT_LOCK": str(locks / "app.lock")})
        assert _report(r.stdout) in ((0, "free", [0]), (0, "free", [KILLED])), \
            r.stdout + r.stderr


def test_killed_pid1_falls_back_to_its_wait_status(family):
    ok(family.run("probe", "exit", "0"))
    proc = family.caller.popen(family.argv("probe", "info", "sleep", "30"))
    try:
        read_until(proc, "sigpipe")
        os.kill(children(proc.pid)[0], signal.SIGKILL)  # no status sent: EOF on the pipe
    finally:
        status, _, err = finish(proc)
    assert status == 128 + signal.SIGKILL, err


def test_cgroups_keep_the_full_wait(root_family):
    fam = root_family
    fam.edit(fam.app, lambda d: d["config"].update(cgroups={"pids": {"max": 50}}))
    ok(fam.run("probe", "exit", "0"))
    proc = fam.caller.popen(_subreaper_argv(fam, "probe", "info", "sleep", "1", "exit", "5"))
    try:
        read_until(proc, "sigpipe")
        cgroup: Path = _pids_cgroup(program_pid(proc.pid))  # the launch's own
    finally:
        _, out, err = finish(proc)
    assert cgroup.parent.name.startswith("redpak-app"), cgroup
    # redwrap reaped pid 1 itself, then removed the cgroups before returning
    assert _report(out) == (5, "-", []), out + err
    assert not cgroup.exists() and not cgroup.parent.exists()


def test_python_api_path_waits_for_the_whole_node(family):
    """The cold path (Python, no early status) still reaps pid 1 itself."""
    r = family.caller.run(_subreaper_argv(family, "probe", "exit", "6"))
    assert "rebuilding the plan" in r.stderr, r.stderr
    assert _report(r.stdout) == (6, "-", []), r.stdout + r.stderr


def test_plain_launcher_unchanged_without_pid_namespace(root_family):
    """Without a pid namespace there is no pid 1 and no early status: redwrap reaps the
    program itself. (Root: /proc can be mounted only by the pid namespace's user ns.)"""
    fam = root_family

    def root_change(d):
        for key in [k for k in d["config"] if k.startswith("share_")]:
            del d["config"][key]  # share_all: disabled would forbid sharing below
    fam.edit(fam.sys, root_change)
    fam.edit(fam.app, lambda d: d["config"].update(share_pid="enabled", share_user="enabled"))
    ok(fam.run("probe", "exit", "0"))
    r = fam.caller.run(_subreaper_argv(fam, "probe", "readlink", "/proc/self/ns/pid",
                                       "exit", "4"))
    assert "using the cached plan" in r.stderr, r.stderr
    assert value(r.stdout.splitlines(), "readlink /proc/self/ns/pid") == \
        os.readlink("/proc/self/ns/pid")
    assert _report(r.stdout) == (4, "-", []), r.stdout + r.stderr
