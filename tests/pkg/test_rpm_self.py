"""An RPM of redpak itself: packaging/redpak.spec built with rpmbuild from a tarball of this
checkout, its file list checked with rpm -qpl, and what it installs checked from the
payload (commands for the target's interpreter, man pages and completion as generated)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "packaging" / "redpak.spec"


def _version() -> str:
    for line in SPEC.read_text().splitlines():
        if line.startswith("Version:"):
            return line.split()[1]
    raise AssertionError("no Version in the spec")


@pytest.fixture(scope="module")
def rpm_file():
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild is not installed (Debian package rpm)")
    top = Path(tempfile.mkdtemp(prefix="rp-selfrpm-"))
    try:
        version = _version()
        (top / "SOURCES").mkdir()
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                               cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
        with tarfile.open(top / "SOURCES" / f"redpak-{version}.tar.gz", "w:gz") as tar:
            for name in filter(None, (os.fsdecode(f) for f in files)):
                if (REPO / name).exists():
                    tar.add(REPO / name, arcname=f"redpak-{version}/{name}", recursive=False)
        # BuildRequires name Fedora packages, absent from this Debian rpm database: --nodeps.
        # The build runs this interpreter (setuptools, Cython); the commands run the
        # system's python3, as on the target.
        r = subprocess.run(["nice", "-n", "10", "rpmbuild", "-bb", "--nodeps",
                            "--define", f"_topdir {top}",
                            "--define", f"__python3 {sys.executable}",
                            "--define", "redpak_python /usr/bin/python3", str(SPEC)],
                           capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        built = list((top / "RPMS").rglob("redpak-*.rpm"))
        assert len(built) == 1, built
        yield built[0]
    finally:
        shutil.rmtree(top, ignore_errors=True)


def payload(rpm: Path, member: str) -> bytes:
    cpio = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout
    r = subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", "." + member], input=cpio,
                       capture_output=True, check=True)
    return r.stdout


def test_rpm_file_list(rpm_file):
    files = set(subprocess.run(["rpm", "-qpl", str(rpm_file)], capture_output=True,
                               text=True, check=True).stdout.split())
    expected = {
        "/usr/bin/redwrap", "/usr/bin/redpak-run", "/usr/bin/redconf", "/usr/bin/redwrap-dnf",
        "/usr/bin/redpak-bench",
        "/usr/lib/systemd/system/redpak@.service",
        "/usr/lib/systemd/system/redpak-notify@.service",
        "/usr/share/bash-completion/completions/redwrap",
        "/usr/share/bash-completion/completions/redpak-run",
        "/usr/share/bash-completion/completions/redconf",
        "/usr/share/bash-completion/completions/redwrap-dnf",
        "/var/cache/redpak",
    }
    assert expected <= files, expected - files
    for prog in ("redwrap", "redconf", "redwrap-dnf", "redpak-run"):
        assert any(f.startswith(f"/usr/share/man/man1/{prog}.1") for f in files), prog
    site = [f for f in files if f.endswith("/site-packages/redpak")]
    assert len(site) == 1
    for name in ("api.py", "plan.py", "cli/redwrap.py", "templates/root-normal.yaml",
                 "templates/leaf-admin.yaml"):
        assert f"{site[0]}/{name}" in files, name
    assert any(f.startswith(f"{site[0]}/_core.") and f.endswith(".so") for f in files)


def test_rpm_metadata_and_modes(rpm_file):
    requires = subprocess.run(["rpm", "-qp", "--requires", str(rpm_file)],
                              capture_output=True, text=True, check=True).stdout.split("\n")
    for dep in ("python3-pyyaml", "python3-rpm", "python3-solv"):
        assert dep in requires
    listing = subprocess.run(["rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]",
                              str(rpm_file)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    modes = dict(reversed(line.split(" ", 1)) for line in listing)
    assert modes["/var/cache/redpak"] == "drwx------"
    assert modes["/usr/bin/redwrap"] == "-rwxr-xr-x"


def test_rpm_commands_run_the_target_interpreter(rpm_file):
    for cmd in ("redconf", "redwrap-dnf", "redpak-bench"):
        assert payload(rpm_file, f"/usr/bin/{cmd}").startswith(b"#!/usr/bin/python3 -sP\n")
    redwrap = payload(rpm_file, "/usr/bin/redwrap")
    assert redwrap.startswith(b"\x7fELF")
    assert b"/usr/bin/python3\0" in redwrap           # its cold path
    assert sys.executable.encode() + b"\0" not in redwrap


def test_rpm_man_pages_and_completion_are_the_generated_ones(rpm_file):
    for prog in ("redwrap", "redconf", "redwrap-dnf"):
        page = payload(rpm_file, f"/usr/share/man/man1/{prog}.1")
        if page[:2] == b"\x1f\x8b":  # brp-compress may have gzipped it
            import gzip
            page = gzip.decompress(page)
        if not page:
            import gzip
            page = gzip.decompress(payload(rpm_file, f"/usr/share/man/man1/{prog}.1.gz"))
        assert page == (REPO / "data" / "man" / f"{prog}.1").read_bytes()
        assert payload(rpm_file, f"/usr/share/bash-completion/completions/{prog}") == \
            (REPO / "data" / "completion" / prog).read_bytes()
    unit = payload(rpm_file, "/usr/lib/systemd/system/redpak@.service")
    assert unit == (REPO / "data" / "systemd" / "redpak@.service").read_bytes()
