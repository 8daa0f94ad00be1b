"""redwrap end to end: real node families (created like `redconf create` does), real
configs, the native executable run as a subprocess, by root and by an unprivileged user.

Every check is made from inside the node with the static probe (tools/probe.c), or from
the host (files, locks, /proc of the running program), never from redpak's own report.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import termios
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rp_testutil import remove_tree, status_field, value
import yaml

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the redwrap tests need root (namespaces, mounts, a test user)",
                allow_module_level=True)

from redpak.cli.redwrap import cache_path  # noqa: E402
from redpak.node import create_node  # noqa: E402

BASE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
NET_BIND = 1 << 10  # cap_net_bind_service


# ---- callers and families ---------------------------------------------------------------

@dataclass
class Caller:
    """Who runs redwrap: root with the installed executable, or the throwaway user with a
    world-readable copy of it (and /usr/bin/python3 for the cold path)."""

    kind: str
    uid: int
    gid: int
    name: str
    redwrap: str
    env: dict[str, str] = field(default_factory=dict)

    def _kw(self, env, kw):
        full = {**BASE_ENV, "USER": self.name, **self.env, **(env or {})}
        kw.setdefault("cwd", "/")
        if self.kind == "user":
            kw.update(user=self.uid, group=self.gid, extra_groups=[])
        return full, kw

    def run(self, argv, env=None, timeout=60, **kw) -> subprocess.CompletedProcess:
        full, kw = self._kw(env, kw)
        kw.setdefault("capture_output", True)
        return subprocess.run(argv, env=full, timeout=timeout, text=True, check=False, **kw)

    def popen(self, argv, env=None, **kw) -> subprocess.Popen:
        """Unbuffered binary pipes: read_until() reads the descriptor itself."""
        full, kw = self._kw(env, kw)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(argv, env=full, bufsize=0, **kw)
        proc.early = b""  # what read_until() took from stdout
        return proc


@pytest.fixture(params=["root", "user"])
def caller(request) -> Caller:
    return request.getfixturevalue(f"{request.param}_caller")


def _cache_dir(request, uid: int, gid: int) -> str:
    """A plan cache of the caller's own (the default ones are /var/cache/redpak for root
    and ~/.cache/redpak for users: the throwaway user has no home). Removed after."""
    d = tempfile.mkdtemp(prefix="rp-cache-")
    os.chown(d, uid, gid)
    request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
    return os.path.join(d, "redpak")


@pytest.fixture
def root_caller(native_redwrap, request) -> Caller:
    return Caller("root", 0, 0, "root", str(native_redwrap),
                  {"REDPAK_CACHE_DIR": _cache_dir(request, 0, 0)})


@pytest.fixture
def user_caller(unpriv_user, public_package, request) -> Caller:
    return Caller("user", unpriv_user.pw_uid, unpriv_user.pw_gid, unpriv_user.pw_name,
                  str(public_package / "bin" / "redwrap"),
                  {"PYTHONPATH": str(public_package), "REDPAK_PYTHON": "/usr/bin/python3",
                   "REDPAK_CACHE_DIR": _cache_dir(request, unpriv_user.pw_uid,
                                                  unpriv_user.pw_gid)})


class Family:
    """A stock two-level family under a world-readable directory: sys (root template) and
    sys/app (leaf template) holding the probe in app/usr/bin; owned by the caller."""

    def __init__(self, caller: Caller, probe: Path):
        self.caller = caller
        self.top = Path(tempfile.mkdtemp(prefix="rp-fam-"))
        self.top.chmod(0o755)
        self.sys = self.top / "sys"
        self.app = self.sys / "app"
        self.host = self.top / "host"  # scratch host directory for exports
        self.host.mkdir()
        create_node(str(self.sys), model="root")
        create_node(str(self.app))
        self.install(probe)
        self.own()

    def install(self, program: Path, node: Path | None = None) -> None:
        bindir = (node or self.app) / "usr" / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(program, bindir / program.name)
        (bindir / program.name).chmod(0o755)
        self.own()

    def own(self) -> None:
        for p in [self.top, *self.top.rglob("*")]:
            os.lchown(p, self.caller.uid, self.caller.gid)

    def child(self, alias: str = "child") -> Path:
        path = self.app / alias
        create_node(str(path))
        self.own()
        return path

    def edit(self, node: Path, change) -> None:
        """Rewrites NODE/etc/redpak.yaml after change(document) (config, exports, environ)."""
        conf = node / "etc" / "redpak.yaml"
        doc = yaml.safe_load(conf.read_text())
        for key in ("config", "exports", "environ"):
            doc.setdefault(key, {} if key == "config" else [])
            if doc[key] is None:
                doc[key] = {} if key == "config" else []
        change(doc)
        conf.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.own()

    def hostdir(self, name: str) -> Path:
        d = self.host / name
        d.mkdir(parents=True, exist_ok=True)
        self.own()
        return d

    def argv(self, *args: str, node: Path | None = None, opts: tuple[str, ...] = ()) -> list[str]:
        return [self.caller.redwrap, *opts, "--redpath", str(node or self.app), "--", *args]

    def run(self, *args: str, node: Path | None = None, opts: tuple[str, ...] = (), **kw):
        return self.caller.run(self.argv(*args, node=node, opts=opts), **kw)

    def probe(self, *args: str, node: Path | None = None, opts: tuple[str, ...] = (), **kw
              ) -> tuple[subprocess.CompletedProcess, list[str]]:
        r = self.run("probe", *args, node=node, opts=opts, **kw)
        return r, r.stdout.splitlines()

    def cache(self, node: Path | None = None, admin: bool = False) -> Path:
        return Path(cache_path(str(node or self.app), admin, self.caller.uid,
                               environ=self.caller.env))

    def remove(self) -> None:
        remove_tree(self.top)


@pytest.fixture
def family(caller, probe):
    fam = Family(caller, probe)
    yield fam
    fam.remove()


@pytest.fixture
def root_family(root_caller, probe):
    fam = Family(root_caller, probe)
    yield fam
    fam.remove()


@pytest.fixture
def user_family(user_caller, probe):
    fam = Family(user_caller, probe)
    yield fam
    fam.remove()


def export(doc, mode: str, mount: str, path: str | None = None) -> None:
    entry = {"mode": mode, "mount": mount}
    if path is not None:
        entry["path"] = path
    doc["exports"].append(entry)





def env_of(lines: list[str]) -> dict[str, str]:
    return dict(ln[4:].split("=", 1) for ln in lines if ln.startswith("env "))


def ok(r: subprocess.CompletedProcess, status: int = 0) -> None:
    assert r.returncode == status, f"status {r.returncode}\n{r.stdout}\n{r.stderr}"


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def descendants(pid: int) -> list[int]:
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def proc_status(pid: int, field_name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


def in_pid_ns(ns: str) -> list[int]:
    """Host pids of the processes living in pid namespace `ns` ('pid:[N]')."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.readlink(d / "ns" / "pid") == ns:
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def read_until(proc: subprocess.Popen, prefix: str, timeout: float = 20.0) -> list[str]:
    """Lines of proc's stdout up to the first one starting with prefix (read from the
    descriptor: a buffered reader would hide lines from select())."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = proc.early.decode(errors="replace").splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line.startswith(prefix) and line.endswith("\n"):
                return [ln.rstrip("\n") for ln in lines[:i + 1]]
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            proc.early += chunk
    raise AssertionError(f"no {prefix!r} from the program: {proc.early!r}")


def program_pid(redwrap_pid: int, comm: str = "probe") -> int:
    for pid in descendants(redwrap_pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                return pid
        except OSError:
            pass
    raise AssertionError(f"no {comm} below {redwrap_pid}")


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    """Waits for proc; returns its status, whole stdout and stderr as text."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return (proc.returncode, (proc.early + (out or b"")).decode(errors="replace"),
            (err or b"").decode(errors="replace"))


# ---- the stock family -------------------------------------------------------------------

def test_stock_family_runs_the_probe_then_uses_the_cache(family):
    r, lines = family.probe("info", opts=("-v",))
    ok(r)
    assert "rebuilding the plan (no cached plan" in r.stderr
    uid, gid = family.caller.uid, family.caller.gid
    assert value(lines, "uid") == f"{uid} {uid} {uid}"
    assert value(lines, "gid") == f"{gid} {gid} {gid}"
    assert value(lines, "hostname") == "app"             # hostname: $LEAF_ALIAS
    assert value(lines, "cwd") == "/nodes/_private"     # chdir /home/app -> symlink
    assert value(lines, "umask") == "0027"
    assert value(lines, "nnp") == "1"
    assert value(lines, "fds") == "0 1 2"
    assert value(lines, "pid") == "2"                   # pid 1 is the node's init
    assert family.cache().is_file()
    assert family.cache().stat().st_uid == uid
    r, again = family.probe("info", opts=("-v",))
    ok(r)
    assert r.stderr == f"redwrap: using the cached plan {family.cache()}\n"
    assert value(again, "hostname") == "app"


def test_admin_mode_has_its_own_cached_plan(family):
    etc = family.app / "etc"
    r, lines = family.probe("stat", str(etc), opts=("--admin",))
    ok(r)
    assert value(lines, f"stat {etc}").startswith("dir")  # the admin configs show the node
    r, lines = family.probe("write", f"{etc}/x", "write", f"{family.app}/usr/x",
                            opts=("-a", "-v"))
    ok(r)
    assert r.stderr == f"redwrap: using the cached plan {family.cache(admin=True)}\n"
    assert value(lines, f"write {etc}/x") == "EROFS"      # its own configs stay read-only
    assert value(lines, f"write {family.app}/usr/x") == "ok"
    r, lines = family.probe("stat", str(etc), opts=("-v",))
    ok(r)
    assert "no cached plan" in r.stderr                    # normal mode: another plan
    assert value(lines, f"stat {etc}") == "ENOENT"


def test_redpak_run_is_the_same_executable(family):
    exe = Path(family.caller.redwrap).with_name("redpak-run")
    r = family.caller.run([str(exe), "-r", str(family.app), "--", "probe", "exit", "3"])
    ok(r, 3)


def test_umask_is_the_union_of_the_family(family):
    family.edit(family.app, lambda d: d["config"].update(umask="070"))
    r, lines = family.probe("info")
    ok(r)
    assert value(lines, "umask") == "0077"  # 027 | 070


def test_program_arguments_reach_the_program_verbatim(family):
    args = ["--bind", "/", "/", "-h", "--", "$HOME", "a b", "", "--redpath=/x"]
    r, lines = family.probe("args", *args)
    ok(r)
    assert [ln[4:] for ln in lines if ln.startswith("arg ")] == args


# ---- export modes ---------------------------------------------------------------------------

def test_public_rw_and_restricted_ro(family):
    rw, ro = family.hostdir("rw"), family.hostdir("ro")

    def change(d):
        export(d, "Public", "/data", str(rw))
        export(d, "Restricted", "/ro", str(ro))
    family.edit(family.app, change)
    r, lines = family.probe("write", "/data/x", "write", "/ro/x", "stat", "/ro")
    ok(r)
    assert value(lines, "write /data/x") == "ok"
    assert value(lines, "write /ro/x") == "EROFS"
    assert value(lines, "stat /ro").startswith("dir")
    assert (rw / "x").read_text() == "x\n"
    assert (rw / "x").stat().st_uid == family.caller.uid
    assert not (ro / "x").exists()


def test_private_exports_apply_to_their_node_only(family):
    priv, privro, pub = family.hostdir("priv"), family.hostdir("privro"), family.hostdir("pub")
    pfile = family.host / "app.conf"
    pfile.write_text("conf\n")
    family.own()

    def change(d):
        export(d, "Private", "/priv", str(priv))
        export(d, "PrivateRestricted", "/privro", str(privro))
        export(d, "PrivateFile", "/etc/app.conf", str(pfile))
        export(d, "Public", "/pub", str(pub))
    family.edit(family.app, change)
    child = family.child()
    args = ("write", "/priv/x", "write", "/privro/x", "read", "/etc/app.conf", "stat", "/pub")
    r, lines = family.probe(*args)
    ok(r)
    assert value(lines, "write /priv/x") == "ok"
    assert value(lines, "write /privro/x") == "EROFS"
    assert value(lines, "read /etc/app.conf") == "conf\\n"
    assert value(lines, "stat /pub").startswith("dir")
    r, lines = family.probe("stat", "/priv", "stat", "/privro", "stat", "/etc/app.conf",
                            "stat", "/pub", "info", node=child)
    ok(r)
    assert value(lines, "stat /priv") == "ENOENT"
    assert value(lines, "stat /privro") == "ENOENT"
    assert value(lines, "stat /etc/app.conf") == "ENOENT"
    assert value(lines, "stat /pub").startswith("dir")  # Public reaches descendants
    assert value(lines, "hostname") == "child"


def test_file_exports(family):
    pub, res = family.host / "pub.txt", family.host / "res.txt"
    pub.write_text("public\n")
    res.write_text("restricted\n")
    family.own()

    def change(d):
        export(d, "PublicFile", "/etc/pub.txt", str(pub))
        export(d, "RestrictedFile", "/etc/res.txt", str(res))
    family.edit(family.app, change)
    r, lines = family.probe("write", "/etc/pub.txt", "write", "/etc/res.txt",
                            "read", "/etc/res.txt", "stat", "/etc/pub.txt")
    ok(r)
    assert value(lines, "write /etc/pub.txt") == "ok"
    assert value(lines, "write /etc/res.txt") == "EROFS"
    assert value(lines, "read /etc/res.txt") == "restricted\\n"
    assert value(lines, "stat /etc/pub.txt").startswith("file")
    assert pub.read_text() == "public\nx\n"
    assert res.read_text() == "restricted\n"


def test_anonymous_symlink_tmpfs_mqueue(family):
    def change(d):
        export(d, "Anonymous", "/anon")
        export(d, "Symlink", "/link", "/anon")
        export(d, "Tmpfs", "/scratch")
        export(d, "Mqueue", "/dev/mqueue")
    family.edit(family.app, change)
    r, lines = family.probe("stat", "/anon", "readlink", "/link", "write", "/scratch/x",
                            "stat", "/link/", "mounts")
    ok(r)
    assert value(lines, "stat /anon") == "dir 0755"
    assert value(lines, "readlink /link") == "/anon"
    assert value(lines, "write /scratch/x") == "ok"
    mounts = {m[5]: m for m in (ln.split() for ln in lines if ln.startswith("mount "))}
    assert mounts["/scratch"][-3] == "tmpfs" or "tmpfs" in mounts["/scratch"]
    assert "mqueue" in mounts["/dev/mqueue"]
    assert "/anon" not in mounts  # a directory of the node's root, not a mount


def test_execfd_and_internal_files(family):
    content = family.host / "for-fd"
    content.write_text("from a descriptor\n")
    fd = os.open(content, os.O_RDONLY)
    number = next(n for n in range(40, 100) if not _is_open(n))
    os.dup2(fd, number, inheritable=True)
    os.close(fd)

    def change(d):
        export(d, "Execfd", "/etc/generated", "echo generated; id -u")
        export(d, "Internal", "/etc/internal", f" {number} ")
    try:
        family.edit(family.app, change)
        r, lines = family.probe("read", "/etc/generated", "write", "/etc/generated",
                                "read", "/etc/internal", "write", "/etc/internal", "info",
                                "mounts", pass_fds=(number,))
    finally:
        os.close(number)
    ok(r)
    # the command runs on the host, as the caller
    assert value(lines, "read /etc/generated") == f"generated\\n{family.caller.uid}\\n"
    assert value(lines, "read /etc/internal") == "from a descriptor\\n"
    mounts = {m[5]: m for m in (ln.split() for ln in lines if ln.startswith("mount "))}
    for path in ("/etc/generated", "/etc/internal"):
        # mode 0444 and no capability: EACCES comes before the read-only mount's EROFS
        assert value(lines, f"write {path}") in ("EACCES", "EROFS")
        assert mounts[path][6].split(",")[0] == "ro", mounts[path]
    assert value(lines, "fds") == "0 1 2"  # the source descriptor did not leak in


def _is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def test_procfs_and_devfs(family):
    r, lines = family.probe("write", "/proc/sys/kernel/hostname", "info", "stat", "/dev/null",
                            "write", "/dev/null", "stat", "/dev/sda", "stat", "/dev/mem",
                            "readlink", "/dev/ptmx", "stat", "/dev/pts", "mounts")
    ok(r)
    # EACCES first for a user: the knob belongs to the host's root, who is not mapped
    assert value(lines, "write /proc/sys/kernel/hostname") in ("EROFS", "EACCES")
    mounts = {m[5]: m for m in (ln.split() for ln in lines if ln.startswith("mount "))}
    assert mounts["/proc/sys"][6].split(",")[0] == "ro"
    assert status_field(lines, "NSpid") == "2"  # /proc is the node's pid namespace
    assert value(lines, "stat /dev/null").startswith("chr")
    assert value(lines, "write /dev/null") == "ok"
    assert value(lines, "stat /dev/sda") == "ENOENT"
    assert value(lines, "stat /dev/mem") == "ENOENT"
    assert value(lines, "readlink /dev/ptmx") == "pts/ptmx"
    assert value(lines, "stat /dev/pts").startswith("dir")


def test_lock_held_while_the_program_runs(family):
    locks = family.hostdir("locks")

    def change(d):
        export(d, "Public", "/locks", str(locks))
        export(d, "Lock", "/locks/app.lock")
    family.edit(family.app, change)
    ok(family.run("probe", "exit", "0"))  # compile and cache
    proc = family.caller.popen(family.argv("probe", "info", "sleep", "2"))
    try:
        read_until(proc, "sigpipe")
        with open(locks / "app.lock") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        status, _, err = finish(proc)
    assert status == 0, err
    with open(locks / "app.lock") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the node


def test_userdb_shows_the_running_user_only(family):
    r, lines = family.probe("read", "/etc/passwd", "read", "/etc/group")
    ok(r)
    passwd = value(lines, "read /etc/passwd").split("\\n")
    names = [ln.split(":")[0] for ln in passwd if ln]
    if family.caller.kind == "root":
        assert names == ["root", "nobody"]
    else:
        assert names == ["root", family.caller.name, "nobody"]
        assert f"{family.caller.name}:x:{family.caller.uid}:{family.caller.gid}:" in passwd[1]
    host_users = [ln.split(":")[0] for ln in Path("/etc/passwd").read_text().splitlines()]
    assert len(host_users) > len(names)  # the host's other accounts are not shown


# ---- environment ----------------------------------------------------------------------------

def test_environ_modes(family):
    def change(d):
        d["environ"] += [
            {"key": "DEF", "value": "$NODE_ALIAS-$LEAF_ALIAS-${FROM_CALLER}"},
            {"key": "STAT", "mode": "Static", "value": "$NODE_ALIAS"},
            {"key": "GEN", "mode": "Execfd", "value": "printf 'gen\\n\\n'"},
            {"key": "INH", "mode": "Inherit"},
            {"key": "INH_UNSET", "mode": "Inherit"},
            {"key": "REMOVED", "value": "set"},
            {"key": "REMOVED", "mode": "Remove"},
        ]
        d["environ"] = [e for e in d["environ"] if e["key"] != "REMOVED" or "mode" in e]
    family.edit(family.app, change)
    caller_env = {"FROM_CALLER": "c", "INH": "inherited", "CALLER_ONLY": "x"}
    r, lines = family.probe("env", env=caller_env)
    ok(r)
    env = env_of(lines)
    assert env["DEF"] == "app-app-c"
    assert env["STAT"] == "$NODE_ALIAS"
    assert env["GEN"] == "gen"
    assert env["INH"] == "inherited"
    assert env["INH_UNSET"] == ""
    assert "REMOVED" not in env and "CALLER_ONLY" not in env
    assert env["PATH"] == "/nodes/app/usr/bin:/bin"
    # Inherit is read at launch: a new value needs no new plan; a variable used by the
    # expansion is a dependency of the cached plan
    r, lines = family.probe("env", opts=("-v",), env={**caller_env, "INH": "again"})
    ok(r)
    assert "using the cached plan" in r.stderr
    assert env_of(lines)["INH"] == "again"
    r, lines = family.probe("env", opts=("-v",), env={**caller_env, "FROM_CALLER": "d"})
    ok(r)
    assert "is stale: environment variable FROM_CALLER changed" in r.stderr
    assert env_of(lines)["DEF"] == "app-app-d"


def test_inherit_env(family):
    def change(d):
        d["config"]["inherit-env"] = True
        d["environ"].append({"key": "GONE", "mode": "Remove"})
    family.edit(family.app, change)
    r, lines = family.probe("env", env={"CALLER_ONLY": "kept", "GONE": "x", "PS1": "$ "})
    ok(r)
    env = env_of(lines)
    assert env["CALLER_ONLY"] == "kept"
    assert env["USER"] == family.caller.name
    assert "GONE" not in env and "PS1" not in env  # PS1: removed by the root template


# ---- namespaces -----------------------------------------------------------------------------

NS_PROBE = tuple(a for kind in ("net", "ipc", "uts", "time", "cgroup", "pid", "user")
                 for a in ("readlink", f"/proc/self/ns/{kind}"))


@pytest.mark.parametrize("state", ["enabled", "disabled", "unset", "join"])
def test_namespace_states(family, state):
    netns = f"rp-test-{uuid.uuid4().hex[:8]}"

    def root_change(d):
        for key in list(d["config"]):
            if key.startswith("share_"):
                del d["config"][key]
    family.edit(family.sys, root_change)
    if state == "join":
        subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        share = f"/run/netns/{netns}" if state == "join" else state
        family.edit(family.app, lambda d: d["config"].update(share_net=share))
        r, lines = family.probe(*NS_PROBE)
        if state == "join" and family.caller.kind == "user":
            # setns needs CAP_SYS_ADMIN over the namespace's owner: refused, nothing ran
            ok(r, 125)
            assert r.stderr.splitlines()[-1].startswith("redwrap: ns-join: "), r.stderr
            assert f"/run/netns/{netns}" in r.stderr
            assert r.stdout == ""
            return
        ok(r)
        net = value(lines, "readlink /proc/self/ns/net")
        host_net = os.readlink("/proc/self/ns/net")
        if state == "enabled":
            assert net == host_net
        elif state == "join":
            assert net == f"net:[{os.stat(f'/run/netns/{netns}').st_ino}]"
        else:
            assert net != host_net
        # nothing said elsewhere: new namespaces, except time (shared)
        for kind in ("ipc", "uts", "cgroup", "pid", "user"):
            assert value(lines, f"readlink /proc/self/ns/{kind}") != \
                os.readlink(f"/proc/self/ns/{kind}"), kind
        assert value(lines, "readlink /proc/self/ns/time") == os.readlink("/proc/self/ns/time")
    finally:
        if state == "join":
            subprocess.run(["ip", "netns", "delete", netns], check=False)


def test_ancestor_disabled_namespace_cannot_be_enabled(family):
    family.edit(family.app, lambda d: d["config"].update(share_ipc="enabled"))
    r, _ = family.probe("info")
    ok(r, 125)
    assert "share_ipc" in r.stderr and "sys" in r.stderr


# ---- capabilities and identity --------------------------------------------------------------

def test_capability_added_appears_in_the_program(family):
    r, lines = family.probe("info")
    ok(r)
    for name in ("CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb"):
        assert int(status_field(lines, name), 16) == 0, name
    family.edit(family.app, lambda d: d["config"].update(
        capabilities=[{"cap": "cap_net_bind_service", "add": True}]))
    r, lines = family.probe("info")
    ok(r)
    assert int(status_field(lines, "CapEff"), 16) == NET_BIND
    assert int(status_field(lines, "CapPrm"), 16) == NET_BIND
    assert int(status_field(lines, "CapBnd"), 16) == NET_BIND
    # uid 0 inside keeps it through exec; any other uid needs the ambient set
    ambient = 0 if family.caller.kind == "root" else NET_BIND
    assert int(status_field(lines, "CapAmb"), 16) == ambient
    assert status_field(lines, "NoNewPrivs") == "1"


def _inside_and_outside(fam: Family, *probe_args: str) -> tuple[list[str], dict[str, str], int]:
    """Runs the probe (then sleeps), returns its output, the host's view of the program's
    /proc/PID/status (Uid, Gid, Groups) and redwrap's status."""
    proc = fam.caller.popen(fam.argv("probe", *probe_args, "info", "sleep", "2"))
    try:
        lines = read_until(proc, "sigpipe")
        pid = program_pid(proc.pid)
        host = {k: proc_status(pid, k) for k in ("Uid", "Gid", "Groups")}
    finally:
        status, rest, err = finish(proc)
    assert status == 0, err
    return lines, host, status


def test_set_user_and_group_drop_supplementary_groups(root_family):
    fam = root_family
    fam.edit(fam.app, lambda d: d["config"].update({"set-user": "1234", "set-group": "2345"}))
    proc = fam.caller.popen(fam.argv("probe", "info", "sleep", "2"), extra_groups=[4, 27])
    try:
        lines = read_until(proc, "sigpipe")
        pid = program_pid(proc.pid)
        host = {k: proc_status(pid, k) for k in ("Uid", "Gid", "Groups")}
        assert proc_status(proc.pid, "Groups") == "4 27"  # the caller had them
    finally:
        status, _, err = finish(proc)
    assert status == 0, err
    assert value(lines, "uid") == "1234 1234 1234"
    assert value(lines, "gid") == "2345 2345 2345"
    assert value(lines, "groups") == ""
    assert host["Uid"].split() == ["1234"] * 4
    assert host["Gid"].split() == ["2345"] * 4
    assert host["Groups"] == ""


def test_map_root_user(family):
    family.edit(family.app, lambda d: d["config"].update({"map-root-user": True}))
    lines, host, _ = _inside_and_outside(family, "read", "/proc/self/uid_map")
    uid = family.caller.uid
    assert value(lines, "uid") == "0 0 0"
    uid_map = value(lines, "read /proc/self/uid_map").replace("\\n", "").split()
    if family.caller.kind == "root":
        assert uid_map == ["0", "0", "4294967295"]
    else:
        assert uid_map == ["0", str(uid), "1"]
    assert host["Uid"].split() == [str(uid)] * 4  # root inside is only the caller outside


def test_set_user_for_an_unprivileged_caller_is_shown_inside_only(user_family):
    family = user_family
    family.edit(family.app, lambda d: d["config"].update({"set-user": "4321"}))
    lines, host, _ = _inside_and_outside(family, "read", "/proc/self/uid_map")
    uid = family.caller.uid
    assert value(lines, "uid") == "4321 4321 4321"
    assert value(lines, "read /proc/self/uid_map").replace("\\n", "").split() == \
        ["4321", str(uid), "1"]
    assert host["Uid"].split() == [str(uid)] * 4


# ---- exit statuses --------------------------------------------------------------------------

@pytest.mark.parametrize("args,status", [
    (("exit", "0"), 0), (("exit", "7"), 7), (("kill", "9"), 128 + 9), (("kill", "15"), 128 + 15),
])
def test_exit_status_is_the_programs(family, args, status):
    ok(family.run("probe", "exit", "0"))  # the rest run from the cache
    r = family.run("probe", *args, opts=("-v",))
    ok(r, status)
    assert "using the cached plan" in r.stderr


def test_not_found_127_not_executable_126(family):
    notexec = family.app / "usr" / "bin" / "notexec"
    notexec.write_text("#!/bin/sh\necho ran\n")
    notexec.chmod(0o644)
    family.own()
    for program, status in (("no-such-program", 127), ("/nowhere/x", 127), ("notexec", 126),
                            ("/nodes/app/usr/bin", 126)):
        r = family.run(program)
        ok(r, status)
        assert r.stderr.splitlines()[-1].startswith("redwrap: exec: "), r.stderr
        assert r.stdout == ""


def test_setup_failure_is_125_naming_step_and_path(family):
    ok(family.run("probe", "exit", "0"))
    private = family.app / "private"
    shutil.rmtree(private)  # a mandatory bind source inside the node, gone after caching
    r = family.run("probe", "write", "/nodes/app/var/ran", opts=("-v",))
    ok(r, 125)
    assert "using the cached plan" in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("redwrap: mount: ") and str(private) in last, r.stderr
    assert not (family.app / "var" / "ran").exists()


def _pids_cgroup(pid: int) -> Path:
    """The host directory of the pids controller's cgroup of process pid (v1 or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return Path("/sys/fs/cgroup/pids" + path)
        if controllers == "" and (Path("/sys/fs/cgroup" + path) / "pids.max").exists():
            return Path("/sys/fs/cgroup" + path)
    raise AssertionError(f"no pids cgroup for {pid}")


def test_cgroups_applied_and_removed_from_the_cache_with_oom_reported(root_family):
    fam = root_family
    fam.edit(fam.app, lambda d: d["config"].update(
        cgroups={"pids": {"max": 50}, "mem": {"max": "64M"}}))
    ok(fam.run("probe", "exit", "0"))
    proc = fam.caller.popen(fam.argv("probe", "info", "sleep", "1", opts=("-v",)))
    try:
        read_until(proc, "sigpipe")
        cgroup = _pids_cgroup(program_pid(proc.pid))  # the launch's own, in the leaf's
        limit = (cgroup.parent / "pids.max").read_text().strip()
    finally:
        status, _, err = finish(proc)
    assert status == 0 and "using the cached plan" in err, err
    assert cgroup.parent.name.startswith("redpak-app") and limit == "50"
    # removed by the native launcher once the node ended, the family's too
    assert not cgroup.exists() and not cgroup.parent.exists()
    hog = "x = bytearray(400 << 20); print('survived')"
    r = fam.run("python3", "-c", hog, opts=("-v",))
    ok(r, 128 + signal.SIGKILL)
    assert "using the cached plan" in r.stderr
    assert "redwrap: the program was killed by the OOM killer (mem.max 64M of node 'app')" \
        in r.stderr, r.stderr
    assert "survived" not in r.stdout


# ---- processes ------------------------------------------------------------------------------

def test_signals_sent_to_redwrap_reach_the_program(family):
    ok(family.run("probe", "exit", "0"))
    proc = family.caller.popen(family.argv("probe", "trap", "sleep", "5", "exit", "4"))
    try:
        read_until(proc, "trapped")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                    signal.SIGUSR1, signal.SIGUSR2):
            proc.send_signal(sig)
            time.sleep(0.1)
    finally:
        status, out, err = finish(proc)
    assert status == 4, err
    for sig in (15, 2, 1, 3, 10, 12):
        assert f"signal {sig}\n" in out


def test_unhandled_sigterm_ends_the_program_with_128_plus_15(family):
    ok(family.run("probe", "exit", "0"))
    proc = family.caller.popen(family.argv("probe", "info", "sleep", "30"))
    try:
        read_until(proc, "sigpipe")
        proc.send_signal(signal.SIGTERM)
    finally:
        status, _, err = finish(proc)
    assert status == 128 + signal.SIGTERM, err


def test_orphans_are_reaped_and_killed_with_the_node(family):
    r, lines = family.probe("zombie")
    ok(r)
    assert value(lines, "zombie") == "gone"
    proc = family.caller.popen(family.argv("probe", "orphan", "sleep", "1"))
    try:
        read_until(proc, "orphan ")
        ns = os.readlink(f"/proc/{children(proc.pid)[0]}/ns/pid")
        assert len(in_pid_ns(ns)) == 3  # init, the program, its orphan
    finally:
        status, _, err = finish(proc)
    assert status == 0, err
    assert _gone(ns)


def _gone(ns: str, timeout: float = 5.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not in_pid_ns(ns):
            return True
        time.sleep(0.05)
    return False


def test_killing_redwrap_kills_the_whole_node(family):
    ok(family.run("probe", "exit", "0"))
    proc = family.caller.popen(family.argv("probe", "orphan", "sleep", "60"))
    try:
        read_until(proc, "orphan ")
        init = children(proc.pid)[0]
        ns = os.readlink(f"/proc/{init}/ns/pid")
        assert len(in_pid_ns(ns)) == 3
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait()
        assert _gone(ns), f"processes survived in {ns}: {in_pid_ns(ns)}"
    finally:
        finish(proc)


def test_leaked_descriptors_are_not_visible_inside(family):
    saved = {}
    for fd in (7, 9):  # pytest's capture files may live there: keep them aside
        if _is_open(fd):
            saved[fd] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
    leak = os.open(family.host, os.O_RDONLY)
    os.dup2(leak, 7, inheritable=True)
    os.dup2(leak, 9, inheritable=True)
    os.close(leak)
    try:
        for _ in range(2):  # cold path, then the cache
            r, lines = family.probe("info", "stat", "/proc/self/fd/7", pass_fds=(7, 9))
            ok(r)
            assert value(lines, "fds") == "0 1 2"
            assert value(lines, "stat /proc/self/fd/7") == "ENOENT"
    finally:
        for fd in (7, 9):
            if fd in saved:
                os.dup2(saved.pop(fd), fd, inheritable=False)
            else:
                os.close(fd)
        for fd in saved.values():
            os.close(fd)


def test_symlinked_mount_target_never_mounts_outside_the_new_root(family):
    """Mount points under links planted in the node's tree resolve inside the node's root,
    or are refused: never a mount or a directory on the host."""
    unique = f"rp-escape-{uuid.uuid4().hex[:8]}"
    var = family.app / "var"
    (var / "abs").symlink_to("/dev")                        # the host's /dev
    (var / "rel").symlink_to("../../../../../../../..")     # climbs past every root
    family.own()

    def change(d):
        export(d, "Tmpfs", f"/nodes/app/var/abs/{unique}")
        export(d, "Anonymous", f"/nodes/app/var/rel/{unique}")
    family.edit(family.app, change)
    before = Path("/proc/self/mountinfo").read_text()
    try:
        r, lines = family.probe("stat", f"/dev/{unique}", "write", f"/dev/{unique}/x",
                                "stat", f"/{unique}", "mounts")
        ok(r)
        assert value(lines, f"stat /dev/{unique}").startswith("dir")   # the node's /dev
        assert value(lines, f"write /dev/{unique}/x") == "ok"
        assert value(lines, f"stat /{unique}").startswith("dir")       # the node's /
        assert not Path(f"/dev/{unique}").exists()
        assert not Path(f"/{unique}").exists()
        assert Path("/proc/self/mountinfo").read_text() == before
    finally:
        for leftover in (Path(f"/dev/{unique}"), Path(f"/{unique}")):
            if leftover.is_dir() and not os.path.ismount(leftover):
                shutil.rmtree(leftover, ignore_errors=True)


def test_mount_target_through_a_link_to_a_missing_path_is_refused(family):
    victim = family.hostdir("victim")
    (family.app / "var" / "host").symlink_to(victim)  # exists on the host, not in the node
    family.own()
    family.edit(family.app, lambda d: export(d, "Tmpfs", "/nodes/app/var/host/t"))
    before = Path("/proc/self/mountinfo").read_text()
    r = family.run("probe", "write", "/nodes/app/var/ran")
    ok(r, 125)
    last = r.stderr.splitlines()[-1]
    assert last.startswith("redwrap: mount: ") and "/nodes/app/var/host" in last, r.stderr
    assert list(victim.iterdir()) == []
    assert not (family.app / "var" / "ran").exists()
    assert Path("/proc/self/mountinfo").read_text() == before


# TIOCSTI: tests/privileged/test_security_attacks.py (with and without new-session).


# ---- the plan cache -------------------------------------------------------------------------

def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def test_corrupt_or_truncated_cache_is_rebuilt_never_run(family):
    ok(family.run("probe", "exit", "0"))
    cache = family.cache()
    data = cache.read_bytes()
    at = data.index(b"\0app\0") + 3  # the hostname 'app' -> 'apq'
    _flip(cache, at)
    r, lines = family.probe("info", opts=("-v",))
    ok(r)
    assert f"rebuilding the plan (cached plan {cache} is corrupt: " in r.stderr
    assert "checksum" in r.stderr
    assert value(lines, "hostname") == "app"  # from the configs, not the flipped byte
    assert cache.read_bytes() == data          # rewritten by the cold path
    cache.write_bytes(data[:-16])
    r = family.run("probe", "exit", "5", opts=("-v",))
    ok(r, 5)
    assert "is corrupt: " in r.stderr and "truncated" in r.stderr
    cache.write_bytes(b"")
    r = family.run("probe", "exit", "6", opts=("-v",))
    ok(r, 6)
    assert "is corrupt: size 0" in r.stderr
    r = family.run("probe", "exit", "0", opts=("-v",))
    assert "using the cached plan" in r.stderr


def test_stale_cache_is_rebuilt_after_a_config_edit(family):
    ok(family.run("probe", "exit", "0"))
    family.edit(family.app, lambda d: d["environ"].append({"key": "NEW", "value": "1"}))
    r, lines = family.probe("env", opts=("-v",))
    ok(r)
    assert f"cached plan {family.cache()} is stale: dependency " in r.stderr
    assert str(family.app / "etc" / "redpak.yaml") in r.stderr
    assert env_of(lines)["NEW"] == "1"
    r = family.run("probe", "exit", "0", opts=("-v",))
    assert "using the cached plan" in r.stderr
    # a node appearing between the leaf and / changes the family: the plan is stale
    create_node(str(family.top), model="root")
    family.own()
    r = family.run("probe", "exit", "0", opts=("-v",))
    assert "is stale: dependency " in r.stderr and "appeared" in r.stderr, r.stderr


def test_untrusted_cache_files_are_not_used(family):
    ok(family.run("probe", "exit", "0"))
    cache = family.cache()
    cache.chmod(0o666)
    r = family.run("probe", "exit", "0", opts=("-v",))
    ok(r)
    assert f"{cache} is writable by group or others" in r.stderr
    assert cache.stat().st_mode & 0o022 == 0
    os.chown(cache, 4242, 4242)
    r = family.run("probe", "exit", "0", opts=("-v",))
    ok(r)
    assert f"{cache} is owned by uid 4242, neither the caller nor root" in r.stderr
    assert cache.stat().st_uid == family.caller.uid
    cache.parent.chmod(0o777)
    r = family.run("probe", "exit", "0", opts=("-v",))
    ok(r)
    assert f"{cache.parent} is writable by group or others" in r.stderr


def test_cache_compiled_for_another_path_is_not_used(family):
    alias = family.top / "alias"
    alias.symlink_to(family.sys)
    os.lchown(alias, family.caller.uid, family.caller.gid)
    ok(family.run("probe", "exit", "0"))
    # Each path to a node has its own cache file (keyed by the normalised path), so the
    # plan of sys/app (whose LEAF_PATH etc. name that path) is never used for alias/app.
    assert family.cache(alias / "app") != family.cache()
    r, lines = family.probe("env", node=alias / "app", opts=("-v",))
    ok(r)
    assert f"no cached plan {family.cache(alias / 'app')}" in r.stderr
    r = family.run("probe", "exit", "0", node=alias / "app", opts=("-v",))
    assert f"using the cached plan {family.cache(alias / 'app')}" in r.stderr


def test_dump_only_prints_and_changes_nothing(family):
    marker = family.host / "marker"

    def change(d):
        export(d, "Public", "/nodes/app/new", "$NODE_PATH/newdir")
        d["environ"].append({"key": "CMD", "value": f"$(touch {marker})"})
    family.edit(family.app, change)
    r = family.caller.run([family.caller.redwrap, "-D", "-r", str(family.app)])
    ok(r)
    assert r.stdout.startswith("redpak launch plan")
    assert "/nodes/app/new" in r.stdout
    assert not marker.exists()
    assert not (family.app / "newdir").exists()
    assert not family.cache().exists()
    r = family.run("probe", "stat", "/nodes/app/new", opts=("--dump",))
    ok(r)
    assert r.stdout.startswith("redpak launch plan")
    assert r.stdout.rstrip().endswith("stat /nodes/app/new dir 0755")
    assert marker.exists() and (family.app / "newdir").is_dir()


def test_force_rebuilds_a_valid_cache(family):
    ok(family.run("probe", "exit", "0"))
    before = family.cache().stat().st_ino
    r = family.run("probe", "exit", "0", opts=("-f", "-v"))
    ok(r)
    assert "option -f needs the plan compiler" in r.stderr
    assert family.cache().stat().st_ino != before  # written again


# ---- the cached path under strace -----------------------------------------------------------

def test_cached_path_execs_only_the_program(root_family, tmp_path):
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    fam = root_family
    ok(fam.run("probe", "exit", "0"))
    log = tmp_path / "execve"
    r = fam.caller.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(log),
                        *fam.argv("probe", "exit", "0")])
    ok(r)
    execs = [ln.split("execve(", 1)[1].split(",", 1)[0]
             for ln in log.read_text().splitlines() if "execve(" in ln and "= 0" in ln]
    assert execs == [f'"{fam.caller.redwrap}"', '"/nodes/app/usr/bin/probe"'], log.read_text()


def _calls_per_process(log: Path, name: str) -> int:
    """The most calls of `name` any one traced process made (strace -f -o LOG lines: 'PID
    name('). Only that name: an strace older than the kernel also shows the system calls
    it does not know (open_tree_attr as 'syscall_0x1d3(' in strace 6.1) whatever the
    filter, and cannot inject into them."""
    counts: dict[str, int] = {}
    for line in log.read_text().splitlines():
        pid, _, rest = line.partition(" ")
        if rest.lstrip().startswith(name + "("):
            counts[pid] = counts.get(pid, 0) + 1
    return max(counts.values(), default=0)


# strace counts calls per process: when=N is the Nth call of each traced process. The
# calls are counted first (the C core may change how it mounts), then failed one by one.
@pytest.mark.parametrize("syscall", [
    "mount", "open_tree", "move_mount", "fsopen", "fsmount", "mount_setattr", "pivot_root",
    "umount2", "capset", "prctl", "sethostname", "setgroups", "clone", "setns", "openat2",
])
def test_injected_setup_failures_fail_closed(root_family, tmp_path, syscall):
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    fam = root_family
    out = fam.hostdir("out")
    netns = f"rp-test-{uuid.uuid4().hex[:8]}"

    def change(d):
        export(d, "Public", "/out", str(out))
        if syscall == "setns":
            d["config"]["share_net"] = f"/run/netns/{netns}"
    if syscall == "setns":
        subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        fam.edit(fam.app, change)
        ok(fam.run("probe", "exit", "0"))
        log = tmp_path / "calls"
        r = fam.caller.run(["strace", "-f", "-qq", "-o", str(log), "-e", f"trace={syscall}",
                            *fam.argv("probe", "exit", "0", opts=("-v",))])
        ok(r)
        assert "using the cached plan" in r.stderr
        calls = _calls_per_process(log, syscall)
        if not calls:
            pytest.skip(f"this build of the C core makes no {syscall} call")
        # the first openat2 and mount_setattr are feature probes: a failure is a fallback
        first = 2 if syscall in ("openat2", "mount_setattr") else 1
        if calls < first:
            pytest.skip(f"this build of the C core makes no {syscall} call but its probe (with "
                        "open_tree_attr, Linux 6.15, read-only copies take one call: "
                        "test_core.py injects into both paths)")
        whens = sorted({w for w in (first, first + 1, first + 2, calls // 2, calls - 1, calls)
                        if first <= w <= calls})
        for when in whens:
            r = fam.caller.run(["strace", "-f", "-qq", "-o", "/dev/null",
                                "-e", f"trace={syscall}",
                                "-e", f"inject={syscall}:error=EPERM:when={when}",
                                *fam.argv("probe", "write", "/out/marker", opts=("-v",))])
            assert "using the cached plan" in r.stderr
            assert r.returncode == 125, (when, calls, r.stdout, r.stderr)
            assert r.stderr.splitlines()[-1].startswith("redwrap: "), r.stderr
            assert not (out / "marker").exists(), f"{syscall} when={when}: the program ran"
    finally:
        if syscall == "setns":
            subprocess.run(["ip", "netns", "delete", netns], check=False)


# ---- known bugs -----------------------------------------------------------------------------

def test_admin_sandbox_cannot_plant_a_cached_plan(root_family):
    from redpak.planfile import LaunchPlan, Mount, MountKind
    fam = root_family
    secret = fam.hostdir("secret")
    (secret / "key").write_text("host secret\n")
    ok(fam.run("probe", "exit", "0"))
    plan = LaunchPlan.decode(fam.cache().read_bytes())
    evil = LaunchPlan(**{**plan.__dict__,
                         "mounts": plan.mounts + (Mount(MountKind.BIND, "/stolen",
                                                        str(secret)),)})
    (fam.app / "evil.bin").write_bytes(evil.encode())
    # a package scriptlet would do this: it runs in the admin sandbox, where the node's
    # directory is writable. The cache lives outside every node, so it cannot reach it.
    for target in (fam.cache(), fam.app / ".redpak-cache" / fam.cache().name):
        fam.run("/bin/sh", "-c", f"mkdir -p {target.parent} && cp {fam.app}/evil.bin {target}",
                opts=("--admin",))
    assert LaunchPlan.decode(fam.cache().read_bytes()) == plan
    r, lines = fam.probe("read", "/stolen/key", opts=("-v",))
    ok(r)
    assert value(lines, "read /stolen/key") == "ENOENT"
