# Small file primitives shared by the plan cache, the package commands and the reports;
# standard library only, so that importing them costs nothing on the launch path.
"""Atomic file writes and durable renames."""

from __future__ import annotations

import os

__all__ = ["fsync_dir", "write_atomic"]


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Store DATA at PATH atomically: a temporary file in the same directory, written in
    full, then renamed over PATH. Raises OSError; a failed write removes the temporary
    file, so nothing but a complete file ever appears (the old one stays otherwise)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]  # a short write goes on, or raises
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
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
