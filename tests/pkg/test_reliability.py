"""Reliability (SPEC §8): one transaction at a time per family, waiting on the lock;
kill -9 at any point leaves a node that the same command completes, with a clean
database and no file that no package owns; a corrupt database is reported, not replaced."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pkghelp import DNF, add_repo, dnf, run

from redpak.cli import redwrap_dnf
from redpak.pkg.lock import LOCK_NAME, FamilyLock

pytestmark = pytest.mark.privileged     # installs: librpm chroots into the node

# Not package content: the database, caches, configs and redpak's own state files.
_NOT_PACKAGED = ("var/lib/rpm/", "var/cache/", "var/lib/dnf/", "etc/", "private/",
                 ".rednode.yaml", ".redpak-dnf.lock")


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*DNF, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, REDPAK_REDWRAP=""))


def _unowned(node: Path, db: str) -> list[str]:
    """Files and symlinks under the node that no package of its database owns."""
    owned = set(run(["rpm", "--dbpath", db, "-qal"]).stdout.splitlines())
    out = []
    for dirpath, dirnames, filenames in os.walk(node):
        rel_dir = os.path.relpath(dirpath, node)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath,
                                                                                     d))]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel.startswith(_NOT_PACKAGED) or rel in _NOT_PACKAGED:
                continue
            if "/" + rel not in owned:
                out.append(rel)
    return sorted(out)


# --------------------------------------------------------------------------- lock

def test_concurrent_installs_into_one_node_wait_and_both_succeed(family) -> None:
    app = str(family.app)
    with FamilyLock(str(family.system)):
        a = _start("--redpath", app, "install", "-y", "conflictb")
        b = _start("--redpath", app, "install", "-y", "bar", "libfoo-1.0")
        time.sleep(1.0)
        assert a.poll() is None and b.poll() is None      # waiting, not failing
    _, err_a = a.communicate(timeout=60)
    _, err_b = b.communicate(timeout=60)
    assert a.returncode == 0, err_a
    assert b.returncode == 0, err_b
    assert "waiting for another package transaction" in err_a
    assert family.rpm_qa(family.app) == ["bar-1.0", "conflictb-1.0", "libfoo-1.0"]
    run(["rpm", "--dbpath", family.db(family.app), "--verifydb"])


def test_parent_and_child_at_once_are_serialised(family) -> None:
    with FamilyLock(str(family.system)):
        parent = _start("--redpath", str(family.system), "install", "-y", "libfoo-1.0")
        child = _start("--redpath", str(family.app), "install", "-y", "conflictb")
        time.sleep(1.0)
        assert parent.poll() is None and child.poll() is None
    for proc in (parent, child):
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert family.rpm_qa(family.system) == ["libfoo-1.0"]
    assert family.rpm_qa(family.app) == ["conflictb-1.0"]
    assert (family.system / LOCK_NAME).is_file()          # one lock for the whole family
    assert not (family.app / LOCK_NAME).exists()


def test_lock_timeout_gives_a_clear_message(family) -> None:
    with FamilyLock(str(family.system)):
        proc = dnf("--redpath", str(family.app), "--lock-timeout", "0.5", "install", "-y",
                   "conflictb")
    assert proc.returncode == 1
    assert f"pid {os.getpid()}" in proc.stderr
    assert str(family.system / LOCK_NAME) in proc.stderr and "--lock-timeout" in proc.stderr
    assert family.rpm_qa(family.app) == []


def test_in_process_calls_from_threads_are_serialised(family, capsys) -> None:
    import threading

    results = {}

    def install(name: str) -> None:
        results[name] = redwrap_dnf.main(["--redpath", str(family.app), "install", "-y",
                                          "-q", name])

    threads = [threading.Thread(target=install, args=(n,)) for n in ("conflictb", "bar")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    capsys.readouterr()
    assert results == {"conflictb": 0, "bar": 0}
    assert family.rpm_qa(family.app) == ["bar-1.0", "conflictb-1.0", "libfoo-2.0"]


# --------------------------------------------------------------------------- crashes

def test_kill_9_at_random_points_then_rerun(family, built) -> None:
    add_repo(family.system, "bulk", built.bulk)
    app = str(family.app)
    packages = ["bulk1", "bulk2", "bulk3", "bulk4"]
    before = _unowned(family.app, family.db(family.app))
    journal = family.app / ".redpak-dnf.journal"
    # One full run bounds the kill points: the whole command, and the transaction itself
    # (from the journal's creation to the end).
    start = time.monotonic()
    proc = _start("--redpath", app, "install", "-y", "-q", *packages)
    while proc.poll() is None and not journal.exists():
        time.sleep(0.001)
    journal_at = time.monotonic()
    assert proc.wait(timeout=60) == 0
    end = time.monotonic()
    duration, in_transaction = end - start, end - journal_at
    assert dnf("--redpath", app, "remove", "-y", "-q", *packages).returncode == 0
    rng = random.Random(int(os.environ.get("REDPAK_KILL_SEED", "1")))
    iterations = int(os.environ.get("REDPAK_KILL_ITERATIONS", "10"))
    killed_mid_way = 0
    for i in range(iterations):
        proc = _start("--redpath", app, "install", "-y", "-q", *packages)
        if i % 2:           # anywhere in the command
            time.sleep(rng.uniform(0.05, duration))
        else:               # inside the transaction
            while proc.poll() is None and not journal.exists():
                time.sleep(0.001)
            time.sleep(rng.uniform(0, in_transaction))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        partial = family.rpm_qa(family.app)
        if 0 < len(partial) < len(packages) or any(
                (family.app / f"usr/share/{p}").exists() for p in packages
                if f"{p}-1.0" not in partial):
            killed_mid_way += 1
        rerun = dnf("--redpath", app, "install", "-y", "-q", *packages)
        assert rerun.returncode == 0, f"iteration {i}: {rerun.stderr}"
        run(["rpm", "--dbpath", family.db(family.app), "--verifydb"])
        assert family.rpm_qa(family.app) == sorted(f"{p}-1.0" for p in packages)
        run(["rpm", "--root", str(family.app), "--dbpath", "/var/lib/rpm", "-V",
             *packages])
        assert _unowned(family.app, family.db(family.app)) == before, f"iteration {i}"
        assert not list(family.app.rglob("*;*")), f"iteration {i}: temporary files left"
        assert not (family.app / ".redpak-dnf.journal").exists()
        assert dnf("--redpath", app, "remove", "-y", "-q", *packages).returncode == 0
        assert _unowned(family.app, family.db(family.app)) == before
    assert killed_mid_way >= 1, "no kill landed inside the transaction: widen the window"


def test_leftover_files_of_an_interrupted_install_are_removed(family, capsys) -> None:
    from redpak.pkg import journal

    app = family.app
    stray = app / "usr/share/conflictb/conflictb.txt"
    # The state librpm leaves when killed after writing a file, before recording the
    # package: the journal lists the file, the database does not have the package.
    journal.write(str(app), "install conflictb",
                  [("conflictb-1.0-1.noarch", ["/usr/share/conflictb",
                                               "/usr/share/conflictb/conflictb.txt"])], [])
    stray.parent.mkdir(parents=True)
    stray.write_text("half written\n")
    (stray.parent / "conflictb.txt;5f3a2b1c").write_text("temp\n")
    status = redwrap_dnf.main(["--redpath", str(app), "install", "-y", "-q", "conflictb"])
    err = capsys.readouterr().err
    assert status == 0
    assert "interrupted" in err and "removed" in err
    assert stray.read_text() == "conflictb\n"         # the package's own file now
    assert not (stray.parent / "conflictb.txt;5f3a2b1c").exists()
    assert _unowned(app, family.db(app)) == []


def test_interrupted_upgrade_is_finished(family, capsys) -> None:
    from redpak.pkg import journal

    app = str(family.app)
    assert redwrap_dnf.main(["--redpath", app, "install", "-y", "-q", "libfoo-1.0"]) == 0
    # Killed between adding libfoo 2.0 and removing 1.0: both in the database.
    run(["rpm", "--root", app, "--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--noscripts",
         "--replacefiles", str(next(Path(p) for p in _repo_rpms(family, "libfoo-2.0")))])
    assert family.rpm_qa(family.app) == ["libfoo-1.0", "libfoo-2.0"]
    instance = int(run(["rpm", "--dbpath", family.db(family.app), "-q", "libfoo-1.0",
                        "--qf", "%{DBINSTANCE}"]).stdout)
    journal.write(app, "upgrade libfoo", [("libfoo-2.0-1.noarch", [])],
                  [("libfoo-1.0-1.noarch", instance, "libfoo-2.0-1.noarch")])
    capsys.readouterr()
    assert redwrap_dnf.main(["--redpath", app, "upgrade", "-y", "-q", "libfoo"]) == 0
    assert "finishing interrupted upgrades" in capsys.readouterr().err
    assert family.rpm_qa(family.app) == ["libfoo-2.0"]
    assert (family.app / "usr/bin/foo-tool").read_text() == "#!/bin/sh\necho foo-tool 2\n"
    run(["rpm", "--dbpath", family.db(family.app), "--verifydb"])


def _repo_rpms(family, prefix: str) -> list[str]:
    repo_file = (family.system / "etc/yum.repos.d/main.repo").read_text()
    base = repo_file.split("baseurl=file://")[1].split()[0]
    return [os.path.join(base, n) for n in sorted(os.listdir(base)) if n.startswith(prefix)]


# --------------------------------------------------------------------------- corruption

@pytest.mark.parametrize("command", [["list", "--installed"], ["install", "-y", "conflictb"]])
def test_corrupt_database_reported_not_replaced(family, command) -> None:
    assert dnf("--redpath", str(family.app), "install", "-y", "-q", "bar").returncode == 0
    db = family.app / "var/lib/rpm/rpmdb.sqlite"
    with open(db, "r+b") as f:
        f.write(b"this is not an sqlite database header" * 4)
    corrupt = db.read_bytes()
    proc = dnf("--redpath", str(family.app), *command)
    assert proc.returncode == 1
    assert proc.stderr.startswith("redwrap-dnf: rpm database")
    assert "cannot be read" in proc.stderr and "--verifydb" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert db.read_bytes() == corrupt
    assert not (family.app / "usr/share/conflictb").exists()


def test_corrupt_ancestor_database_is_reported_too(family) -> None:
    db = family.system / "var/lib/rpm/rpmdb.sqlite"
    db.write_bytes(b"\0garbage" * 512)
    proc = dnf("--redpath", str(family.app), "install", "-y", "conflictb")
    assert proc.returncode == 1
    assert str(family.system / "var/lib/rpm") in proc.stderr
    assert family.rpm_qa(family.app) == []


def test_database_redirected_out_of_the_node_is_refused(family, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    os.rename(family.app / "var/lib/rpm", elsewhere)
    os.symlink(elsewhere, family.app / "var/lib/rpm")
    proc = dnf("--redpath", str(family.app), "install", "-y", "conflictb")
    assert proc.returncode == 1
    assert "redirects its rpm database" in proc.stderr
    assert run(["rpm", "--dbpath", str(elsewhere), "-qa"]).stdout == ""
