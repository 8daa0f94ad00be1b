# Crash recovery for package transactions: before librpm writes anything, the journal
# records what each new package will create; after a crash, what no package owns goes.
"""The transaction journal of a node (NODE/.redpak-dnf.journal).

librpm writes a package's files (through temporary `NAME;XXXXXXXX` names, then renamed),
then adds its header to the database. Killed in between, it leaves files that no package
owns. So before a transaction runs, redpak records, durably:
- for each package to install, the paths it will create that do not exist yet;
- for each upgrade, which installed instance the new package replaces.
The next package command in the node (under the family lock) reads a leftover journal
and, before anything else, removes the recorded paths that no installed package owns (and
any temporary `;XXXXXXXX` sibling), removes the directories it created if they are empty,
and reports installed instances an interrupted upgrade failed to remove, so the caller can
finish that upgrade. Re-running the interrupted command then completes it.

Journal paths are taken as paths inside the node; one whose parent leaves the node
(through a symlink) is never touched.
"""

from __future__ import annotations

import json
import os
import re

from redpak.errors import PackageError
from redpak.fileio import fsync_dir
from redpak.record import record

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

JOURNAL = ".redpak-dnf.journal"
POST = ".redpak-dnf.post"
_TEMP_SUFFIX = re.compile(r";[0-9a-f]{8}$")


@record(frozen=True)
class Leftover:
    """An installed instance an interrupted upgrade should have removed."""

    nevra: str
    instance: int
    replaced_by: str


def journal_path(node_path: str) -> str:
    return os.path.join(node_path, JOURNAL)


def write(node_path: str, command: str, installs: list[tuple[str, list[str]]],
          replaces: list[tuple[str, int, str]]) -> None:
    """Record a transaction about to run: installs are (nevra, paths in the node) and
    replaces are (old nevra, old instance, new nevra). Durable before returning."""
    root = os.path.realpath(node_path)
    record_installs = []
    seen: set[str] = set()
    for nevra, paths in installs:
        fresh = []
        for path in paths:
            # Missing parents too: librpm creates directories no header lists.
            while path not in seen and path != "/":
                host = _host(root, path)
                if host is None or os.path.lexists(host):
                    break
                seen.add(path)
                fresh.append(path)
                path = os.path.dirname(path)
        record_installs.append({"nevra": nevra, "paths": fresh})
    data = {"version": 1, "pid": os.getpid(), "command": command,
            "install": record_installs,
            "replace": [{"old": o, "instance": i, "new": n} for o, i, n in replaces]}
    _write_json(journal_path(node_path), data, node_path)


def _write_json(path: str, data: dict[str, Any], node_path: str) -> None:
    text = json.dumps(data, separators=(",", ":")).encode()
    tmp = path + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
        try:
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(node_path)
    except OSError as err:
        raise PackageError(f"{path}: cannot write the transaction journal: "
                           f"{err.strerror}") from err


def write_commit(node_path: str, command: str, units: list[dict[str, Any]],
                 post: list[dict[str, Any]]) -> None:
    """Commit a staged transaction (stage.py): from here on it is rolled forward. `units`
    are the staged units with their inode, `post` the scriptlets to run afterwards."""
    _write_json(journal_path(node_path), {"version": 2, "pid": os.getpid(),
                                          "command": command, "state": "swap",
                                          "units": units, "post": post}, node_path)


def write_post(node_path: str, command: str, post: list[dict[str, Any]]) -> None:
    """Record the scriptlets still to run in the (already complete) node."""
    _write_json(post_path(node_path), {"version": 2, "command": command, "post": post},
                node_path)


def post_path(node_path: str) -> str:
    return os.path.join(node_path, POST)


def read_post(node_path: str) -> list[dict[str, Any]] | None:
    """The scriptlets an interrupted transaction did not run yet, or None."""
    try:
        fd = os.open(post_path(node_path), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise PackageError(f"{post_path(node_path)}: cannot read: {err.strerror} "
                           "(remove it if it is not a file)") from err
    with os.fdopen(fd, "rb") as f:
        raw = f.read(64 << 20)
    try:
        data = json.loads(raw)
        return _entries(data.get("post")) if isinstance(data, dict) else []
    except ValueError:
        return []


def clear_post(node_path: str) -> None:
    """Remove the list of scriptlets once they have run."""
    _remove(node_path, post_path(node_path))


def pending(redpath: str) -> str | None:
    """The node of `redpath`'s family (itself or an ancestor directory) whose package
    transaction is pending (a journal is there), or None. Cheap: one lstat per level."""
    path = os.path.abspath(redpath)
    while True:
        if os.path.lexists(os.path.join(path, JOURNAL)) and \
                os.path.lexists(os.path.join(path, ".rednode.yaml")):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def pending_message(node: str) -> str:
    """Why a node with a pending journal cannot be launched, and what to run."""
    return (f"node {node} has an unfinished package transaction ({journal_path(node)}): "
            f"it is neither old nor new until it is completed; run `redwrap-dnf --redpath "
            f"{node} recover` as root, then launch again")


def clear(node_path: str) -> None:
    """Remove the journal once the transaction it describes is complete."""
    _remove(node_path, journal_path(node_path))


def _remove(node_path: str, path: str) -> None:
    for name in (path, path + ".tmp"):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise PackageError(f"{name}: cannot remove the transaction journal: "
                               f"{err.strerror}") from err
    fsync_dir(node_path)


def read(node_path: str) -> dict[str, Any] | None:
    """The leftover journal of an interrupted transaction, or None."""
    path = journal_path(node_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise PackageError(f"{path}: cannot read the transaction journal: "
                           f"{err.strerror} (remove it if it is not a file)") from err
    with os.fdopen(fd, "rb") as f:
        raw = f.read(64 << 20)
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("version") not in (1, 2):
            raise ValueError("unknown format")
    except ValueError:
        # A journal cut short by a crash while it was written: the transaction never
        # started (the journal is complete before librpm runs).
        return {"version": 1, "install": [], "replace": [], "command": "?"}
    return data


def recover(node_path: str, data: dict[str, Any], ts: Any,
            installed: set[str]) -> tuple[list[str], list[Leftover]]:
    """Undo what an interrupted transaction left behind in a node. `ts` is a transaction
    set on the node's database (for file owners), `installed` the NEVRAs it holds now.
    Returns the paths removed and the leftover instances of interrupted upgrades."""
    from redpak.pkg.rpmdb import owners

    root = os.path.realpath(node_path)
    removed: list[str] = []
    created_dirs: list[str] = []
    for entry in _entries(data.get("install")):
        paths = [p for p in entry.get("paths", []) if isinstance(p, str) and p.startswith("/")]
        complete = entry.get("nevra") in installed
        for path in paths:
            host = _host(root, path)
            if host is None:
                continue
            _remove_temp_siblings(root, host, removed)
            if complete or not os.path.lexists(host):
                continue
            if os.path.isdir(host) and not os.path.islink(host):
                created_dirs.append(path)
                continue
            if owners(ts, path):
                continue
            try:
                os.unlink(host)
                removed.append(path)
            except OSError:
                pass
        if not complete:
            created_dirs.extend(p for p in paths if p not in created_dirs)
    for path in sorted(set(created_dirs), key=lambda p: p.count("/"), reverse=True):
        host = _host(root, path)
        if host is None or not os.path.isdir(host) or os.path.islink(host) or owners(ts, path):
            continue
        try:
            os.rmdir(host)              # only when empty
            removed.append(path + "/")
        except OSError:
            pass
    leftovers = []
    for entry in _entries(data.get("replace")):
        old, new, inst = entry.get("old"), entry.get("new"), entry.get("instance")
        if (isinstance(inst, int) and isinstance(old, str) and new in installed
                and old in installed and old != new):
            leftovers.append(Leftover(old, inst, str(new)))
    return removed, leftovers


def _entries(value: Any) -> list[dict[str, Any]]:
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def _host(root: str, path: str) -> str | None:
    """The host path of an in-node path, or None when its directory leaves the node."""
    norm = os.path.normpath("/" + path.lstrip("/"))
    host = root + norm
    parent = os.path.realpath(os.path.dirname(host))
    if parent != root and not parent.startswith(root + "/"):
        return None
    return os.path.join(parent, os.path.basename(host))


def _remove_temp_siblings(root: str, host: str, removed: list[str]) -> None:
    directory, base = os.path.split(host)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(base + ";") and _TEMP_SUFFIX.search(name) \
                and len(name) == len(base) + 9:
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(os.path.join(directory, name)[len(root):])
            except OSError:
                pass
