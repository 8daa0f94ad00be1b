"""Messages of failed transactions (issue 10 item 6): rpm's own lock held means "busy",
never "corrupt"; a full disk names the path and leaves no downloaded package; a
transaction refused with "nothing was changed" leaves no journal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pkghelp import add_repo, dnf

pytestmark = pytest.mark.privileged     # installs: librpm chroots into the node

_HOLD = ("import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "time.sleep(float(sys.argv[2]))\n")


def _hold_rpm_lock(node: Path, seconds: float) -> subprocess.Popen:
    """Another process holding rpm's lock of the node's database, as rpm itself (and
    `rpmdb --rebuilddb`) takes it: a POSIX write lock on .rpm.lock."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(node / "var/lib/rpm/.rpm.lock"),
                             str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_rpm_lock_held_says_busy_not_corrupt(family) -> None:
    holder = _hold_rpm_lock(family.app, 60)
    try:
        proc = dnf("--redpath", str(family.app), "--lock-timeout", "1", "install", "-y",
                   "conflictb")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1
    assert "is busy" in proc.stderr and f"pid {holder.pid}" in proc.stderr
    assert "corrupt" not in proc.stderr and "cannot be read" not in proc.stderr
    assert "nothing was changed" in proc.stderr
    assert family.rpm_qa(family.app) == []


def test_rpm_lock_held_briefly_is_waited_for(family) -> None:
    holder = _hold_rpm_lock(family.app, 1.5)
    start = time.monotonic()
    proc = dnf("--redpath", str(family.app), "install", "-y", "conflictb")
    holder.wait()
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start >= 1.0
    assert family.rpm_qa(family.app) == ["conflictb-1.0"]


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 1 MiB tmpfs (unmounted afterwards, even when the test fails)."""
    def mount(where: Path, size: str = "1m") -> Path:
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(where)], check=True)
        mounted.append(where)
        return where
    mounted: list[Path] = []
    try:
        yield mount
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", "-l", str(where)], check=False)


def test_disk_full_while_downloading_names_the_path_and_removes_downloads(
        family, built, small_tmpfs) -> None:
    add_repo(family.system, "bulk", built.bulk)
    cache = small_tmpfs(family.app / "var/cache/dnf", "2m")
    # Each bulk package holds 800 KiB of random data: the second or third fills the cache.
    proc = dnf("--redpath", str(family.app), "install", "-y", "bulk1", "bulk2", "bulk3")
    assert proc.returncode == 1
    assert "No space left on device" in proc.stderr and str(cache) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(cache.rglob("*.rpm")) and not list(cache.rglob("*.tmp"))
    assert family.rpm_qa(family.app) == []
    assert not (family.app / ".redpak-dnf.journal").exists()


def test_disk_full_in_the_node_changes_nothing(family, built, small_tmpfs, tmp_path) -> None:
    """The whole node on a small filesystem: downloads fit, the transaction does not."""
    from redpak.pkg import ops

    top = small_tmpfs(tmp_path / "small", "3m")
    node = top / "app"
    ops.manager(str(node), None, True, None, None, False, ops.Options(out=lambda text: None))
    add_repo(node, "bulk", built.bulk)
    proc = dnf("--redpath", str(node), "install", "-y", "bulk1", "bulk2")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "nothing was changed" in proc.stderr
    assert "more space on the filesystem of " + str(node) in proc.stderr, proc.stderr
    assert not list(node.rglob("*.rpm"))
    assert not (node / ".redpak-dnf.journal").exists() and not (node / ".redpak-stage").exists()
    assert not (node / "usr/share/bulk1").exists()
    assert dnf("--redpath", str(node), "list", "--installed").returncode == 0


def test_refused_transaction_leaves_no_journal(family, built) -> None:
    """librpm refuses (a file conflict libsolv does not see): nothing changed, no journal,
    no stage, and the next command starts clean."""
    add_repo(family.system, "many", built.many)
    assert dnf("--redpath", str(family.app), "install", "-y", "foo-1.0").returncode == 0
    before = (family.app / "usr/bin/foo").read_bytes()
    proc = dnf("--redpath", str(family.app), "install", "-y", "clashpkg")
    assert proc.returncode == 1
    assert "nothing was changed" in proc.stderr and "/usr/bin/foo" in proc.stderr
    assert not (family.app / ".redpak-dnf.journal").exists()
    assert not (family.app / ".redpak-stage").exists()
    assert (family.app / "usr/bin/foo").read_bytes() == before
    assert sorted(family.rpm_qa(family.app)) == ["foo-1.0", "libfoo-2.0"]
    again = dnf("--redpath", str(family.app), "install", "-y", "conflictb")
    assert again.returncode == 0 and "interrupted" not in again.stderr


def test_nothing_of_the_command_runs_on_after_it_returned(family) -> None:
    # The old units are deleted while the scriptlets after run, but the command waits
    # for that deletion: an image build step copies or proves the node right after it.
    bulk = family.app / "usr/share/bulk"
    bulk.mkdir(parents=True)
    for i in range(200):
        sub = bulk / f"d{i}"
        sub.mkdir()
        for j in range(100):
            (sub / f"f{j}").write_bytes(b"x")
    for args in (("install", "-y", "conflictb"), ("remove", "-y", "conflictb")):
        proc = dnf("--redpath", str(family.app), *args)
        assert proc.returncode == 0, proc.stderr
        left = [p.name for p in family.app.iterdir() if p.name.startswith(".redpak-stage")]
        assert left == [], f"{args[0]}: still being deleted after the command returned: {left}"
    assert sum(1 for _ in bulk.rglob("f*")) == 20000
