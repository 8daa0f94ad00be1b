# Resource and access controls of a launch (SPEC §6): compiles a family's cgroups, seccomp,
# Landlock and SMACK settings into plan ops, once, when the plan is compiled. The C core
# runs the ops and decides nothing. How each control is enforced: docs/controls.md.
"""Compile the controls of a FamilyConfig into LaunchPlan fields.

- cgroups: one nested directory per node under cgrouproot (default: the caller's own
  cgroup) in every hierarchy the family's keys need, each node's own section written to
  its directory, the node moved into `<leaf>/run-<pid>.<id>` before it runs. v2 natively;
  on hybrid hosts a controller bound to a v1 hierarchy gets the v1 files, and a key v1
  cannot honour is a PlanError naming it.
- seccomp: a classic BPF program (built here, for the machine's architecture).
- Landlock: path-beneath rules from the plan's mounts (read-only where they are).
- SMACK: the label, optional only if the node that set it says `smack-optional: true`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence

from .errors import PlanError
from .family import FamilyConfig, Origin
from .model import IO_LIMITS, CgroupSettings, CpuMax, CpuSet, Node
from .record import field, record
from .schema import CGROUP_FILES, CGROUP_KEYS
from .planfile import (
    LANDLOCK_OPTIONAL,
    CgroupAction,
    CgroupOp,
    LandlockRule,
    Mount,
    MountFlag,
    MountKind,
    Smack,
)

# ---- the host -----------------------------------------------------------------------------

V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "pids")
"""cgroup v2 controllers a node's `cgroups` section can use."""

_V1_NAME = {"io": "blkio"}
"""v1 name of a v2 controller, where it differs."""


def _read_file(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return None


def _fake_read(path: str) -> str | None:
    if path.endswith("/" + CGROUP_FILES["controllers"]):
        return " ".join(V2_CONTROLLERS)
    return ""


def _always(_path: str) -> bool:
    return True


@record(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy, as the caller sees it."""

    version: int                   # 1 or 2
    mount: str                     # where it is mounted, e.g. /sys/fs/cgroup/memory
    key: str                       # its /proc/self/cgroup field ("memory", "cpu,cpuacct"); v2: ""
    controllers: frozenset[str]    # v1: bound to it; v2: offered by the caller's cgroup
    caller: str                    # the caller's cgroup in it, as /proc/self/cgroup says
    mount_root: str = "/"          # the cgroup shown at the mount point (mountinfo root)

    def dir_of(self, cgroup: str) -> str | None:
        """The directory of one of its cgroups, or None if the mount does not show it."""
        root = self.mount_root.rstrip("/")
        if cgroup != self.mount_root and not cgroup.startswith(root + "/"):
            return None
        return (self.mount.rstrip("/") + cgroup[len(root):]).rstrip("/") or "/"


_DEFAULT_HIERARCHIES = (Hierarchy(2, "/sys/fs/cgroup", "", frozenset(V2_CONTROLLERS), "/"),)


@record(frozen=True)
class Host:
    """What compiling the controls needs to know about the machine. probe_host() reads the
    real one; the default describes a cgroup v2 host offering every controller, without
    SMACK, for pure compilation (tests, golden plans)."""

    arch: str = field(default_factory=lambda: os.uname().machine)
    hierarchies: tuple[Hierarchy, ...] = _DEFAULT_HIERARCHIES
    smack: bool = False
    read: Callable[[str], str | None] = field(default=_fake_read, compare=False, repr=False)
    isdir: Callable[[str], bool] = field(default=_always, compare=False, repr=False)

    def hierarchy_for(self, controller: str) -> Hierarchy | None:
        """The hierarchy carrying a (v2-named) controller: a v1 one binding it, else v2."""
        v1 = _V1_NAME.get(controller, controller)
        for h in self.hierarchies:
            if h.version == 1 and v1 in h.controllers:
                return h
        return next((h for h in self.hierarchies if h.version == 2), None)

    @property
    def mode(self) -> str:
        """'v2', 'hybrid' (controllers on v1 hierarchies) or 'none'."""
        if any(h.version == 1 for h in self.hierarchies):
            return "hybrid"
        return "v2" if self.hierarchies else "none"


def _unescape(text: str) -> str:
    """mountinfo's octal escapes (space, tab, newline, backslash)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def probe_host() -> Host:
    """The machine as compilation needs it: architecture, the cgroup hierarchies the caller
    sees (/proc/self/mountinfo, /proc/self/cgroup), whether SMACK is active. Never raises:
    what cannot be read is absent."""
    own: dict[str, str] = {}
    for line in (_read_file("/proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            own[parts[1]] = parts[2]
    found: dict[str, Hierarchy] = {}
    for line in (_read_file("/proc/self/mountinfo") or "").splitlines():
        left, sep, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if not sep or len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, root, mount = rfields[0], _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup2" and "" in own and "" not in found:
            h = Hierarchy(2, mount, "", frozenset(), own[""], root)
            where = h.dir_of(own[""])
            offered = ((_read_file(f"{where}/{CGROUP_FILES['controllers']}") or "")
                       if where else "")
            found[""] = Hierarchy(2, mount, "", frozenset(offered.split()), own[""], root)
        elif fstype == "cgroup":
            opts = set(rfields[2].split(","))
            for key, path in own.items():
                names = set(key.split(",")) if key else set()
                if names and names <= opts and key not in found:
                    ctrls = frozenset(n for n in names if not n.startswith("name="))
                    if ctrls:
                        found[key] = Hierarchy(1, mount, key, ctrls, path, root)
    lsm = (_read_file("/sys/kernel/security/lsm") or "").strip().split(",")
    smack = "smack" in lsm or os.path.isdir("/sys/fs/smackfs")
    ordered = tuple(sorted(found.values(), key=lambda h: h.mount))
    return Host(os.uname().machine, ordered, smack, _read_file, os.path.isdir)


# ---- cgroups ------------------------------------------------------------------------------

_CG_FIELDS: dict[str, tuple[str, str]] = {
    field: (yaml_path, key.controller) for field, (yaml_path, key) in CGROUP_KEYS.items()}
"""Every key of a `cgroups` section (CgroupSettings field -> YAML key, v2 controller),
from the schema."""

# kernel/sched/core.c sched_prio_to_weight: the load weight of nice -20 .. 19, which is
# what cgroup v1 cpu.shares measures (1024 = nice 0) and what cpu.weight.nice sets on v2.
_NICE_WEIGHT = (88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916,
                9548, 7620, 6100, 4904, 3906, 3121, 2501, 1991, 1586, 1277,
                1024, 820, 655, 526, 423, 335, 272, 215, 172, 137,
                110, 87, 70, 56, 45, 36, 29, 23, 18, 15)

_V1 = {field: key.v1.split() for field, (_, key) in CGROUP_KEYS.items()}
"""The cgroup v1 file(s) of each key, from the schema (cpu.max: quota then period file;
io.max: one file per limit of IO_LIMITS)."""

_V2 = {field: key.v2 for field, (_, key) in CGROUP_KEYS.items()}
"""The cgroup v2 file of each key, from the schema."""


@record(frozen=True)
class _NodeCg:
    node: Node
    cg: CgroupSettings
    origin: Origin

    def value(self, name: str):
        value = getattr(self.cg, name)
        return None if value == "" else value


def _cg_error(name: str, origin: Origin, problem: str, hint: str) -> PlanError:
    return PlanError(f"cgroups.{_CG_FIELDS[name][0]}: set by {origin.describe()}, but "
                     f"{problem} ({hint})")


def _cpuset_within_ancestors(nodes: Sequence[_NodeCg], i: int, name: str) -> CpuSet:
    """Node i's CPUs (or memory nodes) within what its ancestors said: the intersection along
    the family, so a child never names a CPU its parent lacks (v1 refuses that, and v2 refuses
    CPUs the machine does not have). Raises PlanError when nothing is left."""
    said: list[CpuSet] = [x.value(name) for x in nodes[:i + 1] if x.value(name) is not None]
    common = said[0]
    for cpus in said[1:]:
        common &= cpus
    if not common.ids:
        raise _cg_error(name, nodes[i].origin, "it does not overlap its ancestors'",
                        "a node's cpuset must be a subset of its ancestors'")
    return common


def _v2_writes(nodes: Sequence[_NodeCg], i: int, ctrls: set[str]) -> list[tuple[str, str]]:
    n = nodes[i]
    out: list[tuple[str, str]] = []
    for name, (_, key) in CGROUP_KEYS.items():    # the schema names each v2 file
        value = n.value(name)
        if value is None or key.controller not in ctrls:
            continue
        if key.kind in ("io_weight", "io_max"):   # the kernel takes one line per write
            out += [(key.v2, line) for line in value.splitlines()]
        elif key.kind == "cpulist":  # within the ancestors' (v2 refuses CPUs it lacks)
            out.append((key.v2, str(_cpuset_within_ancestors(nodes, i, name))))
        elif key.kind == "bool":
            out.append((key.v2, "1" if value else "0"))
        else:   # sizes, counts, weights (int or 'max'), partitions, cpu.max: their text
            out.append((key.v2, str(value)))
    return out


def _v1_default(name: str, value) -> bool:
    """A value that asks for nothing v1 does not already do (no protection, no throttle)."""
    if name in ("mem_min",):
        return value == 0
    if name in ("mem_high", "mem_swap_high"):
        return value == "max"
    if name == "mem_oom_group":
        return value is False
    if name == "cpuset_cpus_partition":
        return value == "member"
    return False


_V1_LACKS = {
    "mem_min": f"cgroup v1 has no memory protection ({_V2['mem_min']})",
    "mem_high": f"cgroup v1 has no throttling limit ({_V2['mem_high']})",
    "mem_swap_high": f"cgroup v1 has no swap throttling limit ({_V2['mem_swap_high']})",
    "mem_oom_group": "the v1 OOM killer cannot kill a cgroup's processes as a group",
    "cpuset_cpus_partition": "cgroup v1 has no cpuset partitions",
}
assert all(not _V1[name] for name in _V1_LACKS)  # the schema gives them no v1 file


def _v1_writes(nodes: Sequence[_NodeCg], i: int, h: Hierarchy, host: Host
               ) -> list[tuple[CgroupAction, str, str]]:
    """Node i's writes in v1 hierarchy h: the schema's v1 file of each key, the value
    converted by its kind (sizes to bytes, weights to shares, cpu.max to quota and period,
    io.max to one file per limit)."""
    n = nodes[i]
    ctrls = _v1_ctrls(h)
    out: list[tuple[CgroupAction, str, str]] = []
    W = CgroupAction.WRITE

    def lacks(name: str, why: str) -> PlanError:
        return _cg_error(name, n.origin, f"this host's {_CG_FIELDS[name][1]} controller is "
                         f"on a cgroup v1 hierarchy ({h.mount}): {why}",
                         "remove the key, or run the family on a cgroup v2 host")

    for name, why in _V1_LACKS.items():
        if n.value(name) is not None and _CG_FIELDS[name][1] in ctrls \
                and not _v1_default(name, n.value(name)):
            raise lacks(name, why)
    if any(key.kind == "cpulist" and key.controller in ctrls
           for _, key in CGROUP_KEYS.values()):
        # A v1 cpuset takes tasks only once it has CPUs and memory nodes, and children
        # must stay inside their parent: write the intersection along the family, copy
        # the parent's where the root-most node says nothing, and let deeper directories
        # inherit (clone_children).
        out.append((W, CGROUP_FILES["clone_children"], "1"))
    for name, (_, key) in CGROUP_KEYS.items():
        if key.controller not in ctrls or not _V1[name]:
            continue
        value = n.value(name)
        files = _V1[name]
        if key.kind == "cpulist":
            if value is not None:
                out.append((W, files[0], str(_cpuset_within_ancestors(nodes, i, name))))
            elif i == 0:
                out.append((CgroupAction.COPY, files[0], ""))
        elif value is None:
            continue
        elif name == "mem_swap_max":
            # v1 limits memory and swap together: memsw = memory + swap
            mem = n.value("mem_max")
            if host.read(f"{h.mount}/{files[0]}") is None:
                raise lacks(name, f"this kernel does not account swap (no {files[0]}: "
                            "boot with swapaccount=1)")
            if value != "max" and mem in (None, "max"):
                raise lacks(name, f"v1 limits memory and swap together ({files[0]}), "
                            f"which needs {_CG_FIELDS['mem_max'][0]} in the same node")
            out.append((W, files[0], "-1" if value == "max" else str(mem + value)))
        elif key.kind == "size":
            out.append((W, files[0], "-1" if value == "max" else str(value)))
        elif key.kind == "cpu_weight":
            out.append((W, files[0], str(min(max(round(value * 1024 / 100), 2), 262144))))
        elif key.kind == "weight_nice":
            out.append((W, files[0], str(_NICE_WEIGHT[value + 20])))
        elif key.kind == "cpu_max":
            cap: CpuMax = value
            if cap.quota is not None:
                # v1 refuses a quota above the parent's (v2 caps it): write the cap
                tighter = [x.value(name) for x in nodes[:i] if x.value(name) is not None
                           and x.value(name).ratio < cap.ratio]
                if tighter:
                    cap = min(tighter, key=lambda c: c.ratio)
            quota_file, period_file = files
            out.append((W, period_file, str(cap.period)))
            out.append((W, quota_file, "-1" if cap.quota is None else str(cap.quota)))
        elif key.kind == "io_weight":
            if host.read(f"{h.mount}/{files[0]}") is None:
                raise lacks(name, f"its {h.key} controller has no weight file "
                            f"({files[0]} needs the BFQ I/O scheduler)")
            for line, (_dev, weight) in zip(value.splitlines(), value.entries):
                if weight > 1000:
                    raise lacks(name, f"BFQ weights go up to 1000, not {weight}")
                out.append((W, files[0], line))
        elif key.kind == "io_max":
            per_limit = dict(zip(IO_LIMITS, files))
            for dev, limits in value.devices:
                for limit, amount in limits:
                    out.append((W, per_limit[limit], f"{dev} {0 if amount == 'max' else amount}"))
        else:   # counts (pids.max)
            out.append((W, files[0], str(value)))
    return out


def _v1_ctrls(h: Hierarchy) -> set[str]:
    """The v2 names of the controllers a v1 hierarchy carries."""
    back = {v: k for k, v in _V1_NAME.items()}
    return {back.get(c, c) for c in h.controllers}


def _dir_name(n: _NodeCg) -> str:
    """redpak-<alias>-<8 hex>: the hash of the node's path and own settings, so launches of
    one family share a directory exactly when they would write the same limits to it."""
    import hashlib
    said = sorted((f, str(getattr(n.cg, f))) for f in _CG_FIELDS if n.value(f) is not None)
    digest = hashlib.sha256(repr((n.node.path, said)).encode()).hexdigest()[:8]
    return f"redpak-{n.node.alias[:64]}-{digest}"


def _root_of(fam: FamilyConfig, host: Host, h: Hierarchy) -> tuple[str, CgroupOp | None]:
    """Where the family's directories go in hierarchy h, and the CHECK op for the default
    (the caller's own cgroup, which the plan must still match at launch)."""
    if fam.cgrouproot is not None and fam.cgrouproot.value:
        text = fam.cgrouproot.value
        where = fam.cgrouproot.origin.describe() if fam.cgrouproot.origin else "cgrouproot"
        norm = os.path.normpath(text) if text.startswith("/") else ""
        for other in host.hierarchies:
            mount = other.mount.rstrip("/")
            if norm == other.mount or norm.startswith(mount + "/"):
                path = h.mount.rstrip("/") + norm[len(mount):]
                break
        else:
            mounts = ", ".join(x.mount for x in host.hierarchies) or "none"
            raise PlanError(f"cgrouproot: '{text}' ({where}) is not inside a cgroup hierarchy "
                            f"(mounted here: {mounts}); on a hybrid host its path relative to "
                            "one hierarchy is used in each")
        if not host.isdir(path):
            raise PlanError(f"cgrouproot: '{path}' does not exist ({where}): create it, or "
                            "unset cgrouproot to use the caller's own cgroup")
        return path, None
    path = h.dir_of(h.caller)
    if path is None:
        raise PlanError(f"cgroups: the caller's cgroup {h.caller} is not visible under "
                        f"{h.mount}: set cgrouproot")
    return path, CgroupOp(CgroupAction.CHECK, path, h.key, h.caller)


def compile_cgroups(fam: FamilyConfig, host: Host) -> tuple[CgroupOp, ...]:
    """The cgroup ops of a family: nothing if no node sets a limit; raises PlanError naming
    the key and node when this host cannot honour it."""
    nodes = [_NodeCg(node, s.value, s.origins[0]) for node, s in zip(fam.nodes, fam.cgroups)]
    wanted: dict[str, tuple[str, Origin]] = {}  # controller -> first key needing it
    for n in nodes:
        if n.value("cpu_weight") is not None and n.value("cpu_weight_nice") is not None:
            raise _cg_error("cpu_weight_nice", n.origin,
                            f"{_CG_FIELDS['cpu_weight'][0]} is set in the same node",
                            "both set the same knob: keep one")
        for name in _CG_FIELDS:
            if n.value(name) is not None:
                wanted.setdefault(_CG_FIELDS[name][1], (name, n.origin))
    if not wanted:
        return ()
    by_hierarchy: dict[Hierarchy, set[str]] = {}
    for ctrl, (name, origin) in wanted.items():
        h = host.hierarchy_for(ctrl)
        if h is None:
            raise _cg_error(name, origin, f"this host has no '{ctrl}' cgroup controller",
                            "no cgroup v1 hierarchy binds it and no cgroup v2 is mounted")
        by_hierarchy.setdefault(h, set()).add(ctrl)
    ops: list[CgroupOp] = []
    for h in sorted(by_hierarchy, key=lambda x: x.mount):
        ctrls = by_hierarchy[h]
        root, check = _root_of(fam, host, h)
        if check is not None:
            ops.append(check)
        if h.version == 2:
            offered = (set(h.controllers) if check is not None else set(
                (host.read(f"{root}/{CGROUP_FILES['controllers']}") or "").split()))
            for ctrl in sorted(ctrls - offered):
                name, origin = wanted[ctrl]
                raise _cg_error(name, origin, f"cgroup v2 does not offer the '{ctrl}' controller "
                                f"below {root}", f"enable it in the "
                                f"{CGROUP_FILES['subtree_control']} of "
                                f"{os.path.dirname(root)}, or set cgrouproot")
            enable = " ".join(f"+{c}" for c in sorted(ctrls))
            # already-enabled controllers make this a no-op (cgroup-v2.rst)
            ops.append(CgroupOp(CgroupAction.WRITE, root, CGROUP_FILES["subtree_control"],
                                enable))
        parent = root
        for i, n in enumerate(nodes):
            path = f"{parent}/{_dir_name(n)}"
            ops.append(CgroupOp(CgroupAction.MKDIR, path))
            if h.version == 2:
                ops += [CgroupOp(CgroupAction.WRITE, path, f, v)
                        for f, v in _v2_writes(nodes, i, ctrls)]
                ops.append(CgroupOp(CgroupAction.WRITE, path, CGROUP_FILES["subtree_control"],
                                    enable))
            else:
                ops += [CgroupOp(a, path, f, v) for a, f, v in _v1_writes(nodes, i, h, host)]
            parent = path
        # v1: the child joins through `tasks` by itself, one thread writing "0", which skips
        # the global thread-group lock (an RCU grace period per write) cgroup.procs takes
        ops.append(CgroupOp(CgroupAction.ATTACH, parent,
                            CGROUP_FILES["join_v2" if h.version == 2 else "join_v1"]))
    return tuple(ops)


# ---- seccomp ------------------------------------------------------------------------------

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
"""seccomp_data.arch of the native entry point (linux/audit.h). Every other value (i386's
int 0x80 and the compat entry points, 32-bit ARM) is refused as a whole."""

X32_SYSCALL_BIT = 0x40000000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C       # the same on x86_64 and aarch64
NS_CLONE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
CLONE_NEWTIME = 0x00000080                # unshare() only: in clone() it is the exit signal
SAFE_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # LINUX, LINUX32, UNAME26, query

DENY, NS_FLAGS, UNSHARE_FLAGS, TTY_IOCTLS, PERSONALITY, ENOSYS = (
    "deny", "ns-flags", "unshare-flags", "tty-ioctls", "personality", "enosys")

DEFAULT_PROFILE: dict[str, tuple[str, str]] = {
    # namespaces: a node never makes or joins one (it could loosen its own isolation)
    "unshare": (UNSHARE_FLAGS, "namespace creation"),
    "clone": (NS_FLAGS, "namespace creation"),
    "clone3": (ENOSYS, "its flags are out of a filter's reach: libc falls back to clone"),
    "setns": (DENY, "joining namespaces"),
    # mounts, old and new API
    "mount": (DENY, "mounts"), "umount2": (DENY, "mounts"), "pivot_root": (DENY, "mounts"),
    "open_tree": (DENY, "mounts"), "open_tree_attr": (DENY, "mounts"),
    "move_mount": (DENY, "mounts"), "fsopen": (DENY, "mounts"), "fsconfig": (DENY, "mounts"),
    "fsmount": (DENY, "mounts"), "fspick": (DENY, "mounts"), "mount_setattr": (DENY, "mounts"),
    # kernel facilities that are not namespaced
    "keyctl": (DENY, "kernel keyrings"), "add_key": (DENY, "kernel keyrings"),
    "request_key": (DENY, "kernel keyrings"), "bpf": (DENY, "eBPF"),
    "perf_event_open": (DENY, "performance monitoring"),
    "userfaultfd": (DENY, "a classic exploitation aid"),
    # io_uring runs file and socket operations on kernel workers: they never pass through
    # this filter, and its own attack surface has been a steady source of kernel exploits
    "io_uring_setup": (DENY, "io_uring"), "io_uring_enter": (DENY, "io_uring"),
    "io_uring_register": (DENY, "io_uring"),
    "init_module": (DENY, "kernel modules"), "finit_module": (DENY, "kernel modules"),
    "delete_module": (DENY, "kernel modules"), "create_module": (DENY, "kernel modules"),
    "kexec_load": (DENY, "kexec"), "kexec_file_load": (DENY, "kexec"),
    "reboot": (DENY, "host administration"), "swapon": (DENY, "host administration"),
    "swapoff": (DENY, "host administration"), "acct": (DENY, "host administration"),
    "quotactl": (DENY, "host administration"), "quotactl_fd": (DENY, "host administration"),
    "syslog": (DENY, "the kernel log"), "lookup_dcookie": (DENY, "host administration"),
    "nfsservctl": (DENY, "host administration"),
    "iopl": (DENY, "I/O ports"), "ioperm": (DENY, "I/O ports"),
    "open_by_handle_at": (DENY, "opens files by handle, around mounts"),
    "uselib": (DENY, "obsolete"),
    # other processes: ptrace and its relatives (allow them to debug inside the node)
    "ptrace": (DENY, "tracing other processes"),
    "process_vm_readv": (DENY, "tracing other processes"),
    "process_vm_writev": (DENY, "tracing other processes"),
    "pidfd_getfd": (DENY, "taking other processes' descriptors"),
    # arguments
    "ioctl": (TTY_IOCTLS, "TIOCSTI/TIOCLINUX: typing into the caller's terminal"),
    "personality": (PERSONALITY, "only the harmless personalities"),
}
"""The `default` profile: syscall -> (rule, why). Everything else is allowed; syscalls newer
than this redpak's table fail with ENOSYS (libc then falls back), never run unchecked."""

SYSCALLS: dict[str, tuple[tuple[int, str], ...]] = {
    "x86_64": (
        (0, """
        read write open close stat fstat lstat poll lseek mmap mprotect munmap brk
        rt_sigaction rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access
        pipe select sched_yield mremap msync mincore madvise shmget shmat shmctl dup dup2
        pause nanosleep getitimer alarm setitimer getpid sendfile socket connect accept sendto
        recvfrom sendmsg recvmsg shutdown bind listen getsockname getpeername socketpair
        setsockopt getsockopt clone fork vfork execve exit wait4 kill uname semget semop
        semctl shmdt msgget msgsnd msgrcv msgctl fcntl flock fsync fdatasync truncate
        ftruncate getdents getcwd chdir fchdir rename mkdir rmdir creat link unlink symlink
        readlink chmod fchmod chown fchown lchown umask gettimeofday getrlimit getrusage
        sysinfo times ptrace getuid syslog getgid setuid setgid geteuid getegid setpgid
        getppid getpgrp setsid setreuid setregid getgroups setgroups setresuid getresuid
        setresgid getresgid getpgid setfsuid setfsgid getsid capget capset rt_sigpending
        rt_sigtimedwait rt_sigqueueinfo rt_sigsuspend sigaltstack utime mknod uselib
        personality ustat statfs fstatfs sysfs getpriority setpriority sched_setparam
        sched_getparam sched_setscheduler sched_getscheduler sched_get_priority_max
        sched_get_priority_min sched_rr_get_interval mlock munlock mlockall munlockall vhangup
        modify_ldt pivot_root _sysctl prctl arch_prctl adjtimex setrlimit chroot sync acct
        settimeofday mount umount2 swapon swapoff reboot sethostname setdomainname iopl ioperm
        create_module init_module delete_module get_kernel_syms query_module quotactl
        nfsservctl getpmsg putpmsg afs_syscall tuxcall security gettid readahead setxattr
        lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr
        removexattr lremovexattr fremovexattr tkill time futex sched_setaffinity
        sched_getaffinity set_thread_area io_setup io_destroy io_getevents io_submit io_cancel
        get_thread_area lookup_dcookie epoll_create epoll_ctl_old epoll_wait_old
        remap_file_pages getdents64 set_tid_address restart_syscall semtimedop fadvise64
        timer_create timer_settime timer_gettime timer_getoverrun timer_delete clock_settime
        clock_gettime clock_getres clock_nanosleep exit_group epoll_wait epoll_ctl tgkill
        utimes vserver mbind set_mempolicy get_mempolicy mq_open mq_unlink mq_timedsend
        mq_timedreceive mq_notify mq_getsetattr kexec_load waitid add_key request_key keyctl
        ioprio_set ioprio_get inotify_init inotify_add_watch inotify_rm_watch migrate_pages
        openat mkdirat mknodat fchownat futimesat newfstatat unlinkat renameat linkat
        symlinkat readlinkat fchmodat faccessat pselect6 ppoll unshare set_robust_list
        get_robust_list splice tee sync_file_range vmsplice move_pages utimensat epoll_pwait
        signalfd timerfd_create eventfd fallocate timerfd_settime timerfd_gettime accept4
        signalfd4 eventfd2 epoll_create1 dup3 pipe2 inotify_init1 preadv pwritev
        rt_tgsigqueueinfo perf_event_open recvmmsg fanotify_init fanotify_mark prlimit64
        name_to_handle_at open_by_handle_at clock_adjtime syncfs sendmmsg setns getcpu
        process_vm_readv process_vm_writev kcmp finit_module sched_setattr sched_getattr
        renameat2 seccomp getrandom memfd_create kexec_file_load bpf execveat userfaultfd
        membarrier mlock2 copy_file_range preadv2 pwritev2 pkey_mprotect pkey_alloc pkey_free
        statx io_pgetevents rseq uretprobe"""),
        (424, """
        pidfd_send_signal io_uring_setup io_uring_enter io_uring_register open_tree move_mount
        fsopen fsconfig fsmount fspick pidfd_open clone3 close_range openat2 pidfd_getfd
        faccessat2 process_madvise epoll_pwait2 mount_setattr quotactl_fd
        landlock_create_ruleset landlock_add_rule landlock_restrict_self memfd_secret
        process_mrelease futex_waitv set_mempolicy_home_node cachestat fchmodat2
        map_shadow_stack futex_wake futex_wait futex_requeue statmount listmount
        lsm_get_self_attr lsm_set_self_attr lsm_list_modules mseal setxattrat getxattrat
        listxattrat removexattrat open_tree_attr file_getattr file_setattr"""),
    ),
    "aarch64": (
        (0, """
        io_setup io_destroy io_submit io_cancel io_getevents setxattr lsetxattr fsetxattr
        getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr removexattr lremovexattr
        fremovexattr getcwd lookup_dcookie eventfd2 epoll_create1 epoll_ctl epoll_pwait dup
        dup3 fcntl inotify_init1 inotify_add_watch inotify_rm_watch ioctl ioprio_set
        ioprio_get flock mknodat mkdirat unlinkat symlinkat linkat renameat umount2 mount
        pivot_root nfsservctl statfs fstatfs truncate ftruncate fallocate faccessat chdir
        fchdir chroot fchmod fchmodat fchownat fchown openat close vhangup pipe2 quotactl
        getdents64 lseek read write readv writev pread64 pwrite64 preadv pwritev sendfile
        pselect6 ppoll signalfd4 vmsplice splice tee readlinkat newfstatat fstat sync fsync
        fdatasync sync_file_range timerfd_create timerfd_settime timerfd_gettime utimensat
        acct capget capset personality exit exit_group waitid set_tid_address unshare futex
        set_robust_list get_robust_list nanosleep getitimer setitimer kexec_load init_module
        delete_module timer_create timer_gettime timer_getoverrun timer_settime timer_delete
        clock_settime clock_gettime clock_getres clock_nanosleep syslog ptrace sched_setparam
        sched_setscheduler sched_getscheduler sched_getparam sched_setaffinity
        sched_getaffinity sched_yield sched_get_priority_max sched_get_priority_min
        sched_rr_get_interval restart_syscall kill tkill tgkill sigaltstack rt_sigsuspend
        rt_sigaction rt_sigprocmask rt_sigpending rt_sigtimedwait rt_sigqueueinfo rt_sigreturn
        setpriority getpriority reboot setregid setgid setreuid setuid setresuid getresuid
        setresgid getresgid setfsuid setfsgid times setpgid getpgid getsid setsid getgroups
        setgroups uname sethostname setdomainname getrlimit setrlimit getrusage umask prctl
        getcpu gettimeofday settimeofday adjtimex getpid getppid getuid geteuid getgid getegid
        gettid sysinfo mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr
        msgget msgctl msgrcv msgsnd semget semctl semtimedop semop shmget shmctl shmat shmdt
        socket socketpair bind listen accept connect getsockname getpeername sendto recvfrom
        setsockopt getsockopt shutdown sendmsg recvmsg readahead brk munmap mremap add_key
        request_key keyctl clone execve mmap fadvise64 swapon swapoff mprotect msync mlock
        munlock mlockall munlockall mincore madvise remap_file_pages mbind get_mempolicy
        set_mempolicy migrate_pages move_pages rt_tgsigqueueinfo perf_event_open accept4
        recvmmsg"""),
        (260, """
        wait4 prlimit64 fanotify_init fanotify_mark name_to_handle_at open_by_handle_at
        clock_adjtime syncfs setns sendmmsg process_vm_readv process_vm_writev kcmp
        finit_module sched_setattr sched_getattr renameat2 seccomp getrandom memfd_create bpf
        execveat userfaultfd membarrier mlock2 copy_file_range preadv2 pwritev2 pkey_mprotect
        pkey_alloc pkey_free statx io_pgetevents rseq kexec_file_load"""),
        (424, """
        pidfd_send_signal io_uring_setup io_uring_enter io_uring_register open_tree move_mount
        fsopen fsconfig fsmount fspick pidfd_open clone3 close_range openat2 pidfd_getfd
        faccessat2 process_madvise epoll_pwait2 mount_setattr quotactl_fd
        landlock_create_ruleset landlock_add_rule landlock_restrict_self memfd_secret
        process_mrelease futex_waitv set_mempolicy_home_node cachestat fchmodat2
        map_shadow_stack futex_wake futex_wait futex_requeue statmount listmount
        lsm_get_self_attr lsm_set_self_attr lsm_list_modules mseal setxattrat getxattrat
        listxattrat removexattrat open_tree_attr file_getattr file_setattr"""),
    ),
}
"""Syscall names in number order per architecture, from the kernel's uapi tables (Linux 6.1
headers, then 6.2 to 6.18 by hand): (first number, names). Gaps are unassigned."""


_tables: dict[str, dict[str, int]] = {}


def syscall_numbers(arch: str) -> dict[str, int]:
    """Syscall name -> number on arch; raises PlanError for an architecture without a table."""
    table = _tables.get(arch)
    if table is None:
        if arch not in SYSCALLS:
            raise PlanError(f"seccomp: no syscall table for architecture '{arch}' (redpak knows "
                            f"{', '.join(SYSCALLS)}): remove the seccomp section to launch")
        table = {name: start + i for start, names in SYSCALLS[arch]
                 for i, name in enumerate(names.split())}
        _tables[arch] = table
    return table


# Classic BPF (linux/filter.h, linux/seccomp.h).
_LD_W_ABS, _JA, _JEQ, _JGT, _JGE, _JSET, _RET_K = 0x20, 0x05, 0x15, 0x25, 0x35, 0x45, 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16


class _Asm:
    """A tiny assembler: conditional jumps to labels, in the short form (8-bit offsets)
    when the label is close enough, else through an unconditional jump."""

    def __init__(self) -> None:
        self.code: list[tuple] = []

    def ld(self, offset: int) -> None:
        self.code.append(("op", _LD_W_ABS, 0, 0, offset))

    def ret(self, value: int) -> None:
        self.code.append(("op", _RET_K, 0, 0, value))

    def label(self, name: str) -> None:
        self.code.append(("label", name))

    def jump_if(self, op: int, k: int, target: str) -> None:
        """If (A op k) go to target, else fall through."""
        self.code.append(("jump", op, k, target, True))

    def jump_unless(self, op: int, k: int, target: str) -> None:
        """If not (A op k) go to target, else fall through."""
        self.code.append(("jump", op, k, target, False))

    def assemble(self) -> bytes:
        long: set[int] = set()
        while True:
            addr, labels, pos = {}, {}, 0
            for i, item in enumerate(self.code):
                addr[i] = pos
                if item[0] == "label":
                    labels[item[1]] = pos
                else:
                    pos += 2 if i in long else 1
            grown = False
            for i, item in enumerate(self.code):
                if item[0] == "jump" and i not in long and labels[item[3]] - addr[i] - 1 > 255:
                    long.add(i)
                    grown = True
            if not grown:
                break
        out = bytearray()
        for i, item in enumerate(self.code):
            if item[0] == "label":
                continue
            if item[0] == "op":
                out += struct.pack("<HBBI", item[1], item[2], item[3], item[4])
                continue
            _, op, k, target, when = item
            if i in long:  # the condition skips or takes the `ja` that follows
                out += struct.pack("<HBBI", op, 0 if when else 1, 1 if when else 0, k)
                out += struct.pack("<HBBI", _JA, 0, 0, labels[target] - addr[i] - 2)
            else:
                off = labels[target] - addr[i] - 1
                out += struct.pack("<HBBI", op, off if when else 0, 0 if when else off, k)
        return bytes(out)


def _dispatch(a: _Asm, entries: list[tuple[int, str]], lo: int, hi: int) -> None:
    """A binary search on the syscall number over entries[lo:hi] (sorted), then equality
    tests: a few comparisons per syscall instead of one per rule. The kernel runs the
    filter for every syscall number when it is installed (its allow cache), so this keeps
    the install cheap too."""
    if hi - lo <= 4:
        for number, target in entries[lo:hi]:
            a.jump_if(_JEQ, number, target)
        a.ret(RET_ALLOW)
        return
    mid = (lo + hi) // 2
    upper = f"ge-{entries[mid][0]}"
    a.jump_if(_JGE, entries[mid][0], upper)
    _dispatch(a, entries, lo, mid)
    a.label(upper)
    _dispatch(a, entries, mid, hi)


def seccomp_program(arch: str, rules: dict[str, str], errno: int) -> bytes:
    """A filter for arch denying, per syscall name, as its rule says (DENY, NS_FLAGS,
    UNSHARE_FLAGS, TTY_IOCTLS, PERSONALITY, ENOSYS) with errno, allowing everything else.
    Raises PlanError for a name unknown on arch."""
    numbers = syscall_numbers(arch)
    a = _Asm()
    a.ld(_OFF_ARCH)
    a.jump_unless(_JEQ, AUDIT_ARCH[arch], "deny")
    a.ld(_OFF_NR)
    if arch == "x86_64":
        a.jump_if(_JSET, X32_SYSCALL_BIT, "deny")
    a.jump_if(_JGT, max(numbers.values()), "enosys")
    entries = []
    specials = []
    for name, rule in sorted(rules.items(), key=lambda item: numbers[item[0]]):
        target = {DENY: "deny", ENOSYS: "enosys"}.get(rule, f"arg-{name}")
        entries.append((numbers[name], target))
        if target.startswith("arg-"):
            specials.append((name, rule))
    _dispatch(a, entries, 0, len(entries))
    for name, rule in specials:
        a.label(f"arg-{name}")
        if rule == TTY_IOCTLS:
            # ioctl's request is an unsigned int: compare the low 32 bits only, so bits set
            # above them cannot slip past (CVE-2019-10063)
            a.ld(_OFF_ARGS + 8)
            a.jump_if(_JEQ, TIOCSTI, "deny")
            a.jump_if(_JEQ, TIOCLINUX, "deny")
        elif rule in (NS_FLAGS, UNSHARE_FLAGS):
            a.ld(_OFF_ARGS)  # the flags are the low word of the first argument
            a.jump_if(_JSET, NS_CLONE_FLAGS | (CLONE_NEWTIME if rule == UNSHARE_FLAGS else 0),
                      "deny")
        elif rule == PERSONALITY:
            a.ld(_OFF_ARGS)
            for value in SAFE_PERSONALITIES:
                a.jump_if(_JEQ, value, "allow")
            a.ret(RET_ERRNO | errno)
            continue
        else:
            raise PlanError(f"seccomp: unknown rule {rule!r} for {name}")  # pragma: no cover
        a.ret(RET_ALLOW)
    a.label("deny")
    a.ret(RET_ERRNO | errno)
    a.label("enosys")
    a.ret(RET_ERRNO | 38)  # ENOSYS
    a.label("allow")
    a.ret(RET_ALLOW)
    return a.assemble()


def _errno_number(text: str | None, origin: Origin | None) -> int:
    if text is None:
        return 1  # EPERM
    if text.isdigit():
        return int(text)
    import errno as _errno
    value = getattr(_errno, text, None)
    if not isinstance(value, int):
        where = origin.describe() if origin else "seccomp"
        raise PlanError(f"seccomp.errno: '{text}' ({where}) is not an errno name of this system "
                        "(write e.g. EPERM, EACCES, or a number)")
    return value


def _unknown_syscall(name: str, what: str, where: str, arch: str, warnings: list[str]) -> bool:
    """True if name is no syscall of arch: a warning when another architecture has it."""
    if name in syscall_numbers(arch):
        return False
    if any(name in syscall_numbers(other) for other in SYSCALLS if other != arch):
        warnings.append(f"seccomp.{what}: '{name}' ({where}) is no syscall on {arch}: ignored")
        return True
    import difflib
    close = difflib.get_close_matches(name, list(syscall_numbers(arch)), n=1)
    raise PlanError(f"seccomp.{what}: '{name}' ({where}) is not a syscall"
                    + (f" (did you mean {close[0]}?)" if close else ""))


def compile_seccomp(fam: FamilyConfig, arch: str, warnings: list[str],
                    tty_guard: bool = False) -> tuple[bytes, ...]:
    """The family's filter: every node with the default profile denies it minus its own
    allows (a node never relaxes an ancestor's profile), plus every node's denials; none if
    nothing is denied. With tty_guard (the node shares the caller's terminal), TIOCSTI and
    TIOCLINUX are refused whatever the profile and the allows say. Raises PlanError on an
    unknown syscall or errno."""
    rules: dict[str, str] = {}
    for node in fam.seccomp.per_node:
        profile, allow = node.profile, node.allow
        where = f"node '{node.alias}' ({node.path})"
        for name in allow:
            _unknown_syscall(name, "allow", where, arch, warnings)
        if profile == "default":
            for name, (rule, _why) in DEFAULT_PROFILE.items():
                if name not in allow and name in syscall_numbers(arch):
                    rules.setdefault(name, rule)
    for sourced in fam.seccomp.deny:
        where = sourced.origin.describe() if sourced.origin else "seccomp"
        if not _unknown_syscall(sourced.value, "deny", where, arch, warnings):
            rules[sourced.value] = DENY  # a denial by name covers every argument
    if tty_guard:
        rules.setdefault("ioctl", TTY_IOCTLS)
    if not rules:
        return ()
    errno = _errno_number(fam.seccomp.errno.value if fam.seccomp.errno else None,
                          fam.seccomp.errno.origin if fam.seccomp.errno else None)
    return (seccomp_program(arch, rules, errno),)


# ---- Landlock -----------------------------------------------------------------------------

LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
LL_REMOVE_DIR, LL_REMOVE_FILE, LL_MAKE_CHAR, LL_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
LL_MAKE_REG, LL_MAKE_SOCK, LL_MAKE_FIFO, LL_MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
LL_MAKE_SYM, LL_REFER, LL_TRUNCATE, LL_IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
"""LANDLOCK_ACCESS_FS_* (linux/landlock.h; REFER: ABI 2, TRUNCATE: ABI 3, IOCTL_DEV: ABI 5).
The C core masks them with what the running kernel's ABI handles."""

LL_RO = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR
LL_RW = (1 << 16) - 1
LL_PROC = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR | LL_WRITE_FILE  # /proc/self/exe, knobs
LL_DEV = LL_READ_FILE | LL_WRITE_FILE | LL_READ_DIR | LL_IOCTL_DEV
LL_FILE_RO = LL_READ_FILE


def compile_landlock(fam: FamilyConfig, mounts: Sequence[Mount]) -> tuple[LandlockRule, ...]:
    """Rules granting what each mount op exports (read-only for read-only ones), plus listing
    directories from the root; none unless the family enables Landlock."""
    if not (fam.landlock is not None and fam.landlock.value):
        return ()
    rules = [LandlockRule("/", LL_READ_DIR)]
    for m in mounts:
        ro = bool(m.flags & MountFlag.RDONLY)
        flags = LANDLOCK_OPTIONAL if m.flags & MountFlag.OPTIONAL else 0
        if m.kind in (MountKind.BIND, MountKind.BIND_FILE):
            rules.append(LandlockRule(m.target, LL_RO if ro else LL_RW, flags))
        elif m.kind in (MountKind.DIR, MountKind.TMPFS, MountKind.MQUEUE):
            rules.append(LandlockRule(m.target, LL_RW))
        elif m.kind is MountKind.PROC:
            rules.append(LandlockRule(m.target, LL_PROC))
        elif m.kind is MountKind.DEV:
            rules.append(LandlockRule(m.target, LL_DEV))
            rules.append(LandlockRule(m.target.rstrip("/") + "/shm", LL_RW))
        elif m.kind in (MountKind.DATA, MountKind.EXECFD, MountKind.FD):
            rules.append(LandlockRule(m.target, LL_FILE_RO))
        # SYMLINK: access is checked on what the link leads to; LOCK: held by the launcher
    return tuple(rules)


# ---- SMACK --------------------------------------------------------------------------------

_SMACK_BAD = set(" \t\n\r\f\v/\\'\"")


def compile_smack(fam: FamilyConfig, cli_label: str | None, host: Host,
                  warnings: list[str]) -> Smack | None:
    """The program's label: -S/--smack (never optional) or the family's root-most one.
    Raises PlanError on a label SMACK cannot hold."""
    if cli_label:
        label, where, optional = cli_label, "-S/--smack", False
    elif fam.smack is not None and fam.smack.value:
        label = fam.smack.value
        where = fam.smack.origin.describe() if fam.smack.origin else "smack"
        optional = fam.smack_optional
    else:
        return None
    if not 0 < len(label.encode()) <= 255 or label.startswith("-") \
            or any(c in _SMACK_BAD or not c.isprintable() for c in label):
        raise PlanError(f"smack: '{label}' ({where}) is not a SMACK label (1 to 255 printable "
                        "characters, none of them blank, / \\ ' or \", not starting with -)")
    if optional and not host.smack:
        warnings.append(f"smack: this kernel has no SMACK; the label '{label}' is optional "
                        f"({where}): the program runs unlabelled")
    return Smack(label, optional)


# ---- all of them --------------------------------------------------------------------------

@record(frozen=True)
class Controls:
    """The plan fields of a launch's resource and access controls."""

    seccomp: tuple[bytes, ...] = ()
    landlock: tuple[LandlockRule, ...] = ()
    cgroup: tuple[CgroupOp, ...] = ()
    smack: Smack | None = None
    warnings: tuple[str, ...] = ()


def needs_host(fam: FamilyConfig, cli_smack: str | None = None) -> bool:
    """True if compiling fam's controls reads the machine (cgroups or SMACK are asked for)."""
    return bool(cli_smack or (fam.smack is not None and fam.smack.value)
                or any(any(getattr(s.value, f) not in (None, "") for f in _CG_FIELDS)
                       for s in fam.cgroups))


def compile_controls(fam: FamilyConfig, mounts: Sequence[Mount], host: Host,
                     cli_smack: str | None = None) -> Controls:
    """Compile every control of an expanded family for host; raises PlanError naming the
    key and the node when a control cannot be enforced as asked."""
    warnings: list[str] = []
    return Controls(
        seccomp=compile_seccomp(fam, host.arch, warnings),
        landlock=compile_landlock(fam, mounts),
        cgroup=compile_cgroups(fam, host),
        smack=compile_smack(fam, cli_smack, host, warnings),
        warnings=tuple(warnings))


__all__ = ["Controls", "DEFAULT_PROFILE", "Hierarchy", "Host", "SYSCALLS", "compile_cgroups",
           "compile_controls", "compile_landlock", "compile_seccomp", "compile_smack",
           "needs_host", "probe_host", "seccomp_program", "syscall_numbers"]
