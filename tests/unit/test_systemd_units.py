"""The systemd template units pass `systemd-analyze verify` in a root holding what the
RPM installs (redwrap on the search path, the man page, the host's system units), and
resolve the node path from the instance name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = ("redpak@.service", "redpak-notify@.service")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


@pytest.fixture
def root(tmp_path):
    """A file-system root for systemd-analyze --root: the host's units, ours, redwrap."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is missing (Debian package systemd)")
    if not (SYSTEM_UNITS / "sysinit.target").exists():
        pytest.skip(f"no system units in {SYSTEM_UNITS} to verify against")
    shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(REPO / "data/systemd" / unit, units / unit)
    (tmp_path / "usr/bin").mkdir(parents=True)
    shutil.copy(Path(sys.executable).parent / "redwrap", tmp_path / "usr/bin/redwrap")
    man = tmp_path / "man" / "man1"
    man.mkdir(parents=True)
    shutil.copy(REPO / "data/man/redwrap.1", man / "redwrap.1")
    return tmp_path


def verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MANPATH": str(root / "man"), "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", *units],
                          capture_output=True, text=True, env=env, cwd=root)


def test_units_pass_systemd_analyze_verify(root):
    r = verify(root, "redpak@srv-sys-app.service", "redpak-notify@srv-sys-app.service")
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_verify_fails_without_redwrap(root):
    # the check above is real: the unit's command must resolve in the root
    (root / "usr/bin/redwrap").unlink()
    r = verify(root, "redpak@srv-sys-app.service")
    assert r.returncode != 0 and "redwrap" in r.stderr


def test_units_take_the_node_path_from_the_instance_and_delegate(root):
    r = subprocess.run(["systemd-escape", "--path", "/srv/sys/my-app"], capture_output=True,
                       text=True, check=True)
    instance = f"redpak@{r.stdout.strip()}.service"
    show = subprocess.run(["systemd-analyze", "verify", f"--root={root}", instance],
                          capture_output=True, text=True,
                          env={**os.environ, "MANPATH": str(root / "man")}, cwd=root)
    assert show.returncode == 0, show.stderr
    text = (REPO / "data/systemd/redpak@.service").read_text()
    # %f: the unescaped instance with its leading '/' (%I would drop it)
    assert "--redpath %f" in text and "RequiresMountsFor=%f" in text
    for unit in UNITS:
        body = (REPO / "data/systemd" / unit).read_text()
        assert "\nDelegate=yes\n" in body
    notify = (REPO / "data/systemd/redpak-notify@.service").read_text()
    assert "\nType=notify\n" in notify and "\nNotifyAccess=all\n" in notify
