"""Attacks from inside a node, run through the native `redwrap` by root and by an
unprivileged user (issue 9). Each test performs the escape for real with the static
tests/privileged/helpers/attack.c and asserts that it fails; none changes a host value
if it succeeded (writes put back the value already there).
"""

from __future__ import annotations

import fcntl
import os
import pty
import resource
import select
import shutil
import signal
import termios
import time
import uuid
from pathlib import Path

import pytest
from rp_testutil import value

from redpak.planfile import Mount, MountFlag, MountKind

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the security tests need root (namespaces, mounts, a test user)",
                allow_module_level=True)

# The stock two-level family and its callers, shared with test_redwrap.py.
from test_redwrap import (  # noqa: E402,F401
    caller, children, export, family, finish, in_pid_ns, ok, read_until, root_caller,
    root_family, user_caller, user_family)


@pytest.fixture
def attacker(family, helper_bin):
    """The stock family with the attack helper installed in its leaf."""
    family.install(helper_bin / "attack")
    return family


def attack(fam, *args: str, opts: tuple[str, ...] = (), **kw):
    r = fam.run("attack", *args, opts=opts, **kw)
    return r, r.stdout.splitlines()


# ---- item 8: io_uring -------------------------------------------------------------------

def test_default_seccomp_profile_denies_io_uring(attacker):
    r, lines = attack(attacker, "io_uring")  # the harness: io_uring works without the profile
    ok(r)
    assert value(lines, "io_uring") == "ok", "io_uring is not usable on this host"
    attacker.edit(attacker.sys, lambda d: d["config"].update({"seccomp": {"profile": "default"}}))
    r, lines = attack(attacker, "io_uring")
    ok(r)
    assert value(lines, "io_uring") == "EPERM"


# ---- item 1: bind sources through symlinks the node controls --------------------------------

def test_node_symlink_never_leads_a_bind_to_the_host(attacker):
    """The payload of an admin launch (it writes /nodes/app/var through the stock Public
    export) turns var/lib/rpm into a link to /etc: the next admin launch, from the cached
    plan, must refuse it, naming the link, and never show the host's /etc."""
    unique = f"rp-escape-{uuid.uuid4().hex[:8]}"
    ok(attacker.run("attack", opts=("-a",)))          # plan compiled and cached
    assert attacker.cache(admin=True).exists()
    rpm = attacker.app / "var" / "lib" / "rpm"
    # the payload, from inside: the rpm directory is busy (mounted at /var/lib/rpm), so
    # it moves its parent aside
    r = attacker.run("/bin/sh", "-c", "cd /nodes/app/var && mv lib lib.old && mkdir lib && "
                     "ln -s /etc lib/rpm", opts=("-a",))
    ok(r)
    assert rpm.is_symlink() and os.readlink(rpm) == "/etc"
    try:
        for opts in (("-a",), ("-a", "-f"), ()):      # cached plan, cold path, normal mode
            r = attacker.run("probe", "write", f"/var/lib/rpm/{unique}", "read",
                             "/var/lib/rpm/hostname", opts=opts)
            ok(r, 125)
            last = r.stderr.splitlines()[-1]
            assert last.startswith("redwrap: mount: ") and str(rpm) in last, r.stderr
            assert "symbolic link" in last, r.stderr
            assert not Path(f"/etc/{unique}").exists()
            assert "read /var/lib/rpm/hostname" not in r.stdout
    finally:
        if Path(f"/etc/{unique}").exists():
            os.unlink(f"/etc/{unique}")


def test_a_link_above_the_source_inside_the_family_is_refused_too(attacker):
    """A link anywhere between the family's outermost node directory and the source (here
    the leaf's var itself, pointing at a host directory) is refused the same way."""
    outside = attacker.hostdir("outside")
    (outside / "lib" / "rpm").mkdir(parents=True)  # every source under it exists
    var = attacker.app / "var"
    shutil.rmtree(var)
    var.symlink_to(outside)
    attacker.own()
    r = attacker.run("probe", "write", "/nodes/app/var/x")
    ok(r, 125)
    assert f"{var} is a symbolic link inside the node" in r.stderr, r.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["lib"]


@pytest.mark.parametrize("disable", [0, "all"], ids=["openat2", "walk"])
def test_core_opens_beneath_sources_without_following_links(probe, hostdir, disable):
    """The C core itself (with openat2, and with the component walk it falls back to):
    a BENEATH bind whose path holds a link is refused naming it, whatever the link's
    target (absolute, relative, inside the node or out); a plain path is mounted."""
    from redpak.errors import LaunchError
    from test_core import ALL_FEATURES, make_plan, run

    node = hostdir / "node"
    (node / "data" / "real").mkdir(parents=True)
    (node / "data" / "real" / "f").write_text("inside\n")
    (hostdir / "secret").mkdir()
    (node / "data" / "abs").symlink_to(hostdir / "secret")
    (node / "data" / "rel").symlink_to("real")           # even one staying inside
    flags = MountFlag.RDONLY | MountFlag.BENEATH
    off = ALL_FEATURES if disable else 0

    def plan(path: str):
        return make_plan(probe, Mount(MountKind.BIND, "/d", str(node / path), flags,
                                      data=str(node).encode()))
    status, lines = run(plan("data/real"), "read", "/d/f", disable=off)
    assert status == 0 and value(lines, "read /d/f") == "inside\\n"
    for path in ("data/abs", "data/rel", "data/rel/sub"):
        with pytest.raises(LaunchError) as err:
            run(plan(path), "info", disable=off)
        text = str(err.value)
        assert "is a symbolic link inside the node" in text, text
        assert str(node / "data" / path.split("/")[1]) in text, text


def test_exports_of_one_directorys_children_never_show_their_siblings(family):
    """Several exports of the same host directory's children (the same mode, targets side
    by side, one source exported twice, as a launch might be tempted to group into one bind
    of their common parent): the node sees exactly those children. A sibling file and a
    sibling directory not exported stay invisible, by path, in a listing of the parent
    target and in the node's mount table, on the cached path and the cold path."""
    parent = family.hostdir("shared")
    for name in ("a", "b", "hidden"):
        (parent / name).mkdir()
        (parent / name / "f").write_text(f"{name}\n")
    (parent / "secret").write_text("sibling\n")
    family.own()

    def change(d):
        export(d, "Restricted", "/shared/a", str(parent / "a"))
        export(d, "Restricted", "/shared/b", str(parent / "b"))
        export(d, "Restricted", "/shared/b2", str(parent / "b"))    # the same source again
    family.edit(family.app, change)
    for opts in ((), ("-f",)):                  # cached plan (after the first), cold path
        for _ in range(2):
            r = family.run("probe", "read", "/shared/a/f", "read", "/shared/b/f",
                             "read", "/shared/b2/f", "stat", "/shared/secret",
                             "stat", "/shared/hidden", "read", "/shared/hidden/f",
                             "write", "/shared/a/x", "mounts", opts=opts)
            ok(r)
            lines = r.stdout.splitlines()
            assert value(lines, "read /shared/a/f") == "a\\n"
            assert value(lines, "read /shared/b/f") == value(lines, "read /shared/b2/f") == "b\\n"
            assert value(lines, "stat /shared/secret") == "ENOENT"
            assert value(lines, "stat /shared/hidden") == "ENOENT"
            assert value(lines, "read /shared/hidden/f") == "ENOENT"
            assert value(lines, "write /shared/a/x") == "EROFS"
            roots = [ln.split()[4] for ln in lines if ln.startswith("mount ")]
            assert not any(root.rstrip("/").endswith("/shared") for root in roots), roots
            listing = family.run("/bin/ls", "-a", "/shared", opts=opts)
            ok(listing)
            assert sorted(listing.stdout.split()) == [".", "..", "a", "b", "b2"]
    assert not (parent / "a" / "x").exists()


# ---- item 3: chdir through a leaked descriptor, descriptors reaching the node -----------------

def _leak_root_on(fd: int):
    """Opens the host's / on descriptor fd (inheritable); returns a function undoing it."""
    saved = None
    try:
        saved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
    except OSError:
        pass
    leak = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.dup2(leak, fd, inheritable=True)
    os.close(leak)

    def undo():
        if saved is not None:
            os.dup2(saved, fd, inheritable=False)
            os.close(saved)
        else:
            os.close(fd)
    return undo


def test_chdir_through_a_leaked_descriptor_never_starts_on_the_host(attacker):
    host_root = os.stat("/")
    attacker.edit(attacker.app, lambda d: d["config"].update({"chdir": "/proc/self/fd/9"}))
    undo = _leak_root_on(9)
    try:
        for opts in ((), ()):  # cold path, then the cached plan if one was written
            r = attacker.run("attack", "cwd", "fds", opts=opts, pass_fds=(9,))
            assert f"cwdino {host_root.st_dev}:{host_root.st_ino}" not in r.stdout, r.stdout
            ok(r, 125)
            assert "/proc/self/fd/9" in r.stderr, r.stderr
    finally:
        undo()


@pytest.mark.parametrize("path", ["/proc/self/fd/9", "/proc/self/cwd", "/proc/1/root"])
def test_core_resolves_chdir_inside_the_new_root(probe, path):
    """The C core's side, whatever the plan compiler lets through: the working directory is
    resolved inside the new root and a magic link is refused (fd 9 is the host's /)."""
    from redpak.errors import LaunchError
    from test_core import make_plan, run

    plan = make_plan(probe, Mount(MountKind.PROC, "/proc"), chdir=path)
    undo = _leak_root_on(9)
    try:
        with pytest.raises(LaunchError) as err:
            run(plan, "info", pass_fds=(9,))
    finally:
        undo()
    assert f"chdir {path}" in str(err.value), str(err.value)


def test_only_standard_and_passed_descriptors_reach_the_node(attacker):
    undo = _leak_root_on(9)
    try:
        r = attacker.run("attack", "fds", pass_fds=(9,))
        ok(r)
        assert value(r.stdout.splitlines(), "fds") == "0 1 2"
    finally:
        undo()


# ---- item 9: a failed cache write, a tiny open-file limit -------------------------------------

def _limit(which: int, value: int):
    return lambda: resource.setrlimit(which, (value, value))


def test_failed_plan_cache_write_leaves_no_temporary_file(attacker):
    """RLIMIT_FSIZE 1024 lets the launch write its small files (the user database) but
    cuts the cold path's write of the plan (about 2.5 KiB) short, then fails it with EFBIG
    (Python ignores SIGXFSZ): the launch still runs, and the cache directory holds neither
    a temporary file nor a truncated plan."""
    cache = attacker.cache()
    r = attacker.run("attack", "fds", preexec_fn=_limit(resource.RLIMIT_FSIZE, 1024),
                     env={"PYTHONDONTWRITEBYTECODE": "1"})  # nor cut a .pyc short
    ok(r)
    assert os.path.isdir(os.path.dirname(cache))
    assert os.listdir(os.path.dirname(cache)) == []
    ok(attacker.run("attack"))  # without the limit the plan is cached
    assert os.listdir(os.path.dirname(cache)) == [os.path.basename(cache)]
    assert os.path.getsize(cache) > 1024


@pytest.mark.parametrize("limit", [3, 4, 8])
def test_tiny_open_file_limit_is_125_with_a_message(attacker, limit):
    ok(attacker.run("attack"))  # the cached path first, then the cold path (-f)
    for opts in ((), ("-f",)):
        r = attacker.run("attack", opts=opts, preexec_fn=_limit(resource.RLIMIT_NOFILE, limit))
        ok(r, 125)
        assert r.stderr.splitlines()[-1].startswith("redwrap: spawn: the open-file limit is "
                                                   f"{limit} (ulimit -n)"), r.stderr
        assert "Traceback" not in r.stderr


# ---- item 5: typing into the caller's terminal --------------------------------------------------

def _tiocsti_in_a_pty(popen) -> tuple[int, str, bytes, int]:
    """Runs popen(stdin=..., preexec_fn=...) with a fresh pty as its controlling terminal
    on fd 0; returns its status, output, what the terminal echoed and what its input
    queue holds (the injected "x" shows in one of the two when TIOCSTI worked)."""
    master, slave = pty.openpty()
    try:
        def controlling_tty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        proc = popen(slave, controlling_tty)
        status, out, err = finish(proc)
        ready, _, _ = select.select([master], [], [], 0.3)
        echoed = os.read(master, 100) if ready else b""
        queued = int.from_bytes(fcntl.ioctl(slave, termios.FIONREAD, b"\0" * 4), "little")
        return status, out + err, echoed, queued
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("config", [{}, {"new-session": "enabled"},
                                    {"seccomp": {"profile": "none", "allow": ["ioctl"]}}],
                         ids=["stock", "new-session", "seccomp-none-allow-ioctl"])
def test_tiocsti_never_reaches_the_callers_terminal(family, helper_bin, config):
    """The stock family, then with new-session, then with a config that turns seccomp off
    and even allows ioctl: the node's TIOCSTI never types into the caller's terminal."""
    if Path("/proc/sys/dev/tty/legacy_tiocsti").read_text().strip() != "1":
        pytest.skip("this kernel refuses TIOCSTI to everyone (dev.tty.legacy_tiocsti = 0)")
    family.install(helper_bin / "tiocsti")
    tool = family.app / "usr" / "bin" / "tiocsti"

    def on_host(slave, preexec):  # the harness: a program of the caller's session can type
        return family.caller.popen([str(tool)], stdin=slave, preexec_fn=preexec)
    status, out, echoed, queued = _tiocsti_in_a_pty(on_host)
    assert status == 0 and "tiocsti ok" in out, out
    assert queued == 1 or b"x" in echoed

    family.edit(family.sys, lambda d: d["config"].update(config))

    def in_node(slave, preexec):
        return family.caller.popen(family.argv("tiocsti"), stdin=slave, preexec_fn=preexec)
    for _ in range(2):  # cold path, then the cached plan
        status, out, echoed, queued = _tiocsti_in_a_pty(in_node)
        assert status == 3, out
        assert "tiocsti EPERM" in out or "tiocsti EIO" in out, out
        assert echoed == b"" and queued == 0


# ---- item 7: die-with-parent -------------------------------------------------------------------

@pytest.mark.parametrize("opts", [(), ("-f",)], ids=["cached", "cold"])
def test_killing_the_launchers_parent_kills_every_process_of_the_node(attacker, opts):
    """The stock family says die-with-parent: SIGKILL to the shell that started redwrap
    leaves nothing of the node alive 1 s later: not redwrap, not the program, not a
    daemon that left its session with setsid."""
    ok(attacker.run("attack"))  # compiles and caches the plan
    argv = attacker.argv("attack", "daemon", "sleep", "60", opts=opts)
    shell = attacker.caller.popen(["/bin/sh", "-c", '"$@"; echo never', "sh", *argv])
    try:
        read_until(shell, "daemon ")
        (redwrap,) = children(shell.pid)
        init = children(redwrap)[0]
        ns = os.readlink(f"/proc/{init}/ns/pid")
        assert len(in_pid_ns(ns)) == 3, in_pid_ns(ns)  # init, the program, the daemon
        shell.kill()
        shell.wait()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and (_living(ns) or _alive(redwrap)):
            time.sleep(0.02)
        left = {p: _describe(p) for p in _living(ns)}  # zombies are dead, waiting for a reaper
        assert not left, f"processes survived in {ns}: {left}"
        assert not _alive(redwrap)
    finally:
        finish(shell)
        for pid in _living(ns) if "ns" in locals() else ():
            os.kill(pid, signal.SIGKILL)


def _living(ns: str) -> list[int]:
    return [pid for pid in in_pid_ns(ns) if _alive(pid)]


def _describe(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.index("(") + 1:stat.rindex(")")] + " " + stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_without_die_with_parent_the_launcher_outlives_its_parent(attacker):
    """The parent-death signal is the plan's choice: without die-with-parent, redwrap and
    its node go on when the shell that started them is killed."""
    attacker.edit(attacker.sys, lambda d: d["config"].update({"die-with-parent": "disabled"}))
    argv = attacker.argv("attack", "sleep", "60")
    shell = attacker.caller.popen(["/bin/sh", "-c", '"$@"; echo never', "sh", *argv])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
                children(r) for r in children(shell.pid)):
            time.sleep(0.05)
        (redwrap,) = children(shell.pid)
        shell.kill()
        shell.wait()
        time.sleep(0.5)
        assert _alive(redwrap)
    finally:
        if "redwrap" in locals() and _alive(redwrap):
            os.kill(redwrap, signal.SIGTERM)  # forwarded to the program, which ends
        finish(shell)


# ---- items 2 and 4: added capabilities must not reach the host ----------------------------------

ESCAPES = ("remount", "/bin", "umount", "/proc/sys", "rewrite", "/proc/sys/kernel/core_pattern",
           "mountcg", "/tmp/cg", "memory", "rewrite", "/tmp/cg/memory.limit_in_bytes")
"""Remount a read-only export read-write, unmount the read-only /proc/sys, write the
global core_pattern and the caller's memory limit (v1 memory hierarchy mounted in the
node): each write puts back the value already there, so nothing changes if it works."""


def _grant(doc, config: dict) -> None:
    doc["config"].update({"capabilities": [{"cap": "cap_sys_admin", "add": True}],
                          "seccomp": {"profile": "none"}, **config})


def _escaped(lines: list[str]) -> list[str]:
    """The attempts that reached the host: a write that worked, on a knob or a limit."""
    return [ln for ln in lines if ln.startswith("rewrite ") and ln.endswith(" ok")]


def test_cap_sys_admin_in_a_node_mapping_host_root_is_refused(root_family, helper_bin):
    """A root caller's node whose uid 0 is host root: cap_sys_admin would let it remount
    read-only exports, unmount /proc/sys and write core_pattern or the caller's cgroup
    limits as host root. The launch is refused before anything runs."""
    fam = root_family
    fam.install(helper_bin / "attack")
    fam.edit(fam.app, lambda d: _grant(d, {}))
    r = fam.run("attack", *ESCAPES)
    assert "remount /bin ok" not in r.stdout and not _escaped(r.stdout.splitlines()), r.stdout
    ok(r, 125)
    last = r.stderr.splitlines()[-1]
    assert "cap_sys_admin" in last and "node 'app'" in last and "maps host root" in last, last


def test_capabilities_of_the_hosts_user_namespace_are_refused(root_family, helper_bin):
    fam = root_family
    fam.install(helper_bin / "attack")
    fam.edit(fam.sys, lambda d: d["config"].update({"share_user": "enabled"}))
    fam.edit(fam.app, lambda d: d["config"].update(
        {"capabilities": [{"cap": "cap_sys_module", "add": True}]}))
    r = fam.run("attack")
    ok(r, 125)
    assert "cap_sys_module" in r.stderr and "host's user namespace" in r.stderr, r.stderr
    fam.edit(fam.app, lambda d: d["config"].update(  # a harmless one still works
        {"capabilities": [{"cap": "cap_net_bind_service", "add": True}]}))
    ok(fam.run("attack"))


@pytest.mark.parametrize("who", ["user", "root-mapped-to-nobody"])
def test_contained_cap_sys_admin_cannot_reach_the_host(request, probe, helper_bin, who):
    """Where cap_sys_admin is allowed (an unprivileged caller's user namespace, or root
    with map-root-user onto another user), it acts on the node's own namespaces only:
    every write to a host knob or to the caller's cgroup is refused by the kernel."""
    from test_redwrap import Family
    caller = request.getfixturevalue("user_caller" if who == "user" else "root_caller")
    fam = Family(caller, probe)
    try:
        fam.install(helper_bin / "attack")
        extra = {} if who == "user" else {"map-root-user": True, "set-user": "65534"}
        fam.edit(fam.app, lambda d: _grant(d, extra))
        r = fam.run("attack", "rewrite", "/bin/sh", *ESCAPES)
        ok(r)
        lines = r.stdout.splitlines()
        assert not _escaped(lines), lines
        assert value(lines, "rewrite /proc/sys/kernel/core_pattern") in (
            "EACCES", "EPERM", "EROFS"), lines
        assert value(lines, "rewrite /bin/sh") in ("EACCES", "EPERM", "EROFS"), lines
    finally:
        fam.remove()
