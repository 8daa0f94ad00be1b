"""A node directory owned by `nobody`: root launching it never runs the commands its
configs hold as root (issue 9 item 6). Execfd is refused; $(command) runs as nobody."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from rp_testutil import remove_tree

pytestmark = pytest.mark.privileged
BIN = Path(sys.executable).parent
NOBODY = 65534


@pytest.fixture
def node():
    top = Path(tempfile.mkdtemp(prefix="rp-owner-"))
    top.chmod(0o755)
    marker = Path(tempfile.gettempdir()) / f"rp-owner-{uuid.uuid4().hex}"
    cache = tempfile.mkdtemp(prefix="rp-owner-cache-")
    old = os.environ.get("REDPAK_CACHE_DIR")
    try:
        subprocess.run([BIN / "redconf", "create", "--full", top / "app"], check=True,
                       capture_output=True)
        os.environ["REDPAK_CACHE_DIR"] = cache     # restored below
        yield top / "app", marker
    finally:
        os.environ.pop("REDPAK_CACHE_DIR", None)
        if old is not None:
            os.environ["REDPAK_CACHE_DIR"] = old
        remove_tree(top)
        remove_tree(cache)
        if marker.exists():
            marker.unlink()


def redwrap(node: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "redwrap", "--redpath", node, "--", *argv],
                          capture_output=True, text=True, timeout=60, cwd="/")


def test_execfd_of_a_node_owned_by_nobody_never_runs_as_root(node):
    app, marker = node
    conf = app / "etc/redpak.yaml"
    conf.write_text(conf.read_text() + "  - mode: Execfd\n    mount: /etc/motd\n"
                    f"    path: id -u > {marker}; echo hello\n")
    os.chown(app, NOBODY, NOBODY)
    os.chown(conf, NOBODY, NOBODY)
    r = redwrap(app, "cat", "/etc/motd")
    assert r.returncode != 0
    assert "Execfd" in r.stderr and "uid 65534" in r.stderr
    assert not marker.exists()          # the command did not run at all, as root or else
    os.chown(app, 0, 0)
    os.chown(conf, 0, 0)
    r = redwrap(app, "cat", "/etc/motd")
    assert r.returncode == 0 and r.stdout == "hello\n", r.stderr
    assert marker.read_text() == "0\n"


def test_command_of_a_node_owned_by_nobody_runs_as_nobody(node):
    app, marker = node
    conf = app / "etc/redpak.yaml"
    text = conf.read_text()
    conf.write_text(text.replace("  hostname: $LEAF_ALIAS\n",
                                 f"  hostname: h$(id -u > {marker}; id -u)\n"))
    os.chown(app, NOBODY, NOBODY)
    r = redwrap(app, "hostname")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"h{NOBODY}\n"
    assert marker.stat().st_uid == NOBODY and marker.read_text() == f"{NOBODY}\n"
