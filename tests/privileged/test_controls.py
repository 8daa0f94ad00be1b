"""Resource and access controls for real: node families with cgroups, seccomp, Landlock and
SMACK settings are compiled and launched, and helpers_controls/ctltool.c pushes against
each limit from inside. What it sees is the kernel's answer; nothing is taken from redpak's
own report. cgroup limits run through whichever cgroup version carries the controller (v1
hierarchies on a hybrid host); the v2 file layout is also checked on a fake cgroup2 root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the controls tests need root (namespaces, cgroups)", allow_module_level=True)

import redpak.build as plan_mod  # noqa: E402
from redpak import _core, api  # noqa: E402
from redpak.controls import LL_RO, Hierarchy, Host, probe_host  # noqa: E402
from redpak.errors import LaunchError  # noqa: E402
from redpak.expand import expand_family  # noqa: E402
from redpak.family import merge_family  # noqa: E402
from redpak.node import load_family  # noqa: E402
from redpak.plan import Identity, LaunchOptions, build_plan, compile_plan  # noqa: E402
from redpak.planfile import (  # noqa: E402
    Caps,
    CgroupAction,
    EnvAction,
    EnvOp,
    LandlockRule,
    LaunchPlan,
    Mount,
    MountFlag,
    MountKind,
    Ns,
)

HELPER = Path(__file__).resolve().parent / "helpers_controls" / "ctltool.c"
CGROUP_FS = "/sys/fs/cgroup"
HOST = probe_host()


def _public_dir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


@pytest.fixture(scope="session")
def ctltool() -> Path:
    """helpers_controls/ctltool.c built static."""
    d = _public_dir("rp-ctl-")
    out = d / "ctltool"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(HELPER)], check=True,
                   capture_output=True)
    out.chmod(0o755)
    yield out
    shutil.rmtree(d, ignore_errors=True)


def redpak_dirs(tag: str) -> list[str]:
    """cgroup directories of this test's families (their names hold the tag)."""
    found = []
    for top, dirs, _files in os.walk(CGROUP_FS):
        for d in dirs:
            if d.startswith("redpak-") and tag in d:
                found.append(os.path.join(top, d))
    return found


def remove_dirs(paths: list[str]) -> None:
    for path in sorted(paths, key=len, reverse=True):
        for sub in sorted((os.path.join(t, d) for t, ds, _ in os.walk(path) for d in ds),
                          key=len, reverse=True):
            os.rmdir(sub)
        os.rmdir(path)


class Family:
    """A two-node family (sys -> app) in a scratch directory; the aliases hold a tag that
    names this test's cgroups."""

    def __init__(self, top: Path, ctl: Path):
        self.top, self.ctl = top, ctl
        self.tag = uuid.uuid4().hex[:6]
        self.count = 0

    def make(self, root: dict | None = None, leaf: dict | None = None,
             root_exports: list | None = None, leaf_exports: list | None = None,
             admin: dict | None = None) -> str:
        """Writes a fresh family; returns the leaf's path."""
        self.count += 1
        base = self.top / f"f{self.count}"
        sys_dir, app_dir = base / "sys", base / "sys" / "app"
        exports = [{"mode": "RestrictedFile", "mount": "/ctl", "path": str(self.ctl)},
                   {"mode": "Procfs", "mount": "/proc"}, {"mode": "Devfs", "mount": "/dev"},
                   {"mode": "Tmpfs", "mount": "/tmp"}] + (root_exports or [])
        self._node(sys_dir, f"sys{self.tag}", {"share_all": "disabled",
                                                "die-with-parent": "enabled", **(root or {})},
                   exports)
        self._node(app_dir, f"app{self.tag}", leaf or {}, leaf_exports or [], admin)
        return str(app_dir)

    @staticmethod
    def _node(path: Path, alias: str, config: dict, exports: list, admin=None) -> None:
        (path / "etc").mkdir(parents=True)
        doc = {"headers": {"alias": alias}, "config": config, "exports": exports}
        (path / "etc" / "redpak.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        if admin is not None:
            doc = {"headers": {"alias": f"admin-of-{alias}"}, "config": admin}
            (path / "etc" / "redpak-admin.yaml").write_text(yaml.safe_dump(doc))
        (path / ".rednode.yaml").write_text(f"realpath: {path}\ninfo: test\ntimestamp: 0\n"
                                            "state: Enable\n")


@pytest.fixture
def fam(ctltool):
    """A Family factory; fails the test if any of its cgroups survive it (and removes them)."""
    top = _public_dir("rp-ctlfam-")
    f = Family(top, ctltool)
    yield f
    left = redpak_dirs(f.tag)
    remove_dirs(left)
    shutil.rmtree(top, ignore_errors=True)
    assert not left, f"cgroup directories survived the test: {left}"


def spawn(leaf: str, *args: str, pass_fds=(), node: api.Node | None = None):
    """Starts /ctl ARGS (or an absolute program) in the node with stdout on a temp file."""
    argv = list(args) if args and args[0].startswith("/") else ["/ctl", *args]
    out = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the caller)
    saved = os.dup(1)
    try:
        os.dup2(out.fileno(), 1)
        proc = (node or api.Node(leaf)).spawn(argv, pass_fds=pass_fds)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return proc, out


def finish(proc, out, timeout: float = 60) -> tuple[int, list[str]]:
    timer = threading.Timer(timeout, lambda: os.kill(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        status = proc.wait()
    finally:
        timer.cancel()
    out.seek(0)
    lines = out.read().decode(errors="replace").splitlines()
    out.close()
    return status, lines


def run(leaf: str, *args: str, pass_fds=(), timeout: float = 60) -> tuple[int, list[str]]:
    proc, out = spawn(leaf, *args, pass_fds=pass_fds)
    return finish(proc, out, timeout)


def answers(lines: list[str], what: str) -> dict[str, str]:
    """{name: result} of the "WHAT NAME RESULT" lines."""
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == what:
            out[parts[1]] = parts[2]
    return out


def host_cgroups(pid: int) -> dict[str, str]:
    """/proc/PID/cgroup seen from the host: {hierarchy key: path}."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, key, path = line.split(":", 2)
        out[key] = path
    return out


def needs_v1(controller: str) -> None:
    h = HOST.hierarchy_for(controller)
    if h is None:
        pytest.skip(f"this host has no {controller} cgroup controller")


# ---- cgroups: limits enforced by the kernel -----------------------------------------------

def test_fork_bomb_stops_at_pids_max(fam):
    leaf = fam.make(leaf={"cgroups": {"pids": {"max": "40"}}})
    status, lines = run(leaf, "forkbomb")
    assert status == 0, lines
    forked, errno = lines[0].split()[1], lines[0].split()[3]
    # the node's pid 1 and the program count too
    assert (int(forked), errno) == (38, "EAGAIN"), lines


def test_child_limit_above_its_parents_is_capped_by_the_parent(fam):
    leaf = fam.make(root={"cgroups": {"pids": {"max": "20"}}},
                    leaf={"cgroups": {"pids": {"max": "1000"}}})
    status, lines = run(leaf, "forkbomb")
    assert status == 0
    assert lines[0].split()[1] == "18", lines


def test_memory_hog_is_oom_killed_and_redwrap_reports_it(fam):
    leaf = fam.make(leaf={"cgroups": {"mem": {"max": "64M", "swap_max": "0"}}})
    cli = [sys.executable, "-m", "redpak.cli.redwrap", "--redpath", leaf, "--", "/ctl"]
    small = subprocess.run(cli + ["hog", "16"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert small.returncode == 0 and "hogged" in small.stdout, small.stderr
    big = subprocess.run(cli + ["hog", "256"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert big.returncode == 128 + signal.SIGKILL, big.stderr
    assert "hogged" not in big.stdout
    assert "touched 16" in big.stdout and "touched 64" not in big.stdout
    assert (f"redwrap: the program was killed by the OOM killer (mem.max 64M of node "
            f"'app{fam.tag}')") in big.stderr


def test_oom_is_reported_to_api_callers(fam):
    leaf = fam.make(root={"cgroups": {"mem": {"max": "48M", "swap_max": "0"}}},
                    leaf={"cgroups": {"mem": {"max": "1G"}}})
    proc, out = spawn(leaf, "hog", "200")
    status, _ = finish(proc, out)
    assert status == 128 + signal.SIGKILL
    assert proc.oom == f"mem.max 48M of node 'sys{fam.tag}'"   # the parent's caps the child's


def test_cpu_max_caps_a_busy_loop(fam):
    capped = fam.make(leaf={"cgroups": {"cpu": {"max": "20000 100000"}}})
    free = fam.make(leaf={"cgroups": {"pids": {"max": "100"}}})
    share = {}
    for name, leaf in (("capped", capped), ("free", free)):
        status, lines = run(leaf, "busy", "1.5")
        assert status == 0
        words = lines[0].split()
        share[name] = float(words[2]) / float(words[4])
    # The cap holds whatever the load; the free loop only has to get clearly more than the
    # capped one (on a loaded machine it gets less than a whole CPU, not less than 20%).
    assert share["capped"] < 0.3, share
    assert share["free"] > 1.5 * share["capped"], share


def test_cpusets_nest_and_the_program_runs_on_the_leafs_cpus(fam):
    if os.cpu_count() < 2:
        pytest.skip("needs two CPUs")
    leaf = fam.make(root={"cgroups": {"cpuset": {"cpus": "0-1"}}},
                    leaf={"cgroups": {"cpuset": {"cpus": "1-3"}}})
    status, lines = run(leaf, "status")
    assert status == 0, lines
    assert "status Cpus_allowed_list:\t1" in lines, lines   # 1-3 within the parent's 0-1
    mems = Path("/proc/self/status").read_text().split("Mems_allowed_list:")[1].split()[0]
    assert f"status Mems_allowed_list:\t{mems}" in lines     # the caller's, copied


# ---- cgroups: layout, sharing, removal -------------------------------------------------------

def test_node_runs_in_its_own_cgroup_below_the_family_and_none_survives(fam, probe):
    leaf = fam.make(root={"cgroups": {"pids": {"max": "50"}}},
                    leaf={"cgroups": {"mem": {"max": "256M"}}},
                    root_exports=[{"mode": "RestrictedFile", "mount": "/probe",
                                   "path": str(probe)}])
    proc, out = spawn(leaf, "/probe", "sleep", "30")
    try:
        time.sleep(0.3)
        seen = host_cgroups(proc.pid)
        for key in ("pids", "memory"):
            parts = seen[key].split("/")
            assert parts[-3].startswith(f"redpak-sys{fam.tag}-"), seen[key]
            assert parts[-2].startswith(f"redpak-app{fam.tag}-"), seen[key]
            assert parts[-1].startswith("run-")
        pids_dir = HOST.hierarchy_for("pids").dir_of(seen["pids"])
        assert Path(pids_dir, "..", "..", "pids.max").read_text().strip() == "50"
        mem_dir = HOST.hierarchy_for("memory").dir_of(seen["memory"])
        assert Path(mem_dir, "..", "memory.limit_in_bytes").read_text().strip() == str(256 << 20)
        assert len(redpak_dirs(fam.tag)) == 4
    finally:
        proc.kill()
        finish(proc, out)
    assert redpak_dirs(fam.tag) == []


def test_concurrent_launches_share_the_family_cgroups(fam, probe):
    leaf = fam.make(leaf={"cgroups": {"pids": {"max": "60"}}},
                    root_exports=[{"mode": "RestrictedFile", "mount": "/probe",
                                   "path": str(probe)}])
    node = api.Node(leaf)
    a = spawn(leaf, "/probe", "sleep", "30", node=node)
    b = spawn(leaf, "/probe", "sleep", "30", node=node)
    try:
        time.sleep(0.3)
        pa, pb = host_cgroups(a[0].pid)["pids"], host_cgroups(b[0].pid)["pids"]
        assert pa != pb and pa.rsplit("/", 1)[0] == pb.rsplit("/", 1)[0]
        a[0].kill()
        finish(*a)
        leaf_dir = HOST.hierarchy_for("pids").dir_of(pb.rsplit("/", 1)[0])
        assert os.path.isdir(leaf_dir)          # b still runs there
        assert not os.path.exists(HOST.hierarchy_for("pids").dir_of(pa))
    finally:
        for proc, out in (a, b):
            if proc.returncode is None:
                proc.kill()
                finish(proc, out)
    assert redpak_dirs(fam.tag) == []


def test_many_concurrent_launches_of_one_family(fam):
    leaf = fam.make(root={"cgroups": {"pids": {"max": "200"}}},
                    leaf={"cgroups": {"mem": {"max": "128M"}}})
    node = api.Node(leaf)
    node.plan()
    results: list = []

    def worker():
        for _ in range(8):
            proc = node.spawn(["/ctl", "status"])
            results.append((proc.wait(), proc.cleanup_error))

    with open(os.devnull, "w") as null:
        saved = os.dup(1)
        os.dup2(null.fileno(), 1)
        try:
            threads = [threading.Thread(target=worker) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    assert results == [(0, None)] * 48


def test_launcher_killed_leaves_nothing_once_the_family_runs_again(fam, tmp_path):
    leaf = fam.make(leaf={"cgroups": {"pids": {"max": "30"}}})
    driver = tmp_path / "driver.py"
    driver.write_text("import os, sys\nfrom redpak import api\n"
                      "p = api.Node(sys.argv[1]).spawn(['/ctl', 'busy', '30'])\n"
                      "print(p.pid, flush=True)\np.wait()\n")
    child = subprocess.Popen([sys.executable, str(driver), leaf], stdout=subprocess.PIPE,
                             text=True)
    node_pid = int(child.stdout.readline())
    child.kill()                      # the launcher dies: nobody cleans up after it ...
    child.wait()
    for _ in range(100):              # ... and die-with-parent takes the node along
        if not os.path.exists(f"/proc/{node_pid}"):
            break
        time.sleep(0.05)
    assert redpak_dirs(fam.tag)       # its directories are left, empty
    assert run(leaf, "status")[0] == 0
    assert redpak_dirs(fam.tag) == []  # the next launch of the family removed them


def test_failed_launch_leaves_no_cgroup(fam):
    leaf = fam.make(leaf={"cgroups": {"pids": {"max": "30"}}})
    with pytest.raises(LaunchError) as err:
        run(leaf, "/no/such/program")
    assert err.value.step == "exec"
    assert redpak_dirs(fam.tag) == []


def test_cgroup_write_the_kernel_refuses_leaves_no_cgroup(fam):
    # no machine has these CPUs: the write fails after the family's directories were made
    # (found by the cgroup v2 VM lane, where the family's directories survived)
    leaf = fam.make(root={"cgroups": {"pids": {"max": "30"}, "cpuset": {"cpus": "0-8191"}}})
    with pytest.raises(LaunchError) as err:
        run(leaf, "status")
    assert err.value.step == "cgroup" and "cpuset.cpus" in str(err.value), err.value
    assert redpak_dirs(fam.tag) == []


def test_plan_compiled_in_another_cgroup_is_stale(fam, tmp_path):
    needs_v1("pids")
    leaf = fam.make(leaf={"cgroups": {"pids": {"max": "30"}}})
    plan = tmp_path / "plan"
    plan.write_bytes(build_plan(leaf).plan.encode())
    mine = HOST.hierarchy_for("pids").dir_of(HOST.hierarchy_for("pids").caller)
    other = Path(mine) / f"rptest-{fam.tag}"
    other.mkdir()
    try:
        driver = tmp_path / "driver.py"
        driver.write_text(
            "import os, sys\nfrom redpak import _core\nfrom redpak.errors import LaunchError\n"
            "open(sys.argv[2] + '/cgroup.procs', 'w').write(str(os.getpid()))\n"
            "try:\n    print('STATUS', _core.run(open(sys.argv[1], 'rb').read(), ['/ctl']))\n"
            "except LaunchError as err:\n    print('LAUNCHERROR', err.step, err)\n")
        r = subprocess.run([sys.executable, str(driver), str(plan), str(other)],
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.stdout.startswith("LAUNCHERROR deps"), r.stdout + r.stderr
        assert "recompile" in r.stdout
    finally:
        other.rmdir()


def test_program_cannot_change_cgroup_limits_nor_plant_a_release_agent(fam):
    needs_v1("pids")
    pids = HOST.hierarchy_for("pids")
    exports = [{"mode": "Restricted", "mount": pids.mount, "path": pids.mount}]
    leaf = fam.make(root={"seccomp": {"profile": "default"}, "cgroups": {"pids": {"max": "44"}}},
                    leaf={"cgroups": {"pids": {"max": "33"}}}, root_exports=exports)
    plan = build_plan(leaf).plan
    own = next(op.path for op in plan.cgroup
               if op.action is CgroupAction.ATTACH and op.path.startswith(pids.mount))
    parent = os.path.dirname(own)
    status, lines = run(leaf, "cgescape", "cgroup", "put", f"{own}/pids.max", "max",
                        "put", f"{parent}/pids.max", "max",
                        "put", f"{pids.mount}/cgroup.procs", "0",
                        "put", f"{pids.mount}/release_agent", "/tmp/x",
                        "put", f"{own}/notify_on_release", "1")
    assert status == 0, lines
    got = answers(lines, "cgescape")
    assert got == {"unshare": "EPERM", "mount-v1-rdma": "EPERM", "mount-v1": "EPERM",
                   "release_agent": "ENOENT"}, got
    put = answers(lines, "put")
    assert len(put) == 5 and set(put.values()) == {"EROFS"}, put
    assert Path(pids.mount, "release_agent").read_text() in ("", "\n")
    # the program's own view: a cgroup namespace rooted at its own cgroup
    inside = {ln.split(":", 2)[1]: ln.split(":", 2)[2] for ln in lines if ln.startswith("cgroup ")}
    assert inside["pids"] == "/", inside


def test_without_seccomp_a_mounted_hierarchy_shows_only_the_nodes_own_cgroup(fam):
    """With `profile: none`, a node whose root is the host's can mount a v1 hierarchy in a
    nested user namespace: it shows the node's own run-N cgroup (no limit of the family, no
    sub-cgroup), and release_agent cannot be set there."""
    needs_v1("pids")
    leaf = fam.make(root={"seccomp": {"profile": "none"}, "cgroups": {"pids": {"max": "44"}}},
                    leaf={"cgroups": {"pids": {"max": "33"}}})
    status, lines = run(leaf, "cgescape")
    assert status == 0, lines
    got = answers(lines, "cgescape")
    assert got["unshare"] == "ok" and got["mount-v1"] == "ok", got
    assert got["release_agent"] in ("ENOENT", "EPERM"), got
    assert (got["root-pids.max"], got["subdirs"]) == ("max", "0"), got


# ---- the v2 layout, on a fake cgroup2 root ---------------------------------------------------

def test_v2_files_and_values_written_by_the_launcher(fam, tmp_path):
    """cgroup v2 is not usable on a hybrid host: check what the launcher writes where, on
    a tmpfs standing in for the cgroup2 root (enforcement is tested through v1 above)."""
    root = tmp_path / "cg2"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(root)], check=True)
    try:
        leaf = fam.make(root={"cgrouproot": str(root),
                              "cgroups": {"pids": {"max": "64"}, "mem": {"max": "256M"}}},
                        leaf={"cgroups": {"mem": {"max": "64M", "low": "8M", "oom_group": True},
                                          "cpu": {"max": "20000", "weight_nice": "5"},
                                          "cpuset": {"cpus": "0"}}})
        fake = Host(hierarchies=(Hierarchy(2, str(root), "", frozenset(
            {"cpuset", "cpu", "io", "memory", "pids"}), "/"),),
            read=lambda p: "cpuset cpu io memory pids", isdir=os.path.isdir)
        fam_cfg = expand_family(merge_family(load_family(leaf)), os.environ, 0, 0,
                                os.getpid()).family
        plan = compile_plan(fam_cfg, Identity(0, 0, 0, 0, True), LaunchOptions(),
                            source_kind=plan_mod._source_kind, host=fake).plan
        writes = [op for op in plan.cgroup if op.action is CgroupAction.WRITE]
        for op in writes:      # interface files a real cgroup2 directory would have
            os.makedirs(op.path, exist_ok=True)
            Path(op.path, op.file).touch()
        with pytest.raises(LaunchError) as err:
            _core.run(plan.encode(), ["/ctl"])
        # everything written, then the node's own cgroup made and joined (which a tmpfs
        # cannot do: it has no cgroup.procs)
        found = re.search(r"(/\S+/run-\d+\.[0-9a-f]+)/cgroup\.procs", str(err.value))
        assert err.value.step == "cgroup" and found, err.value
        run_dir = found.group(1)
        assert os.path.basename(run_dir).startswith("run-")
        assert not os.path.exists(run_dir)        # removed with the failed launch
        final = {}
        for op in writes:
            final[(op.path, op.file)] = op.value
        for (path, file), value in final.items():
            assert Path(path, file).read_text() == value, (path, file)
        leaf_dir = next(op.path for op in plan.cgroup if op.action is CgroupAction.ATTACH)
        assert os.path.dirname(run_dir) == leaf_dir
        table = {(os.path.basename(p).split("-")[1][:3], f): v for (p, f), v in final.items()
                 if p != str(root)}
        assert table[("sys", "pids.max")] == "64"
        assert table[("sys", "memory.max")] == str(256 << 20)
        assert table[("app", "memory.max")] == str(64 << 20)
        assert table[("app", "memory.low")] == str(8 << 20)
        assert table[("app", "memory.oom.group")] == "1"
        assert table[("app", "cpu.max")] == "20000 100000"
        assert table[("app", "cpu.weight.nice")] == "5"
        assert table[("app", "cpuset.cpus")] == "0"
        assert final[(str(root), "cgroup.subtree_control")] == "+cpu +cpuset +memory +pids"
        assert table[("app", "cgroup.subtree_control")] == "+cpu +cpuset +memory +pids"
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


# ---- seccomp ---------------------------------------------------------------------------------

SYSCALLS = ["unshare", "unshare-net", "clone-ns", "setns", "mount", "umount", "open_tree",
            "fsopen", "keyctl", "add_key", "bpf", "ptrace", "kexec", "init_module",
            "perf_event_open", "userfaultfd", "personality"]


def seccomp_run(fam, seccomp: dict | None, **root):
    leaf = fam.make(root={**root, **({"seccomp": seccomp} if seccomp else {})})
    args = ["status", "tiocsti"]
    for name in SYSCALLS + ["unshare-files", "personality-query", "getpid", "clone3"]:
        args += ["sys", name]
    args += ["int80", "getpid", "int80", "unshare"]  # last: it may enter a user namespace
    status, lines = run(leaf, *args)
    assert status == 0, lines
    return lines


def test_default_seccomp_profile_denies_what_a_node_must_not_reach(fam):
    lines = seccomp_run(fam, {"profile": "default"})
    assert "status Seccomp:\t2" in lines and "status NoNewPrivs:\t1" in lines
    got = answers(lines, "sys")
    for name in SYSCALLS:
        assert got[name] == "EPERM", (name, got)
    assert answers(lines, "tiocsti") == {"plain": "EPERM", "bit32": "EPERM", "tiocgwinsz": "ok"}
    assert answers(lines, "int80") == {"getpid": "EPERM", "unshare": "EPERM"}
    assert got["clone3"] == "ENOSYS"           # libc falls back to clone
    for name in ("unshare-files", "personality-query", "getpid"):
        assert got[name] == "ok", (name, got)


def test_without_the_filter_the_same_calls_reach_the_kernel(fam):
    # a new session: else the node shares the caller's terminal and gets the TIOCSTI filter
    lines = seccomp_run(fam, None, **{"new-session": "enabled"})
    assert "status Seccomp:\t0" in lines
    got = answers(lines, "sys")
    assert got["unshare"] == "ok" and got["keyctl"] == "ok"
    assert answers(lines, "tiocsti")["plain"] == "ok"
    assert answers(lines, "tiocsti")["bit32"] == "ok"
    if os.uname().machine == "x86_64":
        assert answers(lines, "int80")["getpid"] == "ok"


def test_seccomp_errno_deny_and_allow_lists(fam):
    lines = seccomp_run(fam, {"profile": "default", "errno": "EOWNERDEAD", "deny": ["getpid"],
                              "allow": ["keyctl"]})
    got = answers(lines, "sys")
    assert got["mount"] == got["bpf"] == got["getpid"] == "EOWNERDEAD"
    assert got["keyctl"] == "ok"


def test_a_child_cannot_allow_what_its_ancestor_denies(fam):
    leaf = fam.make(root={"seccomp": {"profile": "default"}},
                    leaf={"seccomp": {"profile": "none", "allow": ["keyctl", "unshare"]}})
    status, lines = run(leaf, "sys", "keyctl", "sys", "unshare")
    assert answers(lines, "sys") == {"keyctl": "EPERM", "unshare": "EPERM"}


# ---- Landlock ----------------------------------------------------------------------------------

@pytest.fixture
def dirs():
    made = [_public_dir(f"rp-ll{i}-") for i in range(3)]
    for d in made:
        (d / "file").write_text("x")
    yield made
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


def test_landlock_limits_the_program_to_its_exports(fam, dirs):
    ro, rw, outside = dirs
    exports = [{"mode": "Restricted", "mount": "/ro", "path": str(ro)},
               {"mode": "Public", "mount": "/rw", "path": str(rw)}]
    results = {}
    for enabled in (True, False):
        leaf = fam.make(root={"landlock": enabled}, root_exports=exports)
        fd = os.open(outside, os.O_RDONLY | os.O_DIRECTORY)
        try:
            status, lines = run(leaf, "read", "/ro/file", "write", "/rw/new", "write",
                                "/ro/new", "readat", str(fd), "file", pass_fds=(fd,))
        finally:
            os.close(fd)
        assert status == 0, lines
        results[enabled] = {**answers(lines, "read"), **answers(lines, "write"),
                            **answers(lines, "readat")}
    on, off = results[True], results[False]
    assert on["/ro/file"] == "ok" and on["/rw/new"] == "ok"
    assert on["/ro/new"] in ("EROFS", "EACCES")
    assert on["file"] == "EACCES"       # a host directory reached through a passed fd
    assert off["file"] == "ok"          # ... which nothing else stops


def test_landlock_read_only_rule_is_enforced_on_a_writable_mount(probe, hostdir, ctltool):
    """The read-only grant itself, where the mount would allow the write."""
    mounts = (Mount(MountKind.BIND_FILE, "/ctl", str(ctltool), MountFlag.RDONLY),
              Mount(MountKind.BIND, "/data", str(hostdir)))
    base = dict(namespaces=Ns.MNT | Ns.PID, mounts=mounts,
                env=(EnvOp(EnvAction.SET, "PATH", "/"),), caps=Caps())
    for rules, want in (((), "ok"), ((LandlockRule("/", LL_RO),), "EACCES")):
        plan = LaunchPlan(landlock=rules, **base)
        out = tempfile.TemporaryFile()
        saved = os.dup(1)
        try:
            os.dup2(out.fileno(), 1)
            status = _core.run(plan.encode(), ["/ctl", "write", "/data/new"])
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        out.seek(0)
        assert status == 0
        assert answers(out.read().decode().splitlines(), "write") == {"/data/new": want}
        (hostdir / "new").unlink(missing_ok=True)


DRIVER = """
import sys
from redpak import api
from redpak.errors import LaunchError
try:
    print("STATUS", api.Node(sys.argv[1]).run(sys.argv[2:]), flush=True)
except LaunchError as err:
    print("LAUNCHERROR", err.step, err, flush=True)
"""


def traced(args: list[str], tmp_path: Path, *strace: str) -> subprocess.CompletedProcess:
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.run(["strace", "-f", "-qq", *strace, sys.executable, str(driver), *args],
                          capture_output=True, text=True, timeout=120, check=False)


# ---- how the node enters its cgroups, from the launcher's syscalls --------------------------

CG_DRIVER = """
import ctypes, os, struct, sys
from redpak import api
from redpak.controls import AUDIT_ARCH
from redpak.errors import LaunchError
refuse = int(sys.argv[1])
if refuse:  # clone3 with the 88-byte clone_args (those with a cgroup field) fails: errno refuse
    insns = [(0x20, 0, 0, 4), (0x15, 0, 5, AUDIT_ARCH[os.uname().machine]), (0x20, 0, 0, 0),
             (0x15, 0, 3, 435), (0x20, 0, 0, 24), (0x15, 0, 1, 88),
             (0x06, 0, 0, 0x00050000 | refuse), (0x06, 0, 0, 0x7FFF0000)]
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in insns))
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    prog = Prog(len(insns), ctypes.addressof(code))
    if ctypes.CDLL(None, use_errno=True).prctl(22, 2, ctypes.byref(prog), 0, 0):
        raise OSError(ctypes.get_errno(), "seccomp")
try:
    if sys.argv[2] == "legacy":  # clone3 forced off: the legacy clone(2)
        from redpak import _core
        from redpak.plan import build_plan
        pid = _core.spawn(build_plan(sys.argv[3]).plan.encode(), sys.argv[4:],
                          disable=_core.FEAT_CLONE3)
        print("STATUS", _core.wait(pid), flush=True)
        _core.finish(pid)
    else:
        print("STATUS", api.Node(sys.argv[3]).run(sys.argv[4:]), flush=True)
except LaunchError as err:
    print("LAUNCHERROR", err.step, err, flush=True)
"""

INTO_CGROUP = re.compile(r"CLONE_INTO_CGROUP|0x200000000")


class CgroupTrace:
    """`/ctl cgroup` launched through the API under `strace -f -ff -y` (clone3 and write of
    every process); with `refuse` (an errno), a seccomp filter installed first makes the
    kernel refuse each clone3 whose clone_args has a cgroup field (88 bytes), as a kernel
    before 5.7 (E2BIG) or one refusing CLONE_INTO_CGROUP (EINVAL) would; with `legacy`,
    clone3 is forced off (the launcher's legacy clone(2) path)."""

    def __init__(self, leaf: str, tmp_path: Path, refuse: int = 0, legacy: bool = False):
        if not shutil.which("strace"):
            pytest.skip("strace is not installed")
        driver, log = tmp_path / "cgdriver.py", tmp_path / "cgtrace"
        driver.write_text(CG_DRIVER)
        r = subprocess.run(["strace", "-f", "-ff", "-qq", "-y", "-o", str(log),
                            "-e", "trace=clone,clone3,write", sys.executable, str(driver),
                            str(refuse), "legacy" if legacy else "api", leaf, "/ctl", "cgroup"],
                           capture_output=True, text=True, timeout=120, check=False)
        self.out = r.stdout + r.stderr
        self.status = r.stdout
        self.lines = [ln for f in sorted(tmp_path.glob("cgtrace.*"))
                      for ln in f.read_text().splitlines()]
        # the node's clone3 calls: those making namespaces (not the features probes)
        self.clones = [ln for ln in self.lines if ln.startswith("clone3({") and "CLONE_NEW" in ln]
        # the launcher's clone(2), not C1's (CLONE_PARENT) nor the program's (CLONE_VM)
        self.legacy = [ln for ln in self.lines if ln.startswith("clone(")
                       and not re.search(r"CLONE_(PARENT|VM|THREAD)\b", ln)]
        self.procs_writes = re.findall(r'^write\(\d+<([^>]*/cgroup\.procs)>, "(\d+)"',
                                       "\n".join(self.lines), re.M)
        self.tasks_writes = re.findall(r'^write\(\d+<([^>]*/tasks)>, "0", 1\) = 1',
                                       "\n".join(self.lines), re.M)
        self.inside = [ln.split(" ", 1)[1] for ln in r.stdout.splitlines()
                       if ln.startswith("cgroup ")]

    @staticmethod
    def result(line: str) -> str:
        return line.rsplit(") = ", 1)[-1]


def test_on_v1_hierarchies_the_child_joins_through_tasks_not_clone_into_cgroup(fam, tmp_path):
    """CLONE_INTO_CGROUP places a process in a cgroup v2 only: with the controllers on v1
    (this hybrid host), the node's first process is cloned plainly and writes "0" to the
    tasks file of its own cgroup of each hierarchy, before anything else; nothing writes a
    cgroup.procs file, and the program sees its own cgroup as the namespace's root."""
    needs_v1("pids")
    needs_v1("memory")
    if HOST.hierarchy_for("pids").version != 1 or HOST.hierarchy_for("memory").version != 1:
        pytest.skip("pids and memory are on cgroup v2 here: the v2 lane tests this host")
    leaf = fam.make(root={"cgroups": {"pids": {"max": "50"}}},
                    leaf={"cgroups": {"mem": {"max": "256M"}}})
    t = CgroupTrace(leaf, tmp_path)
    assert "STATUS 0" in t.status, t.out
    assert len(t.clones) == 1 and not INTO_CGROUP.search(t.clones[0]), t.clones
    assert int(t.result(t.clones[0])) > 0, t.clones
    assert t.procs_writes == [], t.procs_writes
    joined = sorted(h.mount for h in HOST.hierarchies for path in t.tasks_writes
                    if path.startswith(h.mount + "/"))
    assert joined == sorted({HOST.hierarchy_for("pids").mount,
                             HOST.hierarchy_for("memory").mount}), t.tasks_writes
    assert all("/run-" in path for path in t.tasks_writes), t.tasks_writes
    keys = {ln.split(":", 2)[1]: ln.split(":", 2)[2] for ln in t.inside}
    assert keys.get("pids") == "/" and keys.get("memory") == "/", t.inside


def test_kernel_without_landlock_is_an_explicit_error(fam, tmp_path):
    leaf = fam.make(root={"landlock": True})
    r = traced([leaf, "/ctl", "write", "/tmp/x"], tmp_path, "-o", "/dev/null",
               "-e", "inject=landlock_create_ruleset:error=ENOSYS")
    assert "LAUNCHERROR landlock" in r.stdout, r.stdout + r.stderr
    assert "this kernel has no Landlock" in r.stdout
    assert "write /tmp/x" not in r.stdout


# ---- SMACK -------------------------------------------------------------------------------------

def test_smack_label_without_smack_fails_closed(fam, tmp_path):
    if HOST.smack:
        pytest.skip("this kernel has SMACK")
    leaf = fam.make(root={"smack": "RpApp"})
    assert "smack 'RpApp'\n" in build_plan(leaf).plan.dump()
    log = tmp_path / "trace"
    r = traced([leaf, "/ctl", "write", "/tmp/x"], tmp_path, "-y", "-o", str(log),
               "-e", "trace=openat,write")
    assert "LAUNCHERROR smack" in r.stdout, r.stdout + r.stderr
    assert "SMACK is not enabled in this kernel" in r.stdout and "'RpApp'" in r.stdout
    assert "write /tmp/x" not in r.stdout       # the program never ran
    trace = log.read_text()
    # what the launcher did: open the attr file through the host's procfs to write the label
    assert ('"thread-self/attr/smack/current", O_WRONLY|O_CLOEXEC) = -1 ENOENT'
            in trace), trace


def test_optional_smack_label_runs_unlabelled(fam):
    if HOST.smack:
        pytest.skip("this kernel has SMACK")
    # new-session: no TIOCSTI filter, so the program's status shows no seccomp at all
    leaf = fam.make(root={"smack": "RpApp", "smack-optional": True, "new-session": "enabled"})
    compiled = build_plan(leaf)
    assert compiled.plan.smack.optional
    assert any("runs unlabelled" in w for w in compiled.warnings)
    status, lines = run(leaf, "status")
    assert status == 0 and "status Seccomp:\t0" in lines


def test_smack_option_on_the_command_line_is_never_optional(fam):
    if HOST.smack:
        pytest.skip("this kernel has SMACK")
    leaf = fam.make(root={"smack": "RpApp", "smack-optional": True})
    r = subprocess.run([sys.executable, "-m", "redpak.cli.redwrap", "--redpath", leaf,
                        "--smack", "Other", "--", "/ctl", "status"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 125 and "'Other'" in r.stderr and "status" not in r.stdout


def test_smack_label_never_lands_in_a_file_that_is_not_procfs(fam, tmp_path):
    """If the attr file opened is anything but procfs (here: strace makes the open return
    fd 1, the program's stdout), nothing is written and the launch fails."""
    leaf = fam.make(root={"smack": "RpApp"})
    r = traced([leaf, "/ctl", "write", "/tmp/x"], tmp_path, "-o", "/dev/null",
               "-P", "thread-self/attr/smack/current", "-e", "trace=openat",
               "-e", "inject=openat:retval=1")
    assert "LAUNCHERROR smack" in r.stdout and "not a procfs file" in r.stdout, r.stdout
    assert "RpApp" not in r.stdout.split("LAUNCHERROR")[0]


def smack_trace(log: Path) -> tuple[int, int, list[tuple[int, str]]]:
    """(launcher pid, node pid or 0, [(pid, line)]) of an `strace -f` log: the launcher is the
    process whose clone3 made the node's namespaces (not the feature probes', which fail)."""
    lines = []
    for line in log.read_text().splitlines():
        pid, _, rest = line.partition(" ")
        if pid.isdigit():
            lines.append((int(pid), rest.strip()))
    clones = [(pid, rest) for pid, rest in lines
              if rest.startswith("clone3({") and not re.search(r"\) = -1 E\w+", rest)]
    if not clones:
        return 0, 0, lines
    m = re.search(r"= (-?\d+)", clones[0][1].rsplit(")", 1)[-1])
    node = int(m.group(1)) if m and int(m.group(1)) > 0 else 0
    return clones[0][0], node, lines


def attr_write_opens(lines: list[tuple[int, str]]) -> list[tuple[int, int]]:
    """(index, pid) of every open of thread-self/attr/smack/current for writing."""
    return [(i, pid) for i, (pid, rest) in enumerate(lines)
            if '"thread-self/attr/smack/current", O_WRONLY' in rest]


def test_smack_label_is_set_by_the_launcher_before_clone_with_a_new_user_namespace(fam, tmp_path):
    """SMACK checks CAP_MAC_ADMIN in the initial user namespace: the launcher, still there,
    opens its own thread's attr file before clone3 and the node's process never does."""
    if HOST.smack:
        pytest.skip("this kernel has SMACK")
    leaf = fam.make(root={"smack": "RpApp", "smack-optional": True})
    log = tmp_path / "trace"
    r = traced([leaf, "/ctl", "status"], tmp_path, "-o", str(log),
               "-e", "trace=openat,write,clone3")
    assert "STATUS 0" in r.stdout, r.stdout + r.stderr       # optional: ran unlabelled
    launcher, node, lines = smack_trace(log)
    clone_at = next(i for i, (pid, rest) in enumerate(lines)
                    if pid == launcher and rest.startswith("clone3({") and "CLONE_NEW" in rest)
    assert "CLONE_NEWUSER" in lines[clone_at][1]
    opens = attr_write_opens(lines)
    assert opens, log.read_text()
    assert all(pid == launcher for _, pid in opens), opens   # never the node's processes
    assert all(i < clone_at for i, _ in opens), (opens, clone_at)
    assert node and not any(pid == node for pid, rest in lines if "attr/smack" in rest)


def test_smack_label_without_smack_fails_in_the_launcher_before_any_clone(fam, tmp_path):
    """Not optional, new user namespace: the launcher fails closed before the node exists."""
    if HOST.smack:
        pytest.skip("this kernel has SMACK")
    leaf = fam.make(root={"smack": "RpApp"})
    log = tmp_path / "trace"
    r = traced([leaf, "/ctl", "write", "/tmp/x"], tmp_path, "-o", str(log),
               "-e", "trace=openat,write,clone3")
    assert "LAUNCHERROR smack" in r.stdout, r.stdout + r.stderr
    assert "SMACK is not enabled in this kernel" in r.stdout and "'RpApp'" in r.stdout
    launcher, node, lines = smack_trace(log)
    assert not launcher and not node, log.read_text()       # no clone3 made any namespace
    assert attr_write_opens(lines)


def test_smack_label_is_written_by_the_node_without_a_new_user_namespace(fam, tmp_path):
    """Sharing the caller's (initial) user namespace, as root: the node's process writes its
    own label after clone, as before, and the launcher leaves its thread alone."""
    if HOST.smack:
        pytest.skip("this kernel has SMACK")
    leaf = fam.make(root={"smack": "RpApp", "smack-optional": True, "share_user": "enabled"})
    log = tmp_path / "trace"
    r = traced([leaf, "/ctl", "status"], tmp_path, "-o", str(log),
               "-e", "trace=openat,write,clone3")
    assert "STATUS 0" in r.stdout, r.stdout + r.stderr
    launcher, node, lines = smack_trace(log)
    clone_at = next(i for i, (pid, rest) in enumerate(lines)
                    if pid == launcher and rest.startswith("clone3({") and "CLONE_NEW" in rest)
    assert "CLONE_NEWUSER" not in lines[clone_at][1]
    opens = attr_write_opens(lines)
    assert opens, log.read_text()
    assert launcher not in {pid for _, pid in opens}, opens
    assert all(i > clone_at for i, _ in opens)


# ---- privileges --------------------------------------------------------------------------------

def test_setuid_root_binary_inside_the_node_gains_nothing(fam, probe, hostdir):
    suid = hostdir / "suid-probe"
    shutil.copy(probe, suid)
    os.chown(suid, 0, 0)
    suid.chmod(0o4755)
    assert suid.stat().st_mode & stat.S_ISUID
    leaf = fam.make(root={"set-user": "65534", "set-group": "65534",
                          "seccomp": {"profile": "default"}},
                    root_exports=[{"mode": "Public", "mount": "/suid", "path": str(hostdir)}])
    status, lines = run(leaf, "/suid/suid-probe", "info")
    assert status == 0, lines
    uid = next(ln for ln in lines if ln.startswith("uid "))
    assert uid == "uid 65534 65534 65534"
    for field in ("CapEff", "CapPrm"):
        line = next(ln for ln in lines if ln.startswith(field + ":"))
        assert line.split(":")[1].strip() == "0000000000000000"


def test_capabilities_across_the_family_are_applied_exactly(fam, probe):
    leaf = fam.make(root={"capabilities": [{"cap": "all", "add": False},
                                           {"cap": "cap_net_bind_service", "add": True},
                                           {"cap": "cap_chown", "add": True}]},
                    leaf={"capabilities": [{"cap": "cap_chown", "add": False}]},
                    root_exports=[{"mode": "RestrictedFile", "mount": "/probe",
                                   "path": str(probe)}])
    status, lines = run(leaf, "/probe", "info")
    assert status == 0, lines
    caps = {ln.split(":")[0]: ln.split(":")[1].strip() for ln in lines if ln.startswith("Cap")}
    want = f"{1 << 10:016x}"                      # cap_net_bind_service only
    assert caps == {"CapInh": "0" * 16, "CapPrm": want, "CapEff": want, "CapBnd": want,
                    "CapAmb": "0" * 16}
