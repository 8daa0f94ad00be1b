# Config text an attacker or a careless integrator could write: /proc magic links in path
# keys, control and bidi characters in paths and keys (refused, naming file, line and key),
# such characters escaped whenever config text is printed, configs that are symbolic links,
# writable by others or owned by a stranger, and optional exports.

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from redpak.build import family_config
from redpak.config import parse_config
from redpak.errors import ConfigError, ExpandError, NodeError
from redpak.node import create_node, load_family, load_node

FILE = "/n/app/etc/redpak.yaml"


def load(text: str):
    return parse_config(text.encode(), FILE)


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load(text)
    return err.value


@pytest.mark.parametrize("value", [
    "/proc/self/fd/9", "/proc/self/fd", "/proc//self/fd/3", "/proc/thread-self/fd/1",
    "/proc/1234/fd/4", "/proc/1/cwd", "/proc/self/root", "/proc/self/task/12/fd/3",
    "/proc/self/map_files/x", "/dev/fd/5", "/dev/stdin", "//proc/self/cwd/etc",
    "/./proc/self/fd/3", "/a/../proc/1/cwd",
])
def test_chdir_through_a_process_link_is_refused(value):
    err = refused(f"headers:\n  alias: app\nconfig:\n  chdir: {value}\n")
    assert (err.path, err.line, err.key) == (FILE, 4, "config.chdir")
    assert "/proc" in str(err) and "outside the node" in str(err)


@pytest.mark.parametrize("key,text,line", [
    ("exports[0].path", "exports:\n  - mode: Public\n    mount: /x\n    path: /proc/self/fd/3\n",
     6),
    ("exports[0].mount", "exports:\n  - mode: Tmpfs\n    mount: /proc/self/cwd\n", 5),
    ("config.rpmdir", "config:\n  rpmdir: /proc/1/root/var/lib/rpm\n", 4),
    ("config.path[0]", "config:\n  path:\n    - /dev/fd/3\n", 5),
    ("exports[0].path", "exports:\n  - mode: Lock\n    mount: /l\n    path: /proc/1/fd/0\n", 6),
])
def test_every_path_key_refuses_process_links(key, text, line):
    err = refused("headers:\n  alias: app\n" + text)
    assert (err.line, err.key) == (line, key)


def test_namespace_paths_and_other_proc_paths_stay_valid():
    cfg = load("headers:\n  alias: app\nconfig:\n  share_net: /proc/1/ns/net\n"
               "  chdir: /proc/sys\nexports:\n  - mode: Symlink\n    mount: /l\n"
               "    path: /proc/self/fd\n")
    assert cfg.settings.share_net.path == "/proc/1/ns/net"


@pytest.mark.parametrize("char", ["\\0", "\\e", "\\x07", "\\t", "\\n", "\\x9b", "\\u202e",
                                  "\\u2066", "\\u200f"])
@pytest.mark.parametrize("where,key,line", [
    ("config:\n  chdir: \"/home/a{c}b\"\n", "config.chdir", 4),
    ("exports:\n  - mode: Public\n    mount: \"/a{c}\"\n", "exports[0].mount", 5),
    ("exports:\n  - mode: Public\n    mount: /a\n    path: \"/a{c}\"\n", "exports[0].path", 6),
    ("config:\n  share_net: \"/proc/1/ns/net{c}\"\n", "config.share_net", 4),
    ("config:\n  path: \"/bin:/x{c}\"\n", "config.path", 4),
])
def test_control_and_bidi_characters_in_paths_are_refused(char, where, key, line):
    err = refused("headers:\n  alias: app\n" + where.format(c=char))
    assert (err.path, err.line, err.key) == (FILE, line, key)
    assert "control or bidi character U+" in str(err)
    assert not any(c in str(err) for c in "\x00\x1b\x07\x9b\u202e\u2066\u200f")


def test_bidi_in_a_key_is_refused():
    err = refused("headers:\n  alias: app\nconfig:\n  \"chdir\u202e\": /x\n")
    assert err.line == 4 and "U+202E" in str(err)


def test_expanded_value_is_checked_as_a_path(tmp_path):
    create_node(str(tmp_path / "sys"), model="root")
    create_node(str(tmp_path / "sys" / "app"))
    conf = tmp_path / "sys/app/etc/redpak.yaml"
    conf.write_text(conf.read_text().replace("config:\n", "config:\n  chdir: $EVIL\n", 1))
    nodes = load_family(str(tmp_path / "sys/app"))
    with pytest.raises(ExpandError) as err:
        family_config(nodes, False, {"EVIL": "/proc/self/fd/9"}, 0, 0, 1)
    assert str(conf) in str(err.value) and "chdir" in str(err.value)


def _redconf(*args, env=None):
    return subprocess.run([sys.executable, "-m", "redpak.cli.redconf", *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd="/",
                          env={**os.environ, **(env or {})})


def test_printed_config_text_is_escaped(tmp_path):
    """ESC sequences and bidi controls in info strings and values reach neither stdout nor
    stderr raw (mergeconfig in every format, and error messages)."""
    create_node(str(tmp_path / "app"), model="full")
    conf = tmp_path / "app/etc/redpak.yaml"
    conf.write_text(conf.read_text().replace(
        "headers:\n", "headers:\n  info: \"a\\e[2Jb\\u202ec\"\n", 1).replace(
        "  info:", "  #info:", 2).replace("  #info: \"a", "  info: \"a", 1))
    for fmt in ("--json", "--yaml", None):
        r = _redconf("mergeconfig", *([fmt] if fmt else []), tmp_path / "app")
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout + r.stderr and "\u202e" not in r.stdout + r.stderr
        assert "\\x1b[2J" in r.stdout or "\\u001b[2J" in r.stdout
    if True:
        data = json.loads(_redconf("mergeconfig", "--json", tmp_path / "app").stdout)
        assert data["headers"]["info"] == "a\x1b[2Jb\u202ec"    # JSON keeps the value
    conf.write_text(conf.read_text().replace("headers:\n", "headers:\n  bogus\u202e: 1\n", 1))
    r = _redconf("mergeconfig", tmp_path / "app")
    assert r.returncode == 1 and "U+202E" in r.stderr and "\u202e" not in r.stderr


# --- config files: symbolic links, permissions, owner --------------------------------------

@pytest.fixture
def node(tmp_path):
    create_node(str(tmp_path / "app"), model="full")
    return tmp_path / "app"


def test_config_that_is_a_symlink_is_refused(node):
    conf = node / "etc/redpak.yaml"
    real = node / "elsewhere.yaml"
    conf.rename(real)
    conf.symlink_to(real)
    with pytest.raises(ConfigError) as err:
        load_node(str(node))
    assert str(conf) in str(err.value) and "symbolic link" in str(err.value)


def test_etc_that_is_a_symlink_is_refused(node, tmp_path):
    (node / "etc").rename(tmp_path / "etc2")
    (node / "etc").symlink_to(tmp_path / "etc2")
    with pytest.raises(NodeError) as err:
        load_node(str(node))
    assert "symbolic link" in str(err.value)


@pytest.mark.parametrize("mode,who", [(0o664, "its group"), (0o646, "everyone"),
                                      (0o666, "group and others")])
def test_config_writable_by_others_is_refused(node, mode, who):
    conf = node / "etc/redpak.yaml"
    conf.chmod(mode)
    with pytest.raises(ConfigError) as err:
        load_node(str(node))
    assert f"writable by {who}" in str(err.value) and "chmod go-w" in str(err.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_config_owned_by_a_stranger_is_refused(node):
    conf = node / "etc/redpak.yaml"
    os.chown(conf, 65534, 65534)            # nobody; the node directory stays root's
    with pytest.raises(ConfigError) as err:
        load_node(str(node))
    assert "neither root nor the node's owner" in str(err.value)
    os.chown(node, 65534, 65534)            # the node's owner may own its config
    assert load_node(str(node)).owner == 65534
    r = _redconf("check", node)
    assert r.returncode == 0, r.stdout + r.stderr
    os.chown(node, 0, 0)
    r = _redconf("check", node)
    assert r.returncode == 1 and "neither root nor the node's owner" in r.stdout + r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="running a command as another user needs root")
def test_command_of_a_node_owned_by_nobody_runs_as_nobody(node, tmp_path):
    """$(command) in a config that `nobody` can change never runs as root."""
    conf = node / "etc/redpak.yaml"
    text = conf.read_text()
    assert "  hostname: $LEAF_ALIAS\n" in text
    conf.write_text(text.replace("  hostname: $LEAF_ALIAS\n", "  hostname: h$(id -u)\n"))
    os.chown(node, 65534, 65534)
    fam = family_config(load_family(str(node)), False, {}, 0, 0, 1).family
    assert fam.hostname.value == "h65534"


# --- optional exports ----------------------------------------------------------------------

def test_optional_export_is_skipped_without_a_warning(tmp_path, monkeypatch):
    from redpak.build import build_plan

    create_node(str(tmp_path / "app"), model="full")
    conf = tmp_path / "app/etc/redpak.yaml"
    missing = tmp_path / "not-here"
    conf.write_text(conf.read_text() + f"  - mode: Public\n    mount: /opt/a\n    path: {missing}"
                    f"\n    optional: true\n  - mode: Public\n    mount: /opt/b\n"
                    f"    path: {missing}/b\n")
    monkeypatch.setenv("REDPAK_CACHE_DIR", str(tmp_path / "cache"))
    compiled = build_plan(str(tmp_path / "app"), environ={"XDG_RUNTIME_DIR": "/nonexistent"})
    assert [w for w in compiled.warnings if str(missing) in w] == [
        w for w in compiled.warnings if f"{missing}/b" in w]
    assert len([w for w in compiled.warnings if str(missing) in w]) == 1
    assert str(missing) in compiled.absent_sources      # still a cache dependency
    assert all(m.target not in ("/opt/a", "/opt/b") for m in compiled.plan.mounts)


def test_optional_must_be_a_bool():
    err = refused("headers:\n  alias: app\nexports:\n  - mode: Public\n    mount: /x\n"
                  "    optional: maybe\n")
    assert err.key == "exports[0].optional" and err.line == 6
