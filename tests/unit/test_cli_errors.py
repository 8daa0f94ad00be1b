"""Careless-integrator errors found by QA, through the real `redconf` command line: a
malformed option is a usage error (exit 2, as README says), and `redconf create` says when
the stock templates build a family no launch can use as meant (a leaf with no system above
it, a root node inside another family), while a well-formed family stays silent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def redconf(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(tmp_path), REDPAK_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "redpak.cli.redconf", *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def stock_family(tmp_path: Path) -> None:
    """sys (root) -> plat -> app (leaves), made by `redconf create` with the templates."""
    for args in (["-r", "sys"], ["-l", "-a", "plat", "sys/plat"],
                 ["-l", "-a", "app", "sys/plat/app"]):
        assert redconf(tmp_path, "create", *args).returncode == 0


@pytest.mark.parametrize("value", ["NOVALUE", "=x"])
def test_compile_malformed_env_is_a_usage_error(tmp_path, value):
    assert redconf(tmp_path, "create", "--root", "sys").returncode == 0
    r = redconf(tmp_path, "compile", "-E", value, tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("usage: redconf compile")
    assert f"argument -E/--env: '{value}' is not NAME=VALUE" in r.stderr


def test_stock_three_level_family_is_created_silently(tmp_path):
    for args in (["--root", "sys"], ["--leaf", "--alias", "plat", "sys/plat"],
                 ["-l", "-a", "app", "sys/plat/app"]):
        r = redconf(tmp_path, "create", *args)
        assert r.returncode == 0 and r.stderr == "", (args, r.stderr)


def test_create_leaf_without_system_warns(tmp_path):
    r = redconf(tmp_path, "create", "lone")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"created node 'lone' (leaf) in {tmp_path / 'lone'}\n"
    assert (f"warning: node 'lone' ({tmp_path / 'lone'}) is a leaf with no node above it"
            in r.stderr)
    assert "redconf create --root DIR" in r.stderr
    # --full is self-sufficient, and a custom config may be too: no warning.
    assert redconf(tmp_path, "create", "--full", "whole").stderr == ""
    tpl = tmp_path / "own.yaml"
    tpl.write_text("headers:\n  alias: own\n")
    assert redconf(tmp_path, "create", "-c", tpl, "own").stderr == ""


@pytest.mark.parametrize("model", ["--root", "--full"])
def test_create_root_inside_a_family_warns(tmp_path, model):
    assert redconf(tmp_path, "create", "--root", "sys").returncode == 0
    assert redconf(tmp_path, "create", "-l", "-a", "app", "sys/app").returncode == 0
    r = redconf(tmp_path, "create", model, "sys/app/sub")
    assert r.returncode == 0, r.stderr
    kind = model.lstrip("-")
    assert (f"warning: node 'sub' ({tmp_path / 'sys/app/sub'}) is a {kind} node inside "
            f"the family of {tmp_path / 'sys/app'}" in r.stderr)
    # --update rewrites an existing node: nothing new to warn about.
    assert redconf(tmp_path, "create", "-u", model, "sys/app/sub").stderr == ""


def test_mergeconfig_of_a_stock_family_prints_overrides_as_info(tmp_path):
    # A child's own rpmdir (node-local, documented as an override, "info") is no fault:
    # a stock three-level family shows no warning, and the overrides still name origins.
    stock_family(tmp_path)
    r = redconf(tmp_path, "mergeconfig", "--expand", "sys/plat/app")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert not [line for line in lines if line.startswith("warning:")], r.stderr
    assert any(line.startswith("info: rpmdir: node 'plat'") and
               "is overridden closer to the leaf" in line for line in lines), r.stderr


def test_mergeconfig_without_expand_keeps_each_nodes_own_mounts(tmp_path):
    # Without --expand the family is merged as written, but each node's $NODE_ALIAS is its
    # own: app's /nodes/$NODE_ALIAS/usr is not a redefinition of plat's (issue 8).
    stock_family(tmp_path)
    r = redconf(tmp_path, "--json", "mergeconfig", "sys/plat/app")
    assert r.returncode == 0, r.stderr
    assert "cannot redefine" not in r.stderr and "warning:" not in r.stderr, r.stderr
    import json
    usr = [e for e in json.loads(r.stdout)["exports"]
           if str(e).count("/nodes/$NODE_ALIAS/usr")]
    assert len(usr) == 2, usr      # plat's and app's, each with its own origin
    assert "sys/plat/app" in str(usr[1]) and "sys/plat/app" not in str(usr[0])


@pytest.mark.parametrize("edit, message", [
    (("config:", "config:\n  chdir: relative/dir"),
     "chdir: 'relative/dir' must be an absolute path inside the node"),
    ("mount: /nodes/$NODE_ALIAS/var", "mount 'nodes/var' must be an absolute path"),
    ("mount: /nodes/$NODE_ALIAS/var", "mount '/nodes/../var' must not contain '.' or '..'"),
])
def test_check_refuses_the_paths_a_launch_refuses(tmp_path, edit, message):
    # `redconf check` said "no problem" for a relative mount or chdir that every redwrap
    # of the node then refused (exit 125): the same rules now run in both.
    for args in (["-r", "sys"], ["-l", "-a", "app", "sys/app"]):
        assert redconf(tmp_path, "create", *args).returncode == 0
    assert redconf(tmp_path, "check", tmp_path).returncode == 0
    config = tmp_path / "sys/app/etc/redpak.yaml"
    text = config.read_text()
    if isinstance(edit, tuple):
        old, new = edit
    else:
        old, new = edit, "mount: " + message.split("'")[1]
    assert old in text
    config.write_text(text.replace(old, new, 1))
    r = redconf(tmp_path, "check", tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert message in r.stdout and "etc/redpak.yaml:" in r.stdout, r.stdout
    assert "1 problem found in 2 nodes" in r.stderr
