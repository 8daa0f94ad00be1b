"""redpak 2.x compatibility, end to end: node configs written for redpak 2.x
(tests/fixtures/compat2x/, the situations of redpak 2.5.1's live test cases) run as written
with the native redwrap, checked from inside the node (busybox, the shell, a static
helper) and from the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rp_testutil import remove_tree

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the redpak 2.x tests need root (namespaces, mounts)", allow_module_level=True)

from redpak.node import create_node  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "compat2x"
BUSYBOX = "/usr/bin/busybox"  # Debian's busybox-static (tools/setup.sh installs it)
BASE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "USER": "root"}


class Family2x:
    """The 2.x test family in a scratch directory: TOP/system (system.yaml) and its leaves,
    one per test case, each made from its fixture config as written. Run by root, or by
    `user` (a pwd entry) with a world-readable copy of redpak (`package`)."""

    def __init__(self, redwrap: Path, user=None, package: Path | None = None):
        self.user = user
        self.redwrap = str(package / "bin" / "redwrap") if user else str(redwrap)
        self.env = {**BASE_ENV, "USER": user.pw_name if user else "root"}
        if user:
            self.env.update(PYTHONPATH=str(package), REDPAK_PYTHON="/usr/bin/python3")
        self.top = Path(tempfile.mkdtemp(prefix="rp-2x-"))
        self.top.chmod(0o755)
        self.cache = self.top / "cache"
        self.env["REDPAK_CACHE_DIR"] = str(self.cache)
        self.system = self.top / "system"
        self.redconf("create", "--root", "--config", FIXTURES / "system.yaml",
                     "--redroot", self.top, "--node", "system")
        self.own()

    @staticmethod
    def redconf(*args) -> str:
        """redconf as a 2.x user types it; its stdout."""
        r = subprocess.run([sys.executable, "-m", "redpak.cli.redconf", *map(str, args)],
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def own(self) -> None:
        """The whole tree belongs to the caller (an unprivileged caller's nodes are its own)."""
        if self.user:
            for p in [self.top, *self.top.rglob("*")]:
                os.lchown(p, self.user.pw_uid, self.user.pw_gid)

    def leaf(self, name: str, parent: Path | None = None) -> Path:
        path = (parent or self.system) / name
        self.redconf("create", "-c", FIXTURES / f"{name}.yaml", "-R", path.parent, "-n", name)
        self.own()
        return path

    def add_export(self, node: Path, mode: str, mount: str, path: str | Path) -> None:
        conf = node / "etc" / "redpak.yaml"
        text = conf.read_text()
        if "\nexports:" not in text:
            text += "\nexports:\n"
        conf.write_text(text + f"  - mode: {mode}\n    mount: {mount}\n    path: {path}\n")
        self.own()

    def argv(self, node: Path, *program: str, opts: tuple[str, ...] = ()) -> list[str]:
        return [self.redwrap, *opts, "--redpath", str(node), "--", *program]

    def run(self, node: Path, *program: str, opts: tuple[str, ...] = (), env=None,
            argv: list[str] | None = None, **kw) -> subprocess.CompletedProcess:
        if self.user:
            kw.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        return subprocess.run(argv or self.argv(node, *program, opts=opts),
                              env={**self.env, **(env or {})}, cwd="/", capture_output=True,
                              text=True, timeout=60, check=False, **kw)


@pytest.fixture
def fam(native_redwrap):
    f = Family2x(native_redwrap)
    yield f
    remove_tree(f.top)


@pytest.fixture(params=["root", "user"])
def any_fam(request, native_redwrap):
    """The family run by root, then by an unprivileged user."""
    if request.param == "root":
        f = Family2x(native_redwrap)
    else:
        f = Family2x(native_redwrap, request.getfixturevalue("unpriv_user"),
                     request.getfixturevalue("public_package"))
    yield f
    remove_tree(f.top)


def ok(r: subprocess.CompletedProcess, status: int = 0) -> None:
    assert r.returncode == status, f"status {r.returncode}\n{r.stdout}\n{r.stderr}"


def legacy_mounts(argv: list[str]) -> list[str]:
    """argv run under strace with mount_setattr() failing with ENOSYS: the C core then
    takes its pre-5.12 mount path (mount(2), no detached trees)."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed (tools/setup.sh installs it)")
    return ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=mount_setattr",
            "-e", "inject=mount_setattr:error=ENOSYS", *argv]


# ---- item 1: the plain export modes bind an existing file ---------------------------------

@pytest.fixture
def busybox():
    if not os.path.isfile(BUSYBOX):
        pytest.skip(f"{BUSYBOX} is missing (Debian package busybox-static)")
    return BUSYBOX


@pytest.mark.parametrize("mount_api", ["new", "legacy"])
def test_busybox_bound_with_private_runs(fam, busybox, mount_api):
    node = fam.leaf("busybox")
    for path in ("cold", "cached"):
        argv = fam.argv(node, "busybox", "sh", "-c",
                        "echo hello from $(busybox stat -c %F /usr/sbin/busybox)", opts=("-v",))
        if mount_api == "legacy":
            argv = legacy_mounts(argv)
        r = fam.run(node, argv=argv)
        ok(r)
        assert r.stdout == "hello from regular file\n", path
        assert ("using the cached plan" in r.stderr) == (path == "cached"), r.stderr


def test_script_bound_with_private_runs(fam):
    node = fam.leaf("script")
    script = node / "scripts" / "hello.sh"
    script.parent.mkdir()
    script.write_text('#!/bin/sh\necho "hello from $0:" "$@"\n')
    script.chmod(0o755)
    r = fam.run(node, "/usr/local/bin/hello.sh", "a", "b c")
    ok(r)
    assert r.stdout == "hello from /usr/local/bin/hello.sh: a b c\n"
    assert r.stderr == ""
    r = fam.run(node, "sh", "-c", "echo appended >> /usr/local/bin/hello.sh && echo written")
    ok(r)
    assert "appended" in script.read_text()  # Private is read-write


def test_private_restricted_file_is_read_only_inside(fam):
    node = fam.leaf("restricted")
    motd = node / "etc" / "motd"
    motd.write_text("node message\n")
    r = fam.run(node, "sh", "-c", "cat /etc/node-motd; echo x >> /etc/node-motd; echo status $?;"
                                  " stat -c %F /etc/node-motd")
    ok(r)
    assert r.stdout == "node message\nstatus 2\nregular file\n"
    assert "Read-only file system" in r.stderr
    assert motd.read_text() == "node message\n"
    # Private: the node's child does not get it
    child = node / "child"
    create_node(str(child), config=str(FIXTURES / "loopback.yaml"), alias="child")
    r = fam.run(child, "sh", "-c", "test -e /etc/node-motd && echo seen || echo absent")
    ok(r)
    assert r.stdout == "absent\n"


@pytest.mark.parametrize("mode", ["Public", "Restricted", "Private", "PrivateRestricted"])
def test_every_plain_mode_binds_a_host_file(fam, mode):
    node = fam.leaf("restricted")
    host = fam.top / "host.txt"
    host.write_text("from the host\n")
    fam.add_export(node, mode, "/srv/host.txt", host)
    r = fam.run(node, "sh", "-c", "cat /srv/host.txt; echo more >> /srv/host.txt; echo $?")
    ok(r)
    readonly = "Restricted" in mode
    assert r.stdout == f"from the host\n{2 if readonly else 0}\n", r.stderr
    assert host.read_text() == "from the host\n" + ("" if readonly else "more\n")


def test_cached_plain_bind_follows_the_source_kind(fam):
    """The plan says 'bind'; the C core binds what the source is at launch, so a cached
    plan keeps working when a file source becomes a directory. A *File mode still
    refuses a directory, with a clean 125."""
    node = fam.leaf("restricted")
    plain, single = fam.top / "plain", fam.top / "single"
    plain.write_text("a file\n")
    single.write_text("a file\n")
    fam.add_export(node, "Public", "/srv/plain", plain)
    ok(fam.run(node, "true"))
    plain.unlink()
    plain.mkdir()
    (plain / "inside").write_text("x")
    r = fam.run(node, "stat", "-c", "%F", "/srv/plain", "/srv/plain/inside", opts=("-v",))
    ok(r)
    assert "using the cached plan" in r.stderr
    assert r.stdout == "directory\nregular file\n"
    fam.add_export(node, "PublicFile", "/srv/single", single)
    ok(fam.run(node, "true"))
    single.unlink()
    single.mkdir()
    r = fam.run(node, "true", opts=("-v",))
    ok(r, 125)
    assert "using the cached plan" in r.stderr
    assert r.stderr.splitlines()[-1] == f"redwrap: mount: bind source {single}: Is a directory"


def test_file_mode_refuses_a_directory_when_compiling(fam):
    node = fam.leaf("restricted")
    fam.add_export(node, "RestrictedFile", "/srv/d", fam.top)
    r = fam.run(node, "true")
    ok(r, 125)
    assert f"RestrictedFile needs a file, but '{fam.top}' is a dir" in r.stderr
    assert "etc/redpak.yaml" in r.stderr


# ---- item 2: a new network namespace has its loopback up ----------------------------------

def test_private_network_namespace_has_loopback_up(any_fam, helper_bin):
    fam = any_fam
    node = fam.leaf("loopback")
    fam.add_export(node, "PrivateRestricted", "/usr/local/bin/loopback", helper_bin / "loopback")
    for path in ("cold", "cached"):
        r = fam.run(node, "sh", "-c", "/usr/local/bin/loopback; readlink /proc/self/ns/net", opts=("-v",))
        ok(r)
        assert ("using the cached plan" in r.stderr) == (path == "cached"), r.stderr
        lines = r.stdout.splitlines()
        assert lines[:2] == ["lo up", "connect ok"], r.stdout
        assert lines[2] != os.readlink("/proc/self/ns/net")  # a new network namespace


def test_shared_network_namespace_is_left_alone(fam, helper_bin):
    """share_net: enabled (the system node's): the host's namespace, nothing to bring up."""
    node = fam.leaf("script")
    fam.add_export(node, "PrivateRestricted", "/usr/local/bin/loopback", helper_bin / "loopback")
    r = fam.run(node, "sh", "-c", "/usr/local/bin/loopback; readlink /proc/self/ns/net")
    ok(r)
    assert r.stdout.splitlines() == ["lo up", "connect ok", os.readlink("/proc/self/ns/net")]


def test_loopback_failure_fails_the_launch_closed(fam, helper_bin):
    """If the kernel refuses the netlink request, nothing runs (125, step named)."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed (tools/setup.sh installs it)")
    node = fam.leaf("loopback")
    out = fam.top / "out"
    out.mkdir()
    fam.add_export(node, "Public", "/out", out)
    ok(fam.run(node, "touch", "/out/first"))
    assert (out / "first").exists()
    marker = out / "ran"
    r = fam.run(node, argv=["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=socket",
                            "-e", "inject=socket:error=EACCES",
                            *fam.argv(node, "touch", "/out/ran", opts=("-v",))])
    ok(r, 125)
    assert "using the cached plan" in r.stderr
    assert r.stderr.splitlines()[-1] == \
        "redwrap: ns-new: bring up lo: netlink socket: Permission denied", r.stderr
    assert not marker.exists()


# ---- item 3: inherit-env gives the caller's environment, on the cold and the cached path --

# Each op of the family removes any earlier value of its name, then appends its own
# (docs/launch.md, Environment): the system node's, the leaf's, then PATH/LD_LIBRARY_PATH.
INHERIT_CHANGES = [(b"PS1", None), (b"HOME", b"/home/inherit"), (b"REDPAK_2X", b"node-inherit"),
                   (b"DROPPED", None), (b"VERBATIM", b"$NOT_EXPANDED"),
                   (b"PATH", b"/usr/bin:/bin"), (b"LD_LIBRARY_PATH", b"/usr/lib64:/lib64")]


def expected_environment(caller: list[tuple[bytes, bytes]]) -> bytes:
    env = list(caller)
    for name, value in INHERIT_CHANGES:
        env = [(k, v) for k, v in env if k != name]
        if value is not None:
            env.append((name, value))
    return b"".join(k + b"=" + v + b"\0" for k, v in env)


@pytest.mark.parametrize("locale", [
    [],                                      # no locale at all: Python would coerce it
    [(b"LC_CTYPE", b"C")],                   # coerced too, and its value replaced
    [(b"LANG", b"C.UTF-8"), (b"LC_ALL", b"POSIX")],
])
def test_inherit_env_is_exactly_the_callers_on_both_paths(any_fam, locale):
    fam = any_fam
    node = fam.leaf("inherit")
    caller = [(k.encode(), v.encode()) for k, v in fam.env.items() if k not in ("LANG",)]
    caller[1:1] = locale
    caller += [(b"PS1", b"$ "), (b"DROPPED", b"x"), (b"WITH_EQUALS", b"a=b=c"),
               (b"MULTI_LINE", b"one\ntwo"), (b"NOT_UTF8", b"\xff\xfe latin-1 \xe9"),
               (b"EMPTY", b""), (b"HOME", b"/root")]
    env = dict(caller)
    assert len(env) == len(caller)
    argv = fam.argv(node, "env", "-0", opts=("-v",))
    outputs = []
    for path in ("cold", "cached"):
        kw = {"user": fam.user.pw_uid, "group": fam.user.pw_gid,
              "extra_groups": []} if fam.user else {}
        r = subprocess.run(argv, env=env, cwd="/", capture_output=True, timeout=60, check=False,
                           **kw)
        assert r.returncode == 0, r.stderr
        assert (b"using the cached plan" in r.stderr) == (path == "cached"), r.stderr
        outputs.append(r.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0] == expected_environment(caller)


# ---- item 5 and the other 2.x test cases ---------------------------------------------------

NOTICE = "redwrap: --unsafe and --bwrap have no effect (accepted for redpak 2.x command lines)"


def test_2x_redwrap_command_line_on_both_paths(any_fam, busybox):
    """`redwrap --rp NODE --unsafe --bwrap PATH PROGRAM ARGS` (no '--'): the same output and
    one notice, whether the plan is compiled (cold path) or cached (native)."""
    fam = any_fam
    node = fam.leaf("busybox")
    argv = [fam.redwrap, "--verbose=1", "--rp", str(node), "--unsafe", "--bwrap",
            "/usr/bin/bwrap", "busybox", "echo", "--unsafe", "-l"]
    for path in ("cold", "cached", "stale"):
        if path == "stale":
            fam.add_export(node, "Tmpfs", "/scratch", "")
        r = fam.run(node, argv=argv)
        ok(r)
        assert r.stdout == "--unsafe -l\n"
        assert r.stderr.count("no effect") == 1 and NOTICE in r.stderr.splitlines(), r.stderr
        assert ("using the cached plan" in r.stderr) == (path == "cached"), r.stderr
        assert ("is stale" in r.stderr) == (path == "stale"), r.stderr
    r = fam.run(node, argv=[fam.redwrap, "--rpath", str(node), "busybox", "true"])
    ok(r)
    assert r.stderr == ""


def test_2x_uid_and_gid_options(fam, busybox):
    node = fam.leaf("busybox")
    r = fam.run(node, argv=[fam.redwrap, "--rpath", str(node), "--uid", "65534", "--gid=65534",
                            "busybox", "sh", "-c", "echo $(busybox id -u) $(busybox id -g)"])
    ok(r)
    assert r.stdout == "65534 65534\n"


def test_variables_referring_to_their_own_name(fam):
    node = fam.leaf("selfref")
    r = fam.run(node, "sh", "-c", 'echo "$MANPATH|$GREETING"',
                env={"MANPATH": "/usr/share/man", "GREETING": "hello"})
    ok(r)
    assert r.stdout == "/opt/2x/man:/usr/share/man|hello-and-more\n"
    r = fam.run(node, "sh", "-c", 'echo "$MANPATH|$GREETING"')
    ok(r)
    assert r.stdout == "/opt/2x/man:|-and-more\n"


def test_2x_family_tree_and_merged_config(fam):
    """redconf tree -r and mergeconfig -r -e on the 2.x family, as 2.x users check it."""
    for name in ("busybox", "restricted", "inherit"):
        fam.leaf(name)
    out = fam.redconf("tree", "-r", fam.top)
    assert out.splitlines() == [
        f"system  [Enable]  {fam.system}",
        *(f"  {n}  [Enable]  {fam.system}/{n}" for n in ("busybox", "inherit", "restricted")),
    ]
    out = fam.redconf("mergeconfig", "-r", fam.system / "restricted", "-e")
    assert f"path: {fam.system}/restricted/etc/motd" in out


def test_file_bound_with_a_plain_mode_under_landlock(fam):
    """Landlock grants a plain-mode bind on a file the file rights only (the C core masks
    the directory rights): the file reads, and stays read-only for PrivateRestricted."""
    node = fam.leaf("restricted")
    (node / "etc" / "motd").write_text("under landlock\n")
    conf = node / "etc" / "redpak.yaml"
    conf.write_text(conf.read_text().replace("exports:\n", "config:\n  landlock:\n"
                                             "    enabled: true\n\nexports:\n", 1))
    r = fam.run(node, "sh", "-c", "cat /etc/node-motd; echo x >> /etc/node-motd; echo $?")
    ok(r)
    assert r.stdout == "under landlock\n2\n", r.stderr
