# The package view of a node family: its nodes root-most first, and the merged admin-mode
# settings package management uses (gpgcheck, cachedir, persistdir), kept inside nodes.
"""Load what a package command needs to know about the node it works on.

Settings come from the family merged in admin mode (SPEC §3): `gpgcheck` is on when any
node turns it on; `cachedir` and `persistdir` are node-local (closest to the leaf wins)
and expanded like every other string. As with dnf's install root, a path that does not
already lie inside a node of the family is taken relative to the administered node, so
`/var/cache/dnf` (the root template) means NODE/var/cache/dnf: package management never
writes outside node directories.
"""

from __future__ import annotations

import os
import stat

from redpak.errors import PackageError
from redpak.record import record


@record(frozen=True)
class NodeRef:
    """A node as package management names it in messages."""

    path: str
    alias: str

    def describe(self) -> str:
        return f"'{self.alias}' ({self.path})"


@record(frozen=True)
class Session:
    """The administered node (the leaf), its family and the merged package settings."""

    family: tuple[NodeRef, ...]      # root-most first, the leaf last
    gpgcheck: bool
    gpgcheck_from: str               # who turned gpgcheck on ("" when off)
    cachedir: str
    persistdir: str
    devices_from: str = ""           # the file allowing device nodes ("" when refused)

    @property
    def leaf(self) -> NodeRef:
        return self.family[-1]

    @property
    def root(self) -> NodeRef:
        return self.family[0]

    @property
    def ancestors(self) -> tuple[NodeRef, ...]:
        return self.family[:-1]


def open_session(redpath: str) -> Session:
    """Load the family of `redpath` and its merged admin settings. Raises NodeError,
    ConfigError, MergeError (e.g. a node not Enable) or ExpandError."""
    from redpak.expand import family_config
    from redpak.node import load_family

    nodes = load_family(redpath)
    expanded = family_config(nodes, True, os.environ, os.getuid(), os.getgid(),
                             os.getpid()).family
    family = tuple(NodeRef(n.path, n.alias) for n in nodes)
    gpg = expanded.gpgcheck
    gpgcheck = bool(gpg is not None and gpg.value)
    who = ""
    if gpgcheck and gpg is not None and gpg.origins:
        who = ", ".join(o.describe() for o in gpg.origins)
    cachedir = _inside_family(expanded.cachedir.value if expanded.cachedir else
                              "/var/cache/dnf", family)
    persistdir = _inside_family(expanded.persistdir.value if expanded.persistdir else
                                "/var/lib/dnf", family)
    return Session(family, gpgcheck, who, cachedir, persistdir, _devices_from(nodes[-1]))


def _devices_from(node) -> str:
    """`pkg-devices: true` in the node's own admin (first) or normal config allows its
    packages to create device nodes; never inherited. Returns the file saying so."""
    for conf in (node.admin, node.config):
        if conf is not None and conf.settings.pkg_devices is not None:
            return conf.file if conf.settings.pkg_devices else ""
    return ""


def _inside_family(value: str, family: tuple[NodeRef, ...]) -> str:
    path = os.path.normpath(value if value.startswith("/") else "/" + value)
    for node in family:
        if path == node.path or path.startswith(node.path.rstrip("/") + "/"):
            return path
    return os.path.normpath(family[-1].path + "/" + path)


def owning_node(path: str, family: tuple[NodeRef, ...]) -> NodeRef:
    """The node of the family whose directory holds `path` (the leaf-most one)."""
    for node in reversed(family):
        if path == node.path or path.startswith(node.path.rstrip("/") + "/"):
            return node
    return family[-1]


def open_dirs(path: str, base: str) -> int:
    """make_dirs(path, base), then a descriptor on it reached from `base` one component at a
    time without following any symlink: a node that swaps a directory for a link after the
    check (it writes its var while redwrap-dnf runs) cannot redirect what is done through
    the descriptor. The caller closes it. Raises PackageError."""
    make_dirs(path, base)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    rel = os.path.relpath(path, base)
    try:
        fd = os.open(base, flags)
        for part in [] if rel == "." else rel.split("/"):
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            finally:
                os.close(fd)
            fd = nxt
    except OSError as err:
        raise PackageError(f"{path}: cannot open the directory without following a symlink "
                           f"({err.strerror}): remove what replaced it and retry") from err
    return fd


def make_dirs(path: str, base: str) -> str:
    """Create directory `path` and its parents below `base`, refusing any symlink on the
    way (node contents could point a cache directory at the host). Raises PackageError."""
    rel = os.path.relpath(path, base)
    if rel.startswith(".."):
        raise PackageError(f"{path}: not inside {base}")
    current = base
    for part in [] if rel == "." else rel.split("/"):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                pass
            except OSError as err:
                raise PackageError(f"{current}: cannot create directory: "
                                   f"{err.strerror}") from err
            st = os.lstat(current)
        if not stat.S_ISDIR(st.st_mode):
            raise PackageError(f"{current}: is not a directory (a symlink or file where "
                               "redpak keeps package state): remove it and retry")
    return path


def descendants(session: Session) -> list[NodeRef]:
    """Every node below the leaf, parents before children (aliases read when available)."""
    from redpak.node import find_tree

    out = []
    for path in find_tree(session.leaf.path)[1:]:
        out.append(NodeRef(path, _alias_of(path)))
    return out


def _alias_of(path: str) -> str:
    from redpak.errors import RedpakError
    from redpak.node import load_node

    try:
        return load_node(path).alias
    except RedpakError:
        return os.path.basename(path)
