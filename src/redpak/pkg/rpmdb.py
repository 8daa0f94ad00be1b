# librpm access for nodes: the rpm module loaded once and configured for node databases,
# librpm's messages captured, and a node's installed packages and keys read safely.
"""librpm (Debian's python3-rpm) as redpak uses it.

Every node keeps its own rpm database in NODE/var/lib/rpm. librpm is driven through
transaction sets rooted at the node directory: librpm then prefixes the node to its
database path and chroots into the node while it writes files, so package files land at
their usual paths inside the node and symlinks a package ships resolve inside the node.

librpm is process-global state (macros, log, keyring cache) and not thread-safe: callers
hold RPM_LOCK around anything that drives it (ops.py does, for a whole command).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable

from redpak.errors import PackageError

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

DB_DIR = "var/lib/rpm"
DB_FILE = "rpmdb.sqlite"

RPM_LOCK = threading.RLock()
"""Serialises librpm use inside one process (librpm is not thread-safe)."""


def serialised(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a package command under RPM_LOCK, its imports and config reads included:
    librpm chroots the whole process while it writes, so another thread would find
    neither the node's files nor redpak's modules meanwhile."""
    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with RPM_LOCK:
            return func(*args, **kwargs)
    return run

RPMSENSE_LESS = 1 << 1
RPMSENSE_GREATER = 1 << 2
RPMSENSE_EQUAL = 1 << 3
RPMSENSE_RPMLIB = 1 << 24

_rpm: Any = None
_log: Any = None
_log_pos = 0


def rpm_module() -> Any:
    """Return the rpm module configured for node databases; raises PackageError if absent."""
    global _rpm
    if _rpm is None:
        try:
            import rpm
        except ImportError as err:
            raise PackageError("librpm's Python bindings are missing (install Debian's "
                               "python3-rpm, e.g. with tools/setup.sh)") from err
        # Debian's %_dbpath is ~/.rpmdb; a node's database is NODE/var/lib/rpm and librpm
        # puts the transaction set's root directory in front of this.
        rpm.addMacro("_dbpath", "/" + DB_DIR)
        _start_log_capture(rpm)
        _rpm = rpm
    return _rpm


def _start_log_capture(rpm: Any) -> None:
    """Send librpm's messages to a private file: they become part of redpak's messages
    (take_log) instead of stray lines on stderr."""
    global _log
    tmp = os.environ.get("TMPDIR") or "/tmp"
    try:        # an unnamed file; tempfile would cost ~3 ms of every command
        fd = os.open(tmp, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:
        import tempfile
        _log = tempfile.TemporaryFile()
    else:
        _log = os.fdopen(fd, "w+b")
    rpm.setLogFile(_log)


def take_log() -> list[str]:
    """Return librpm's messages logged since the last call (one string per line)."""
    global _log_pos
    if _log is None:
        return []
    _log.flush()
    end = os.fstat(_log.fileno()).st_size
    if end <= _log_pos:
        return []
    data = os.pread(_log.fileno(), end - _log_pos, _log_pos)
    _log_pos = end
    return [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]


def log_to_stderr() -> None:
    """Show librpm's messages directly on stderr (rpm's own format)."""
    if _rpm is not None:
        _rpm.setLogFile(sys.stderr)


# --------------------------------------------------------------------------- locations

def db_path(node_path: str) -> str:
    """The rpm database directory of a node."""
    return os.path.join(node_path, DB_DIR)


def real_root(node_path: str) -> str:
    """Return the node's real directory, the root librpm chroots into; raises
    PackageError when the node path resolves to / or to something that is not a node."""
    real = os.path.realpath(node_path)
    if real == "/" or not os.path.isfile(os.path.join(real, ".rednode.yaml")):
        raise PackageError(f"{node_path}: resolves to {real}, which is not a node directory "
                           "(a symlink replaced the node?): refusing to install there")
    return real


def checked_db_path(node_path: str) -> str:
    """Return the node's database directory, refusing one that leaves the node through a
    symlink (a package could ship var -> /var and aim librpm at the host's database):
    `var`, `var/lib` and `var/lib/rpm` must be directories, reached without following a
    symlink, and every file in the database directory (rpmdb.sqlite, its journals, the
    lock) a regular file. Raises PackageError."""
    import stat

    from redpak.pkg.stage import open_beneath

    root = real_root(node_path)
    db = db_path(node_path)
    try:
        node_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise PackageError(f"{root}: cannot open the node: {err.strerror}") from err
    try:
        fd = open_beneath(node_fd, DB_DIR, create=False)
    except FileNotFoundError:
        return db
    except OSError as err:
        raise PackageError(f"{db}: resolves to {os.path.realpath(db)}, not to {root}/{DB_DIR}"
                           f" ({err.strerror}): a symlink in the node redirects its rpm "
                           "database; refusing to use it (replace the symlink with the "
                           "directory)") from err
    finally:
        os.close(node_fd)
    try:
        with os.scandir(fd) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    raise PackageError(
                        f"{db}/{entry.name}: not a regular file (a symlink redirects its "
                        "rpm database out of the node?): refusing to use the database "
                        "(remove it, or restore the file)")
    finally:
        os.close(fd)
    return db


def rpm_lock(db_dir: str, timeout: float) -> int:
    """Take rpm's own lock of a database (a POSIX write lock on DB/.rpm.lock, as librpm and
    `rpmdb --rebuilddb` take it), waiting up to `timeout` seconds; return the descriptor
    (closing it releases the lock). Raises PackageError naming the holder when busy."""
    import errno
    import fcntl
    import struct
    import time

    path = os.path.join(db_dir, ".rpm.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise PackageError(f"{path}: cannot open rpm's lock: {err.strerror}") from err
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EINTR):
                os.close(fd)
                raise PackageError(f"{path}: cannot lock: {err.strerror}") from err
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    holder = "another process"
    try:
        flock = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0)
        got = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, flock))
        if got[0] != fcntl.F_UNLCK and got[4] > 0:
            holder = f"pid {got[4]}"
    except OSError:
        pass
    os.close(fd)
    raise PackageError(f"rpm database {db_dir} is busy: {holder} holds {path} (an rpm "
                       f"command such as `rpmdb --rebuilddb`?) after {timeout:g} s; nothing "
                       "was changed: run the command again when it has finished, or wait "
                       "longer with --lock-timeout")


def has_db(node_path: str) -> bool:
    """Tell whether the node has an rpm database file."""
    return os.path.exists(os.path.join(db_path(node_path), DB_FILE))


def corrupt_db(node_path: str, detail: str) -> PackageError:
    """The error reported for an unreadable database: never repaired or replaced silently."""
    db = db_path(node_path)
    return PackageError(
        f"rpm database {db} cannot be read: {detail}. It may be corrupt; nothing was "
        f"changed. Check it with `rpm --dbpath {db} --verifydb`, then restore it from a "
        f"backup or try `rpm --dbpath {db} --rebuilddb`")


def _detail(messages: list[str], default: str) -> str:
    errors = [m.removeprefix("error: ") for m in messages if m.startswith("error:")]
    return errors[0] if errors else default


def transaction_set(node_path: str, staged: bool = False) -> Any:
    """Return a librpm transaction set rooted at the node (its database: NODE/var/lib/rpm),
    or at a stage directory (stage.py) when `staged`. Raises PackageError when the node or
    its database path leaves the node."""
    rpm = rpm_module()
    if not staged:
        checked_db_path(node_path)
    ts = rpm.TransactionSet(node_path if staged else real_root(node_path))
    # Headers come from the node's own database, verified when they were installed.
    ts.setVSFlags(rpm.RPMVSF_MASK_NOSIGNATURES | rpm.RPMVSF_MASK_NODIGESTS)
    return ts


def open_for_write(node_path: str, staged: bool = False) -> Any:
    """Open (creating if missing) the node's (or stage's) database read-write and return
    its transaction set; a read-write open also completes sqlite's recovery after a crash.
    Raises PackageError if the database is corrupt."""
    if not staged:
        os.makedirs(checked_db_path(node_path), exist_ok=True)
    ts = transaction_set(node_path, staged)
    take_log()
    rc = ts.initDB()
    messages = take_log()
    if any("transaction lock" in m or ".rpm.lock" in m for m in messages):
        raise PackageError(f"rpm database {db_path(node_path)} is busy: another rpm process "
                           f"holds its lock (an rpm command such as `rpmdb --rebuilddb`?); "
                           "nothing was changed: run the command again when it has finished")
    if rc != 0 or any(m.startswith("error:") for m in messages):
        raise corrupt_db(node_path, _detail(messages, f"librpm error {rc}"))
    return ts


# --------------------------------------------------------------------------- reading

class Installed:
    """One package installed in a node's database: the node index (in the caller's list of
    nodes), the database instance number and the header."""

    __slots__ = ("node", "instance", "hdr", "name", "evr", "arch")

    def __init__(self, node: int, instance: int, hdr: Any):
        self.node, self.instance, self.hdr = node, instance, hdr
        self.name: str = hdr[1000]              # RPMTAG_NAME
        self.evr: str = evr_of(hdr)
        self.arch: str = hdr[1022] or "noarch"  # RPMTAG_ARCH (None for gpg-pubkey)

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.evr}.{self.arch}"


def evr_of(hdr: Any) -> str:
    """EVR of a header in rpm's text form ('1:2.0-3', epoch only when set)."""
    epoch = hdr[1003]                   # RPMTAG_EPOCH
    ver_rel = f"{hdr[1001]}-{hdr[1002]}"
    return f"{epoch}:{ver_rel}" if epoch is not None else ver_rel


def nevra_of(hdr: Any) -> str:
    """name-[epoch:]version-release.arch of a header."""
    return f"{hdr[1000]}-{evr_of(hdr)}.{hdr[1022] or 'noarch'}"


def read_installed(node_path: str, node_index: int = 0) -> list[Installed]:
    """Return every package of the node's database (none if it has no database).
    Raises PackageError when the database cannot be read (never replaces it)."""
    if not has_db(node_path):
        return []
    rpm = rpm_module()
    ts = transaction_set(node_path)
    take_log()
    out: list[Installed] = []
    try:
        if ts.openDB() != 0:
            raise corrupt_db(node_path, _detail(take_log(), "librpm cannot open it"))
        mi = ts.dbMatch()
        for hdr in mi:
            out.append(Installed(node_index, mi.instance(), hdr))
    except rpm.error as err:
        raise corrupt_db(node_path, _detail(take_log(), str(err))) from err
    finally:
        ts.closeDB()
    messages = take_log()
    if any(m.startswith("error:") for m in messages):
        raise corrupt_db(node_path, _detail(messages, "read errors"))
    return out


def owners(ts: Any, path: str) -> list[str]:
    """NEVRAs of the packages of `ts`'s database that own `path` (a path inside the node)."""
    return [nevra_of(h) for h in ts.dbMatch("basenames", path)]


def header_files(hdr: Any) -> list[str]:
    """The paths (inside the node) of every file and directory a header lists."""
    dirs = hdr[1118] or []       # RPMTAG_DIRNAMES
    bases = hdr[1117] or []      # RPMTAG_BASENAMES
    index = hdr[1116] or []      # RPMTAG_DIRINDEXES
    return [dirs[i] + b for i, b in zip(index, bases)]


def armored_keys(installed: list[Installed]) -> list[str]:
    """The public keys (ASCII armour) imported into a database: its gpg-pubkey headers."""
    return [p.hdr[1005] for p in installed                     # RPMTAG_DESCRIPTION
            if p.name == "gpg-pubkey" and p.hdr[1005]]


def header_from_file(path: str, ts: Any) -> Any:
    """Read an rpm file's header with `ts`'s verification settings; raises rpm.error."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return ts.hdrFromFdno(fd)
    finally:
        os.close(fd)
