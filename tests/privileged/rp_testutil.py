"""Helpers shared by the privileged tests (imported by name: this directory is on sys.path
while its tests run)."""

from __future__ import annotations

import os
import shutil
import subprocess


def umount_below(path) -> None:
    """Detach every mount at or below PATH, deepest first (`umount -R` alone does nothing
    when PATH itself is not a mount point, leaking the mounts under it)."""
    top = os.path.realpath(str(path))
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == top or point.startswith(top + "/"):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL, check=False)


def remove_tree(path) -> None:
    """Unmount what a test left under PATH, then remove it."""
    umount_below(path)
    shutil.rmtree(path, ignore_errors=True)


def value(lines: list[str], key: str) -> str:
    """The rest of the first probe-output line starting with `key `."""
    for line in lines:
        if line.startswith(key + " ") or line == key:
            return line[len(key) + 1:]
    raise AssertionError(f"no {key!r} in probe output: {lines}")


def status_field(lines: list[str], name: str) -> str:
    """A /proc/self/status field the probe printed ("CapEff:\t0000...")."""
    for line in lines:
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name!r} in probe output: {lines}")
