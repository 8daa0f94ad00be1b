"""Hostile package contents (issue 10 item 3): a node's files are on the host, where any
user can run them, so setuid/setgid bits and file capabilities are stripped, and device
nodes are refused unless the node's own config allows them (`pkg-devices`)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from pkghelp import add_repo, dnf

pytestmark = pytest.mark.privileged     # installs: librpm chroots into the node

NOBODY = 65534


@pytest.fixture
def public_family(built, monkeypatch: pytest.MonkeyPatch):
    """A two-level family in a directory every user can traverse (pytest's own temporary
    directories are private to root)."""
    from redpak.pkg import ops

    monkeypatch.setenv("REDPAK_REDWRAP", "")
    top = Path(tempfile.mkdtemp(prefix="redpak-i10-", dir="/tmp"))
    try:
        top.chmod(0o755)
        system, app = top / "system", top / "system/app"
        ops.manager(str(app), None, False, None, None, False,
                    ops.Options(out=lambda text: None))
        add_repo(system, "main", built.repo)
        yield system, app
    finally:
        shutil.rmtree(top)


def test_setuid_setgid_and_capabilities_are_stripped(public_family) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    _, app = public_family
    proc = dnf("--redpath", str(app), "install", "-y", "suidpkg")
    assert proc.returncode == 0, proc.stderr
    assert "Setuid/setgid bits and file capabilities are removed" in proc.stdout
    assert "Removed the setuid/setgid bits of /usr/bin/suidid" in proc.stdout
    assert "Removed the file capabilities of /usr/bin/capid" in proc.stdout
    for name in ("suidid", "sgidid"):
        path = app / "usr/bin" / name
        assert not path.stat().st_mode & (stat.S_ISUID | stat.S_ISGID), name
        # What an unprivileged host user gets running the node's file directly.
        out = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                              "--clear-groups", str(path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"uid={NOBODY}")
        assert "euid=0" not in out.stdout and "egid=0" not in out.stdout, out.stdout
    with pytest.raises(OSError):
        os.getxattr(app / "usr/bin/capid", "security.capability")


def test_device_nodes_refused_unless_the_node_allows_them(public_family) -> None:
    _, app = public_family
    proc = dnf("--redpath", str(app), "install", "-y", "devpkg")
    assert proc.returncode == 1
    assert "devpkg-1.0-1.noarch creates device node(s) /dev/rpnull" in proc.stderr
    assert "pkg-devices: true" in proc.stderr
    assert not (app / "dev/rpnull").exists()
    admin = app / "etc/redpak-admin.yaml"
    text = admin.read_text()
    assert "\nconfig:" not in text
    admin.write_text(text + "config:\n  pkg-devices: true\n")
    proc = dnf("--redpath", str(app), "install", "-y", "devpkg")
    assert proc.returncode == 0, proc.stderr
    assert f"device nodes allowed by {admin}" in proc.stdout
    assert stat.S_ISCHR((app / "dev/rpnull").lstat().st_mode)
