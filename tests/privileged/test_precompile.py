"""`redconf compile ROOT`: the plans of every leaf of a three-level tree compiled and cached
ahead of time, so that the native redwrap launches them without Python (REDPAK_PYTHON=
/bin/false still works), in normal and admin mode, for the environment the launches will
have; what cannot be cached is reported."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from rp_testutil import remove_tree

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("launching nodes needs root here", allow_module_level=True)

from redpak.node import create_node  # noqa: E402

REDWRAP = str(Path(sys.executable).parent / "redwrap")


@pytest.fixture
def tree():
    """system -> platform -> app1, app2; system -> tool: three leaves, one inner node."""
    top = Path(tempfile.mkdtemp(prefix="rp-aot-"))
    top.chmod(0o755)
    create_node(str(top / "sys"), model="root")
    for rel in ("sys/platform", "sys/platform/app1", "sys/platform/app2", "sys/tool"):
        create_node(str(top / rel))
    yield top
    remove_tree(top)


def env_for(tree: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "REDPAK_CACHE_DIR": str(tree / "cache"), **extra}


def redconf(tree: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "redpak.cli.redconf", *args],
                          env=env_for(tree, **extra), capture_output=True, text=True,
                          timeout=300, cwd="/")


def native(tree: Path, node: Path, *opts: str, **extra: str) -> subprocess.CompletedProcess:
    """The native redwrap, unable to start Python: its cold path runs /bin/false (status 1)."""
    return subprocess.run([REDWRAP, "-v", *opts, "--redpath", str(node), "--", "sh", "-c",
                           "hostname; exit 3"],
                          env=env_for(tree, REDPAK_PYTHON="/bin/false", **extra),
                          capture_output=True, text=True, timeout=120, cwd="/")


def test_compiled_leaves_launch_without_python(tree):
    leaves = [tree / "sys/platform/app1", tree / "sys/platform/app2", tree / "sys/tool"]
    before = native(tree, leaves[0])
    assert before.returncode == 1, before.stderr        # no plan yet: /bin/false ran
    assert "rebuilding the plan" in before.stderr
    r = redconf(tree, "compile", "--admin", str(tree))
    assert r.returncode == 0, r.stderr
    for leaf in leaves:
        for mode, opts in (("normal", ()), ("admin", ("-a",))):
            assert f"{leaf} ({mode}): {tree / 'cache'}/plan-" in r.stdout
            run = native(tree, leaf, *opts)
            assert run.returncode == 3, run.stderr
            assert "redwrap: using the cached plan" in run.stderr
            assert run.stdout.strip() == leaf.name          # the leaf's own hostname
    assert str(tree / "sys/platform ") not in r.stdout      # not a leaf: not compiled
    inner = native(tree, tree / "sys/platform")
    assert inner.returncode == 1 and "rebuilding the plan" in inner.stderr


def test_json_output_and_environment_of_the_launches(tree):
    r = redconf(tree, "compile", "--json", "-E", "NOTIFY_SOCKET=/run/systemd/notify",
                str(tree / "sys/tool"))
    assert r.returncode == 0, r.stderr
    import json
    (entry,) = json.loads(r.stdout)
    assert entry["node"] == str(tree / "sys/tool") and entry["mode"] == "normal"
    assert Path(entry["cache"]).is_file() and entry["error"] is None
    # compiled for a service's environment: a shell launch (no socket) needs a new plan
    served = native(tree, tree / "sys/tool", NOTIFY_SOCKET="/run/systemd/notify")
    assert served.returncode == 3 and "using the cached plan" in served.stderr
    shell = native(tree, tree / "sys/tool")
    assert shell.returncode == 1 and "NOTIFY_SOCKET" in shell.stderr


def test_uncacheable_and_broken_leaves_are_reported(tree):
    conf = tree / "sys/platform/app2/etc/redpak.yaml"
    doc = yaml.safe_load(conf.read_text())
    doc.setdefault("config", {})["hostname"] = "$(echo app)"
    conf.write_text(yaml.safe_dump(doc, sort_keys=False))
    bad = tree / "sys/tool/etc/redpak.yaml"
    bad.write_text(bad.read_text() + "\nnot-a-section: 1\n")
    r = redconf(tree, "compile", str(tree))
    assert r.returncode == 1
    assert f"{tree / 'sys/platform/app2'} (normal): its plan cannot be cached" in r.stderr
    assert f"{tree / 'sys/tool'} (normal): " in r.stderr and "not-a-section" in r.stderr
    assert "2 of 3 plans not cached" in r.stderr
    assert "Traceback" not in r.stderr
    ok = native(tree, tree / "sys/platform/app1")          # the good leaf was cached
    assert ok.returncode == 3 and "using the cached plan" in ok.stderr


def test_usage_errors(tree):
    r = redconf(tree, "compile", "-E", "NOVALUE", str(tree))
    # A malformed option is a usage error: 2, as README says for every redconf command.
    assert r.returncode == 2 and "'NOVALUE' is not NAME=VALUE" in r.stderr
    r = redconf(tree, "compile", str(tree / "missing"))
    assert r.returncode == 1 and f"{tree / 'missing'}: no such directory" in r.stderr
    (tree / "empty").mkdir()
    r = redconf(tree, "compile", str(tree / "empty"))
    assert r.returncode == 1 and "no node at or below" in r.stderr


def test_an_unprivileged_user_compiles_for_its_own_cache(tree, unpriv_user, public_package):
    """A user compiles its family into its own cache; its launches then need no Python,
    while root's cache stays empty (a plan is per caller)."""
    uid, gid = unpriv_user.pw_uid, unpriv_user.pw_gid
    for p in [tree, *tree.rglob("*")]:
        os.lchown(p, uid, gid)
    cache = tree / "user-cache"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(public_package),
           "REDPAK_CACHE_DIR": str(cache)}
    kw = dict(user=uid, group=gid, extra_groups=[], capture_output=True, text=True,
              timeout=300, cwd="/")
    r = subprocess.run(["/usr/bin/python3", "-P", "-m", "redpak.cli.redconf", "compile",
                        str(tree / "sys/platform")], env=env, **kw)
    assert r.returncode == 0, r.stderr
    plans = sorted(p.name for p in cache.iterdir())
    assert len(plans) == 2 and all(p.endswith(f"-normal-{uid}.bin") for p in plans)
    assert cache.stat().st_uid == uid and cache.stat().st_mode & 0o077 == 0
    run = subprocess.run([str(public_package / "bin" / "redwrap"), "-v", "--redpath",
                          str(tree / "sys/platform/app2"), "--", "id", "-u"],
                         env={**env, "REDPAK_PYTHON": "/bin/false"}, **kw)
    assert run.returncode == 0, run.stderr
    assert "using the cached plan" in run.stderr and run.stdout.strip() == str(uid)


# Costly to import and needed by no launch: typing and dataclasses (~15 ms with inspect),
# the package commands, tempfile.
NOT_FOR_THE_COLD_PATH = ("typing", "dataclasses", "inspect", "tempfile", "redpak.pkg.ops",
                         "solv", "rpm")


def test_cold_path_imports_only_what_the_launch_needs(tree: Path) -> None:
    """The cold path (the plan compiled by Python, -f) as users run it: the native redwrap
    starting Python; the interpreter reports every module it imports."""
    proc = subprocess.run([REDWRAP, "-f", "--redpath", str(tree / "sys/platform/app1"), "--",
                           "/bin/true"], env=env_for(tree, PYTHONPROFILEIMPORTTIME="1"),
                          capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "redpak.plan" in imported                 # the report is there
    assert sorted(imported.intersection(NOT_FOR_THE_COLD_PATH)) == []
