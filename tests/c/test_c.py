"""Runs the C unit tests (tests/c/test_plan.c) built with ASan/UBSan on a rich sample plan."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from redpak.planfile import (
    Caps,
    CgroupAction,
    CgroupOp,
    EnvAction,
    EnvDep,
    EnvOp,
    FileDep,
    Join,
    LandlockRule,
    LaunchPlan,
    Mount,
    MountFlag,
    MountKind,
    Ns,
    Smack,
)

HERE = Path(__file__).resolve().parent

SAMPLE = LaunchPlan(
    namespaces=Ns.USER | Ns.MNT | Ns.PID | Ns.NET | Ns.IPC | Ns.UTS,
    joins=(Join(Ns.NET, "/proc/1/ns/net"),),
    uid_map="0 1000 1\n", gid_map="0 1000 1\n", setgroups_deny=True, uid=0, gid=0,
    hostname="node", chdir="/home/me", umask=0o027, die_with_parent=True, new_session=True,
    caps=Caps(0x3000, 0x3000, 0x1000, 0x1000, 0x1000),
    mounts=(Mount(MountKind.BIND, "/usr", "/usr", MountFlag.RDONLY),
            Mount(MountKind.BIND_FILE, "/etc/resolv.conf", "/etc/resolv.conf",
                  MountFlag.RDONLY | MountFlag.OPTIONAL),
            Mount(MountKind.DIR, "/var", mode=0o755), Mount(MountKind.SYMLINK, "/bin", "usr/bin"),
            Mount(MountKind.TMPFS, "/tmp", mode=0o1777), Mount(MountKind.PROC, "/proc"),
            Mount(MountKind.DEV, "/dev"), Mount(MountKind.MQUEUE, "/dev/mqueue"),
            Mount(MountKind.DATA, "/etc/passwd", data=b"root:x:0:0::/:/bin/sh\n",
                  flags=MountFlag.RDONLY),
            Mount(MountKind.EXECFD, "/etc/x", "echo hi", MountFlag.RDONLY),
            Mount(MountKind.FD, "/etc/fd", fd=5),
            Mount(MountKind.LOCK, "/var/lock", flags=MountFlag.LOCK_EXCL)),
    env=(EnvOp(EnvAction.SET, "PATH", "/bin"), EnvOp(EnvAction.UNSET, "X"),
         EnvOp(EnvAction.INHERIT, "TERM"), EnvOp(EnvAction.EXECFD, "Y", "echo y")),
    keep_fds=(5,), execfd_timeout_ms=5000, seccomp=(b"\x06\0\0\0\0\0\xff\x7f",),
    landlock=(LandlockRule("/usr", 7),),
    cgroup=(CgroupOp(CgroupAction.MKDIR, "/sys/fs/cgroup/x"),
            CgroupOp(CgroupAction.WRITE, "/sys/fs/cgroup/x", "pids.max", "10")),
    smack=Smack("App", True), cacheable=True, caller_uid=1000, caller_gid=1000,
    file_deps=(FileDep("/etc/redpak.yaml", 1, 2, 3, 4),),
    env_deps=(EnvDep("HOME", "/root"), EnvDep("NOPE", None)))


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    if not shutil.which("gcc") or not shutil.which("make"):
        pytest.skip("gcc and make are needed for the C tests")
    out = tmp_path_factory.mktemp("ctest")
    subprocess.run(["make", "-s", "-C", str(HERE), f"OUT={out}"], check=True)
    return out / "test_plan"


def test_plan_validation_under_sanitizers(binary, tmp_path):
    plan = tmp_path / "sample.plan"
    plan.write_bytes(SAMPLE.encode())
    r = subprocess.run([str(binary), str(plan)], capture_output=True, text=True, timeout=600,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout


def test_sample_round_trips():
    data = SAMPLE.encode()
    assert LaunchPlan.decode(data) == SAMPLE
    assert LaunchPlan.decode(data).encode() == data
