# The configuration pipeline of a launch, in order, and all its I/O: load the family, resolve
# who launches, expand each node in its own context, merge (FamilyConfig: the single truth),
# probe the host, compile (plan.compile_plan, pure), then the plan's cache dependencies.
"""Build a family's FamilyConfig and launch plan.

    load_family          node.py: every node's YAML files, read and validated once
    resolve identity     set-user/set-group (root-most) expanded with the caller's identity
    expand each node     expand.py: $NODE_* is that node, $LEAF_* the leaf; once per launch
    merge                family.py: Russian-doll rules on expanded values -> FamilyConfig
    probe the host       controls.probe_host(), only when cgroups or SMACK are asked for
    compile              plan.compile_plan(): pure
    dependencies         files and environment variables a cached plan depends on

`redconf mergeconfig --expand` prints `launch_family(...).expanded`, the very FamilyConfig
`build_plan` compiles.
"""

from __future__ import annotations

import errno
import os
import stat as _stat
from collections.abc import Mapping, Sequence

from .errors import PlanError
from .expand import (
    DEFAULT_TIMEOUT,
    IDENTITY_SETTINGS,
    ExpandedFamily,
    ExpansionContext,
    expand_config,
    expand_merge,
    expansion_context,
    family_config,
)
from .family import check_state, layers_of
from .model import Node
from .plan import (
    ABSENT_MTIME,
    CompiledPlan,
    Identity,
    LaunchOptions,
    caller_identity,
    compile_plan,
    resolve_group,
    resolve_user,
)
from .planfile import EnvDep, FileDep, MountKind
from .record import record, replace


@record(frozen=True)
class LaunchFamily:
    """Everything the launch of one leaf is compiled from."""

    nodes: tuple[Node, ...]
    ident: Identity
    expanded: ExpandedFamily
    warnings: tuple[str, ...] = ()
    names_used: bool = False     # set-user/set-group resolved through the user database


def _root_most(nodes: Sequence[Node], admin: bool, name: str) -> bool:
    return any(getattr(cfg.settings, name) is not None
               for node in nodes for cfg in layers_of(node, admin))


def _identity_preset(nodes: Sequence[Node], admin: bool, ctx: ExpansionContext,
                     standing: dict) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """Every set-user/set-group of the family expanded with the caller's identity, and the
    root-most (admin over normal inside a node) value of each. A set-group below the node
    of the root-most set-user is not a winner: the ancestor's user comes with its own
    primary group (the merge warns, family.py)."""
    preset: dict[tuple[str, str], str] = {}
    winner: dict[str, str] = {}
    first_at: dict[str, int] = {}
    for index, node in enumerate(nodes):
        here = ctx.with_node(node)
        mine: dict[str, str] = {}
        for cfg in layers_of(node, admin):
            done = expand_config(here, cfg, standing, only=IDENTITY_SETTINGS)
            for name in IDENTITY_SETTINGS:
                value = getattr(done.settings, name)
                if value is not None:
                    preset[(cfg.file, name)] = value
                    mine[name] = value
        for name, value in mine.items():
            winner.setdefault(name, value)
            first_at.setdefault(name, index)
    if first_at.get("set_group", -1) > first_at.get("set_user", len(nodes)):
        del winner["set_group"]
    return preset, winner


def _runnable(text: str, key: str, dry_run: bool, warnings: list[str]) -> str | None:
    """TEXT, or None (with a warning) when a dry run left a $(command) in it."""
    if dry_run and "$(" in text:
        warnings.append(f"{key}: '{text}' is computed by a command, not run in a dry run: "
                        "the plan shows the caller's identity")
        return None
    return text


def launch_family(redpath: str, options: LaunchOptions = LaunchOptions(),
                  environ: Mapping[str, str] | None = None, dry_run: bool = False
                  ) -> LaunchFamily:
    """Load the family of REDPATH, resolve the launch identity, expand each node once and
    merge. dry_run: no $(command) is run. Raises RedpakError."""
    from .node import load_family

    env = os.environ if environ is None else environ
    nodes = tuple(load_family(redpath))
    for node in nodes:
        check_state(node)       # before any $(command) of the family runs
    caller_uid, caller_gid, privileged = caller_identity()
    ctx, standing = expansion_context(nodes, options.admin, env, caller_uid, caller_gid,
                                      os.getpid(), None, DEFAULT_TIMEOUT, not dry_run)
    warnings: list[str] = []
    preset: dict[tuple[str, str], str] | None = None
    target_uid, target_gid = caller_uid, caller_gid
    has_user = options.user is not None or _root_most(nodes, options.admin, "set_user")
    has_group = options.group is not None or _root_most(nodes, options.admin, "set_group")
    if has_user or has_group:
        preset, winner = _identity_preset(nodes, options.admin, ctx, standing)
        has_group = options.group is not None or "set_group" in winner
        if has_user:
            text = _runnable(options.user or winner.get("set_user", ""), "set-user", dry_run,
                             warnings)
            if text is not None:
                target_uid = resolve_user(text, "-U/--user" if options.user else "set-user")
                if not has_group:
                    import pwd
                    try:
                        target_gid = pwd.getpwuid(target_uid).pw_gid
                    except KeyError:
                        pass
        if has_group:
            text = _runnable(options.group or winner.get("set_group", ""), "set-group",
                             dry_run, warnings)
            if text is not None:
                target_gid = resolve_group(text, "-G/--group" if options.group
                                           else "set-group")
    if privileged:
        ident = Identity(caller_uid, caller_gid, target_uid, target_gid, True)
    else:
        # An unprivileged caller cannot switch on the host: the program runs as the caller
        # ($UID), and set-user is only the identity shown inside its user namespace.
        ident = Identity(caller_uid, caller_gid, caller_uid, caller_gid, False,
                         inner_uid=target_uid, inner_gid=target_gid)
    ctx.set_identity(ident.host_uid, ident.host_gid)
    expanded = expand_merge(nodes, options.admin, ctx, standing, preset)
    return LaunchFamily(nodes, ident, expanded, tuple(warnings), has_user or has_group)


def build_plan(redpath: str, options: LaunchOptions = LaunchOptions(),
               environ: Mapping[str, str] | None = None, dry_run: bool = False
               ) -> CompiledPlan:
    """Load, expand, merge and compile the family of REDPATH; raises RedpakError.

    dry_run (--dump-only): change nothing and run nothing — no $(command) is executed and
    no missing export source is created (the plan is then not cacheable)."""
    from .controls import needs_host, probe_host

    lf = launch_family(redpath, options, environ, dry_run)
    fam = lf.expanded.family
    host = probe_host() if needs_host(fam, options.smack) else None
    compiled = compile_plan(fam, lf.ident, options, source_kind=_source_kind,
                            create_source=None if dry_run else _create_source, host=host)
    plan = compiled.plan
    deps = _file_deps(lf.nodes, redpath, options.admin,
                      uses_userdb=any(m.kind is MountKind.DATA for m in plan.mounts),
                      uses_names=lf.names_used)
    deps += tuple(FileDep(p, 0, 0, 0, ABSENT_MTIME) for p in compiled.absent_sources)
    env_deps = tuple(EnvDep(k, v) for k, v in sorted(lf.expanded.used_env.items()))
    plan = replace(plan, file_deps=deps, env_deps=env_deps,
                   cacheable=not (lf.expanded.volatile or options.keep_fds or dry_run))
    from .sdnotify import pass_notify_socket  # systemd Type=notify: docs/integrations.md
    plan, notify_warnings = pass_notify_socket(plan, os.environ if environ is None else environ)
    return CompiledPlan(plan, lf.warnings + compiled.warnings + notify_warnings,
                        compiled.absent_sources, fam)


# ---- the I/O around it ------------------------------------------------------------------

def _source_kind(path: str) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    except OSError as err:
        raise PlanError(f"source '{path}': {err.strerror}") from err
    if _stat.S_ISDIR(st.st_mode):
        return "dir"
    if _stat.S_ISREG(st.st_mode):
        return "file"
    return "other"


def _inside_node(path: str) -> bool:
    """The nearest existing ancestor of PATH, resolved, is inside a node directory: a
    symlink in a node's tree never makes redpak create directories on the host."""
    probe = path
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    real = os.path.realpath(probe)
    while True:
        if os.path.exists(os.path.join(real, ".rednode.yaml")):
            return True
        if real == "/":
            return False
        real = os.path.dirname(real)


def _node_owner(path: str) -> tuple[int, int] | None:
    """uid and gid of the node directory that holds PATH (its nearest node ancestor)."""
    d = os.path.dirname(path)
    while d != "/":
        if os.path.exists(os.path.join(d, ".rednode.yaml")):
            st = os.stat(d)
            return st.st_uid, st.st_gid
        d = os.path.dirname(d)
    return None


def _create_source(path: str, want: str, where: str) -> None:
    """Create a missing export source inside a node, owned as the node's files (SPEC §4).
    The missing components are made from a descriptor of the existing part, one at a time
    with O_NOFOLLOW: a node that swaps a directory for a link after the check (it writes
    its var while root launches) cannot make redpak create or chown anything elsewhere."""
    owner = _node_owner(path) if os.geteuid() == 0 else None
    missing = []
    d = path if want == "dir" else os.path.dirname(path)
    while not os.path.lexists(d):
        missing.append(os.path.basename(d))
        d = os.path.dirname(d)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        fd = os.open(d, flags)
    except OSError as err:
        raise PlanError(f"{where}: cannot create missing source '{path}': "
                        f"{err.strerror}") from err
    try:
        # where the descriptor really is, not where the path led a moment ago
        if not _inside_node(os.readlink(f"/proc/self/fd/{fd}")):
            raise PlanError(f"{where}: missing source '{path}' leads outside the node "
                            "through a symbolic link; redpak creates sources inside nodes only")
        for name in reversed(missing):
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
                created = True
            except FileExistsError:
                created = False
            nxt = os.open(name, flags | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
            if created and owner:
                os.fchown(fd, *owner)
        if want == "file":
            try:
                f = os.open(os.path.basename(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL
                            | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644, dir_fd=fd)
            except FileExistsError:
                return
            try:
                if owner:
                    os.fchown(f, *owner)
            finally:
                os.close(f)
    except OSError as err:
        link = " (a symbolic link appeared on the way)" if err.errno in (errno.ELOOP,
                                                                         errno.ENOTDIR) else ""
        raise PlanError(f"{where}: cannot create missing source '{path}': "
                        f"{err.strerror}{link}") from err
    finally:
        os.close(fd)


COMPILER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plan.py")


def _stat_dep(path: str) -> FileDep:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return FileDep(path, 0, 0, 0, ABSENT_MTIME)
    return FileDep(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _file_deps(nodes, redpath: str, admin: bool, uses_userdb: bool, uses_names: bool
               ) -> tuple[FileDep, ...]:
    """Everything whose change must invalidate a cached plan: the family's status and
    config files, every directory on the walk up that is not (yet) a node, and the plan
    compiler itself (an upgrade of redpak, which replaces plan.py, recompiles the plans
    cached by the previous release instead of running them)."""
    from .node import normalize_path
    deps: list[FileDep] = [_stat_dep(COMPILER)]
    node_paths = {n.path for n in nodes}
    leaf = normalize_path(redpath)
    d = leaf
    while d != "/":
        if d not in node_paths:
            deps.append(_stat_dep(os.path.join(d, ".rednode.yaml")))
        d = os.path.dirname(d)
    for n in nodes:
        deps.append(_stat_dep(os.path.join(n.path, ".rednode.yaml")))
        for name in ("etc/redpak.yaml", "etc/redpack.yaml"):
            deps.append(_stat_dep(os.path.join(n.path, name)))
        if admin:
            for name in ("etc/redpak-admin.yaml", "etc/redpack-admin.yaml"):
                deps.append(_stat_dep(os.path.join(n.path, name)))
    if uses_userdb or uses_names:
        deps += [_stat_dep("/etc/passwd"), _stat_dep("/etc/group")]
    return tuple(deps)

__all__ = ["LaunchFamily", "build_plan", "family_config", "launch_family"]
