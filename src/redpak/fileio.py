# Small file primitives shared by the plan cache, the package commands and the reports;
# standard library only, so that importing them costs nothing on the launch path.
"""Atomic file writes and durable renames."""

from __future__ import annotations

import os

__all__ = ["create_fresh", "fsync_dir", "write_atomic"]


def create_fresh(path: str, mode: int = 0o644, dir_fd: int | None = None) -> int:
    """A write descriptor on a new, empty file at PATH (relative to dir_fd when given).
    Whatever was there is unlinked first, and the file is created with O_EXCL: a symlink,
    FIFO or hard link planted at the name (node directories are writable from inside
    nodes, and the name of a temporary file is predictable) is never written through.
    Raises OSError."""
    try:
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                   mode, dir_fd=dir_fd)


def write_atomic(path: str, data: bytes, mode: int = 0o644, dir_fd: int | None = None) -> None:
    """Store DATA at PATH atomically: a temporary file in the same directory, written in
    full, then renamed over PATH (both relative to dir_fd when given: a directory a node
    can write is then never reached again by path). Raises OSError; a failed write removes
    the temporary file, so nothing but a complete file ever appears (the old one stays
    otherwise)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = create_fresh(tmp, mode, dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]  # a short write goes on, or raises
        finally:
            os.close(fd)
        os.rename(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def fsync_dir(directory: str) -> None:
    """Make a rename or unlink in DIRECTORY durable (best effort: errors are ignored)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
