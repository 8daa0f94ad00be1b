"""Fixtures shared by the privileged tests: the static probe program, small static C
helpers, a throwaway unprivileged user, and a world-readable copy of the installed package
and native redwrap that this user can run (the venv may live in a directory it cannot read).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from rp_testutil import remove_tree

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent / "helpers"


def _public_dir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def _static(source: Path, out: Path) -> Path:
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(out), str(source)], check=True)
    out.chmod(0o755)
    return out


@pytest.fixture(scope="session")
def probe() -> Path:
    """tools/probe.c built static, in a world-readable directory (for the unprivileged user)."""
    d = _public_dir("rp-probe-")
    yield _static(REPO / "tools/probe.c", d / "probe")
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def helper_bin() -> Path:
    """tests/privileged/helpers/*.c built static; returns their directory."""
    d = _public_dir("rp-helpers-")
    for source in sorted(HELPERS.glob("*.c")):
        _static(source, d / source.stem)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def hostdir():
    """A scratch host directory, unmounted and removed after the test."""
    d = _public_dir("rp-host-")
    yield d
    remove_tree(d)


@pytest.fixture(scope="session")
def unpriv_user():
    """A throwaway system user (no home, no supplementary groups), removed at the end."""
    name = f"rpt{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", name],
                       capture_output=True, text=True, check=False)
    if r.returncode:
        pytest.skip(f"cannot create a test user: {r.stderr.strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


def _native_redwrap() -> Path:
    exe = Path(sys.executable).parent / "redwrap"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: install redpak (pip install -e .) to build it")
    return exe


@pytest.fixture(scope="session")
def native_redwrap() -> Path:
    """The installed native redwrap (next to this interpreter, where pip puts scripts)."""
    return _native_redwrap()


@pytest.fixture(scope="session")
def public_package():
    """A world-readable copy of the package (with its built extension) and of the native
    redwrap: D/redpak and D/bin/redwrap. Run it with PYTHONPATH=D and
    REDPAK_PYTHON=/usr/bin/python3 (the interpreter baked in at build time may be unreadable)."""
    import redpak
    d = _public_dir("rp-pkg-")
    shutil.copytree(Path(redpak.__file__).parent, d / "redpak",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    (d / "bin").mkdir()
    for name in ("redwrap", "redpak-run"):
        shutil.copy2(_native_redwrap().parent / name, d / "bin" / name)
    for p in d.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
        else:
            p.chmod(0o755 if p.parent.name == "bin" else 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)
