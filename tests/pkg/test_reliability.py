"""Reliability (SPEC §8): one transaction at a time per family, waiting on the lock;
kill -9 at any point leaves a node that the same command completes, with a clean
database and no file that no package owns; a corrupt database is reported, not replaced."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pkghelp import DNF, add_repo, dnf, run

from redpak.cli import redwrap_dnf
from redpak.pkg.lock import LOCK_NAME, FamilyLock

pytestmark = pytest.mark.privileged     # installs: librpm chroots into the node

# Not package content: the database, caches, configs and redpak's own state files.
_NOT_PACKAGED = ("var/lib/rpm/", "var/cache/", "var/lib/dnf/", "etc/", "private/",
                 ".rednode.yaml", ".redpak-dnf.lock", ".redpak-stage")


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
    out = capsys.readouterr()
    assert results == {"conflictb": 0, "bar": 0}, out.err
    assert family.rpm_qa(family.app) == ["bar-1.0", "conflictb-1.0", "libfoo-2.0"]


def test_configs_are_never_read_while_another_thread_is_chrooted(family, tmp_path) -> None:
    """librpm chroots the whole process while it writes a node. A thread's command that
    reads the family's configs meanwhile would find none ("etc/redpak.yaml is missing"),
    nor the redpak modules it imports on first use: it waits for the lock the transaction
    holds. Played in a child process: the main thread takes the lock and chroots into an
    empty directory as librpm does; the other thread's command must only start once the
    chroot is undone."""
    empty = tmp_path / "empty"
    empty.mkdir()
    code = f"""
import os, sys, threading, time
from redpak.pkg import ops
from redpak.pkg.rpmdb import RPM_LOCK
result = {{}}
def query():
    result.clear()
    try:
        result["rows"] = ops.list_packages({str(family.app)!r}, "installed", [])
    except Exception as err:
        result["error"] = str(err)
top = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
with RPM_LOCK:
    os.chroot({str(empty)!r})
    worker = threading.Thread(target=query)
    worker.start()
    time.sleep(0.5)
    os.fchdir(top)
    os.chroot(".")
worker.join()
print(result)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "'rows'" in proc.stdout, proc.stdout


# --------------------------------------------------------------------------- crashes

_STATE = (".redpak-stage", ".redpak-dnf.journal", ".redpak-dnf.post")


def _snapshot(node: Path) -> dict[str, tuple[int, bytes]]:
    """Every packaged file and symlink of the node: mode and content (or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(node):
        rel_dir = os.path.relpath(dirpath, node)
        if rel_dir.startswith(_STATE):
            dirnames.clear()
            continue
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath,
                                                                                     d))]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel.startswith(_NOT_PACKAGED + _STATE):
                continue
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = os.readlink(path).encode() if os.path.islink(path) else \
                Path(path).read_bytes()
            out[rel] = (st.st_mode, data)
    return out


def _temp_files(node: Path) -> list[str]:
    """librpm's temporary NAME;XXXXXXXX files in the node (old trees being deleted in the
    background are not the node's)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(node):
        dirnames[:] = [d for d in dirnames if not d.startswith(".redpak-stage")]
        out += [os.path.join(dirpath, n) for n in filenames + dirnames if ";" in n]
    return out


def test_kill_9_during_a_21_package_transaction_leaves_the_node_old_or_new(family,
                                                                           built) -> None:
    """REDPAK_KILL_ITERATIONS (default 20) random kill -9 of `install` of 21 packages and
    of their `remove`: after each, the node is entirely old or entirely new (a committed
    transaction pending its swap is completed by `recover`), the database verifies, and
    re-running the command converges. REDPAK_KILL_SEED picks the kill points."""
    add_repo(family.system, "many", built.many)
    app = str(family.app)
    names = [f"many{i}" for i in range(1, 22)]
    ops = {"install": ["install", "-y", "-q", *names], "remove": ["remove", "-y", "-q",
                                                                  *names]}
    stage = family.app / ".redpak-stage"
    journal = family.app / ".redpak-dnf.journal"
    old = (family.rpm_qa(family.app), _snapshot(family.app))
    timing = {}
    for op in ("install", "remove"):         # the states, and how long each command takes
        start = time.monotonic()
        proc = _start("--redpath", app, *ops[op])
        while proc.poll() is None and not stage.exists():
            time.sleep(0.001)
        staged_at = time.monotonic()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        timing[op] = (time.monotonic() - start, time.monotonic() - staged_at)
        if op == "install":
            new = (family.rpm_qa(family.app), _snapshot(family.app))
    assert len(new[0]) == 21 and old[0] == []
    rng = random.Random(int(os.environ.get("REDPAK_KILL_SEED", "1")))
    iterations = int(os.environ.get("REDPAK_KILL_ITERATIONS", "20"))
    state, landed, pending = "old", 0, 0
    for i in range(iterations):
        op = "install" if state == "old" else "remove"
        whole, staged = timing[op]
        proc = _start("--redpath", app, *ops[op])
        if i % 2:           # anywhere in the command
            time.sleep(rng.uniform(0.05, whole))
        else:               # once the transaction is being staged
            while proc.poll() is None and not stage.exists():
                time.sleep(0.0005)
            time.sleep(rng.uniform(0, staged))
        landed += proc.poll() is None and stage.exists()
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if journal.exists():                 # committed: launching is refused until done
            pending += 1
            launch = subprocess.run([*DNF[:2], "redpak.cli.redwrap", "--redpath", app, "--",
                                     "/bin/true"], capture_output=True, text=True)
            assert launch.returncode != 0 and f"--redpath {app} recover" in launch.stderr
            rec = dnf("--redpath", app, "recover")
            assert rec.returncode == 0, f"iteration {i}: {rec.stderr}"
        now = (family.rpm_qa(family.app), _snapshot(family.app))
        assert now in (old, new), f"iteration {i} ({op}): the node is neither old nor new"
        run(["rpm", "--dbpath", family.db(family.app), "--verifydb"])
        target = new if op == "install" else old
        if now != target:                    # killed before the end: the same command
            rerun = dnf("--redpath", app, *ops[op])
            assert rerun.returncode == 0, f"iteration {i}: {rerun.stderr}"
        else:                                # killed while deleting the old files
            rerun = dnf("--redpath", app, "recover")
            assert rerun.returncode == 0, f"iteration {i}: {rerun.stderr}"
        assert (family.rpm_qa(family.app), _snapshot(family.app)) == target, f"iteration {i}"
        assert not journal.exists() and not stage.exists()
        assert not _temp_files(family.app), f"iteration {i}: temporary files left"
        run(["rpm", "--dbpath", family.db(family.app), "--verifydb"])
        state = "new" if op == "install" else "old"
    print(f"{iterations} kills, {landed} during a transaction, {pending} after its commit")
    assert landed >= 1, "no kill landed inside a transaction: widen the window"


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


@pytest.mark.parametrize("where", ["app", "system"])
def test_pending_journal_refuses_launch_cached_or_not(family, tmp_path: Path,
                                                      where: str) -> None:
    """A committed transaction not yet swapped in (its journal pending) in the node or an
    ancestor: the native launcher, even with a valid cached plan, and the Python cold path
    refuse to run the node and name the recovery command; `recover` clears it."""
    import sys

    from redpak.pkg import journal

    native = Path(sys.executable).parent / "redwrap"
    if not native.is_file():
        pytest.fail(f"{native} is missing: run tools/setup.sh")
    env = dict(os.environ, REDPAK_CACHE_DIR=str(tmp_path / "plans"))
    launch = [str(native), "-v", "--redpath", str(family.app), "--", "/bin/true"]
    first = subprocess.run(launch, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    cached = subprocess.run(launch, capture_output=True, text=True, env=env)
    assert cached.returncode == 0 and "using the cached plan" in cached.stderr
    node = getattr(family, where)
    journal.write_commit(str(node), "install x", [], [])
    for cmd in (launch, [*DNF[:2], "redpak.cli.redwrap", "--redpath", str(family.app), "--",
                         "/bin/true"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert proc.returncode != 0, proc.stderr
        assert f"redwrap-dnf --redpath {node} recover" in proc.stderr
        assert "unfinished package transaction" in proc.stderr
    rec = dnf("--redpath", str(node), "recover")
    assert rec.returncode == 0, rec.stderr
    assert not (node / ".redpak-dnf.journal").exists()
    again = subprocess.run(launch, capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("link", ["var/lib/rpm/rpmdb.sqlite", "var/lib/rpm/.rpm.lock",
                                  "var/lib"])
@pytest.mark.parametrize("command", [["list", "--installed"], ["install", "-y", "conflictb"]])
def test_database_files_symlinked_out_of_the_node_are_not_followed(family, tmp_path: Path,
                                                                    link: str,
                                                                    command) -> None:
    """Any symlink on the way to the database or rpm's lock (a file of the database, its
    lock, a directory above it) is refused, and the target is neither read nor written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    # A real database outside the node, with a package in it.
    run(["rpm", "--dbpath", str(outside / "db"), "--initdb"])
    run(["rpm", "--root", str(tmp_path / "fakeroot"), "--dbpath", str(outside / "db"), "-i",
         "--justdb", "--nodeps", _repo_rpms(family, "conflicta")[0]])
    source = family.app / link
    if link == "var/lib":
        target = outside / "lib"
        os.rename(source, target)
    elif link.endswith("rpmdb.sqlite"):
        target = outside / "db/rpmdb.sqlite"
        source.unlink()
    else:
        target = outside / "lock"
        target.write_text("")
        if source.exists():
            source.unlink()
    os.symlink(target, source)
    before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    proc = dnf("--redpath", str(family.app), *command)
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stderr
    assert "symlink" in proc.stderr and str(family.app / "var/lib") in proc.stderr
    assert {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == before
    assert not (family.app / "usr/share/conflictb").exists()


def test_crash_between_two_unit_swaps_is_rolled_forward(family, monkeypatch,
                                                        capsys) -> None:
    """The one window where the node is mixed on disk: after the commit, between the swap
    of `usr` and of the database. A crash there (the second exchange fails) leaves the
    journal pending, launching is refused, and `recover` completes the new node."""
    from redpak.pkg import stage

    real = stage.exchange
    calls = []

    def crash_on_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise OSError(5, "simulated crash")
        return real(*args)

    monkeypatch.setattr(stage, "exchange", crash_on_second)
    app = str(family.app)
    assert redwrap_dnf.main(["--redpath", app, "install", "-y", "-q", "conflictb"]) == 1
    assert "cannot finish the update" in capsys.readouterr().err
    assert (family.app / "usr/share/conflictb").exists() and family.rpm_qa(family.app) == []
    assert (family.app / ".redpak-dnf.journal").exists()
    launch = subprocess.run([*DNF[:2], "redpak.cli.redwrap", "--redpath", app, "--",
                             "/bin/true"], capture_output=True, text=True)
    assert launch.returncode != 0 and f"--redpath {app} recover" in launch.stderr
    monkeypatch.setattr(stage, "exchange", real)
    assert redwrap_dnf.main(["--redpath", app, "recover"]) == 0
    assert "after it was committed: completed" in capsys.readouterr().err
    assert family.rpm_qa(family.app) == ["conflictb-1.0"]
    assert not (family.app / ".redpak-dnf.journal").exists()
    run(["rpm", "--dbpath", family.db(family.app), "--verifydb"])
    run(["rpm", "--root", app, "--dbpath", "/var/lib/rpm", "-V", "conflictb"])
    launch = subprocess.run([*DNF[:2], "redpak.cli.redwrap", "--redpath", app, "--",
                             "/bin/true"], capture_output=True, text=True)
    assert launch.returncode == 0, launch.stderr
