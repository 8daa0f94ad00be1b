# Merging a node family into one FamilyConfig (SPEC §3, the "Russian doll"): pure functions
# over already-loaded NodeConfig objects. Every winning entry keeps its origin; every
# overridden or ignored entry becomes a MergeWarning.
"""Merge a family of nodes (root-most first, the leaf last) into one FamilyConfig.

Rules and the choices made where SPEC §3 is silent:

- Admin mode layers each node's admin config over its normal config *inside that node*
  (admin scalars win; admin exports replace normal ones with the same mount point; admin
  environ entries replace normal ones with the same key; admin capabilities are applied
  after the normal ones; admin path/ldpath entries come first; inside `cgroups`,
  `seccomp` and `landlock` admin fields win one by one, a non-empty admin `deny`/`allow`
  list replacing the normal one; for namespaces the admin config's effective value —
  share_X, else its share_all — wins over the normal config's). Then the node rules apply.
- Closest to the leaf wins (overrides are recorded at info level, in `overrides`):
  hostname, chdir, rpmdir, persistdir, cachedir, verbose, cgrouproot, and also
  map-root-user, inherit-env and unsafe (the spec does not classify those three; they
  describe how this launch runs, like the node-local settings).
- Namespaces: a node's value for X is share_X unless unset, else share_all unless unset.
  Closest to the leaf wins, but after an ancestor's `disabled` a descendant may not say
  `enabled` or join a path, after an ancestor's join a descendant may not say `enabled`
  nor join a different path (raw text compared): MergeError naming both nodes.
- Capabilities start empty; per node `cap: all` entries first, then the others in order.
  A capability whose last word in some ancestor was a drop can never be added below it.
- set-user, set-group, smack, seccomp.errno: root-most wins; a differing descendant value is
  a warning. seccomp: `default` anywhere wins; denials are the union; an allow of a syscall
  some node denies is dropped (a warning when the denying node is an ancestor).
- cgroups: every node keeps its own settings (nested cgroups); `cgroups_effective` is the
  tightest value along the chain (min of sizes, min cpu.max ratio, per-device min of io.max,
  intersection of cpusets) and the leaf-most value for weights, oom_group and partition.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence

from .record import field, fields, record, replace
from .schema import CAPABILITY_NAMES, CGROUP_KEYS, YAML_KEYS, config_keys
from .errors import ConfigError, MergeError, NodeError
from .model import (
    NAMESPACES,
    Capability,
    IO_LIMITS,
    CgroupSettings,
    CpuSet,
    EnvEntry,
    Export,
    ExportMode,
    IoMax,
    Node,
    NodeConfig,
    NodeState,
    SeccompSettings,
    Share,
    ShareValue,
    Tristate,
)

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

CAP_NAMES: tuple[str, ...] = CAPABILITY_NAMES
"""Linux capability names in kernel bit order: CAP_NAMES[n] is bit n (linux/capability.h)."""

CAP_BITS: Mapping[str, int] = {name: bit for bit, name in enumerate(CAP_NAMES)}

NODE_LOCAL = config_keys("leaf")
"""Settings where the value closest to the leaf wins (schema rule 'leaf')."""

ROOT_MOST = config_keys("root")
"""Settings where the root-most definition wins (schema rule 'root')."""

_PRIVATE_MODES = tuple(m for m in ExportMode if m.private)  # tuple: identity test in C

ENABLED_WINS = config_keys("enabled")
"""Tristates where enabled anywhere wins (die-with-parent, new-session)."""

_OR_SCALARS = tuple(k for k in config_keys("or") if k != "landlock")  # landlock: a section

_DEFAULT_SHARE = {ns: Share.DISABLED for ns in NAMESPACES} | {"time": Share.ENABLED}

def yaml_key(name: str) -> str:
    """Return the YAML spelling of a Settings field name (set_user -> set-user)."""
    return YAML_KEYS.get(name, name)


class Origin(namedtuple("Origin", ("alias", "path", "file", "line", "key"),
                        defaults=(0, ""))):
    """Where a merged value came from: node alias (str) and path (str), config file (str),
    line (int, 0: none) and key (str). (A named tuple: one is made per entry of every node
    at each launch, and a tuple is built in C where a frozen record sets each field
    through object.__setattr__.)"""

    __slots__ = ()

    def describe(self) -> str:
        """Human text naming the node (alias and path) and the file:line."""
        file = self.file
        if self.path and file.startswith(self.path.rstrip("/") + "/"):
            file = file[len(self.path.rstrip("/")) + 1:]
        where = f"{file}:{self.line}" if self.line else file
        return f"node '{self.alias}' ({self.path}, {where})"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for mergeconfig output."""
        return {"node": self.alias, "path": self.path, "file": self.file, "line": self.line}


@record(frozen=True)
class Sourced:
    """A merged value (of type T: annotations write Sourced[T]) and the origins that made
    it: one for a winner, several for a union (umask, booleans ORed across nodes), none
    for a built-in default."""

    value: T
    origins: tuple[Origin, ...] = ()

    @property
    def origin(self) -> Origin | None:
        return self.origins[0] if self.origins else None


@record(frozen=True)
class MergeWarning:
    """An entry that lost: `ignored` was dropped or overridden, `standing` is what applies.
    level is "warning" (a constraint kept a descendant from changing something) or "info"
    (an expected override, e.g. a node-local setting redefined closer to the leaf)."""

    key: str
    text: str
    level: str = "warning"
    standing: Origin | None = None
    ignored: Origin | None = None

    def __str__(self) -> str:
        return self.text


@record(frozen=True)
class NodeSeccomp:
    """One node's own seccomp stance (admin layered over normal): the plan compiler gives
    each node with the default profile its own allows, never a descendant's."""

    alias: str
    path: str
    profile: str | None = None
    allow: tuple[str, ...] = ()


@record(frozen=True)
class FamilySeccomp:
    """Merged seccomp section: profile, union of denials, allows not denied anywhere, and
    every node's own stance (per_node, root-most first)."""

    profile: Sourced[str] | None = None
    deny: tuple[Sourced[str], ...] = ()
    allow: tuple[Sourced[str], ...] = ()
    errno: Sourced[str] | None = None
    per_node: tuple[NodeSeccomp, ...] = ()


@record(frozen=True)
class FamilyConfig:
    """The effective configuration of a leaf: every rule of SPEC §3 applied, origins kept.
    The single truth of a launch: `redconf mergeconfig` prints it and the plan compiler reads
    nothing else. expanded is True when it was merged from expanded nodes (build.py: each
    node expanded in its own context, then merged); otherwise strings are as written."""

    nodes: tuple[Node, ...]
    admin: bool = False
    hostname: Sourced[str] | None = None
    chdir: Sourced[str] | None = None
    rpmdir: Sourced[str] | None = None
    persistdir: Sourced[str] | None = None
    cachedir: Sourced[str] | None = None
    verbose: Sourced[int] | None = None
    cgrouproot: Sourced[str] | None = None
    map_root_user: Sourced[bool] | None = None
    inherit_env: Sourced[bool] | None = None
    unsafe: Sourced[bool] | None = None
    path: tuple[Sourced[str], ...] = ()
    ldpath: tuple[Sourced[str], ...] = ()
    namespaces: Mapping[str, Sourced[ShareValue]] = field(default_factory=dict, hash=False)
    capabilities: tuple[Sourced[str], ...] = ()
    exports: tuple[Sourced[Export], ...] = ()
    environ: tuple[Sourced[EnvEntry], ...] = ()
    umask: Sourced[int] | None = None
    gpgcheck: Sourced[bool] | None = None
    landlock: Sourced[bool] | None = None
    die_with_parent: Sourced[Tristate] = Sourced(Tristate.UNSET)
    new_session: Sourced[Tristate] = Sourced(Tristate.UNSET)
    set_user: Sourced[str] | None = None
    set_group: Sourced[str] | None = None
    smack: Sourced[str] | None = None
    smack_optional: bool = False        # of the config file that set the winning label
    seccomp: FamilySeccomp = FamilySeccomp()
    cgroups: tuple[Sourced[CgroupSettings], ...] = ()
    cgroups_effective: CgroupSettings = CgroupSettings()
    cgroups_effective_origins: Mapping[str, Origin] = field(default_factory=dict, hash=False)
    warnings: tuple[MergeWarning, ...] = ()
    overrides: tuple[MergeWarning, ...] = ()
    expanded: bool = False

    @property
    def leaf(self) -> Node:
        return self.nodes[-1]

    def share(self, ns: str) -> ShareValue:
        """The effective value of namespace `ns` (never UNSET)."""
        return self.namespaces[ns].value

    @property
    def cap_names(self) -> tuple[str, ...]:
        """Names of the effective capabilities, in kernel bit order."""
        return tuple(c.value for c in self.capabilities)

    def to_dict(self, origins: bool = True) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable form for `redconf mergeconfig`."""
        return _family_to_dict(self, origins)


# ---------------------------------------------------------------------------------------
# Order of typed cgroup values (config.py typed them at load: nothing is parsed here)


def size_order(value: int | str) -> float:
    """A size or count typed at load (int, or 'max' the largest) as a comparable number."""
    return float("inf") if value == "max" else value


# ---------------------------------------------------------------------------------------
# Per-node view: a node's normal config, with its admin config layered on top in admin mode


@record
class _View:
    node: Node
    scalars: dict[str, tuple[Any, Origin]]
    path: list[tuple[str, Origin]]
    ldpath: list[tuple[str, Origin]]
    exports: list[tuple[Export, Origin, str]]     # with the normalised mount point
    environ: list[tuple[EnvEntry, Origin]]
    cap_groups: list[list[tuple[Capability, Origin]]]
    shares: dict[str, tuple[ShareValue, Origin]]
    cgroups: tuple[CgroupSettings, Origin] | None
    seccomp: dict[str, Any]
    landlock: tuple[bool, Origin] | None
    warnings: list[MergeWarning]
    below: list[tuple[Export, Origin, str]]  # normal entries a Private admin entry replaced


def _origin(node: Node, cfg: NodeConfig, line: int, key: str) -> Origin:
    return Origin(node.alias, node.path, cfg.file, line, key)


def _line(cfg: NodeConfig, name: str) -> int:
    return cfg.settings.lines.get(name, 0)


_SLASHES = re.compile(r"/{2,}")


def _norm_mount(mount: str) -> str:
    text = _SLASHES.sub("/", mount) if "//" in mount else mount
    return text.rstrip("/") or ("/" if text.startswith("/") else text)


_NODE_REF = re.compile(r"\$(?:\{NODE_(ALIAS|NAME|PATH|INFO)\}|NODE_(ALIAS|NAME|PATH|INFO)"
                       r"(?![A-Za-z0-9_]))")


def _mount_key(node: Node, mount: str) -> str:
    """The merge key of a mount point: as written, but with the node's own $NODE_* built-ins
    (which differ from node to node) replaced, so that a family merged without expansion
    (mergeconfig without --expand) keeps each node's `/nodes/$NODE_ALIAS/...` apart as the
    launch does. An expanded family has no $NODE_ left: the key is the mount itself."""
    if "$" in mount:
        mount = _NODE_REF.sub(lambda m: node.builtin(m[1] or m[2]), mount)
    return _norm_mount(mount)


def _share_of(node: Node, cfg: NodeConfig, ns: str) -> tuple[ShareValue, Origin] | None:
    """A config's own value for namespace ns: share_ns unless unset, else share_all."""
    for name in (f"share_{ns}", "share_all"):
        value: ShareValue | None = getattr(cfg.settings, name)
        if value is not None and value.state is not Share.UNSET:
            return value, _origin(node, cfg, value.line or _line(cfg, name), name)
    return None


def _split_paths(entries: tuple[str, ...] | None, origin: Origin) -> list[tuple[str, Origin]]:
    out = []
    for entry in entries or ():
        out.extend((part, origin) for part in str(entry).split(":"))
    return out


def layers_of(node: Node, admin: bool) -> list[NodeConfig]:
    """The config files of a node that apply in a mode: normal, then admin over it."""
    return [node.config] + ([node.admin] if admin and node.admin is not None else [])


def _node_environ(node: Node, layers: list[NodeConfig]) -> list[tuple[EnvEntry, Origin]]:
    """A node's environ entries; an admin entry replaces the normal one of the same key."""
    environ: list[tuple[EnvEntry, Origin]] = []
    first_env: dict[str, int] = {}
    for cfg in layers:
        for i, env in enumerate(cfg.environ):
            item = (env, _origin(node, cfg, env.line, f"environ[{i}]"))
            if env.key in first_env and cfg is not layers[0]:
                environ[first_env[env.key]] = item
            else:
                first_env.setdefault(env.key, len(environ))
                environ.append(item)
    return environ


def standing_environ(nodes: Sequence[Node], admin: bool) -> dict[str, tuple[EnvEntry, Origin]]:
    """The environ entry that stands for each key (the root-most definition, SPEC §3):
    the variable definitions every node of the family is expanded with. Keys are never
    expanded, so this is known before expansion."""
    out: dict[str, tuple[EnvEntry, Origin]] = {}
    for node in nodes:
        for env, origin in _node_environ(node, layers_of(node, admin)):
            out.setdefault(env.key, (env, origin))
    return out


def _node_view(node: Node, admin: bool) -> _View:
    layers = layers_of(node, admin)
    warnings = [MergeWarning("", f"{_origin(node, cfg, 0, '').describe()}: {text}")
                for cfg in layers for text in cfg.warnings]
    scalars: dict[str, tuple[Any, Origin]] = {}
    names = NODE_LOCAL + ROOT_MOST + _OR_SCALARS + ENABLED_WINS
    for cfg in layers:  # later layers (admin) overwrite earlier ones
        for name in names:
            value = getattr(cfg.settings, name)
            if value is None or value is Tristate.UNSET:
                continue
            scalars[name] = (value, _origin(node, cfg, _line(cfg, name), yaml_key(name)))

    path: list[tuple[str, Origin]] = []
    ldpath: list[tuple[str, Origin]] = []
    for cfg in reversed(layers):  # admin entries first
        path += _split_paths(cfg.settings.path, _origin(node, cfg, _line(cfg, "path"), "path"))
        ldpath += _split_paths(cfg.settings.ldpath,
                               _origin(node, cfg, _line(cfg, "ldpath"), "ldpath"))

    exports: list[tuple[Export, Origin, str]] = []
    first_export: dict[str, int] = {}  # normalised mount -> index of its first entry
    below: list[tuple[Export, Origin, str]] = []
    for cfg in layers:
        for i, exp in enumerate(cfg.exports):
            mount = _mount_key(node, exp.mount)
            item = (exp, _origin(node, cfg, exp.line, f"exports[{i}]"), mount)
            if mount in first_export and cfg is not layers[0]:
                replaced = exports[first_export[mount]]
                if exp.mode.private and not replaced[0].mode.private:
                    # A Private admin entry is the node's own: its descendants keep the
                    # normal entry it replaces (e.g. the leaf's rpm database, writable for
                    # its package manager only).
                    below.append(replaced)
                exports[first_export[mount]] = item  # admin replaces normal inside the node
            else:
                first_export.setdefault(mount, len(exports))
                exports.append(item)
    environ = _node_environ(node, layers)

    cap_groups = [[(cap, _origin(node, cfg, cap.line or _line(cfg, "capabilities"),
                                 f"capabilities[{i}]"))
                   for i, cap in enumerate(cfg.settings.capabilities)] for cfg in layers]

    shares: dict[str, tuple[ShareValue, Origin]] = {}
    for cfg in layers:
        for ns in NAMESPACES:
            found = _share_of(node, cfg, ns)
            if found is not None:
                shares[ns] = found

    cgroups: tuple[CgroupSettings, Origin] | None = None
    for cfg in layers:
        cg = cfg.settings.cgroups
        if cg is None:
            continue
        origin = _origin(node, cfg, cg.line or _line(cfg, "cgroups"), "cgroups")
        if cgroups is None:
            cgroups = (cg, origin)
        else:
            over = {f.name: getattr(cg, f.name) for f in fields(cg)
                    if f.name != "line" and getattr(cg, f.name) is not None}
            cgroups = (replace(cgroups[0], **over), origin)

    seccomp: dict[str, Any] = {"profile": None, "deny": [], "allow": [], "errno": None}
    for cfg in layers:
        sc: SeccompSettings | None = cfg.settings.seccomp
        if sc is None:
            continue
        origin = _origin(node, cfg, sc.line or _line(cfg, "seccomp"), "seccomp")
        for name in ("profile", "errno"):
            if getattr(sc, name) is not None:
                seccomp[name] = (getattr(sc, name), origin)
        for name in ("deny", "allow"):
            if getattr(sc, name):
                seccomp[name] = [(s, origin) for s in getattr(sc, name)]

    landlock: tuple[bool, Origin] | None = None
    for cfg in layers:
        ll = cfg.settings.landlock
        if ll is not None and ll.enabled is not None:
            landlock = (ll.enabled, _origin(node, cfg, ll.line or _line(cfg, "landlock"),
                                            "landlock"))

    return _View(node, scalars, path, ldpath, exports, environ, cap_groups, shares, cgroups,
                 seccomp, landlock, warnings, below)


# ---------------------------------------------------------------------------------------
# The merge


def check_state(node: Node) -> None:
    """Refuse a node that is not Enable; raises NodeError."""
    state = node.status.state
    if state is not NodeState.ENABLE:
        raise NodeError(
            f"node '{node.alias}' ({node.path}) is in state {state.value}, not Enable: "
            f"repair it (e.g. 'redconf create --update {node.path}'), then set "
            f"'state: Enable' in {node.path.rstrip('/')}/.rednode.yaml")


def _canon_cap(cap: Capability, origin: Origin) -> tuple[str, ...]:
    """The capabilities of an entry: typed at load (config.py: a canonical cap_* name or
    'all'); a Capability built in code with anything else is refused here."""
    if cap.cap == "all":
        return CAP_NAMES
    if cap.cap not in CAP_BITS:
        import difflib  # only on the error path

        close = difflib.get_close_matches(cap.cap.lower(), CAP_NAMES, n=1)
        raise ConfigError(origin.file, f"{origin.key}.cap", f"'{cap.cap}' is not a capability",
                          f"did you mean {close[0]}?" if close else "see capabilities(7)",
                          origin.line or None)
    return (cap.cap,)


def _merge_caps(views: list[_View]) -> tuple[Sourced[str], ...]:
    granted: dict[str, Origin] = {}
    dropped_by: dict[str, Origin] = {}  # an ancestor's final word on the cap was a drop
    for view in views:
        stance: dict[str, tuple[bool, Origin]] = {}
        for group in view.cap_groups:
            ordered = ([c for c in group if c[0].cap == "all"]
                       + [c for c in group if c[0].cap != "all"])
            for cap, origin in ordered:
                for name in _canon_cap(cap, origin):
                    if cap.add:
                        if name in dropped_by:
                            anc = dropped_by[name]
                            raise MergeError(
                                "capabilities",
                                f"{origin.describe()} adds {name}"
                                f"{' (through cap: all)' if cap.cap == 'all' else ''},"
                                f" which its ancestor {anc.describe()} dropped",
                                ancestor=f"{anc.alias} ({anc.path})",
                                descendant=f"{origin.alias} ({origin.path})",
                                hint=f"a node cannot add back a capability an ancestor dropped:"
                                     f" remove the entry from {origin.alias} or stop dropping"
                                     f" {name} in {anc.alias}")
                        granted[name] = origin
                    else:
                        granted.pop(name, None)
                    stance[name] = (cap.add, origin)
        for name, (add, origin) in stance.items():
            if not add:
                dropped_by.setdefault(name, origin)
    return tuple(Sourced(name, (granted[name],)) for name in CAP_NAMES if name in granted)


def _merge_namespaces(views: list[_View]) -> dict[str, Sourced[ShareValue]]:
    out: dict[str, Sourced[ShareValue]] = {}
    for ns in NAMESPACES:
        key = f"share_{ns}"
        current: tuple[ShareValue, Origin] | None = None
        disabled_by: Origin | None = None
        for view in views:
            mine = view.shares.get(ns)
            if mine is None:
                continue
            value, origin = mine
            problem = ""
            anc = None
            if value.state in (Share.ENABLED, Share.JOIN) and disabled_by is not None:
                anc = disabled_by
                via = " (through share_all)" if anc.key == "share_all" else ""
                problem = f"its ancestor {anc.describe()} disabled it{via}"
            elif current is not None and current[0].state is Share.JOIN:
                if value.state is Share.ENABLED or (
                        value.state is Share.JOIN and value.path != current[0].path):
                    anc = current[1]
                    problem = f"its ancestor {anc.describe()} joins {current[0].path}"
            if anc is not None:
                said = "enabled" if value.state is Share.ENABLED else f"join {value.path}"
                raise MergeError(
                    key, f"{origin.describe()} sets {origin.key}: {said}, but {problem}",
                    ancestor=f"{anc.alias} ({anc.path})",
                    descendant=f"{origin.alias} ({origin.path})",
                    hint=f"a node may only tighten its ancestors' namespaces: remove "
                         f"{origin.key} from {origin.alias}'s config, or relax {anc.key} in "
                         f"{anc.alias}")
            current = mine
            if value.state is Share.DISABLED and disabled_by is None:
                disabled_by = origin
        out[ns] = (Sourced(current[0], (current[1],)) if current is not None
                   else Sourced(ShareValue(_DEFAULT_SHARE[ns])))
    return out


def _lost(key: str, standing: Origin, ignored: Origin, what: str, level: str = "warning"
          ) -> MergeWarning:
    return MergeWarning(key, f"{key}: {ignored.describe()} {what}; {standing.describe()} "
                             f"stands", level, standing, ignored)


def _merge_exports(views: list[_View], warns: list[MergeWarning], notes: list[MergeWarning]
                   ) -> tuple[Sourced[Export], ...]:
    standing: dict[str, Sourced[Export]] = {}
    out: list[Sourced[Export]] = []
    last = len(views) - 1
    for i, view in enumerate(views):
        mine = view.exports if i == last else view.exports + view.below
        for exp, origin, mount in mine:
            if i != last and exp.mode in _PRIVATE_MODES:
                notes.append(MergeWarning(
                    f"exports {exp.mount}", f"exports {exp.mount}: {exp.mode.value} export of "
                    f"{origin.describe()} applies to that node only, not to its descendants",
                    "info", None, origin))
                continue
            if mount in standing:
                prev = standing[mount].origins[0]
                why = ("defines it again in the same node" if prev.path == origin.path else
                       "cannot redefine a mount point of its ancestor: ignored")
                warns.append(_lost(f"exports {exp.mount}", prev, origin, why))
                continue
            standing[mount] = Sourced(exp, (origin,))
            out.append(standing[mount])
    return tuple(out)


def _merge_environ(views: list[_View], warns: list[MergeWarning]
                   ) -> tuple[Sourced[EnvEntry], ...]:
    standing: dict[str, Sourced[EnvEntry]] = {}
    out: list[Sourced[EnvEntry]] = []
    for view in views:
        for env, origin in view.environ:
            if env.key in standing:
                prev = standing[env.key].origins[0]
                why = ("defines it again in the same node" if prev.path == origin.path else
                       "cannot redefine a variable of its ancestor: ignored")
                warns.append(_lost(f"environ {env.key}", prev, origin, why))
                continue
            standing[env.key] = Sourced(env, (origin,))
            out.append(standing[env.key])
    return tuple(out)


def _cumulative(views: list[_View], attr: str) -> tuple[Sourced[str], ...]:
    seen: set[tuple[str, str]] = set()
    out: list[Sourced[str]] = []
    for view in reversed(views):  # leaf's entries first
        for entry, origin in getattr(view, attr):
            # an entry with variables may expand differently in another node: expand_family
            # removes the duplicates that remain once expanded
            key = (entry, origin.path if "$" in entry else "")
            if entry and key not in seen:
                seen.add(key)
                out.append(Sourced(entry, (origin,)))
    return tuple(out)


def _merge_scalars(views: list[_View], warns: list[MergeWarning], notes: list[MergeWarning]
                   ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in NODE_LOCAL:
        found = [v.scalars[name] for v in views if name in v.scalars]
        if not found:
            continue
        value, origin = found[-1]
        out[name] = Sourced(value, (origin,))
        for _, lost in found[:-1]:
            notes.append(_lost(yaml_key(name), origin, lost,
                               "is overridden closer to the leaf", "info"))
    for name in ROOT_MOST:
        found = [v.scalars[name] for v in views if name in v.scalars]
        if not found:
            continue
        value, origin = found[0]
        out[name] = Sourced(value, (origin,))
        for other, lost in found[1:]:
            if other != value:
                warns.append(_lost(yaml_key(name), origin, lost,
                                   f"sets {other}: ignored, the root-most definition wins"))
    masks = [v.scalars["umask"] for v in views if "umask" in v.scalars]
    if masks:
        bits = 0
        for mask, _ in masks:
            bits |= int(mask)
        out["umask"] = Sourced(bits, tuple(o for _, o in masks))
    gpg = [v.scalars["gpgcheck"] for v in views if "gpgcheck" in v.scalars]
    if gpg:
        on = tuple(o for val, o in gpg if val)
        out["gpgcheck"] = Sourced(True, on) if on else Sourced(False, tuple(o for _, o in gpg))
    for name in ENABLED_WINS:
        said = [v.scalars[name] for v in views if name in v.scalars]
        on = tuple(o for val, o in said if val is Tristate.ENABLED)
        if on:
            out[name] = Sourced(Tristate.ENABLED, on)
        elif said:
            out[name] = Sourced(Tristate.DISABLED, tuple(o for _, o in said))
        else:
            out[name] = Sourced(Tristate.UNSET)
    lock = [v.landlock for v in views if v.landlock is not None]
    if lock:
        on = tuple(o for val, o in lock if val)
        out["landlock"] = Sourced(True, on) if on else Sourced(False, tuple(o for _, o in lock))
    return out


def _merge_seccomp(views: list[_View], warns: list[MergeWarning], notes: list[MergeWarning]
                   ) -> FamilySeccomp:
    position = {v.node.path: i for i, v in enumerate(views)}
    profiles = [v.seccomp["profile"] for v in views if v.seccomp["profile"] is not None]
    profile = None
    defaults = [(p, o) for p, o in profiles if p == "default"]
    if defaults:
        first = defaults[0][1]
        profile = Sourced("default", (first,))
        for p, o in profiles:
            if p != "default" and position[o.path] > position[first.path]:
                warns.append(_lost("seccomp.profile", first, o,
                                   f"sets profile {p}: ignored, an ancestor's default profile "
                                   "applies to its descendants"))
    elif profiles:
        profile = Sourced(profiles[0][0], (profiles[0][1],))

    deny: dict[str, Origin] = {}
    for view in views:
        for name, origin in view.seccomp["deny"]:
            deny.setdefault(name, origin)
    allow: dict[str, Origin] = {}
    for view in views:
        for name, origin in view.seccomp["allow"]:
            if name in deny:
                denier = deny[name]
                if position[denier.path] < position[origin.path]:
                    warns.append(_lost("seccomp.allow", denier, origin,
                                       f"allows {name}, which its ancestor denies: ignored"))
                else:
                    notes.append(_lost("seccomp.allow", denier, origin,
                                       f"allows {name}, which is denied: ignored", "info"))
                continue
            allow.setdefault(name, origin)

    errnos = [v.seccomp["errno"] for v in views if v.seccomp["errno"] is not None]
    errno = Sourced(errnos[0][0], (errnos[0][1],)) if errnos else None
    for value, origin in errnos[1:]:
        if value != errnos[0][0]:
            warns.append(_lost("seccomp.errno", errnos[0][1], origin,
                               f"sets errno {value}: ignored, the root-most definition wins"))
    per_node = tuple(NodeSeccomp(v.node.alias, v.node.path,
                                 v.seccomp["profile"][0] if v.seccomp["profile"] else None,
                                 tuple(name for name, _ in v.seccomp["allow"]))
                     for v in views)
    return FamilySeccomp(profile, tuple(Sourced(n, (o,)) for n, o in deny.items()),
                         tuple(Sourced(n, (o,)) for n, o in allow.items()), errno, per_node)


def _smack_optional(views: list[_View], smack: Sourced[str] | None, admin: bool) -> bool:
    """smack-optional of the config file that set the winning label, else of its node."""
    origin = smack.origin if smack is not None else None
    if origin is None:
        return False
    for view in views:
        if view.node.path != origin.path:
            continue
        layers = layers_of(view.node, admin)
        mine = ([c for c in layers if c.file == origin.file]
                + [c for c in layers if c.file != origin.file])
        for cfg in mine:
            if cfg.settings.smack_optional is not None:
                return bool(cfg.settings.smack_optional)
    return False


def _tightest(name: str, found: list[tuple[Any, Origin]]) -> tuple[Any, Origin]:
    """Tightest value of one cgroup key along the chain (found is root -> leaf), by the
    key's merge rule in the schema; values are typed (config.py), compared as they are."""
    yaml_path, spec = CGROUP_KEYS[name]
    rule = spec.merge
    if rule == "leaf":
        return found[-1]
    if rule == "min":   # the first of equal values stands
        return min(found, key=lambda item: size_order(item[0]))
    if rule == "min-ratio":
        return min(found, key=lambda item: item[0].ratio)
    if rule == "intersect":
        cpus: CpuSet = found[0][0]
        for value, origin in found[1:]:
            if not cpus.ids & value.ids:
                raise MergeError(f"cgroups.{yaml_path}", f"{origin.describe()} sets {value}, "
                                 f"which does not overlap its ancestors' {cpus}",
                                 descendant=f"{origin.alias} ({origin.path})",
                                 hint="a node's cpuset must be a subset of its ancestors'")
            cpus &= value
        return cpus, found[-1][1]
    if rule == "min-per-device":
        limits: dict[str, dict[str, int | str]] = {}
        for value, _origin in found:
            for dev, keys in value.devices:
                mine = limits.setdefault(dev, {})
                for k, v in keys:
                    if k not in mine or size_order(v) < size_order(mine[k]):
                        mine[k] = v
        return IoMax.of({dev: {k: v[k] for k in IO_LIMITS if k in v}
                         for dev, v in limits.items()}), found[-1][1]
    raise AssertionError(name)


def _merge_cgroups(views: list[_View]
                   ) -> tuple[tuple[Sourced[CgroupSettings], ...], CgroupSettings,
                              dict[str, Origin]]:
    per_node: list[Sourced[CgroupSettings]] = []
    for view in views:
        if view.cgroups is None:
            origin = Origin(view.node.alias, view.node.path, view.node.config.file, 0, "cgroups")
            per_node.append(Sourced(CgroupSettings(), (origin,)))
        else:
            per_node.append(Sourced(view.cgroups[0], (view.cgroups[1],)))
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for f in fields(CgroupSettings):
        if f.name == "line":
            continue
        found = [(getattr(s.value, f.name), s.origins[0]) for s in per_node
                 if getattr(s.value, f.name) is not None
                 and getattr(s.value, f.name) != ""]
        if found:
            values[f.name], origins[f.name] = _tightest(f.name, found)
    return tuple(per_node), CgroupSettings(**values), origins


def merge_family(nodes: Sequence[Node], admin: bool = False, expanded: bool = False
                 ) -> FamilyConfig:
    """Merge a family (root-most first, leaf last) into its effective config. With
    expanded=True the nodes were expanded each in its own context (build.family_config) and
    every Russian-doll rule compares expanded values; otherwise values are as written.
    Raises NodeError (empty family, node not Enable), MergeError (a descendant loosens an
    ancestor's constraint), ConfigError (a value merge cannot interpret)."""
    nodes = tuple(nodes)
    if not nodes:
        raise NodeError("empty family: no node to merge (is --redpath a node directory?)")
    for node in nodes:
        check_state(node)
    views = [_node_view(node, admin) for node in nodes]
    warns: list[MergeWarning] = [w for v in views for w in v.warnings]
    notes: list[MergeWarning] = []
    scalars = _merge_scalars(views, warns, notes)
    namespaces = _merge_namespaces(views)
    capabilities = _merge_caps(views)
    exports = _merge_exports(views, warns, notes)
    environ = _merge_environ(views, warns)
    seccomp = _merge_seccomp(views, warns, notes)
    cgroups, effective, effective_origins = _merge_cgroups(views)
    return FamilyConfig(
        nodes=nodes, admin=admin, path=_cumulative(views, "path"),
        ldpath=_cumulative(views, "ldpath"), namespaces=namespaces, capabilities=capabilities,
        exports=exports, environ=environ, seccomp=seccomp, cgroups=cgroups,
        cgroups_effective=effective, cgroups_effective_origins=effective_origins,
        smack_optional=_smack_optional(views, scalars.get("smack"), admin),
        warnings=tuple(warns), overrides=tuple(notes), expanded=expanded, **scalars)


# ---------------------------------------------------------------------------------------
# Plain-dict form (redconf mergeconfig)


def _share_text(value: ShareValue) -> str:
    return value.path if value.state is Share.JOIN else value.state.value


def _cgroup_tree(cg: CgroupSettings, wrap: Callable[[str, Any], Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for f in fields(CgroupSettings):
        value = getattr(cg, f.name)
        if f.name == "line" or value is None:
            continue
        section, _, key = CGROUP_KEYS[f.name][0].partition(".")
        if isinstance(value, str):  # typed values (CpuSet, CpuMax, ...) print as text
            value = str(value)
        tree.setdefault(section, {})[key] = wrap(f.name, value)
    return tree


def _family_to_dict(fam: FamilyConfig, origins: bool) -> dict[str, Any]:
    def where(s: Sourced[Any]) -> Any:
        if not s.origins:
            return "default"
        if len(s.origins) == 1:
            return s.origins[0].to_dict()
        return [o.to_dict() for o in s.origins]

    def val(s: Sourced[Any] | None, conv: Callable[[Any], Any] = lambda v: v) -> Any:
        if s is None:
            return None
        return {"value": conv(s.value), "origin": where(s)} if origins else conv(s.value)

    def entry(data: dict[str, Any], s: Sourced[Any]) -> dict[str, Any]:
        return data | {"origin": where(s)} if origins else data

    leaf = fam.leaf.config
    config: dict[str, Any] = {}
    for name in NODE_LOCAL + ROOT_MOST + ("gpgcheck",):
        if getattr(fam, name) is not None:
            config[yaml_key(name)] = val(getattr(fam, name))
    if fam.smack is not None:
        config["smack-optional"] = fam.smack_optional
    if fam.umask is not None:
        config["umask"] = val(fam.umask, lambda m: f"{m:04o}")
    for name in ENABLED_WINS:
        config[yaml_key(name)] = val(getattr(fam, name), lambda t: t.value)
    config["path"] = [val(s) for s in fam.path]
    config["ldpath"] = [val(s) for s in fam.ldpath]
    for ns in NAMESPACES:
        config[f"share_{ns}"] = val(fam.namespaces[ns], _share_text)
    config["capabilities"] = [entry({"cap": s.value, "add": 1}, s) for s in fam.capabilities]
    if fam.landlock is not None:
        config["landlock"] = {"enabled": val(fam.landlock)}
    sc = fam.seccomp
    seccomp: dict[str, Any] = {}
    if sc.profile is not None:
        seccomp["profile"] = val(sc.profile)
    if sc.deny:
        seccomp["deny"] = [val(s) for s in sc.deny]
    if sc.allow:
        seccomp["allow"] = [val(s) for s in sc.allow]
    if sc.errno is not None:
        seccomp["errno"] = val(sc.errno)
    if seccomp:
        config["seccomp"] = seccomp
    eff = fam.cgroups_effective_origins
    config["cgroups"] = _cgroup_tree(
        fam.cgroups_effective,
        lambda name, v: {"value": v, "origin": eff[name].to_dict()} if origins else v)
    config["cgroups-per-node"] = [
        entry({"node": s.origins[0].alias, "cgroups": _cgroup_tree(s.value, lambda n, v: v)}, s)
        for s in fam.cgroups]

    exports = []
    for s in fam.exports:
        e = s.value
        data: dict[str, Any] = {"mode": e.mode.value, "mount": e.mount}
        for name in ("path", "info", "warn", "optional"):
            if getattr(e, name) is not None:
                data[name] = getattr(e, name)
        exports.append(entry(data, s))
    environ = []
    for s in fam.environ:
        v = s.value
        data = {"key": v.key, "value": v.value, "mode": v.mode.value}
        for name in ("info", "warn"):
            if getattr(v, name) is not None:
                data[name] = getattr(v, name)
        environ.append(entry(data, s))
    return {
        "headers": {"alias": leaf.alias, "name": leaf.name, "info": leaf.info,
                    "mode": "admin" if fam.admin else "normal", "expanded": fam.expanded,
                    "family": [{"alias": n.alias, "path": n.path} for n in fam.nodes]},
        "config": config,
        "exports": exports,
        "environ": environ,
        "warnings": [str(w) for w in fam.warnings],
        "overrides": [str(w) for w in fam.overrides],
    }


__all__ = ["CAP_NAMES", "CAP_BITS", "FamilyConfig", "FamilySeccomp", "MergeWarning",
           "NodeSeccomp", "Origin", "layers_of", "standing_environ",
           "Sourced", "merge_family", "size_order", "yaml_key"]
