# Compiling a merged, expanded family into a LaunchPlan (the C core's only input): every
# policy decision of a launch is taken here — identity, namespaces, capabilities, mount
# order, environment, cache dependencies. The C core applies the result and decides nothing.
"""Compile a node family into a launch plan.

`compile_plan()` turns an expanded FamilyConfig into a `planfile.LaunchPlan`; it does no
I/O (build.py loads, expands, merges and probes the host around it). Policy choices, where the spec is silent, are
listed in docs/launch.md.
"""

from __future__ import annotations

import os

from collections.abc import Callable, Mapping

from . import security
from .controls import Host, compile_controls
from .errors import PlanError
from .family import CAP_BITS, FamilyConfig
from .model import EnvMode, Export, ExportMode, Share
from .planfile import (
    Caps,
    EnvAction,
    EnvOp,
    Join,
    LaunchPlan,
    Mount,
    MountFlag,
    MountKind,
    Ns,
)
from .record import field, record

_NS_FLAG = {"user": Ns.USER, "pid": Ns.PID, "net": Ns.NET, "ipc": Ns.IPC, "uts": Ns.UTS,
            "cgroup": Ns.CGROUP, "time": Ns.TIME}

EXECFD_TIMEOUT_MS = 5000
"""Execfd commands run at launch get the same 5 s bound as $(command) (SPEC §5)."""

ABSENT_MTIME = -1
"""A FileDep with this mtime (and dev = ino = size = 0) means: the path must not exist."""


@record(frozen=True)
class LaunchOptions:
    """What the caller of redwrap (or the Python API) asks for, besides the program."""

    admin: bool = False
    strict: bool = False
    user: str | None = None       # -U: overrides set-user
    group: str | None = None      # -G: overrides set-group
    smack: str | None = None      # -S: overrides smack
    keep_fds: tuple[int, ...] = ()


@record(frozen=True)
class Identity:
    """Who runs the program: the caller, the host identity it runs as, and inside the node."""

    caller_uid: int
    caller_gid: int
    host_uid: int          # the user/group the program runs as, seen from the host ($UID)
    host_gid: int
    privileged: bool       # the caller is root (euid 0)
    inner_uid: int | None = None   # set-user for an unprivileged caller: shown inside only,
    inner_gid: int | None = None   # mapped onto the caller (who cannot switch on the host)


@record(frozen=True)
class CompiledPlan:
    plan: LaunchPlan
    warnings: tuple[str, ...] = ()
    absent_sources: tuple[str, ...] = ()   # skipped because missing: cache dependencies
    family: FamilyConfig | None = None     # what the plan was compiled from (build_plan)


@record
class _Out:
    warnings: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


def caller_identity() -> tuple[int, int, bool]:
    """The caller's real uid and gid, and whether it has root privileges."""
    return os.getuid(), os.getgid(), os.geteuid() == 0


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _id_number(text: str, what: str, kind: str) -> int:
    value = int(text)
    if value >= 0xFFFFFFFF:     # (uid_t)-1 means "unchanged" to the kernel: never an id
        raise PlanError(f"{what}: {text} is not a {kind} (0 to 4294967294)")
    return value


def resolve_user(text: str, what: str = "set-user") -> int:
    """A user name or number (resolved on the host) -> uid; raises PlanError."""
    if _number(text):
        return _id_number(text, what, "uid")
    import pwd
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise PlanError(f"{what}: no user '{text}' on this host "
                        "(give a user name from /etc/passwd or a number)") from None


def resolve_group(text: str, what: str = "set-group") -> int:
    """A group name or number (resolved on the host) -> gid; raises PlanError."""
    if _number(text):
        return _id_number(text, what, "gid")
    import grp
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise PlanError(f"{what}: no group '{text}' on this host "
                        "(give a group name from /etc/group or a number)") from None


def build_plan(redpath: str, options: LaunchOptions = LaunchOptions(),
               environ: Mapping[str, str] | None = None, dry_run: bool = False
               ) -> CompiledPlan:
    """Load, merge, expand and compile the family of REDPATH (build.build_plan, which owns
    the I/O and the order); raises RedpakError."""
    from .build import build_plan as build

    return build(redpath, options, environ, dry_run)


# ---- the pure part ----------------------------------------------------------------------

def compile_plan(fam: FamilyConfig, ident: Identity, options: LaunchOptions = LaunchOptions(),
                 source_kind: Callable[[str], str] | None = None,
                 create_source: Callable[[str, str, str], None] | None = None,
                 host: Host | None = None) -> CompiledPlan:
    """Turn an expanded FamilyConfig into a LaunchPlan; raises PlanError.

    `source_kind(path)` says what a bind source is on the host: 'dir', 'file', 'other' or
    'missing' (default: everything is 'dir'); `create_source(path, 'dir'|'file', where)`
    creates a missing source inside a node (default: nothing is created, as in a dry run);
    `host` describes the machine for the controls (controls.probe_host(); default: a
    cgroup v2 host with every controller and no SMACK). This function does no I/O itself.
    """
    if not fam.expanded:
        raise PlanError("internal: compile_plan needs an expanded family (expand_family)")
    out = _Out()
    kind_of = source_kind or (lambda _p: "dir")

    namespaces, joins = _namespaces(fam, ident)
    uid_map, gid_map, deny, uid, gid, drop = _identity(fam, ident, namespaces)
    caps = _caps(fam, uid)
    node_dirs = tuple(n.path for n in fam.nodes)
    create = create_source or (lambda _p, _k, _w: None)
    mounts = _mounts(fam, ident, uid, gid, options, kind_of, create, node_dirs, out)
    env = _environ(fam, mounts, kind_of, out)
    _check_commands(fam, ident)
    controls = compile_controls(fam, mounts, host or Host(), options.smack)
    out.warnings += controls.warnings
    check_home(fam)
    chdir = _chdir(fam)
    plan = LaunchPlan(
        namespaces=namespaces, joins=joins, uid_map=uid_map, gid_map=gid_map,
        setgroups_deny=deny, uid=uid, gid=gid, drop_groups=drop,
        hostname=fam.hostname.value if fam.hostname else "",
        chdir=chdir,
        umask=fam.umask.value if fam.umask else None,
        die_with_parent=fam.die_with_parent.value.value == "enabled",
        new_session=fam.new_session.value.value == "enabled",
        caps=caps, mounts=mounts,
        inherit_env=bool(fam.inherit_env and fam.inherit_env.value),
        env=env, keep_fds=tuple(options.keep_fds),
        execfd_timeout_ms=EXECFD_TIMEOUT_MS,
        seccomp=controls.seccomp, landlock=controls.landlock, cgroup=controls.cgroup,
        smack=controls.smack,
        caller_uid=ident.caller_uid, caller_gid=ident.caller_gid,
    )
    # security policy over the whole family (security.py): fam is the single truth, ident
    # says who launches
    plan = security.harden(plan, fam, ident.privileged, host or Host())
    return CompiledPlan(plan, tuple(out.warnings), tuple(out.absent))


def _check_commands(fam: FamilyConfig, ident: Identity) -> None:
    """Execfd commands run on the host as the launcher: never more privileged than the
    owner of the node whose config holds them. Raises PlanError."""
    owners = {n.path: n.owner for n in fam.nodes}
    entries = [(s, "exports") for s in fam.exports if s.value.mode is ExportMode.EXECFD]
    entries += [(s, "environ") for s in fam.environ if s.value.mode is EnvMode.EXECFD]
    for sourced, what in entries:
        origin = sourced.origin
        owner = owners.get(origin.path) if origin is not None else None
        if owner in (None, 0, ident.caller_uid):
            continue
        raise PlanError(f"{what}: the Execfd entry of {origin.describe()} would run on the "
                        f"host as uid {ident.caller_uid}, but the node belongs to uid "
                        f"{owner}, who could make it run anything: refused (launch the node "
                        f"as uid {owner}, or have root own the node directory)")


def _namespaces(fam: FamilyConfig, ident: Identity) -> tuple[Ns, tuple[Join, ...]]:
    flags = Ns.MNT
    joins: list[Join] = []
    for ns, flag in _NS_FLAG.items():
        value = fam.share(ns)
        if value.state is Share.DISABLED:
            flags |= flag
        elif value.state is Share.JOIN:
            joins.append(Join(flag, value.path))
    if fam.hostname and fam.hostname.value:
        uts = fam.share("uts")
        if uts.state is Share.JOIN:
            raise PlanError(f"hostname: set by {fam.hostname.origin.describe()}, but the UTS "
                            f"namespace is joined ({uts.path}): drop one of the two")
        flags |= Ns.UTS  # a hostname implies a private UTS namespace (SPEC §2)
    if not ident.privileged and not flags & Ns.USER:
        if any(j.ns is Ns.USER for j in joins):
            return flags, tuple(joins)
        user = fam.namespaces.get("user")
        where = user.origin.describe() if user is not None and user.origins else "a node"
        raise PlanError("share_user: an unprivileged launch needs a new user namespace, but "
                        f"{where} shares the caller's (run as root, or set share_user: "
                        "disabled)")
    return flags, tuple(joins)


def _identity(fam: FamilyConfig, ident: Identity, namespaces: Ns
              ) -> tuple[str, str, bool, int, int, bool]:
    """uid_map, gid_map, setgroups deny, uid and gid inside, drop supplementary groups."""
    map_root = bool(fam.map_root_user and fam.map_root_user.value)
    if namespaces & Ns.USER:
        if ident.privileged:
            if map_root and (ident.host_uid, ident.host_gid) != (0, 0):
                # Root inside, but only as the set-user identity on the host: a leaf's
                # map-root-user never turns an ancestor's set-user into host root.
                return (f"0 {ident.host_uid} 1\n", f"0 {ident.host_gid} 1\n", False, 0, 0,
                        True)
            # Root keeps the host's ids (files keep their owners); the program switches.
            inner_uid = 0 if map_root else ident.host_uid
            inner_gid = 0 if map_root else ident.host_gid
            return ("0 0 4294967295\n", "0 0 4294967295\n", False, inner_uid, inner_gid, True)
        shown_uid = ident.inner_uid if ident.inner_uid is not None else ident.caller_uid
        shown_gid = ident.inner_gid if ident.inner_gid is not None else ident.caller_gid
        inner_uid = 0 if map_root else shown_uid
        inner_gid = 0 if map_root else shown_gid
        return (f"{inner_uid} {ident.caller_uid} 1\n", f"{inner_gid} {ident.caller_gid} 1\n",
                True, inner_uid, inner_gid, False)
    if map_root:
        raise PlanError("map-root-user: needs a new user namespace, but share_user is "
                        "enabled in this family")
    wanted = (ident.inner_uid if ident.inner_uid is not None else ident.host_uid,
              ident.inner_gid if ident.inner_gid is not None else ident.host_gid)
    if not ident.privileged and wanted != (ident.caller_uid, ident.caller_gid):
        raise PlanError("set-user/set-group: switching user needs root or a new user "
                        "namespace (share_user: disabled)")
    return ("", "", False, ident.host_uid, ident.host_gid, ident.privileged)


def _caps(fam: FamilyConfig, uid: int) -> Caps:
    mask = 0
    for cap in fam.capabilities:
        mask |= 1 << CAP_BITS[cap.value]
    if uid == 0:
        return Caps(bounding=mask, permitted=mask, effective=mask)
    # A non-root program keeps an added capability across exec only through ambient.
    return Caps(bounding=mask, permitted=mask, effective=mask, inheritable=mask, ambient=mask)


def _components(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


def _normalise_mount(text: str, where: str) -> str:
    if not text.startswith("/"):
        raise PlanError(f"{where}: mount '{text}' must be an absolute path inside the node")
    parts = _components(text)
    if any(p in (".", "..") for p in parts):
        raise PlanError(f"{where}: mount '{text}' must not contain '.' or '..'")
    return "/" + "/".join(parts)


def _target(exp: Export, where: str) -> str:
    target = _normalise_mount(exp.mount, where)
    if target == "/":
        raise PlanError(f"{where}: mount '/' is the node's root; export below it")
    return target


def _chdir(fam: FamilyConfig) -> str:
    chdir = fam.chdir.value if fam.chdir and fam.chdir.value else "/"
    if not chdir.startswith("/"):
        raise PlanError(f"chdir: '{chdir}' must be an absolute path inside the node "
                        f"({fam.chdir.origin.describe() if fam.chdir else ''})")
    return chdir


def check_home(fam: FamilyConfig) -> None:
    """Refuse a chdir that leads, through the family's Symlink exports, to a directory no
    export provides: the stock root template's `chdir: /home/$LEAF_ALIAS` links to the
    leaf's private storage (/nodes/_private), exported by the leaf template only, so the
    root node launched by itself would fail at chdir with a bare ENOENT. Raises PlanError
    naming the node, the keys and what to do."""
    chdir = _chdir(fam)
    links = {_normalise_mount(s.value.mount, ""): s for s in fam.exports
             if s.value.mode is ExportMode.SYMLINK and s.value.path}
    mounts = [_normalise_mount(s.value.mount, "") for s in fam.exports
              if s.value.mount.startswith("/")]
    path, chain = chdir, []
    while len(chain) < 8:
        link = next((m for m in links if _under(path, (m,))), None)
        if link is None or not links[link].value.path.startswith("/"):
            break
        chain.append(links[link])
        path = os.path.normpath(links[link].value.path + path[len(link):])
    if not chain or path == "/" or any(_under(path, (m,)) or _under(m, (path,))
                                       for m in mounts if m not in links):
        return
    leaf = fam.nodes[-1]
    origin = fam.chdir.origin.describe() if fam.chdir else "default"
    if path == "/nodes/_private":       # the stock templates' home
        todo = (f"The home directory of the root template is a leaf's private storage: "
                f"run programs in a leaf node below it (`redconf create --leaf "
                f"{leaf.path.rstrip('/')}/APP`), or set `chdir` in its config")
    else:
        todo = f"Export {path} from a node of the family, or set `chdir` in its config"
    raise PlanError(
        f"node '{leaf.alias}' ({leaf.path}) cannot be launched: its chdir {chdir} "
        f"({origin}) is a Symlink export to {path} ({chain[-1].origin.describe()}), and "
        f"no node of its family exports {path}. {todo}")


def check_paths(fam: FamilyConfig) -> None:
    """The path rules of compile_plan that need no host (every export's mount absolute,
    without '.' or '..', not '/'; chdir absolute): `redconf check` applies them, so it
    refuses what a launch refuses. Raises PlanError."""
    for sourced in fam.exports:
        _target(sourced.value, sourced.origin.describe())
    _chdir(fam)


def _under(path: str, dirs: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _mounts(fam: FamilyConfig, ident: Identity, uid: int, gid: int, options: LaunchOptions,
            kind_of: Callable[[str], str], create: Callable[[str, str, str], None],
            node_dirs: tuple[str, ...], out: _Out) -> tuple[Mount, ...]:
    entries: list[tuple[tuple[str, ...], Mount]] = []
    for sourced in fam.exports:
        exp: Export = sourced.value
        where = sourced.origin.describe()
        target = _target(exp, where)
        mount = _mount_of(exp, target, where, ident, uid, gid, options, kind_of, create,
                          node_dirs, out)
        if mount is not None:
            entries.append((_components(target), mount))
    # Parents before children: sort by path components, stable for equal keys.
    entries.sort(key=lambda e: e[0])
    return tuple(m for _, m in entries)


def _mount_of(exp: Export, target: str, where: str, ident: Identity, uid: int, gid: int,
              options: LaunchOptions, kind_of: Callable[[str], str],
              create: Callable[[str, str, str], None], node_dirs: tuple[str, ...], out: _Out
              ) -> Mount | None:
    mode = exp.mode
    if mode.is_bind:
        source = exp.path or exp.mount
        if not source.startswith("/"):
            raise PlanError(f"{where}: path '{source}' must be an absolute host path")
        if any(p in (".", "..") for p in _components(source)):
            raise PlanError(f"{where}: path '{source}' must not contain '.' or '..' "
                            "(write the path it leads to)")
        source = "/" + "/".join(_components(source))
        want = "file" if mode.is_file else "dir"
        found = kind_of(source)
        flags = MountFlag.RDONLY if mode.readonly else MountFlag(0)
        if found == "missing":
            if _under(source, node_dirs):
                # redpak creates missing sources inside node directories only (SPEC §4).
                create(source, want, where)
            elif exp.optional:
                out.absent.append(source)   # expected to be missing at times: no warning
                return None
            elif options.strict:
                raise PlanError(f"{where}: source '{source}' does not exist (--strict)")
            else:
                out.warnings.append(f"{where}: source '{source}' does not exist; "
                                    f"'{target}' is skipped")
                out.absent.append(source)
                return None
        elif found == "dir" and want == "file":  # plain modes bind a file too (2.x)
            raise PlanError(f"{where}: {mode.value} needs a file, but '{source}' is a dir")
        if not _under(source, node_dirs) and not options.strict:
            flags |= MountFlag.OPTIONAL  # a host path that vanishes later is skipped
        kind = MountKind.BIND_FILE if mode.is_file else MountKind.BIND
        return Mount(kind, target, source, flags)
    if mode is ExportMode.ANONYMOUS:
        return Mount(MountKind.DIR, target, mode=0o755)
    if mode is ExportMode.SYMLINK:
        if not exp.path:
            raise PlanError(f"{where}: Symlink needs a path (the link's target)")
        return Mount(MountKind.SYMLINK, target, exp.path)
    if mode is ExportMode.TMPFS:
        return Mount(MountKind.TMPFS, target, mode=0o1777 if target == "/tmp" else 0o755)
    if mode is ExportMode.PROCFS:
        return Mount(MountKind.PROC, target)
    if mode is ExportMode.DEVFS:
        return Mount(MountKind.DEV, target)
    if mode is ExportMode.MQUEUE:
        return Mount(MountKind.MQUEUE, target)
    if mode is ExportMode.EXECFD:
        if not exp.path:
            raise PlanError(f"{where}: Execfd needs a path (the shell command to run)")
        return Mount(MountKind.EXECFD, target, exp.path, MountFlag.RDONLY, mode=0o444)
    if mode is ExportMode.INTERNAL:
        text = (exp.path or "").strip()
        if not _number(text):
            raise PlanError(f"{where}: Internal needs a descriptor number as path, "
                            f"not '{text}'")
        return Mount(MountKind.FD, target, flags=MountFlag.RDONLY, fd=int(text), mode=0o444)
    if mode is ExportMode.LOCK:
        source = exp.path or exp.mount
        return Mount(MountKind.LOCK, target, source, MountFlag.LOCK_EXCL | MountFlag.LOCK_WAIT)
    if mode is ExportMode.USERDB:
        which = (exp.path or target.rsplit("/", 1)[-1]).strip().lower()
        if which not in ("passwd", "group"):
            raise PlanError(f"{where}: UserDb path must be 'passwd' or 'group', not '{which}'")
        data = _userdb(which, ident, uid, gid)
        return Mount(MountKind.DATA, target, flags=MountFlag.RDONLY, mode=0o444, data=data)
    raise PlanError(f"{where}: export mode {mode.value} is not supported")  # pragma: no cover


def _userdb(which: str, ident: Identity, uid: int, gid: int) -> bytes:
    """/etc/passwd or /etc/group for the running user, made here instead of by getent."""
    import grp
    import pwd
    try:
        pw = pwd.getpwuid(ident.host_uid)
        name, gecos = pw.pw_name, pw.pw_gecos.split(",")[0]
    except KeyError:
        name, gecos = f"user{ident.host_uid}", ""
    try:
        group = grp.getgrgid(ident.host_gid).gr_name
    except KeyError:
        group = f"group{ident.host_gid}"
    if which == "passwd":
        lines = ["root:x:0:0:root:/root:/bin/sh"]
        if uid != 0:
            lines.append(f"{name}:x:{uid}:{gid}:{gecos}:/home/{name}:/bin/sh")
        if uid != 65534:
            lines.append("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")
    else:
        lines = ["root:x:0:"]
        if gid != 0:
            lines.append(f"{group}:x:{gid}:")
        if gid != 65534:
            lines.append("nogroup:x:65534:")
    return ("\n".join(lines) + "\n").encode()


def _environ(fam: FamilyConfig, mounts: tuple[Mount, ...], kind_of: Callable[[str], str],
             out: _Out) -> tuple[EnvOp, ...]:
    ops: list[EnvOp] = []
    for sourced in fam.environ:
        entry = sourced.value
        value = entry.value or ""
        if entry.mode in (EnvMode.DEFAULT, EnvMode.STATIC):
            ops.append(EnvOp(EnvAction.SET, entry.key, value))
        elif entry.mode is EnvMode.REMOVE:
            ops.append(EnvOp(EnvAction.UNSET, entry.key))
        elif entry.mode is EnvMode.INHERIT:
            ops.append(EnvOp(EnvAction.INHERIT, entry.key))
        elif entry.mode is EnvMode.EXECFD:
            ops.append(EnvOp(EnvAction.EXECFD, entry.key, value))
    for key, entries in (("PATH", fam.path), ("LD_LIBRARY_PATH", fam.ldpath)):
        parts = [e.value for e in entries if e.value]
        if key == "LD_LIBRARY_PATH" and parts:
            parts = _existing_dirs(parts, mounts, kind_of, out)
            if not parts:   # none left: the caller's value must not apply either
                ops.append(EnvOp(EnvAction.UNSET, key))
        if parts:
            ops.append(EnvOp(EnvAction.SET, key, ":".join(parts)))
    return tuple(ops)


def _host_path(mounts: tuple[Mount, ...], target: str) -> str | None:
    """The host path a node path shows, when the deepest mount holding it is a directory
    bind (None otherwise: a tmpfs, a file, a link... or no mount)."""
    best = None
    for m in mounts:
        if target == m.target or target.startswith(m.target.rstrip("/") + "/"):
            if best is None or len(m.target) >= len(best.target):
                best = m
    if best is None or best.kind is not MountKind.BIND:
        return None
    return best.source.rstrip("/") + target[len(best.target.rstrip("/")):]


def _existing_dirs(parts: list[str], mounts: tuple[Mount, ...],
                   kind_of: Callable[[str], str], out: _Out) -> list[str]:
    """The ldpath entries whose directory exists: the dynamic loader looks in every entry
    for every library of every program started in the node, and a missing one costs ~30
    µs per exec (the stock leaf template names usr/lib and usr/lib64 of a node holding no
    package yet). Each host directory left out is a cache dependency (out.absent): the
    plan is compiled again when it appears."""
    kept = []
    for entry in parts:
        host = _host_path(mounts, os.path.normpath(entry)) if entry.startswith("/") else None
        if host is not None and kind_of(host) == "missing":
            out.absent.append(host)
        else:
            kept.append(entry)
    return kept
