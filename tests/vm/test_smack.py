"""SMACK enforced for real: the SMACK lane (`tools/vm/lane smack`) boots a kernel built with
SMACK (tools/vm/build-smack-kernel) and runs this file there. Labels are read from outside
the node (/proc/PID/attr/current, the xattr of the node's root), with and without a new user
namespace, and a label the kernel refuses stops the launch (fail closed). On a host without
SMACK these tests skip, except in the lane (REDPAK_VM_LANE=smack), where that is a failure:
the lane fails when SMACK is left out of lsm= (tools/vm/lane smack --broken)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "privileged"))

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the SMACK tests need root", allow_module_level=True)

from test_controls import DRIVER, HOST, ctltool, fam, finish, spawn  # noqa: E402,F401

IN_LANE = os.environ.get("REDPAK_VM_LANE") == "smack"
if not HOST.smack and not IN_LANE:
    pytest.skip("this kernel has no SMACK: these tests run in the SMACK lane "
                "(tools/vm/lane smack)", allow_module_level=True)


def label_of(pid: int | str) -> str:
    return Path(f"/proc/{pid}/attr/current").read_text().rstrip("\0\n")


def node_processes(pid1: int) -> list[int]:
    """The node's pid 1 and its children, as the host numbers them (from /proc/PID/stat:
    the lane's small kernel has no /proc/PID/task/TID/children)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid1:
                kids.append(int(entry.name))
    return [pid1, *sorted(kids)]


def wait_for_program(pid1: int) -> list[int]:
    for _ in range(100):
        procs = node_processes(pid1)
        if len(procs) > 1:
            return procs
        time.sleep(0.05)
    raise AssertionError(f"the node's program never started below pid {pid1}")


def test_the_kernel_runs_smack():
    assert "smack" in Path("/sys/kernel/security/lsm").read_text().split(","), \
        Path("/sys/kernel/security/lsm").read_text()
    assert HOST.smack and os.path.isdir("/sys/fs/smackfs")
    assert label_of("self") == "_"


@pytest.mark.parametrize("share_user", ["disabled", "enabled"], ids=["new-userns", "host-userns"])
def test_label_is_applied_and_seen_from_outside_the_node(fam, share_user):
    leaf = fam.make(root={"smack": "RpApp", "share_user": share_user})
    before = label_of("self")
    proc, out = spawn(leaf, "busy", "60")
    try:
        procs = wait_for_program(proc.pid)
        program = procs[1:]            # below the node's pid 1
        assert {pid: label_of(pid) for pid in program} == {pid: "RpApp" for pid in program}
        # the node's own root (a tmpfs redpak made) carries the label too
        assert os.getxattr(f"/proc/{program[0]}/root", "security.SMACK64") == b"RpApp"
        userns = os.readlink(f"/proc/{program[0]}/ns/user")
        assert (userns != os.readlink("/proc/self/ns/user")) == (share_user == "disabled")
    finally:
        proc.kill()
        finish(proc, out)
    assert label_of("self") == before      # the launcher's thread got its own label back


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    """tools/probe.c built static (it prints what it reads)."""
    d = tmp_path_factory.mktemp("probe")
    d.chmod(0o755)
    out = d / "probe"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out),
                    str(Path(__file__).resolve().parents[2] / "tools" / "probe.c")], check=True)
    return out


def test_label_from_the_command_line_wins_over_the_config(fam, probe):
    leaf = fam.make(root={"smack": "RpApp"},
                    root_exports=[{"mode": "RestrictedFile", "mount": "/probe",
                                   "path": str(probe)}])
    r = subprocess.run([sys.executable, "-m", "redpak.cli.redwrap", "--redpath", leaf,
                        "--smack", "RpOther", "--", "/probe", "read", "/proc/self/attr/current"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("read /proc/self/attr/current RpOther"), r.stdout


def _without_mac_admin(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """The driver run by root without CAP_MAC_ADMIN (dropped from the bounding set, so
    exec gives it to nobody): SMACK refuses to relabel."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.run([setpriv, "--bounding-set", "-mac_admin", sys.executable, str(driver),
                           *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("share_user", ["disabled", "enabled"], ids=["new-userns", "host-userns"])
@pytest.mark.parametrize("optional", [False, True], ids=["required", "optional"])
def test_label_the_kernel_refuses_stops_the_launch(fam, tmp_path, share_user, optional):
    """Fail closed: SMACK is there but refuses the label (no CAP_MAC_ADMIN): the program
    never runs, even when the label is marked optional (that is only for kernels without
    SMACK)."""
    leaf = fam.make(root={"smack": "RpApp", "smack-optional": optional,
                          "share_user": share_user})
    r = _without_mac_admin([leaf, "/ctl", "write", "/tmp/ran"], tmp_path)
    assert "LAUNCHERROR smack" in r.stdout, r.stdout + r.stderr
    assert "RpApp" in r.stdout and "CAP_MAC_ADMIN" in r.stdout, r.stdout
    assert "write /tmp/ran" not in r.stdout


def test_unlabelled_node_runs_with_the_callers_label(fam):
    leaf = fam.make()
    proc, out = spawn(leaf, "busy", "60")
    try:
        procs = wait_for_program(proc.pid)
        assert {label_of(pid) for pid in procs} == {label_of("self")}
    finally:
        proc.kill()
        finish(proc, out)
