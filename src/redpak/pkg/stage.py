# Atomic node updates: a transaction is written into a staging copy of the parts of the
# node it touches, then each part is exchanged with the live one (renameat2 EXCHANGE),
# under a journal that lets an interrupted exchange be rolled forward.
"""Staging a package transaction (docs/packages.md, "Atomic updates").

A transaction changes a few top-level parts ("units") of a node: `usr`, `etc`, `opt`...,
and below `var` the directories `var/X` (and `var/lib/X`); the rpm database `var/lib/rpm`
is always one. Before librpm runs, each unit is cloned into NODE/.redpak-stage/: every
directory is recreated, every file is hard-linked (librpm replaces a file by writing a
temporary name and renaming it over the old one, so the live inode is never written),
the database files are copied. librpm then runs rooted at the stage. Nothing of the live
node has changed until the commit:

1. the journal (journal.write_commit) records each unit and the inode of its staged copy;
2. each unit is exchanged with its staged copy (renameat2 RENAME_EXCHANGE: atomic per unit);
3. the journal is removed, then the stage (now holding the old units) is deleted.

A crash before 1 leaves the live node entirely old (the stage is deleted by the next
command). A crash after 1 leaves a pending journal: `redwrap` refuses to launch the node
and the family's descendants until `redwrap-dnf --redpath NODE recover` (or any changing
command) rolls the exchange forward, which only needs renames: the node is then entirely
new. Paths are resolved from a descriptor of the node directory, component by component,
never following a symlink.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Iterable, Iterator

from redpak.errors import PackageError

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

STAGE = ".redpak-stage"
TRASH = ".redpak-stage.old-"             # old units being deleted after a swap
DB_UNIT = "var/lib/rpm"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def unit_of(path: str) -> str | None:
    """The unit holding an in-node path ('/usr/bin/x' -> 'usr', '/var/log/x/y' ->
    'var/log', '/var/lib/foo/z' -> 'var/lib/foo'), or None for `/`, `/var`, `/var/lib`."""
    parts = [p for p in path.split("/") if p]
    depth = 1
    if parts[:1] == ["var"]:
        depth = 3 if parts[1:2] == ["lib"] else 2
    return "/".join(parts[:depth]) if len(parts) >= depth else None


def units_for(node_fd: int, paths: Iterable[str]) -> set[str]:
    """The units a transaction writing or removing `paths` touches, the database
    included. A top-level symlink (lib -> usr/lib) is resolved inside the node."""
    units = {DB_UNIT}
    links: dict[str, str | None] = {}
    for path in paths:
        unit = unit_of(resolve_top(node_fd, path, links))
        if unit is not None:
            units.add(unit)
    # A unit inside another (var/lib/x beside var/lib): keep the outer one only.
    return {u for u in units if not any(u.startswith(o + "/") for o in units if o != u)}


def resolve_top(node_fd: int, path: str, links: dict[str, str | None] | None = None) -> str:
    """An in-node path with its top-level symlinks (lib -> usr/lib) resolved inside the
    node, as librpm, rooted at the node, would follow them."""
    links = {} if links is None else links
    parts = [p for p in path.split("/") if p]
    for _ in range(8):
        if not parts or parts[0] not in links and not _top_link(node_fd, parts[0], links):
            break
        target = links.get(parts[0])
        if target is None:
            break
        parts = [p for p in target.split("/") if p] + parts[1:]
    return "/" + "/".join(parts)


def _top_link(node_fd: int, name: str, links: dict[str, str | None]) -> bool:
    try:
        target = os.readlink(name, dir_fd=node_fd)
    except OSError:
        links[name] = None
        return False
    norm = os.path.normpath("/" + target if not target.startswith("/") else target)
    links[name] = None if norm == "/" or ".." in target.split("/") else norm
    return True


def open_beneath(node_fd: int, rel: str, create: bool = False) -> int:
    """A descriptor of directory NODE/rel, reached component by component without
    following any symlink (created with mode 0755 when `create`); raises OSError."""
    fd = os.dup(node_fd)
    for part in [p for p in rel.split("/") if p]:
        try:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
        except FileNotFoundError:
            if not create:
                os.close(fd)
                raise
            os.mkdir(part, 0o755, dir_fd=fd)
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
        except OSError:
            os.close(fd)
            raise
        os.close(fd)
        fd = nxt
    return fd


def exchange(dir_a: int, name_a: str, dir_b: int, name_b: str) -> None:
    """Atomically exchange two entries (renameat2 RENAME_EXCHANGE); raises OSError."""
    if _libc.renameat2(dir_a, name_a.encode(), dir_b, name_b.encode(),
                       _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), name_a)


class Stage:
    """The staging tree of one transaction in one node."""

    def __init__(self, node_root: str, node_fd: int):
        self.node_root, self.node_fd = node_root, node_fd
        self.path = os.path.join(node_root, STAGE)
        self.units: list[str] = []

    # ----------------------------------------------------------------- building
    def create(self, units: set[str], private: set[str]) -> None:
        """Clone `units` of the live node into a fresh stage. Files of `private` (in-node
        paths librpm may change in place: setuid candidates) are copied, not linked.
        Raises PackageError."""
        remove_stale(self.node_root, self.node_fd, wait=False)
        try:
            os.mkdir(STAGE, 0o700, dir_fd=self.node_fd)
            stage_fd = os.open(STAGE, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                               | os.O_CLOEXEC, dir_fd=self.node_fd)
        except OSError as err:
            raise PackageError(f"{self.path}: cannot create the staging directory: "
                               f"{err.strerror}") from err
        try:
            node_dev = os.fstat(self.node_fd).st_dev
            self._links(stage_fd, units)
            for unit in sorted(units):
                self._clone_unit(stage_fd, unit, node_dev, private)
            if "etc" not in units:
                self._user_db(stage_fd)
        except OSError as err:
            where = getattr(err, "filename", None) or self.path
            raise PackageError(f"{where}: cannot stage the transaction: {err.strerror}"
                               + _space_hint(err)) from err
        finally:
            os.close(stage_fd)
        self.units = sorted(units)

    def _links(self, stage_fd: int, units: set[str]) -> None:
        """Top-level symlinks of the node (usrmerge's lib -> usr/lib) as they are."""
        with os.scandir(self.node_fd) as it:
            for entry in it:
                if entry.is_symlink() and entry.name not in units:
                    os.symlink(os.readlink(entry.name, dir_fd=self.node_fd), entry.name,
                               dir_fd=stage_fd)

    def _user_db(self, stage_fd: int) -> None:
        """librpm looks owners up in the chroot's /etc/passwd and /etc/group."""
        try:
            etc = open_beneath(self.node_fd, "etc")
        except OSError:
            return
        try:
            try:
                os.mkdir("etc", 0o755, dir_fd=stage_fd)
            except FileExistsError:
                return
            for name in ("passwd", "group"):
                try:
                    st = os.stat(name, dir_fd=etc, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    dst = os.open("etc", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                  dir_fd=stage_fd)
                    try:
                        _copy_file(etc, name, dst, name, st)
                    finally:
                        os.close(dst)
        finally:
            os.close(etc)

    def _clone_unit(self, stage_fd: int, unit: str, node_dev: int, private: set[str]) -> None:
        parent, _, name = unit.rpartition("/")
        src_parent = self._live_parent(parent)
        dst_parent = self._stage_parent(stage_fd, parent, src_parent)
        try:
            try:
                st = os.stat(name, dir_fd=src_parent, follow_symlinks=False)
            except FileNotFoundError:
                return                       # a new unit: librpm creates it in the stage
            if st.st_dev != node_dev:
                raise PackageError(
                    f"{os.path.join(self.node_root, unit)} is on another filesystem than "
                    "the node (a mount point?): it cannot be updated atomically; refusing")
            copy = unit == DB_UNIT
            _clone(src_parent, name, dst_parent, name, st, "/" + unit, copy, private,
                   self.node_root)
        finally:
            os.close(src_parent)
            os.close(dst_parent)

    def _live_parent(self, parent: str) -> int:
        try:
            return open_beneath(self.node_fd, parent)
        except FileNotFoundError:
            return open_beneath(self.node_fd, parent, create=True)
        except OSError as err:
            raise PackageError(f"{os.path.join(self.node_root, parent)}: {err.strerror} "
                               "(a symlink where the node needs a directory? replace it "
                               "with a directory)") from err

    def _stage_parent(self, stage_fd: int, parent: str, live: int) -> int:
        fd = open_beneath(stage_fd, parent, create=True)
        if parent:
            st = os.fstat(live)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            os.fchown(fd, st.st_uid, st.st_gid)
        return fd

    # ----------------------------------------------------------------- committing
    def staged_ids(self) -> list[dict[str, object]]:
        """Each unit with the identity of its staged copy (recorded in the journal)."""
        out = []
        for unit in self.units:
            try:
                st = os.stat(os.path.join(self.path, unit), follow_symlinks=False)
            except FileNotFoundError:
                out.append({"unit": unit, "dev": 0, "ino": 0})   # the transaction removed it
                continue
            out.append({"unit": unit, "dev": st.st_dev, "ino": st.st_ino})
        return out

    def discard(self) -> None:
        remove_stale(self.node_root, self.node_fd, wait=False)


def swap(node_root: str, node_fd: int, units: list[dict[str, object]]) -> None:
    """Put every staged unit in place of the live one; idempotent (a unit whose live copy
    already is the staged inode is skipped), so an interrupted swap is rolled forward by
    calling it again. Raises PackageError."""
    for entry in units:
        unit = str(entry["unit"])
        parent, _, name = unit.rpartition("/")
        try:
            live = open_beneath(node_fd, parent, create=True)
            stage = open_beneath(node_fd, os.path.join(STAGE, parent) if parent else STAGE)
        except OSError as err:
            raise PackageError(f"{node_root}/{unit}: cannot finish the update: "
                               f"{err.strerror}") from err
        try:
            _swap_one(live, stage, name, entry)
        except OSError as err:
            raise PackageError(f"{node_root}/{unit}: cannot finish the update: "
                               f"{err.strerror}") from err
        finally:
            os.close(live)
            os.close(stage)
    os.fsync(node_fd)


def _swap_one(live: int, stage: int, name: str, entry: dict[str, object]) -> None:
    # Inode numbers only: the stage and the node are one filesystem, whose device number
    # may change across a reboot.
    ident = entry.get("ino")
    here = _ident(live, name)
    there = _ident(stage, name)
    if ident == 0:                      # removed by the transaction
        if here is not None and there is None:
            os.rename(name, name, src_dir_fd=live, dst_dir_fd=stage)
        return
    if here == ident:
        return                               # already exchanged
    if there != ident:
        raise OSError(errno.ENOENT, "the staged copy is missing", name)
    if here is None:
        os.rename(name, name, src_dir_fd=stage, dst_dir_fd=live)
    else:
        exchange(stage, name, live, name)
    os.fsync(live)


def _ident(dir_fd: int, name: str) -> int | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino
    except FileNotFoundError:
        return None


def remove_stale(node_root: str, node_fd: int, wait: bool = True) -> None:
    """Delete the node's stage (what an earlier, unfinished or finished, transaction
    left) and the old trees a background deletion may not have finished (in the
    background too unless `wait`); never follows a symlink. Raises PackageError."""
    with os.scandir(node_fd) as it:
        names = [e.name for e in it if e.name == STAGE or e.name.startswith(TRASH)]
    for name in names:
        path = os.path.join(node_root, name)
        if name != STAGE and not wait:
            _delete_in_background(path)
            continue
        try:
            st = os.stat(name, dir_fd=node_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=node_fd)
            else:                            # refuses a symlinked root, follows none
                import shutil
                shutil.rmtree(path, ignore_errors=name != STAGE)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise PackageError(f"{path}: cannot remove the old staging directory: "
                               f"{err.strerror}") from err


def discard_old(node_root: str, node_fd: int) -> None:
    """After the swap the stage holds the old units: rename it out of the way and start
    deleting it (deleting a tree costs more than the whole transaction, so it overlaps the
    scriptlets that follow; deletions_awaited() ends the command after it; a killed
    deletion is finished by the next transaction). Raises OSError."""
    trash = f"{TRASH}{os.getpid()}-{os.urandom(4).hex()}"
    os.rename(STAGE, trash, src_dir_fd=node_fd, dst_dir_fd=node_fd)
    _delete_in_background(os.path.join(node_root, trash))


_PENDING: list[Any] = []
"""Deletions started in this process and not yet waited for (see deletions_awaited())."""


@contextlib.contextmanager
def deletions_awaited() -> Iterator[None]:
    """Around a package command, inside its locks: every deletion it started in the
    background has finished when it ends. Nothing of a command runs on after it returned
    (an image build step copies or proves the node next)."""
    try:
        yield
    finally:
        while _PENDING:
            _PENDING.pop().wait()


def _delete_in_background(path: str) -> None:
    import subprocess

    _PENDING.append(subprocess.Popen(
        ["rm", "-rf", "--one-file-system", "--", path], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        close_fds=True))


# --------------------------------------------------------------------------- cloning

def _clone(src_dir: int, name: str, dst_dir: int, dst_name: str, st: os.stat_result,
           rel: str, copy: bool, private: set[str], node_root: str) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if _has_status(src_dir, name):
            raise PackageError(f"{node_root}{rel} holds another node, and this transaction "
                               f"replaces {node_root}{rel}: move that node elsewhere")
        os.mkdir(dst_name, 0o700, dir_fd=dst_dir)
        sfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=src_dir)
        dfd = os.open(dst_name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=dst_dir)
        try:
            with os.scandir(sfd) as it:
                for entry in it:
                    est = entry.stat(follow_symlinks=False)
                    _clone(sfd, entry.name, dfd, entry.name, est, f"{rel}/{entry.name}",
                           copy, private, node_root)
            os.fchown(dfd, st.st_uid, st.st_gid)
            os.fchmod(dfd, stat.S_IMODE(mode))
            os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(sfd)
            os.close(dfd)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(name, dir_fd=src_dir), dst_name, dir_fd=dst_dir)
        os.chown(dst_name, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
    elif copy and name == ".rpm.lock":
        pass        # never opened: closing it would drop the caller's POSIX lock on it
    elif stat.S_ISREG(mode) and (copy or rel in private):
        _copy_file(src_dir, name, dst_dir, dst_name, st)
    else:
        try:
            os.link(name, dst_name, src_dir_fd=src_dir, dst_dir_fd=dst_dir,
                    follow_symlinks=False)
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK) \
                    or not stat.S_ISREG(mode):
                raise
            _copy_file(src_dir, name, dst_dir, dst_name, st)


def _has_status(dir_fd: int, name: str) -> bool:
    try:
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.stat(".rednode.yaml", dir_fd=sub,
                                    follow_symlinks=False).st_mode)
    except OSError:
        return False
    finally:
        os.close(sub)


def _copy_file(src_dir: int, name: str, dst_dir: int, dst_name: str,
               st: os.stat_result) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        dst = os.open(dst_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                      | os.O_CLOEXEC, 0o600, dir_fd=dst_dir)
        try:
            left = st.st_size
            while left > 0:
                n = os.copy_file_range(src, dst, left) if hasattr(os, "copy_file_range") \
                    else 0
                if n <= 0:
                    data = os.read(src, 1 << 20)
                    if not data:
                        break
                    os.write(dst, data)
                    n = len(data)
                left -= n
            os.fchown(dst, st.st_uid, st.st_gid)
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def break_link(stage_root: str, path: str) -> str | None:
    """Make the staged file at in-node `path` private to the stage (copied when it is
    shared with the live node) and return its host path; None when it is not a regular
    file reached without symlinks."""
    try:
        root = os.open(stage_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    parent, _, name = resolve_top(root, path).rpartition("/")
    try:
        fd = open_beneath(root, parent)
    except OSError:
        return None
    finally:
        os.close(root)
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_nlink > 1:
            tmp = name + ".redpak-unshare"
            _copy_file(fd, name, fd, tmp, st)
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        return os.path.join(stage_root + parent, name)
    except OSError:
        return None
    finally:
        os.close(fd)


def _space_hint(err: OSError) -> str:
    return (" (the filesystem is full: free space and run the command again; nothing "
            "was changed)") if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
