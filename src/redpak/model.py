"""The data model of one node's configuration: what config.py produces from a YAML file.

Plain frozen records (record.py), no behaviour, no I/O: merge (family.py) and compile
(plan.py) are pure functions over these. Every value remembers the line it came from.
"""

from __future__ import annotations

import enum

from .record import field, record


class ExportMode(enum.Enum):
    """SPEC §4. Values are the canonical spelling; YAML matches case-insensitively."""

    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"
    PRIVATE_RESTRICTED = "PrivateRestricted"
    PUBLIC_FILE = "PublicFile"
    RESTRICTED_FILE = "RestrictedFile"
    PRIVATE_FILE = "PrivateFile"
    ANONYMOUS = "Anonymous"
    SYMLINK = "Symlink"
    EXECFD = "Execfd"
    INTERNAL = "Internal"
    TMPFS = "Tmpfs"
    PROCFS = "Procfs"
    DEVFS = "Devfs"
    MQUEUE = "Mqueue"
    LOCK = "Lock"
    USERDB = "UserDb"   # redpak extension: /etc/passwd or /etc/group (path: passwd|group)
                        # generated natively for the running user, no shell at launch

    @property
    def private(self) -> bool:
        """Private* exports apply to their own node only, never to descendants."""
        return self in (ExportMode.PRIVATE, ExportMode.PRIVATE_RESTRICTED, ExportMode.PRIVATE_FILE)

    @property
    def readonly(self) -> bool:
        return self in (ExportMode.RESTRICTED, ExportMode.PRIVATE_RESTRICTED,
                        ExportMode.RESTRICTED_FILE, ExportMode.EXECFD)

    @property
    def is_bind(self) -> bool:
        return self in (ExportMode.PUBLIC, ExportMode.RESTRICTED, ExportMode.PRIVATE,
                        ExportMode.PRIVATE_RESTRICTED, ExportMode.PUBLIC_FILE,
                        ExportMode.RESTRICTED_FILE, ExportMode.PRIVATE_FILE)

    @property
    def is_file(self) -> bool:
        return self in (ExportMode.PUBLIC_FILE, ExportMode.RESTRICTED_FILE,
                        ExportMode.PRIVATE_FILE)


class EnvMode(enum.Enum):
    """SPEC §5 environ modes."""

    DEFAULT = "Default"
    STATIC = "Static"
    EXECFD = "Execfd"
    REMOVE = "Remove"
    INHERIT = "Inherit"


class Share(enum.Enum):
    """State of one namespace key: share the caller's, unshare, inherit, or join a path."""

    ENABLED = "enabled"    # share the caller's namespace
    DISABLED = "disabled"  # a new namespace
    UNSET = "unset"        # say nothing: an ancestor's value, else the default
    JOIN = "join"          # setns() into ShareValue.path


class Tristate(enum.Enum):
    """die-with-parent, new-session: enabled / disabled / unset."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    UNSET = "unset"


NAMESPACES = ("user", "cgroup", "net", "pid", "ipc", "time", "uts")
"""Namespaces a config can share (share_<ns>); the mount namespace is always new."""


@record(frozen=True)
class ShareValue:
    state: Share
    path: str = ""  # only for Share.JOIN: e.g. /proc/1234/ns/net (may hold variables)
    line: int = 0


@record(frozen=True)
class Export:
    mode: ExportMode
    mount: str                  # unexpanded, as written
    path: str | None = None     # unexpanded source; None means "same as mount"
    info: str | None = None
    warn: str | None = None
    optional: bool | None = None  # a missing host source is skipped without a warning
    line: int = 0


@record(frozen=True)
class EnvEntry:
    key: str
    value: str | None = None    # None: no value given (treated as empty, never a crash)
    mode: EnvMode = EnvMode.DEFAULT
    info: str | None = None
    warn: str | None = None
    line: int = 0


@record(frozen=True)
class Capability:
    cap: str          # canonical lower case with prefix: "cap_net_admin", or "all"
    add: bool
    line: int = 0


class _Typed(str):
    """A cgroup value typed once at load (config.py) that is also its canonical text (the
    str it derives from): merge and compile read the parsed attributes, output prints the
    text. Immutable; built only through the subclass's `of`."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot set {name})")

    def _set(self, **attrs: object) -> _Typed:
        for name, value in attrs.items():
            object.__setattr__(self, name, value)
        return self

    def __reduce__(self):  # pickle/copy rebuild through `of`, not str(text)
        return (_rebuild, (type(self), self._args()))

    def _args(self) -> tuple:  # pragma: no cover - every subclass defines it
        raise NotImplementedError


def _rebuild(cls: type, args: tuple) -> _Typed:
    return cls.of(*args)


def format_cpulist(numbers: frozenset[int] | set[int]) -> str:
    """Canonical cpuset list text for a set of numbers ({0,1,2,6} -> '0-2,6')."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class CpuSet(_Typed):
    """cpuset.cpus / cpuset.mems: the set of CPU (memory node) numbers, `ids`; the text is
    the canonical list ('0-3,5')."""

    ids: frozenset[int]

    @classmethod
    def of(cls, ids: frozenset[int] | set[int]) -> CpuSet:
        ids = frozenset(ids)
        return str.__new__(cls, format_cpulist(ids))._set(ids=ids)

    def __and__(self, other: CpuSet) -> CpuSet:  # type: ignore[override]
        return CpuSet.of(self.ids & other.ids)

    def _args(self) -> tuple:
        return (self.ids,)


class CpuMax(_Typed):
    """cpu.max: `quota` in microseconds (None: max) per `period`; text 'QUOTA|max PERIOD'."""

    quota: int | None
    period: int

    @classmethod
    def of(cls, quota: int | None, period: int = 100000) -> CpuMax:
        text = f"{'max' if quota is None else quota} {period}"
        return str.__new__(cls, text)._set(quota=quota, period=period)

    @property
    def ratio(self) -> float:
        """The fraction of a CPU it allows (inf for max)."""
        return float("inf") if self.quota is None else self.quota / self.period

    def _args(self) -> tuple:
        return (self.quota, self.period)


class IoWeight(_Typed):
    """io.weight: `entries` ((device 'MAJ:MIN' or 'default', weight), ...); text one entry
    per line ('default 100\n8:0 200'), the kernel takes one per write."""

    entries: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, entries: tuple[tuple[str, int], ...]) -> IoWeight:
        entries = tuple(entries)
        text = "\n".join(f"{dev} {weight}" for dev, weight in entries)
        return str.__new__(cls, text)._set(entries=entries)

    def _args(self) -> tuple:
        return (self.entries,)


IO_LIMITS = ("rbps", "wbps", "riops", "wiops")
"""The limits of one io.max device, in the kernel's order."""


class IoMax(_Typed):
    """io.max: `devices` ((device 'MAJ:MIN', ((limit, int or 'max'), ...)), ...), limits
    of IO_LIMITS; text one device per line ('8:0 rbps=1048576 wiops=max')."""

    devices: tuple[tuple[str, tuple[tuple[str, int | str], ...]], ...]

    @classmethod
    def of(cls, devices) -> IoMax:
        """devices: a mapping or pairs, device -> mapping or pairs limit -> value."""
        items = devices.items() if hasattr(devices, "items") else devices
        typed = tuple((dev, tuple(limits.items() if hasattr(limits, "items") else limits))
                      for dev, limits in items)
        text = "\n".join(" ".join([dev] + [f"{k}={v}" for k, v in limits])
                         for dev, limits in typed)
        return str.__new__(cls, text)._set(devices=typed)

    def _args(self) -> tuple:
        return (self.devices,)


@record(frozen=True)
class CgroupSettings:
    """cgroup v2 semantics, typed once at load (config.py, by schema.CGROUPS kind): sizes
    and pids.max are ints (bytes, count) or 'max'; cpu.max a CpuMax; cpusets CpuSets; io
    values IoWeight and IoMax (parsed per device). None = not set."""

    cpuset_cpus: CpuSet | None = None
    cpuset_mems: CpuSet | None = None
    cpuset_cpus_partition: str | None = None
    mem_min: int | str | None = None
    mem_low: int | str | None = None
    mem_high: int | str | None = None
    mem_max: int | str | None = None
    mem_oom_group: bool | None = None
    mem_swap_high: int | str | None = None
    mem_swap_max: int | str | None = None
    cpu_weight: int | None = None
    cpu_weight_nice: int | None = None
    cpu_max: CpuMax | None = None
    io_weight: IoWeight | None = None
    io_max: IoMax | None = None
    pids_max: int | str | None = None
    line: int = 0


@record(frozen=True)
class SeccompSettings:
    profile: str | None = None          # "default" | "none" | None (not said)
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    errno: str | None = None            # e.g. "EPERM"
    line: int = 0


@record(frozen=True)
class LandlockSettings:
    enabled: bool | None = None
    line: int = 0


@record(frozen=True)
class Settings:
    """The `config` section. Field names are the YAML keys in snake_case
    (`die-with-parent` -> die_with_parent). None (or empty) means "not set in this file"."""

    path: tuple[str, ...] | None = None
    ldpath: tuple[str, ...] | None = None
    rpmdir: str | None = None
    persistdir: str | None = None
    cachedir: str | None = None
    gpgcheck: bool | None = None
    pkg_devices: bool | None = None     # this node's packages may create device nodes
    verbose: int | None = None
    umask: int | None = None            # parsed from an octal string: "027" -> 0o027
    hostname: str | None = None
    chdir: str | None = None
    set_user: str | None = None         # name or number, as written
    set_group: str | None = None
    smack: str | None = None
    smack_optional: bool | None = None  # run unlabelled where the kernel has no SMACK
    capabilities: tuple[Capability, ...] = ()
    share_all: ShareValue | None = None
    share_user: ShareValue | None = None
    share_cgroup: ShareValue | None = None
    share_net: ShareValue | None = None
    share_pid: ShareValue | None = None
    share_ipc: ShareValue | None = None
    share_time: ShareValue | None = None
    share_uts: ShareValue | None = None
    die_with_parent: Tristate | None = None
    new_session: Tristate | None = None
    map_root_user: bool | None = None
    inherit_env: bool | None = None
    cgrouproot: str | None = None
    cgroups: CgroupSettings | None = None
    seccomp: SeccompSettings | None = None
    landlock: LandlockSettings | None = None
    unsafe: bool | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)
    """Line of each key present in the file, by field name (e.g. 'share_net': 12)."""


@record(frozen=True)
class NodeConfig:
    """One parsed and validated YAML file (normal or admin config of one node)."""

    file: str                   # path of the YAML file it came from
    alias: str
    name: str | None = None
    info: str | None = None
    settings: Settings = field(default_factory=Settings)
    exports: tuple[Export, ...] = ()
    environ: tuple[EnvEntry, ...] = ()
    warnings: tuple[str, ...] = ()   # non-fatal: obsolete keys ('maxage', 'inherit')


class NodeState(enum.Enum):
    ENABLE = "Enable"
    DISABLE = "Disable"
    UNKNOWN = "Unknown"
    ERROR = "Error"


@record(frozen=True)
class NodeStatus:
    """The node's `.rednode.yaml`."""

    realpath: str
    state: NodeState
    info: str = ""
    timestamp: int = 0          # ms since the epoch


@record(frozen=True)
class Node:
    """One node on disk: its directory, status and configs (admin config optional)."""

    path: str                   # absolute, normalised
    status: NodeStatus
    config: NodeConfig
    admin: NodeConfig | None = None
    owner: int | None = None    # uid and gid of the node directory: who can change its
    group: int | None = None    # configs; commands they hold never run more privileged

    @property
    def alias(self) -> str:
        return self.config.alias

    def builtin(self, what: str) -> str:
        """The value of $NODE_<what> (ALIAS, NAME, PATH, INFO) for this node ("" if unset)."""
        if what == "PATH":
            return self.path
        return {"ALIAS": self.config.alias, "NAME": self.config.name,
                "INFO": self.config.info}[what] or ""
