"""cgroup v2 enforced for real: the v2 lane (`tools/vm/lane v2`) boots Debian's kernel with
cgroup_no_v1=all and runs this file, with the cgroup tests of tests/privileged/test_controls.py,
in the guest. On a host whose cgroups are not pure v2 these tests skip (saying so), except in
the lane itself (REDPAK_VM_LANE=v2), where a hybrid layout is a failure: that is how the lane
fails when v2 is turned off (tools/vm/lane v2 --broken)."""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "privileged"))

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the cgroup v2 tests need root", allow_module_level=True)

from test_controls import (  # noqa: E402,F401  (fam and ctltool are fixtures)
    HOST,
    INTO_CGROUP,
    CgroupTrace,
    ctltool,
    fam,
    finish,
    redpak_dirs,
    spawn,
)

from redpak import _core, api  # noqa: E402

WANTED = {"cpu", "cpuset", "io", "memory", "pids"}
V2 = next((h for h in HOST.hierarchies if h.version == 2), None)
PURE = HOST.mode == "v2" and V2 is not None and WANTED <= V2.controllers
IN_LANE = os.environ.get("REDPAK_VM_LANE") == "v2"
if not PURE and not IN_LANE:
    pytest.skip(f"this host's cgroups are {HOST.mode}, not pure v2 with {sorted(WANTED)}: "
                "these tests run in the v2 lane (tools/vm/lane v2)", allow_module_level=True)


def v2_path(pid: int) -> str:
    """The process's cgroup, from the host's side: the single "0::PATH" line of v2."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("0::"), lines
    return lines[0][3:]


def test_the_kernel_gives_pure_cgroup_v2_with_its_controllers():
    mounts = [ln.split() for ln in Path("/proc/self/mounts").read_text().splitlines()]
    assert not [m for m in mounts if m[2] == "cgroup"], "a cgroup v1 hierarchy is mounted"
    assert HOST.mode == "v2", HOST.hierarchies
    assert WANTED <= set(Path(V2.mount, "cgroup.controllers").read_text().split())


def test_node_runs_in_v2_cgroups_holding_the_familys_limits_and_none_survives(fam):
    leaf = fam.make(root={"cgroups": {"pids": {"max": "50"}, "cpu": {"max": "50000"}}},
                    leaf={"cgroups": {"mem": {"max": "256M", "swap_max": "0"}}})
    proc, out = spawn(leaf, "busy", "60")
    try:
        time.sleep(0.5)
        path = v2_path(proc.pid)
        parts = path.split("/")
        assert parts[-3].startswith(f"redpak-sys{fam.tag}-"), path
        assert parts[-2].startswith(f"redpak-app{fam.tag}-"), path
        assert parts[-1].startswith("run-"), path
        run_dir = Path(V2.dir_of(path))
        assert str(proc.pid) in run_dir.joinpath("cgroup.procs").read_text().split()
        sys_dir, app_dir = run_dir.parent.parent, run_dir.parent
        assert sys_dir.joinpath("pids.max").read_text().strip() == "50"
        assert sys_dir.joinpath("cpu.max").read_text().strip() == "50000 100000"
        assert app_dir.joinpath("memory.max").read_text().strip() == str(256 << 20)
        assert app_dir.joinpath("memory.swap.max").read_text().strip() == "0"
        # the family's directories delegate the controllers down to the node's cgroup
        assert {"pids", "memory", "cpu"} <= set(
            app_dir.joinpath("cgroup.subtree_control").read_text().split())
        # the kernel accounts the node's processes there
        assert int(run_dir.joinpath("pids.current").read_text()) >= 2   # pid 1 + program
    finally:
        proc.kill()
        finish(proc, out)
    assert redpak_dirs(fam.tag) == []


def test_concurrent_launches_get_sibling_v2_cgroups_in_the_shared_family(fam):
    leaf = fam.make(leaf={"cgroups": {"pids": {"max": "60"}}})
    node = api.Node(leaf)
    a = spawn(leaf, "busy", "60", node=node)
    b = spawn(leaf, "busy", "60", node=node)
    try:
        time.sleep(0.5)
        pa, pb = v2_path(a[0].pid), v2_path(b[0].pid)
        assert pa != pb and pa.rsplit("/", 1)[0] == pb.rsplit("/", 1)[0]
        a[0].kill()
        finish(*a)
        assert not os.path.exists(V2.dir_of(pa))
        assert os.path.isdir(V2.dir_of(pb.rsplit("/", 1)[0]))     # b still runs there
    finally:
        for proc, out in (a, b):
            if proc.returncode is None:
                proc.kill()
                finish(proc, out)
    assert redpak_dirs(fam.tag) == []


# ---- CLONE_INTO_CGROUP: the node's first process starts in its cgroup ----------------------

@pytest.mark.parametrize("userns", [True, False], ids=["user-namespace", "caller-user"])
def test_node_starts_in_its_v2_cgroup_through_clone_into_cgroup(fam, tmp_path, userns):
    """The launcher clones the node's first process with CLONE_INTO_CGROUP on its own run
    cgroup: it never runs an instruction in the caller's cgroup, nobody writes a
    cgroup.procs file, and the cgroup namespace is still rooted at the node's cgroup."""
    assert _core.features() & _core.FEAT_INTO_CGROUP, "the guest's 6.1 kernel has it"
    leaf = fam.make(root={"cgroups": {"pids": {"max": "50"}},
                          **({} if userns else {"share_user": "enabled"})},
                    leaf={"cgroups": {"mem": {"max": "256M"}}})
    t = CgroupTrace(leaf, tmp_path)
    assert "STATUS 0" in t.status, t.out
    assert len(t.clones) == 1 and INTO_CGROUP.search(t.clones[0]), t.clones
    assert ("CLONE_NEWUSER" in t.clones[0]) == userns, t.clones
    assert int(t.result(t.clones[0])) > 0, t.clones
    assert t.procs_writes == [] and t.tasks_writes == [], (t.procs_writes, t.tasks_writes)
    assert t.inside == ["0::/"], t.inside


@pytest.mark.parametrize("refuse", [errno.EINVAL, errno.E2BIG], ids=["refused", "pre-5.7"])
def test_clone_into_cgroup_refused_falls_back_to_cgroup_procs(fam, tmp_path, refuse):
    """A kernel that refuses CLONE_INTO_CGROUP (EINVAL: at clone, the launch clones again
    without it) or has no cgroup field in clone_args (E2BIG: the probe says so, the launch
    never asks): the launcher writes the node's pid to its run cgroup's cgroup.procs
    before releasing it, as before 5.7, and the launch works the same."""
    leaf = fam.make(root={"cgroups": {"pids": {"max": "50"}}},
                    leaf={"cgroups": {"mem": {"max": "256M"}}})
    t = CgroupTrace(leaf, tmp_path, refuse=refuse)
    assert "STATUS 0" in t.status, t.out
    tried = [ln for ln in t.clones if INTO_CGROUP.search(ln)]
    plain = [ln for ln in t.clones if not INTO_CGROUP.search(ln)]
    assert [t.result(ln).split()[:2] for ln in tried] == (
        [["-1", "EINVAL"]] if refuse == errno.EINVAL else []), t.clones
    assert len(plain) == 1 and int(t.result(plain[0])) > 0, t.clones
    assert len(t.procs_writes) == 1, t.procs_writes
    path, pid = t.procs_writes[0]
    assert "/run-" in path and pid == t.result(plain[0]), (t.procs_writes, plain)
    assert t.inside == ["0::/"], t.inside


def test_legacy_clone_attaches_through_cgroup_procs(fam, tmp_path):
    """Without clone3 (forced off, as on kernels before 5.3), the node's first process is
    made by clone(2), which cannot place it (nor make the time namespace: the slow path,
    where it unshares and forks): the launcher writes its pid to its run cgroup's
    cgroup.procs before releasing it, and the launch works the same."""
    leaf = fam.make(root={"cgroups": {"pids": {"max": "50"}}})
    t = CgroupTrace(leaf, tmp_path, legacy=True)
    assert "STATUS 0" in t.status, t.out
    assert t.clones == [] and len(t.legacy) == 1, (t.clones, t.legacy)
    pid = t.result(t.legacy[0])
    assert int(pid) > 0 and len(t.procs_writes) == 1, (t.legacy, t.procs_writes)
    assert "/run-" in t.procs_writes[0][0] and t.procs_writes[0][1] == pid, t.procs_writes
    assert t.inside == ["0::/"], t.inside
