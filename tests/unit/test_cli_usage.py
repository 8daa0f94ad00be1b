"""The command lines as users type them, through the real commands: single-letter options
bundle in redconf and redwrap-dnf as with getopt (`-vv`, `-yq`, `-vr NODE`), and a bad bundle
is a usage error (exit 2) naming the letter at fault, never argparse's "ignored explicit
argument"; a command's usage error shows that command's usage line; --version; a relative
node path from a removed working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def command(tmp_path: Path, module: str, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(tmp_path), REDPAK_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", f"redpak.cli.{module}", *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_redconf_bundled_flags_work(tmp_path):
    r = command(tmp_path, "redconf", "create", "-rvy", "sys")
    assert r.returncode == 0, r.stderr
    assert "model: root" in r.stdout                    # -y: YAML output
    r = command(tmp_path, "redconf", "create", "-la", "app", "-R", tmp_path / "sys", "app")
    assert r.returncode == 0 and "created node 'app' (leaf)" in r.stdout, r.stderr
    r = command(tmp_path, "redconf", "-vv", "check", "sys")
    assert r.returncode == 0 and "2 nodes checked" in r.stdout, r.stderr
    r = command(tmp_path, "redconf", "mergeconfig", "-ear", tmp_path / "sys" / "app")
    assert r.returncode == 0 and "alias" in r.stdout, r.stderr


@pytest.mark.parametrize("module,args,message", [
    ("redconf", ["-vx", "tree", "."], "unknown option letter 'x' in '-vx'"),
    ("redconf", ["tree", "-yvq", "."], "unknown option letter 'q' in '-yvq'"),
    ("redconf", ["create", "-rux", "n"], "unknown option letter 'x' in '-rux'"),
    ("redconf", ["-v=2", "tree", "."], "-v takes no value (in '-v=2'"),
    ("redconf", ["tree", "--json=1", "."], "--json takes no value (in '--json=1'"),
    ("redwrap-dnf", ["-yqz", "-r", "n", "list"], "unknown option letter 'z' in '-yqz'"),
    ("redwrap-dnf", ["install", "-r", "n", "-yk", "p"], "unknown option letter 'k' in '-yk'"),
])
def test_bad_bundle_names_the_letter(tmp_path, module, args, message):
    r = command(tmp_path, module.replace("-", "_"), *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr, r.stderr
    assert "ignored explicit argument" not in r.stderr


def test_redwrap_dnf_bundled_flags_reach_the_command(tmp_path):
    """`-yqr NODE`: -y, -q and -r with its value; the command then runs (and fails only
    because the directory is no node)."""
    r = command(tmp_path, "redwrap_dnf", "-yqr", tmp_path / "none", "list")
    assert r.returncode == 1, r.stderr
    assert f"{tmp_path / 'none'}: no such node directory" in r.stderr


@pytest.mark.parametrize("module,args,usage,message", [
    ("redwrap_dnf", ["install", "pkg"], "usage: redwrap-dnf install ",
     "redwrap-dnf install: error: missing --redpath NODE (the node to work on)"),
    ("redwrap_dnf", ["-r", "n", "--proof", "list"], "usage: redwrap-dnf list ",
     "redwrap-dnf list: error: --proof works with install, remove and upgrade only"),
    ("redconf", ["tree"], "usage: redconf tree ",
     "redconf tree: error: missing node directory (see `redconf tree -h`)"),
])
def test_command_usage_error_shows_the_commands_usage(tmp_path, module, args, usage, message):
    """An error about a command's own arguments comes with that command's usage line
    (its options), not the top-level one, and names the command once."""
    r = command(tmp_path, module, *args)
    assert r.returncode == 2
    assert r.stderr.startswith(usage), r.stderr
    assert r.stderr.endswith(message + "\n"), r.stderr


@pytest.mark.parametrize("module,prog", [("redconf", "redconf"),
                                         ("redwrap_dnf", "redwrap-dnf"),
                                         ("redwrap", "redwrap")])
def test_version(tmp_path, module, prog):
    from redpak import __version__
    r = command(tmp_path, module, "--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{prog} {__version__}\n", "")


@pytest.mark.parametrize("module,argv,status", [
    ("redwrap", ["-r", "rel", "--", "true"], 125),
    ("redconf", ["tree", "rel"], 1),
    ("redwrap_dnf", ["-r", "rel", "list"], 1),
])
def test_relative_node_path_from_a_removed_directory(tmp_path, module, argv, status):
    """A script whose working directory was removed gives a relative node path: the error
    says why it cannot be used (never "internal error: FileNotFoundError", never an error
    without a path)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    script = (f"cd {gone} && rmdir {gone} && exec {sys.executable} -m redpak.cli.{module} "
              + " ".join(argv))
    env = dict(os.environ, REDPAK_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                       env=env)
    prog = module.replace("_", "-")
    assert r.returncode == status, r.stderr
    assert r.stderr == (f"{prog}: rel: a relative path is taken from the current directory, "
                        f"which cannot be found (No such file or directory): give an "
                        f"absolute path\n")


@pytest.mark.parametrize("value,message", [
    ("5m", "$REDPAK_DNF_LOCK_TIMEOUT: '5m' is not a number of seconds (give seconds"),
    ("-3", "$REDPAK_DNF_LOCK_TIMEOUT: must not be negative"),
    ("nan", "$REDPAK_DNF_LOCK_TIMEOUT: 'nan' is not a number of seconds"),
])
def test_bad_lock_timeout_variable_is_named_not_ignored(tmp_path, monkeypatch, value, message):
    """REDPAK_DNF_LOCK_TIMEOUT=5m used to become the default 300 s without a word."""
    monkeypatch.setenv("REDPAK_DNF_LOCK_TIMEOUT", value)
    r = command(tmp_path, "redwrap_dnf", "-r", tmp_path, "list")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert r.stderr.startswith("usage: redwrap-dnf list "), r.stderr
    # the option wins over the variable
    r = command(tmp_path, "redwrap_dnf", "-r", tmp_path / "none", "--lock-timeout", "3", "list")
    assert r.returncode == 1 and "no such node directory" in r.stderr, r.stderr
