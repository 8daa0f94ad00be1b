"""cgroup v2 enforced for real: the v2 lane (`tools/vm/lane v2`) boots Debian's kernel with
cgroup_no_v1=all and runs this file, with the cgroup tests of tests/privileged/test_controls.py,
in the guest. On a host whose cgroups are not pure v2 these tests skip (saying so), except in
the lane itself (REDPAK_VM_LANE=v2), where a hybrid layout is a failure: that is how the lane
fails when v2 is turned off (tools/vm/lane v2 --broken)."""

from __future__ import annotations

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
    ctltool,
    fam,
    finish,
    redpak_dirs,
    spawn,
)

from redpak import api  # noqa: E402

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
