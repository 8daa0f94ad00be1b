# One package transaction at a time per node family: a lock file in the family's root
# node, waited for with a bounded timeout (librpm's own lock fails at once without a tty).
"""The family package lock.

Every package command that changes a node takes ROOT/.redpak-dnf.lock, where ROOT is the
root-most node of its family, so a node and all its relatives (which read each other's
databases to resolve) never change at the same time. flock() is used rather than
POSIX record locks: the lock belongs to this open file, and closing another descriptor
of the same file elsewhere in the process cannot drop it.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from types import TracebackType

from redpak.errors import PackageError

LOCK_NAME = ".redpak-dnf.lock"
DEFAULT_TIMEOUT = 300.0


class FamilyLock:
    """Context manager holding the package lock of a family; raises PackageError when the
    lock file is unusable or still held by another process after `timeout` seconds."""

    def __init__(self, root: str, timeout: float = DEFAULT_TIMEOUT,
                 on_wait: Callable[[str], None] | None = None):
        self.path = os.path.join(root, LOCK_NAME)
        self.timeout = timeout
        self.on_wait = on_wait
        self.fd = -1

    def __enter__(self) -> FamilyLock:
        import fcntl

        try:
            # O_NOFOLLOW: node contents are not trusted, the lock file could be a symlink.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o644)
        except OSError as err:
            hint = " (a symlink? remove it)" if err.errno == errno.ELOOP else ""
            raise PackageError(f"{self.path}: cannot open the family package lock: "
                               f"{err.strerror}{hint}") from err
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise PackageError(f"{self.path}: the family package lock is not a regular file "
                               "(remove it)")
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EINTR):
                    os.close(fd)
                    raise PackageError(f"{self.path}: cannot lock: {err.strerror}") from err
            if not waited:
                waited = True
                if self.on_wait is not None:
                    self.on_wait(f"waiting for another package transaction in this family "
                                 f"to finish ({self._holder(fd)} holds {self.path})")
            if time.monotonic() >= deadline:
                holder = self._holder(fd)
                os.close(fd)
                raise PackageError(
                    f"another package transaction in this family ({holder}) still holds "
                    f"{self.path} after {self.timeout:g} s: try again when it has finished, "
                    "or wait longer with --lock-timeout")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            text = ""
        return f"pid {text}" if text.isdigit() else "another process"

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.fd >= 0:
            os.close(self.fd)           # releases the flock
            self.fd = -1
