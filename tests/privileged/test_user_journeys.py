"""User journeys found broken by QA, through the real commands on a family made from the
stock templates: an integrator whose plan cache cannot be written (a service user without a
home, a read-only image) is told why with -v, since every launch then starts Python."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rp_testutil import remove_tree

pytestmark = pytest.mark.privileged
BIN = Path(sys.executable).parent


@pytest.fixture
def family():
    top = Path(tempfile.mkdtemp(prefix="rp-journey-"))
    try:
        for args in (["--root", top / "sys"], ["-l", "-a", "app", top / "sys/app"]):
            subprocess.run([BIN / "redconf", "create", *args], check=True,
                           capture_output=True, timeout=60)
        yield top
    finally:
        remove_tree(top)


def test_verbose_cold_launch_says_why_the_plan_is_not_cached(family):
    blocker = family / "not-a-dir"          # the cache "directory" is a file
    blocker.write_text("")
    env = dict(os.environ, REDPAK_CACHE_DIR=str(blocker))
    for _ in range(2):                      # never cached: both launches are cold
        r = subprocess.run([BIN / "redwrap", "-v", "--redpath", family / "sys/app", "--",
                            "echo", "ran"], capture_output=True, text=True, timeout=120,
                           env=env)
        assert r.returncode == 0 and r.stdout == "ran\n", r.stderr
        assert "rebuilding the plan" in r.stderr
        assert (f"redwrap: cannot cache the plan: {blocker}: " in r.stderr
                and "(each launch compiles it again)" in r.stderr), r.stderr
    # Without -v the launch stays silent (a service's log is not flooded).
    r = subprocess.run([BIN / "redwrap", "--redpath", family / "sys/app", "--", "true"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_root_node_launched_by_itself_is_refused_naming_node_and_keys(family, tmp_path):
    """The stock root node's home (/home/$LEAF_ALIAS) is a Symlink export to the leaf's
    private storage, which only a leaf exports: launched by itself it used to fail with a
    bare `chdir /home/sys: No such file or directory`. Native and cold path alike refuse it
    before anything runs, naming the node, the chdir key and what to do; nothing is cached
    (so no later launch runs a plan that cannot work), and the leaf below still runs."""
    env = dict(os.environ, REDPAK_CACHE_DIR=str(tmp_path / "cache"))
    sys_node = family / "sys"
    results = []
    for argv in ([BIN / "redwrap"], [BIN / "redwrap"],
                 [sys.executable, "-m", "redpak.cli.redwrap"]):
        r = subprocess.run([*argv, "--redpath", sys_node, "--", "/bin/true"],
                           capture_output=True, text=True, timeout=120, env=env)
        results.append((r.returncode, r.stderr))
    assert results[0] == results[1] == results[2], results
    status, err = results[0]
    assert status == 125
    assert err.startswith(f"redwrap: node 'sys' ({sys_node}) cannot be launched: its chdir "
                          f"/home/sys (node 'sys' ({sys_node}, etc/redpak.yaml:"), err
    assert "no node of its family exports /nodes/_private" in err
    assert f"redconf create --leaf {sys_node}/APP" in err
    assert "No such file or directory" not in err and "Traceback" not in err
    assert not list((tmp_path / "cache").glob("plan-*"))
    r = subprocess.run([BIN / "redwrap", "--redpath", sys_node / "app", "--", "pwd"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert (r.returncode, r.stdout) == (0, "/nodes/_private\n"), r.stderr


def test_check_and_compile_report_a_lone_root_node(tmp_path):
    """`redconf check` reports what the launch refuses for a node with no leaf below it
    (a system node with children is launched through them and stays clean)."""
    env = dict(os.environ, REDPAK_CACHE_DIR=str(tmp_path / "cache"))

    def redconf(*args):
        return subprocess.run([BIN / "redconf", *map(str, args)], capture_output=True,
                              text=True, timeout=120, env=env)

    assert redconf("create", "--root", tmp_path / "lone/sys").returncode == 0
    r = redconf("check", tmp_path / "lone")
    assert r.returncode == 1
    assert f"node 'sys' ({tmp_path}/lone/sys) cannot be launched: its chdir" in r.stdout
    r = redconf("compile", tmp_path / "lone")
    assert r.returncode == 1 and "cannot be launched: its chdir" in r.stderr, r.stderr
    assert redconf("create", "--leaf", tmp_path / "lone/sys/app").returncode == 0
    r = redconf("check", tmp_path / "lone")
    assert r.returncode == 0 and "2 nodes checked, no problem" in r.stdout, r.stdout


def _as_user(user, package: Path, argv: list, cache: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(package),
           "REDPAK_PYTHON": "/usr/bin/python3", "REDPAK_CACHE_DIR": str(cache)}
    return subprocess.run([str(a) for a in argv], env=env, cwd="/", capture_output=True,
                          text=True, timeout=120, user=user.pw_uid, group=user.pw_gid,
                          extra_groups=[])


def test_other_users_node_is_named_as_unreadable_not_missing(family, unpriv_user,
                                                             public_package, tmp_path):
    """A user who may not search a node directory (0700, root's) is told so, by redwrap
    and redconf: never "not a node ... create one with redconf create", which would send
    them to create a node over someone else's. An unreadable config names the file."""
    app = family / "sys" / "app"
    os.chmod(family, 0o755)
    cache = tmp_path / "cache"
    python = ["/usr/bin/python3", "-P", "-m"]
    commands = {"redwrap": [public_package / "bin" / "redwrap", "-r", app, "--", "true"],
                "redconf": [*python, "redpak.cli.redconf", "config", app],
                "redwrap-dnf": [*python, "redpak.cli.redwrap_dnf", "-r", app, "list"]}
    status = {"redwrap": 125, "redconf": 1, "redwrap-dnf": 1}
    try:
        app.chmod(0o700)
        for name, argv in commands.items():
            r = _as_user(unpriv_user, public_package, argv, cache)
            assert r.returncode == status[name], (name, r.stderr)
            assert r.stderr == (f"{name}: {app}: cannot read the node directory: Permission "
                                f"denied (it may belong to another user; check its "
                                f"permissions)\n"), (name, r.stderr)
        app.chmod(0o755)
        (app / "etc" / "redpak.yaml").chmod(0o600)
        for name, argv in commands.items():
            r = _as_user(unpriv_user, public_package, argv, cache)
            assert r.returncode == status[name], (name, r.stderr)
            assert r.stderr.startswith(f"{name}: {app}/etc/redpak.yaml: cannot open: "
                                       f"Permission denied"), (name, r.stderr)
    finally:
        app.chmod(0o755)
        (app / "etc" / "redpak.yaml").chmod(0o644)


@pytest.mark.parametrize("what", ["file", "under-file"])
def test_node_path_that_is_a_file_says_so(family, what, tmp_path):
    """`--redpath NODE/etc/redpak.yaml` (a file given for the node): every command says the
    path is not a directory, instead of "no such node directory"."""
    path = family / "sys" / "app" / "etc" / "redpak.yaml"
    expected = "not a directory (give the node directory, not a file in it)"
    if what == "under-file":
        path = path / "x"
        expected = "no such node directory (a parent is not a directory)"
    env = dict(os.environ, REDPAK_CACHE_DIR=str(tmp_path / "cache"))
    for argv, status in (([BIN / "redwrap", "-r", path, "--", "true"], 125),
                         ([BIN / "redconf", "mergeconfig", path], 1),
                         ([BIN / "redwrap-dnf", "-r", path, "list"], 1)):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == status, r.stderr
        assert r.stderr == f"{Path(argv[0]).name}: {path}: {expected}\n", r.stderr
    r = subprocess.run([BIN / "redconf", "tree", path], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 1
    assert r.stderr == f"redconf: {path}: {expected.replace('node directory', 'directory')}\n"


def test_upgrading_redpak_recompiles_the_cached_plans(family, public_package, tmp_path):
    """A plan cached by one release is not run by the next: replacing the plan compiler
    (as pip or rpm do on an upgrade: a new file) makes the cached plan stale, so the next
    launch compiles it with the new policy (a fix of the compiler reaches every node)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(public_package),
           "REDPAK_PYTHON": "/usr/bin/python3", "REDPAK_CACHE_DIR": str(tmp_path / "cache")}
    argv = [public_package / "bin" / "redwrap", "-v", "-r", family / "sys" / "app", "--",
            "true"]

    def launch() -> str:
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stderr

    launch()
    assert "redwrap: using the cached plan" in launch()
    compiler = public_package / "redpak" / "plan.py"
    new = compiler.with_suffix(".new")
    new.write_bytes(compiler.read_bytes())
    new.replace(compiler)                   # the upgrade: same text, a new file
    err = launch()
    assert "is stale" in err and str(compiler) in err, err
    assert "redwrap: using the cached plan" in launch()
