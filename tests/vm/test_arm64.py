"""The ARM64 lane's checks (tools/vm/lane arm64): what the C core's programs, cross-built
static for aarch64, printed in an arm64 guest (qemu -M virt). tests/vm/arm64_lane.py built
them and compiled the plans for aarch64 on the host; tools/vm/arm64-guest.sh ran them.
Outside the lane (no REDPAK_VM_ARM64_RESULTS) there are no guest results to check."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

RESULTS = os.environ.get("REDPAK_VM_ARM64_RESULTS")
if not RESULTS:
    pytest.skip("needs an arm64 guest's results: run tools/vm/lane arm64",
                allow_module_level=True)


def case(name: str) -> tuple[int, list[str]]:
    d = Path(RESULTS) / "results"
    rc = d / f"{name}.rc"
    assert rc.exists(), f"the guest did not run case {name}"
    return int(rc.read_text()), (d / f"{name}.out").read_text().splitlines()


def fields(lines: list[str], prefix: str) -> dict[str, str]:
    return {ln.split()[1]: ln.split()[2] for ln in lines
            if ln.startswith(prefix + " ") and len(ln.split()) >= 3}


def test_c_plan_tests_pass_on_aarch64():
    rc, out = case("c_plan")
    assert rc == 0 and any(ln.endswith(" 0 failed") for ln in out), out


def test_redwrap_runs_natively_and_reports_its_exit_statuses():
    rc, out = case("redwrap_help")
    assert rc == 0 and out[0].startswith("usage: redwrap --redpath NODE"), out
    rc, out = case("redwrap_badopt")
    assert rc == 125 and "unknown option '--no-such-option'" in out[0], out
    # no cached plan (and no Python in the guest): the cold path is tried and fails cleanly
    rc, out = case("redwrap_cold")
    assert rc == 125 and "cold path: cannot run /nonexistent/python3" in out[0], out


def test_node_gets_its_own_pid_and_mount_namespaces_and_no_capabilities():
    rc, out = case("info")
    assert rc == 0, out
    assert "pid 2" in out and "ppid 1" in out, out      # below the node's own pid 1
    assert "uid 0 0 0" in out and "CapEff:\t0000000000000000" in out, out
    assert "nnp 1" in out, out
    rc, out = case("mounts")
    assert rc == 0, out
    points = {ln.split()[5]: ln for ln in out if ln.startswith("mount ")}
    assert " - tmpfs " in points["/"], points["/"]       # a fresh root, not the guest's
    assert points["/ctl"].split()[6].startswith("ro,"), points["/ctl"]
    assert " - proc " in points["/proc"] and "/host" not in points, points


def test_exports_are_the_only_host_files_visible():
    rc, out = case("files")
    assert rc == 0, out
    assert fields(out, "write") == {"/tmp/x": "ok", "/x": "ok"}
    assert fields(out, "read") == {"/ctl": "ok", "/bin/sh": "ENOENT"}


def test_seccomp_with_the_arm64_table_denies_and_allows_by_name():
    rc, out = case("seccomp")
    assert rc == 0, out
    assert "status Seccomp:\t2" in out, out
    got = fields(out, "sys")
    for name in ("unshare", "mount", "bpf", "keyctl", "ptrace", "kexec", "init_module"):
        assert got[name] == "EPERM", (name, got)
    assert got["getpid"] == "ok" and got["unshare-files"] == "ok", got
    rc, out = case("noseccomp")                          # the same calls, no filter
    assert rc == 0 and "status Seccomp:\t0" in out, out
    assert fields(out, "sys") == {"keyctl": "ok", "getpid": "ok"}


def test_pids_max_stops_a_fork_bomb_in_the_arm64_guest():
    rc, out = case("forkbomb")
    assert rc == 0 and out[0] == "forked 38 errno EAGAIN", out


def test_exit_statuses_of_the_program_come_back():
    assert case("exit7")[0] == 7
    assert case("killed")[0] == 128 + signal.SIGKILL
    rc, out = case("notfound")
    assert rc == 125 and "exec /no/such/program: No such file or directory" in out[0], out
