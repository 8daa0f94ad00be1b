"""The C core for real: hand-written LaunchPlans run a static probe program inside nodes.

Everything is checked from inside with tools/probe.c (ids, caps, mounts, fds ...), never
from redpak's own report. Needs root; an unprivileged subset runs as a throwaway user.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from rp_testutil import status_field, value

from redpak.errors import LaunchError, PlanError
from redpak.planfile import (
    Caps,
    EnvAction,
    EnvOp,
    Join,
    LaunchPlan,
    Mount,
    MountFlag,
    MountKind,
    Ns,
)

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the C core tests need root (namespaces, mounts)", allow_module_level=True)

from redpak import _core

REPO = Path(__file__).resolve().parents[2]
ALL_FEATURES = (_core.FEAT_OPENAT2 | _core.FEAT_MOUNT_SETATTR | _core.FEAT_CLOSE_RANGE
                | _core.FEAT_PIDFD | _core.FEAT_MOUNT_API | _core.FEAT_OPEN_TREE_ATTR)


def _capbnd() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapBnd")


FULL = _capbnd()


# Fixtures probe, hostdir, unpriv_user and public_package: conftest.py.


def make_plan(probe: Path, *mounts: Mount, ns: Ns = Ns.MNT | Ns.PID | Ns.IPC | Ns.UTS,
              **kw) -> LaunchPlan:
    """A minimal node: a tmpfs root holding /probe, full caps of the caller, PATH=/."""
    kw.setdefault("caps", Caps(FULL, FULL, FULL))
    kw.setdefault("env", (EnvOp(EnvAction.SET, "PATH", "/"),))
    base = (Mount(MountKind.BIND_FILE, "/probe", str(probe), MountFlag.RDONLY),)
    return LaunchPlan(namespaces=ns, mounts=base + mounts, **kw)


def spawn_capture(plan: LaunchPlan | bytes, argv, pass_fds=(), disable=0):
    """spawn() with the program's stdout on a temp file; returns (pid, file)."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the caller)
    saved = os.dup(1)
    try:
        os.dup2(out.fileno(), 1)
        data = plan.encode() if isinstance(plan, LaunchPlan) else plan
        pid = _core.spawn(data, argv, pass_fds=pass_fds, disable=disable)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return pid, out


def wait_output(out, text: str, timeout: float = 10.0) -> str:
    """Polls the program's output file until it holds text."""
    deadline = time.time() + timeout
    while True:
        out.seek(0)
        got = out.read().decode(errors="replace")
        if text in got or time.time() > deadline:
            return got
        time.sleep(0.02)


def run(plan, *args, pass_fds=(), disable=0) -> tuple[int, list[str]]:
    """Runs /probe ARGS in the node; returns (status, output lines)."""
    argv = list(args) if args and args[0].startswith("/") else ["/probe", *args]
    pid, out = spawn_capture(plan, argv, pass_fds, disable)
    status = _core.wait(pid)
    out.seek(0)
    lines = out.read().decode(errors="replace").splitlines()
    out.close()
    return status, lines





# ---- basics ---------------------------------------------------------------------------

def test_minimal_node_runs_probe_with_plan_settings(probe):
    plan = make_plan(probe, Mount(MountKind.DIR, "/tmp", mode=0o1777), hostname="rp-node",
                     chdir="/tmp", umask=0o027)
    status, lines = run(plan, "info")
    assert status == 0
    assert value(lines, "uid") == "0 0 0"
    assert value(lines, "hostname") == "rp-node"
    assert value(lines, "cwd") == "/tmp"
    assert value(lines, "umask") == "0027"
    assert value(lines, "nnp") == "1"
    assert value(lines, "pid") == "2"  # pid 1 is the node's init
    assert value(lines, "fds") == "0 1 2"
    assert value(lines, "sigpipe") == "default"


@pytest.mark.parametrize("code", [0, 7, 255])
def test_exit_status_is_the_programs(probe, code):
    assert run(make_plan(probe), "exit", str(code))[0] == code


@pytest.mark.parametrize("ns", [Ns.MNT | Ns.PID, Ns.MNT], ids=["pid-ns", "no-pid-ns"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_killed_program_reports_128_plus_signal(probe, ns, sig):
    assert run(make_plan(probe, ns=ns), "kill", str(int(sig)))[0] == 128 + sig


def test_program_not_found_is_exec_enoent(probe):
    with pytest.raises(LaunchError) as exc:
        run(make_plan(probe), "/nowhere/prog")
    assert exc.value.step == "exec" and exc.value.errnum == errno.ENOENT
    assert isinstance(exc.value.__cause__, FileNotFoundError)
    assert exc.value.path == "/nowhere/prog"
    with pytest.raises(LaunchError) as exc:
        _core.run(make_plan(probe).encode(), ["no-such-program"])
    assert exc.value.errnum == errno.ENOENT


def test_program_not_executable_is_exec_eacces(probe):
    plan = make_plan(probe, Mount(MountKind.DATA, "/notexec", data=b"#!/probe\n", mode=0o644))
    with pytest.raises(LaunchError) as exc:
        _core.run(plan.encode(), ["notexec"])
    assert exc.value.step == "exec" and exc.value.errnum == errno.EACCES
    assert isinstance(exc.value.__cause__, PermissionError)


def test_program_found_through_node_path(probe):
    plan = make_plan(probe, Mount(MountKind.BIND_FILE, "/sbin/tool", str(probe)),
                     env=(EnvOp(EnvAction.SET, "PATH", "/nope:/sbin"),))
    pid, out = spawn_capture(plan, ["tool", "info"])
    assert _core.wait(pid) == 0
    out.seek(0)
    assert b"uid 0 0 0" in out.read()


def test_arguments_reach_the_program_verbatim(probe):
    args = ["--bind", "/", "/", "-h", "--", "$HOME", "a b", ""]
    status, lines = run(make_plan(probe), "args", *args)
    assert status == 0
    assert [line[4:] for line in lines if line.startswith("arg ")] == args


def test_corrupt_and_truncated_plans_are_refused(probe):
    good = make_plan(probe).encode()
    for bad in (good[:-8], good[:100], b"", good[:40] + b"\xff" + good[41:]):
        with pytest.raises(PlanError):
            _core.spawn(bad, ["/probe"])
        with pytest.raises(PlanError):
            _core.validate(bad)
    _core.validate(good)


def test_closed_standard_descriptor_is_refused(probe, tmp_path):
    plan_file = tmp_path / "plan"
    plan_file.write_bytes(make_plan(probe).encode())
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    r = subprocess.run([sys.executable, str(driver), str(plan_file), "/probe", "info"],
                       capture_output=True, text=True, check=False,
                       preexec_fn=lambda: os.close(0), timeout=60)
    assert "LAUNCHERROR spawn 9" in r.stdout, r.stdout + r.stderr
    assert "descriptor 0 is closed" in r.stdout


def _is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def test_descriptors_that_are_not_open_are_refused(probe):
    free = next(fd for fd in range(300, 400) if not _is_open(fd))
    for plan, extra in ((make_plan(probe, keep_fds=(free,)), ()), (make_plan(probe), (free,)),
                        (make_plan(probe, Mount(MountKind.FD, "/x", fd=free)), ())):
        with pytest.raises(LaunchError) as exc:
            run(plan, "info", pass_fds=extra)
        assert exc.value.step == "spawn" and exc.value.errnum == errno.EBADF


def test_empty_argv_is_refused(probe):
    with pytest.raises(LaunchError) as exc:
        _core.spawn(make_plan(probe).encode(), [])
    assert exc.value.step == "spawn"


# ---- mounts -----------------------------------------------------------------------------

@pytest.mark.parametrize("disable", [0, ALL_FEATURES], ids=["fast", "fallbacks"])
def test_bind_ro_is_really_read_only_and_rw_writes_through(probe, hostdir, disable):
    (hostdir / "ro").mkdir()
    (hostdir / "rw").mkdir()
    (hostdir / "f").write_text("file\n")
    plan = make_plan(probe,
                     Mount(MountKind.BIND, "/ro", str(hostdir / "ro"), MountFlag.RDONLY),
                     Mount(MountKind.BIND, "/rw", str(hostdir / "rw")),
                     Mount(MountKind.BIND_FILE, "/etc/f", str(hostdir / "f"), MountFlag.RDONLY),
                     Mount(MountKind.BIND_FILE, "/etc/g", str(hostdir / "f")))
    status, lines = run(plan, "write", "/ro/x", "write", "/rw/x", "write", "/etc/f",
                        "read", "/etc/f", "write", "/etc/g", disable=disable)
    assert status == 0
    assert value(lines, "write /ro/x") == "EROFS"
    assert value(lines, "write /rw/x") == "ok"
    assert value(lines, "write /etc/f") == "EROFS"
    assert value(lines, "read /etc/f") == "file\\n"
    assert value(lines, "write /etc/g") == "ok"
    assert (hostdir / "rw/x").read_text() == "x\n"
    assert not (hostdir / "ro/x").exists()
    assert (hostdir / "f").read_text() == "file\nx\n"


def test_open_tree_attr_is_used_where_the_kernel_has_it():
    """open_tree_attr() (Linux 6.15) copies a mount tree and sets its flags in one call: the
    probe finds it exactly on the kernels that have it (the fallback, open_tree() then
    mount_setattr(), is exercised by disabling the feature)."""
    release = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    assert bool(_core.features() & _core.FEAT_OPEN_TREE_ATTR) == (release >= (6, 15))


@pytest.mark.parametrize("disable", [0, _core.FEAT_OPEN_TREE_ATTR, _core.FEAT_MOUNT_SETATTR],
                         ids=["open_tree_attr", "setattr", "remount"])
def test_read_only_bind_leaves_no_writable_submount(probe, hostdir, disable):
    (hostdir / "src/sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(hostdir / "src/sub")], check=True)
    plan = make_plan(probe, Mount(MountKind.BIND, "/data", str(hostdir / "src"), MountFlag.RDONLY))
    status, lines = run(plan, "write", "/data/x", "write", "/data/sub/x", disable=disable)
    assert status == 0
    assert value(lines, "write /data/x") == "EROFS"
    # recursive and read-only with mount_setattr; without it the submount is not bound
    assert value(lines, "write /data/sub/x") == "EROFS"
    assert not (hostdir / "src/sub/x").exists()


def test_optional_missing_source_is_skipped_mandatory_fails(probe, hostdir):
    plan = make_plan(probe, Mount(MountKind.BIND, "/opt", str(hostdir / "none"),
                                  MountFlag.OPTIONAL))
    status, lines = run(plan, "stat", "/opt")
    assert status == 0 and value(lines, "stat /opt") == "ENOENT"
    plan = make_plan(probe, Mount(MountKind.BIND, "/opt", str(hostdir / "none")))
    with pytest.raises(LaunchError) as exc:
        run(plan, "info")
    assert exc.value.step == "mount" and exc.value.errnum == errno.ENOENT
    assert str(hostdir / "none") in str(exc.value)
    assert not (hostdir / "none").exists()


def test_dir_symlink_tmpfs(probe):
    plan = make_plan(probe,
                     Mount(MountKind.DIR, "/var/lib/x", mode=0o750),
                     Mount(MountKind.SYMLINK, "/home/me", "/var/lib/x"),
                     Mount(MountKind.TMPFS, "/tmp", mode=0o1777),
                     Mount(MountKind.TMPFS, "/rot", flags=MountFlag.RDONLY),
                     Mount(MountKind.PROC, "/proc"))
    status, lines = run(plan, "stat", "/var/lib/x", "stat", "/var/lib", "readlink", "/home/me",
                        "stat", "/tmp", "write", "/tmp/x", "write", "/rot/x", "mounts")
    assert status == 0
    assert value(lines, "stat /var/lib/x") == "dir 0750"
    assert value(lines, "stat /var/lib") == "dir 0755"
    assert value(lines, "readlink /home/me") == "/var/lib/x"
    assert value(lines, "stat /tmp") == "dir 1777"
    assert value(lines, "write /tmp/x") == "ok"
    assert value(lines, "write /rot/x") == "EROFS"
    tmp = [ln for ln in lines if ln.startswith("mount ") and " /tmp " in ln]
    assert tmp and "tmpfs" in tmp[0] and "nosuid" in tmp[0] and "nodev" in tmp[0]


def test_procfs_knobs_read_only_and_own_pid_namespace(probe):
    plan = make_plan(probe, Mount(MountKind.PROC, "/proc"))
    status, lines = run(plan, "write", "/proc/sys/kernel/hostname", "read", "/proc/1/comm",
                        "info", "mounts")
    assert status == 0
    assert value(lines, "write /proc/sys/kernel/hostname") == "EROFS"
    assert status_field(lines, "NSpid") == "2"
    mounts = [ln.split() for ln in lines if ln.startswith("mount ")]
    by_target = {m[5]: m for m in mounts}
    assert by_target["/proc"][9] == "proc"
    assert by_target["/proc/sys"][6].startswith("ro")


def test_devfs_is_minimal_and_usable(probe):
    plan = make_plan(probe, Mount(MountKind.PROC, "/proc"), Mount(MountKind.DEV, "/dev"))
    status, lines = run(plan, "stat", "/dev/null", "stat", "/dev/urandom", "stat", "/dev/pts",
                        "readlink", "/dev/ptmx", "readlink", "/dev/fd", "readlink", "/dev/stdout",
                        "write", "/dev/null", "write", "/dev/shm/x", "stat", "/dev/sda",
                        "stat", "/dev/mem")
    assert status == 0
    assert value(lines, "stat /dev/null").startswith("chr")
    assert value(lines, "stat /dev/urandom").startswith("chr")
    assert value(lines, "stat /dev/pts").startswith("dir")
    assert value(lines, "readlink /dev/ptmx") == "pts/ptmx"
    assert value(lines, "readlink /dev/fd") == "/proc/self/fd"
    assert value(lines, "readlink /dev/stdout") == "/proc/self/fd/1"
    assert value(lines, "write /dev/null") == "ok"
    assert value(lines, "write /dev/shm/x") == "ok"
    assert value(lines, "stat /dev/sda") == "ENOENT"
    assert value(lines, "stat /dev/mem") == "ENOENT"


def test_mqueue(probe):
    plan = make_plan(probe, Mount(MountKind.PROC, "/proc"), Mount(MountKind.MQUEUE, "/dev/mqueue"))
    status, lines = run(plan, "mounts")
    assert status == 0
    mq = [ln.split() for ln in lines if ln.startswith("mount ") and " /dev/mqueue " in ln]
    assert mq and mq[0][9] == "mqueue"


def test_data_execfd_and_fd_files(probe, hostdir):
    src = hostdir / "content"
    src.write_text("from a descriptor\n")
    fd = os.open(src, os.O_RDONLY)
    try:
        plan = make_plan(probe,
                         Mount(MountKind.DATA, "/etc/passwd", data=b"me:x:1:1::/:/sh\n",
                               flags=MountFlag.RDONLY),
                         Mount(MountKind.EXECFD, "/etc/generated", "echo made; echo at launch",
                               MountFlag.RDONLY),
                         Mount(MountKind.FD, "/etc/internal", fd=fd))
        status, lines = run(plan, "read", "/etc/passwd", "write", "/etc/passwd",
                            "read", "/etc/generated", "write", "/etc/generated",
                            "read", "/etc/internal", "info", "stat", "/.rp-content-0")
    finally:
        os.close(fd)
    assert status == 0
    assert value(lines, "read /etc/passwd") == "me:x:1:1::/:/sh\\n"
    assert value(lines, "write /etc/passwd") == "EROFS"
    assert value(lines, "read /etc/generated") == "made\\nat launch\\n"
    assert value(lines, "write /etc/generated") == "EROFS"
    assert value(lines, "read /etc/internal") == "from a descriptor\\n"
    assert value(lines, "fds") == "0 1 2"  # the source descriptor did not leak in
    assert value(lines, "stat /.rp-content-0") == "ENOENT"  # the staging name is gone


def test_failing_execfd_command_fails_closed(probe, hostdir):
    plan = make_plan(probe, Mount(MountKind.BIND, "/out", str(hostdir)),
                     Mount(MountKind.EXECFD, "/etc/x", "echo partial; exit 3"))
    with pytest.raises(LaunchError) as exc:
        run(plan, "write", "/out/marker")
    assert exc.value.step == "execfd" and "exit status 3" in str(exc.value)
    assert not (hostdir / "marker").exists()


@pytest.mark.parametrize("ns", [Ns.MNT | Ns.PID, Ns.MNT], ids=["pid-ns", "no-pid-ns"])
def test_lock_held_for_the_node_lifetime(probe, hostdir, ns):
    lockfile = hostdir / "lock"
    lockfile.write_text("")
    plan = make_plan(probe, Mount(MountKind.BIND_FILE, "/run/lock", str(lockfile)),
                     Mount(MountKind.LOCK, "/run/lock", flags=MountFlag.LOCK_EXCL), ns=ns)
    pid, _out = spawn_capture(plan, ["/probe", "sleep", "1"])
    try:
        with open(lockfile) as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        assert _core.wait(pid) == 0
    with open(lockfile) as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the node
        # and a node cannot start while someone else holds it
        with pytest.raises(LaunchError) as exc:
            run(plan, "info")
        assert exc.value.step == "lock" and exc.value.errnum == errno.EWOULDBLOCK


def test_symlinked_target_never_mounts_outside_the_new_root(probe, hostdir):
    host_victim = hostdir / "victim"
    host_victim.mkdir()
    tree = hostdir / "tree"
    tree.mkdir()
    (tree / "abs").symlink_to(host_victim)              # absolute, to a host dir
    (tree / "rel").symlink_to("../../../../../../../..")  # climbs past every root
    (tree / "dangling").symlink_to(hostdir / "victim2")
    for disable in (0, ALL_FEATURES):
        # the absolute link resolves inside the new root: give it a directory there
        plan = make_plan(probe, Mount(MountKind.BIND, "/data", str(tree)),
                         Mount(MountKind.DIR, str(host_victim)),
                         Mount(MountKind.TMPFS, "/data/abs/t"),
                         Mount(MountKind.DIR, "/data/rel/escaped"))
        status, lines = run(plan, "stat", str(host_victim / "t"), "stat", "/escaped",
                            "write", str(host_victim / "t/x"), disable=disable)
        assert status == 0
        assert value(lines, f"stat {host_victim / 't'}").startswith("dir")  # inside the node
        assert value(lines, "stat /escaped").startswith("dir")
        assert value(lines, f"write {host_victim / 't/x'}") == "ok"
        # a link to a path missing in the new root: refused, never created on the host
        plan = make_plan(probe, Mount(MountKind.BIND, "/data", str(tree)),
                         Mount(MountKind.TMPFS, "/data/dangling/t"))
        with pytest.raises(LaunchError) as exc:
            run(plan, "info", disable=disable)
        assert exc.value.step == "mount"
        assert list(host_victim.iterdir()) == []
        assert not (hostdir / "victim2").exists()
        assert not Path("/escaped").exists()
        assert str(host_victim) not in Path("/proc/self/mountinfo").read_text()


# ---- namespaces and identity --------------------------------------------------------------

def _ns_inode(lines, kind):
    return value(lines, f"readlink /proc/self/ns/{kind}")


def test_new_shared_and_joined_namespaces(probe):
    name = f"rp-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        host_net = os.readlink("/proc/self/ns/net")
        args = ("readlink", "/proc/self/ns/net", "readlink", "/proc/self/ns/ipc",
                "readlink", "/proc/self/ns/uts", "readlink", "/proc/self/ns/cgroup",
                "readlink", "/proc/self/ns/mnt")
        proc = Mount(MountKind.PROC, "/proc")
        _, new = run(make_plan(probe, proc, ns=Ns.MNT | Ns.PID | Ns.NET | Ns.IPC | Ns.UTS
                               | Ns.CGROUP), *args)
        _, shared = run(make_plan(probe, proc, ns=Ns.MNT | Ns.PID), *args)
        _, join = run(make_plan(probe, proc, ns=Ns.MNT | Ns.PID,
                                joins=(Join(Ns.NET, f"/run/netns/{name}"),)), *args)
        st = os.stat(f"/run/netns/{name}")
        assert _ns_inode(new, "net") != host_net
        assert _ns_inode(new, "ipc") != os.readlink("/proc/self/ns/ipc")
        assert _ns_inode(new, "uts") != os.readlink("/proc/self/ns/uts")
        assert _ns_inode(new, "cgroup") != os.readlink("/proc/self/ns/cgroup")
        assert _ns_inode(shared, "cgroup") == os.readlink("/proc/self/ns/cgroup")
        assert _ns_inode(shared, "mnt") != os.readlink("/proc/self/ns/mnt")  # always new
        assert _ns_inode(shared, "net") == host_net
        assert _ns_inode(shared, "uts") == os.readlink("/proc/self/ns/uts")
        assert _ns_inode(join, "net") == f"net:[{st.st_ino}]"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_time_namespace_and_join_with_a_new_user_namespace(probe):
    """Both take the slow path: setns/unshare in a first child, the node forked after."""
    name = f"rp-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        plan = make_plan(probe, Mount(MountKind.PROC, "/proc"),
                         ns=Ns.USER | Ns.MNT | Ns.PID | Ns.TIME,
                         joins=(Join(Ns.NET, f"/run/netns/{name}"),),
                         uid_map="0 0 65536\n", gid_map="0 0 65536\n", uid=1000, gid=1000,
                         caps=Caps())
        status, lines = run(plan, "info", "readlink", "/proc/self/ns/time",
                            "readlink", "/proc/self/ns/net", "readlink", "/proc/self/ns/user")
        assert status == 0
        assert value(lines, "uid") == "1000 1000 1000"
        assert value(lines, "pid") == "2"
        assert value(lines, "readlink /proc/self/ns/time") != os.readlink("/proc/self/ns/time")
        assert value(lines, "readlink /proc/self/ns/user") != os.readlink("/proc/self/ns/user")
        assert value(lines, "readlink /proc/self/ns/net") == \
            f"net:[{os.stat(f'/run/netns/{name}').st_ino}]"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_join_by_proc_pid_path_of_a_helper(probe):
    helper = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", "hostname helper-uts && echo ready && exec sleep 30"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert helper.stdout.readline().strip() == "ready"
        plan = make_plan(probe, ns=Ns.MNT | Ns.PID,
                         joins=(Join(Ns.UTS, f"/proc/{helper.pid}/ns/uts"),))
        status, lines = run(plan, "info")
        assert status == 0
        assert value(lines, "hostname") == "helper-uts"
    finally:
        helper.kill()
        helper.wait()
        helper.stdout.close()


def test_join_missing_namespace_fails_closed(probe, hostdir):
    plan = make_plan(probe, Mount(MountKind.BIND, "/out", str(hostdir)),
                     joins=(Join(Ns.NET, "/run/netns/does-not-exist"),))
    with pytest.raises(LaunchError) as exc:
        run(plan, "write", "/out/marker")
    assert exc.value.step == "ns-join" and exc.value.errnum == errno.ENOENT
    assert not (hostdir / "marker").exists()


def test_user_namespace_map_root_user(probe):
    plan = make_plan(probe, Mount(MountKind.PROC, "/proc"),
                     ns=Ns.USER | Ns.MNT | Ns.PID | Ns.IPC | Ns.UTS,
                     uid_map="0 1000 1\n", gid_map="0 1000 1\n", setgroups_deny=True)
    status, lines = run(plan, "info", "read", "/proc/self/uid_map", "read", "/proc/self/setgroups")
    assert status == 0
    assert value(lines, "uid") == "0 0 0"
    assert value(lines, "read /proc/self/uid_map").split() == ["0", "1000", "1\\n"]
    assert value(lines, "read /proc/self/setgroups") == "deny\\n"


def test_set_user_group_and_drop_groups(probe):
    plan = make_plan(probe, Mount(MountKind.PROC, "/proc"),
                     ns=Ns.USER | Ns.MNT | Ns.PID,
                     uid_map="0 0 65536\n", gid_map="0 0 65536\n",
                     uid=1000, gid=1001, drop_groups=True, caps=Caps())
    status, lines = run(plan, "info")
    assert status == 0
    assert value(lines, "uid") == "1000 1000 1000"
    assert value(lines, "gid") == "1001 1001 1001"
    assert value(lines, "groups") == ""
    assert status_field(lines, "CapEff") == "0000000000000000"
    assert status_field(lines, "CapPrm") == "0000000000000000"
    assert status_field(lines, "CapBnd") == "0000000000000000"


def test_supplementary_groups_dropped_without_userns(probe):
    """The caller's supplementary groups are gone once the plan drops them."""
    def launch():
        os.setgroups([4, 27])
        plan = make_plan(probe, uid=1000, gid=1000, drop_groups=True, caps=Caps())
        return run(plan, "info")
    keep = os.getgroups()
    try:
        status, lines = launch()
    finally:
        os.setgroups(keep)
    assert status == 0
    assert value(lines, "groups") == ""
    assert value(lines, "uid") == "1000 1000 1000"


def test_capability_sets_applied_exactly(probe):
    net_bind, net_raw, chown = 1 << 10, 1 << 13, 1 << 0
    plan = make_plan(probe, Mount(MountKind.PROC, "/proc"),
                     caps=Caps(bounding=net_bind | net_raw | chown, permitted=net_bind | chown,
                               effective=net_bind, inheritable=net_bind, ambient=net_bind))
    status, lines = run(plan, "info")
    assert status == 0
    assert int(status_field(lines, "CapBnd"), 16) == net_bind | net_raw | chown
    # exec as uid 0 recomputes: permitted = effective = bounding | inheritable (root semantics)
    assert int(status_field(lines, "CapInh"), 16) == net_bind
    assert int(status_field(lines, "CapAmb"), 16) == net_bind
    assert status_field(lines, "NoNewPrivs") == "1"


def test_ambient_keeps_a_capability_for_a_non_root_user(probe):
    net_bind = 1 << 10
    plan = make_plan(probe, Mount(MountKind.PROC, "/proc"), uid=1000, gid=1000,
                     caps=Caps(net_bind, net_bind, net_bind, net_bind, net_bind))
    status, lines = run(plan, "info")
    assert status == 0
    assert value(lines, "uid") == "1000 1000 1000"
    for field in ("CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb"):
        assert int(status_field(lines, field), 16) == net_bind, field


def test_no_caps_plan_leaves_root_without_caps(probe):
    status, lines = run(make_plan(probe, Mount(MountKind.PROC, "/proc"), caps=Caps()), "info",
                        "write", "/proc/sys/kernel/hostname")
    assert status == 0
    for field in ("CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb"):
        assert status_field(lines, field) == "0000000000000000", field


# ---- environment ------------------------------------------------------------------------

def test_environment_ops(probe, monkeypatch):
    monkeypatch.setenv("RP_CALLER", "from-caller")
    monkeypatch.setenv("RP_DROP", "gone")
    plan = make_plan(probe, env=(
        EnvOp(EnvAction.SET, "PATH", "/"),
        EnvOp(EnvAction.SET, "A", "1"),
        EnvOp(EnvAction.SET, "A", "2"),
        EnvOp(EnvAction.INHERIT, "RP_CALLER"),
        EnvOp(EnvAction.INHERIT, "RP_UNSET_IN_CALLER"),
        EnvOp(EnvAction.EXECFD, "GEN", "printf 'gen\\n\\n'"),
        EnvOp(EnvAction.SET, "B", "b"),
        EnvOp(EnvAction.UNSET, "B"),
    ))
    status, lines = run(plan, "env")
    env = sorted(ln[4:] for ln in lines if ln.startswith("env "))
    assert status == 0
    assert env == sorted(["PATH=/", "A=2", "RP_CALLER=from-caller", "RP_UNSET_IN_CALLER=",
                          "GEN=gen"])
    assert "RP_DROP=gone" not in env


def test_inherit_env_starts_from_callers(probe, monkeypatch):
    monkeypatch.setenv("RP_CALLER", "here")
    monkeypatch.setenv("RP_DROP", "gone")
    plan = make_plan(probe, inherit_env=True, env=(EnvOp(EnvAction.UNSET, "RP_DROP"),))
    status, lines = run(plan, "env")
    env = [ln[4:] for ln in lines if ln.startswith("env ")]
    assert status == 0
    assert "RP_CALLER=here" in env and not any(e.startswith("RP_DROP=") for e in env)


# ---- processes ----------------------------------------------------------------------------

def test_signals_forwarded_through_pid1(probe):
    plan = make_plan(probe)
    pid, out = spawn_capture(plan, ["/probe", "trap", "sleep", "3", "exit", "4"])
    assert "trapped" in wait_output(out, "trapped")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGQUIT):
        os.kill(pid, sig)  # pid is the node's init
        time.sleep(0.05)
    assert _core.wait(pid) == 4
    out.seek(0)
    got = out.read().decode()
    for sig in (15, 2, 1, 10, 12, 3):
        assert f"signal {sig}\n" in got


def test_init_exits_with_signal_status_when_program_killed_from_outside(probe):
    pid, _out = spawn_capture(make_plan(probe), ["/probe", "sleep", "30"])
    time.sleep(0.2)
    os.kill(pid, signal.SIGTERM)  # forwarded; the program does not handle it
    assert _core.wait(pid) == 128 + signal.SIGTERM


def test_orphans_are_killed_with_the_node(probe):
    pid, out = spawn_capture(make_plan(probe, Mount(MountKind.PROC, "/proc")),
                             ["/probe", "orphan", "sleep", "1"])
    assert "orphan " in wait_output(out, "orphan ")
    init_children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(init_children) == 2  # the program and the orphan, now init's child
    assert _core.wait(pid) == 0
    assert _wait_gone(init_children)


def test_orphan_zombies_are_reaped_by_init(probe):
    plan = make_plan(probe, Mount(MountKind.PROC, "/proc"))
    status, lines = run(plan, "zombie")
    assert status == 0
    assert value(lines, "zombie") == "gone"


def _wait_gone(pids, timeout=3.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not any(Path(f"/proc/{p}").exists() for p in pids):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("ns", [Ns.MNT | Ns.PID, Ns.MNT], ids=["pid-ns", "no-pid-ns"])
def test_die_with_parent_kills_the_node_when_launcher_is_killed(probe, ns):
    plan = make_plan(probe, Mount(MountKind.PROC, "/proc"), ns=ns, die_with_parent=True).encode()
    r, w = os.pipe()
    launcher = os.fork()
    if launcher == 0:  # the launcher: spawn, report the node's pid, then wait forever
        try:
            os.close(r)
            devnull = os.open("/dev/null", os.O_WRONLY)
            os.dup2(devnull, 1)
            argv = ["/probe", "orphan", "sleep", "60"] if ns & Ns.PID else ["/probe", "sleep", "60"]
            pid = _core.spawn(plan, argv)
            os.write(w, f"{pid}\n".encode())
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        node = int(f.readline())
    time.sleep(0.3)
    family = [node] + Path(f"/proc/{node}/task/{node}/children").read_text().split()
    family += [c for p in family[1:] for c in
               Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    os.kill(launcher, signal.SIGKILL)
    os.waitpid(launcher, 0)
    assert _wait_gone(family), f"node processes survived: {family}"


def test_leaked_descriptors_are_not_visible_inside(probe, hostdir):
    saved = {}
    for fd in (7, 9):  # pytest's capture files may live there: keep them aside
        try:
            saved[fd] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
        except OSError:
            pass
    a = os.open(hostdir, os.O_RDONLY)
    os.dup2(a, 7, inheritable=True)
    os.dup2(a, 9, inheritable=True)
    os.close(a)
    try:
        for plan, extra, disable, expected in (
                (make_plan(probe), (), 0, "0 1 2"),
                (make_plan(probe, keep_fds=(9,)), (), 0, "0 1 2 9"),
                (make_plan(probe), (7,), 0, "0 1 2 7"),
                (make_plan(probe), (), ALL_FEATURES, "0 1 2")):
            status, lines = run(plan, "info", pass_fds=extra, disable=disable)
            assert status == 0
            assert value(lines, "fds") == expected
    finally:
        for fd in (7, 9):
            if fd in saved:
                os.dup2(saved.pop(fd), fd, inheritable=False)
            else:
                os.close(fd)
        for fd in saved.values():
            os.close(fd)


def test_spawning_from_many_threads(probe):
    plan = make_plan(probe).encode()
    results, errors = [], []

    def worker(code):
        try:
            for _ in range(5):
                results.append((code, _core.run(plan, ["/probe", "exit", str(code)])))
        except (LaunchError, OSError) as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 30 and all(code == status for code, status in results)


def test_new_session(probe):
    for new_session in (True, False):
        status, lines = run(make_plan(probe, ns=Ns.MNT, new_session=new_session), "info")
        assert status == 0
        assert (value(lines, "sid") == value(lines, "pid")) == new_session


# ---- cache dependencies -------------------------------------------------------------------

def test_check_deps(probe, hostdir, monkeypatch):
    from redpak.planfile import EnvDep, FileDep
    f = hostdir / "conf"
    f.write_text("a")
    st = f.stat()
    monkeypatch.setenv("RP_DEP", "v")
    dep = FileDep(str(f), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    good = make_plan(probe, cacheable=True, caller_uid=os.getuid(), caller_gid=os.getgid(),
                     file_deps=(dep,), env_deps=(EnvDep("RP_DEP", "v"), EnvDep("RP_NOPE", None)))
    assert _core.check_deps(good.encode())
    assert not _core.check_deps(LaunchPlan(**{**good.__dict__, "cacheable": False}).encode())
    assert not _core.check_deps(LaunchPlan(**{**good.__dict__, "caller_uid": 4242}).encode())
    monkeypatch.setenv("RP_NOPE", "set")
    assert not _core.check_deps(good.encode())
    monkeypatch.delenv("RP_NOPE")
    monkeypatch.setenv("RP_DEP", "w")
    assert not _core.check_deps(good.encode())
    monkeypatch.setenv("RP_DEP", "v")
    f.write_text("ab")
    assert not _core.check_deps(good.encode())


def test_reserved_sections_fail_closed(probe, hostdir):
    from redpak.planfile import Smack
    plan = make_plan(probe, Mount(MountKind.BIND, "/out", str(hostdir)),
                     seccomp=(b"\x06\x00\x00\x00\x00\x00\xff\x7f",), smack=Smack("App"))
    with pytest.raises(LaunchError):
        run(plan, "write", "/out/marker")
    assert not (hostdir / "marker").exists()


# ---- fail closed under injected errors ------------------------------------------------------

DRIVER = """
import ctypes, os, struct, sys
from redpak import _core
from redpak.errors import LaunchError
deny = int(os.environ.get("RP_TEST_DENY_NR", "0"))
if deny:  # a system call strace cannot inject into fails with EPERM, every time
    ret, ld, jeq = 0x06, 0x20, 0x15
    insns = [(ld, 0, 0, 0), (jeq, 0, 1, deny), (ret, 0, 0, 0x00050000 | 1), (ret, 0, 0, 0x7fff0000)]
    code = b"".join(struct.pack("HBBI", *i) for i in insns)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HxxxxxxQ", len(insns), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0  # PR_SET_SECCOMP, FILTER
plan = open(sys.argv[1], "rb").read()
try:
    status = _core.wait(_core.spawn(plan, sys.argv[2:],
                                    disable=int(os.environ.get("RP_TEST_DISABLE", "0"))))
    print("STATUS", status)
except LaunchError as err:
    print("LAUNCHERROR", err.step, err.errnum, err)
"""


# strace counts calls per process: when=N is the Nth call of each process.
@pytest.mark.parametrize("syscall,whens", [
    # The fast path mounts through the new mount API (mount(2) only for MS_SLAVE on /);
    # every call below was checked to be reached and to fail closed.
    ("mount", [1]),
    ("pivot_root", [1]),
    ("fsmount", [1, 2, 6]),
    ("fsconfig", [1, 5, 12]),
    # with open_tree_attr() (6.15) a read-only copy is one call: the two below are the
    # fallback, reached with the feature disabled; open_tree_attr itself is denied by a
    # seccomp filter (strace 6.1 does not know it)
    ("open_tree", [1, 2, 3, 8]),
    ("mount_setattr", [1, 2]),
    ("open_tree_attr", [1]),
    ("move_mount", [1, 2, 5, 10, 18]),
    ("mkdirat", [1]),
    ("symlinkat", [1]),
    ("setns", [1]),
    ("capset", [1]),
    ("umount2", [1]),
    ("openat2", [2, 4]),  # the first one is the feature probe: a fallback, not a failure
    ("clone3", [3]),  # the first two are the feature probes (clone3, CLONE_INTO_CGROUP)
    ("sethostname", [1]),
    ("prctl", [1, 3]),
])
def test_fail_closed_under_injected_errors(probe, hostdir, tmp_path, syscall, whens):
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    name = f"rp-test-{uuid.uuid4().hex[:8]}"
    joins = ()
    if syscall == "setns":
        subprocess.run(["ip", "netns", "add", name], check=True)
        joins = (Join(Ns.NET, f"/run/netns/{name}"),)
    try:
        plan = make_plan(probe, Mount(MountKind.BIND, "/out", str(hostdir)),
                         Mount(MountKind.PROC, "/proc"), Mount(MountKind.DEV, "/dev"),
                         Mount(MountKind.TMPFS, "/tmp"), hostname="inj", joins=joins)
        plan_file = tmp_path / "plan"
        plan_file.write_bytes(plan.encode())
        driver = tmp_path / "driver.py"
        driver.write_text(DRIVER)
        env = dict(os.environ)
        if syscall in ("open_tree", "mount_setattr"):
            env["RP_TEST_DISABLE"] = str(_core.FEAT_OPEN_TREE_ATTR)
        for when in whens:
            if syscall == "open_tree_attr":
                if not _core.features() & _core.FEAT_OPEN_TREE_ATTR:
                    pytest.skip("this kernel has no open_tree_attr (Linux 6.15)")
                argv = [sys.executable]
                env["RP_TEST_DENY_NR"] = "467"
            else:
                argv = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=" + syscall,
                        "-e", f"inject={syscall}:error=EPERM:when={when}", sys.executable]
            r = subprocess.run(
                argv + [str(driver), str(plan_file), "/probe", "write", "/out/marker"],
                capture_output=True, text=True, timeout=60, check=False, env=env)
            assert "LAUNCHERROR" in r.stdout or "STATUS 125" in r.stdout, (when, r.stdout,
                                                                           r.stderr)
            assert not (hostdir / "marker").exists(), f"{syscall} when={when}: probe ran"
    finally:
        if joins:
            subprocess.run(["ip", "netns", "delete", name], check=False)


FEATURES = "from redpak import _core; print(_core.features(), _core.FEAT_CLONE3, " \
           "_core.FEAT_INTO_CGROUP)"


def test_clone_into_cgroup_is_probed_once_without_making_a_process():
    """Linux 5.7 added CLONE_INTO_CGROUP with the cgroup field of clone_args: the probe
    finds it on such a kernel, reports it absent when the kernel refuses the longer
    struct (E2BIG, as every kernel before 5.7 does), and no probe makes a process."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    for inject, expect in ((None, release >= (5, 7)), ("E2BIG", False)):
        opts = ["-e", f"inject=clone3:error={inject}:when=2"] if inject else []
        r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=clone3", *opts,
                            sys.executable, "-c", FEATURES],
                           capture_output=True, text=True, timeout=60, check=True)
        feats, clone3, into = (int(x) for x in r.stdout.split())
        assert feats & clone3, r.stderr
        assert bool(feats & into) == expect, (inject, r.stderr)
        calls = [ln for ln in r.stderr.splitlines() if "clone3(" in ln]
        assert len(calls) == 2 and all(" = -1 E" in ln for ln in calls), r.stderr
        assert "cgroup=1}, 88)" in calls[1], calls


# ---- unprivileged caller ------------------------------------------------------------------

UNPRIV_DRIVER = """
import os, sys
from redpak import _core
from redpak.planfile import *
from redpak.errors import LaunchError
probe, out = sys.argv[1], sys.argv[2]
uid, gid = os.getuid(), os.getgid()
base = dict(namespaces=Ns.USER | Ns.MNT | Ns.PID | Ns.IPC | Ns.UTS | Ns.NET,
            uid_map=f"0 {uid} 1\\n", gid_map=f"0 {gid} 1\\n", setgroups_deny=True,
            env=(EnvOp(EnvAction.SET, "PATH", "/"),))
mounts = (Mount(MountKind.BIND_FILE, "/probe", probe, MountFlag.RDONLY),
          Mount(MountKind.BIND, "/out", out), Mount(MountKind.BIND, "/ro", out, MountFlag.RDONLY),
          Mount(MountKind.PROC, "/proc"), Mount(MountKind.DEV, "/dev"),
          Mount(MountKind.TMPFS, "/tmp"), Mount(MountKind.DATA, "/etc/passwd", data=b"x\\n",
                                                 flags=MountFlag.RDONLY))
mode = sys.argv[3]
if mode == "root":
    plan = LaunchPlan(mounts=mounts, hostname="unpriv", **base)
elif mode == "self":
    plan = LaunchPlan(mounts=mounts, **{**base, "uid_map": f"{uid} {uid} 1\\n",
                                        "gid_map": f"{gid} {gid} 1\\n"}, uid=uid, gid=gid)
else:  # a mount the kernel refuses: fail closed
    plan = LaunchPlan(mounts=mounts + (Mount(MountKind.BIND, "/x", "/root/.nope"),), **base)
try:
    status = _core.run(plan.encode(), ["/probe", "info", "write", "/out/ok", "write", "/ro/no",
                                       "write", "/etc/passwd", "mounts"])
    print("STATUS", status)
except LaunchError as err:
    print("LAUNCHERROR", err.step, err.errnum, err)
"""


@pytest.mark.parametrize("mode", ["root", "self", "refused"])
def test_unprivileged_caller(probe, unpriv_user, public_package, mode):
    out = Path(tempfile.mkdtemp(prefix="rp-out-"))
    try:
        os.chown(out, unpriv_user.pw_uid, unpriv_user.pw_gid)
        driver = public_package / "driver.py"
        driver.write_text(UNPRIV_DRIVER)
        driver.chmod(0o644)
        runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
        r = subprocess.run([runuser, "-u", unpriv_user.pw_name, "--", "/usr/bin/python3",
                            str(driver), str(probe), str(out), mode],
                           capture_output=True, text=True, timeout=60, check=False,
                           env={"PYTHONPATH": str(public_package), "PATH": "/usr/bin:/bin"},
                           cwd="/")
        lines = r.stdout.splitlines()
        if mode == "refused":
            assert any(ln.startswith("LAUNCHERROR mount") for ln in lines), r.stdout + r.stderr
            assert not (out / "ok").exists()
            return
        assert "STATUS 0" in lines, r.stdout + r.stderr
        assert value(lines, "write /out/ok") == "ok"
        assert value(lines, "write /ro/no") == "EROFS"
        assert value(lines, "write /etc/passwd") == "EROFS"
        assert value(lines, "fds") == "0 1 2"
        assert value(lines, "nnp") == "1"
        if mode == "root":
            assert value(lines, "uid") == "0 0 0"
            assert value(lines, "hostname") == "unpriv"
        else:
            uid = unpriv_user.pw_uid
            assert value(lines, "uid") == f"{uid} {uid} {uid}"
            assert status_field(lines, "CapEff") == "0000000000000000"
        assert (out / "ok").stat().st_uid == unpriv_user.pw_uid
    finally:
        shutil.rmtree(out, ignore_errors=True)
