"""The launch plan: frozen records and their binary encoding for the C core.

The layout is documented in csrc/redpak.h and docs/plan-format.md; keep the three in step.
Only the standard library's struct is used, so the launch path stays light.
"""

from __future__ import annotations

import enum
import struct

from redpak.errors import PlanError
from redpak.record import field, record

MAGIC = b"REDPLAN\0"
VERSION = 1
SLOTS = 16
HEADER_SIZE = 40 + 16 * SLOTS
MAX_SIZE = 64 << 20
MAX_LOCKS = 16


class Ns(enum.IntFlag):
    """Namespaces (RP_NS_*). MNT is always new."""

    USER = 0x01
    MNT = 0x02
    PID = 0x04
    NET = 0x08
    IPC = 0x10
    UTS = 0x20
    CGROUP = 0x40
    TIME = 0x80


class MountKind(enum.IntEnum):
    """Mount ops (enum rp_mount_kind), applied in plan order inside the new tmpfs root."""

    BIND = 0
    BIND_FILE = 1
    DIR = 2
    SYMLINK = 3
    TMPFS = 4
    PROC = 5
    DEV = 6
    MQUEUE = 7
    DATA = 8
    EXECFD = 9
    FD = 10
    LOCK = 11


class MountFlag(enum.IntFlag):
    """RP_MOUNT_* flags of one mount op."""

    RDONLY = 0x01
    OPTIONAL = 0x02
    NO_SYMLINKS = 0x04
    LOCK_EXCL = 0x08
    LOCK_WAIT = 0x10
    NOEXEC = 0x20
    BENEATH = 0x40  # binds: `data` is the node directory holding the source (no symlink below)


class EnvAction(enum.IntEnum):
    """Environment ops (enum rp_env_op), applied in plan order at launch."""

    SET = 0
    UNSET = 1
    INHERIT = 2
    EXECFD = 3


class CgroupAction(enum.IntEnum):
    """Parent-side cgroup ops (enum rp_cgroup_op_kind): MKDIR path; WRITE path/file value;
    ATTACH path file (the node's own cgroup path/run-<pid>.<id>, joined through `file`);
    COPY path/file from the parent directory; CHECK that the launcher's /proc/self/cgroup
    line `file` is `value`."""

    MKDIR = 0
    WRITE = 1
    ATTACH = 2
    COPY = 3
    CHECK = 4


_PROC_DIE_WITH_PARENT = 0x0001
_PROC_NEW_SESSION = 0x0002
_PROC_INHERIT_ENV = 0x0004
_PROC_SET_UID = 0x0008
_PROC_SET_GID = 0x0010
_PROC_DROP_GROUPS = 0x0020
_PROC_SETGROUPS_DENY = 0x0040
_PROC_SET_UMASK = 0x0080
_PROC_CACHEABLE = 0x0100
_ENV_DEP_UNSET = 0x1
_SMACK_OPTIONAL = 0x1

_HEADER = struct.Struct("<8sIIQQII")
_SECTION = struct.Struct("<IIII")
_PROCESS = struct.Struct("<12I5Q")
_JOIN = struct.Struct("<II")
_MOUNT = struct.Struct("<IIIiIIII")
_ENV = struct.Struct("<IIII")
_KEEP_FD = struct.Struct("<iI")
_FILE_DEP = struct.Struct("<IIQQQq")
_ENV_DEP = struct.Struct("<IIII")
_SECCOMP = struct.Struct("<IIII")
_LANDLOCK = struct.Struct("<QII")
_CGROUP = struct.Struct("<IIII")
_SMACK = struct.Struct("<II")

# Section slots in file order (enum rp_section); None = byte sections.
_S_STRINGS, _S_BLOBS, _S_PROCESS, _S_JOINS, _S_MOUNTS, _S_ENV, _S_KEEP_FDS = range(7)
_S_FILE_DEPS, _S_ENV_DEPS, _S_SECCOMP, _S_LANDLOCK, _S_CGROUP, _S_SMACK = range(7, 13)
_RECORD_SIZES = (1, 1, _PROCESS.size, _JOIN.size, _MOUNT.size, _ENV.size, _KEEP_FD.size,
                 _FILE_DEP.size, _ENV_DEP.size, _SECCOMP.size, _LANDLOCK.size, _CGROUP.size,
                 _SMACK.size)
_NAMES = ("strings", "blobs", "process", "joins", "mounts", "env", "keep_fds", "file_deps",
          "env_deps", "seccomp", "landlock", "cgroup", "smack")


NO_FLAGS = MountFlag(0)


@record(frozen=True)
class Join:
    """setns() into the namespace file `path` (e.g. /proc/1234/ns/net)."""

    ns: Ns
    path: str


@record(frozen=True)
class Mount:
    """One mount op. `source` is a host path (binds), link text (SYMLINK), a shell command
    (EXECFD) or extra options (TMPFS); `data` is the content of a DATA file."""

    kind: MountKind
    target: str
    source: str = ""
    flags: MountFlag = NO_FLAGS
    mode: int = 0
    fd: int = -1
    data: bytes = b""


@record(frozen=True)
class EnvOp:
    """One environment op: SET name=value, UNSET name, INHERIT name, EXECFD name=$(value)."""

    action: EnvAction
    name: str
    value: str = ""


@record(frozen=True)
class Caps:
    """Capability sets as 64-bit masks (bit N = capability N), applied exactly."""

    bounding: int = 0
    permitted: int = 0
    effective: int = 0
    inheritable: int = 0
    ambient: int = 0


@record(frozen=True)
class FileDep:
    """A file whose stat() must still match for a cached plan to be reused."""

    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int


@record(frozen=True)
class EnvDep:
    """A caller environment variable that must still hold `value` (None: must be unset)."""

    name: str
    value: str | None


LANDLOCK_OPTIONAL = 0x1
"""LandlockRule flag: the path may be missing in the node (then no rule)."""


@record(frozen=True)
class LandlockRule:
    """Landlock access rights (LANDLOCK_ACCESS_FS_* bits) granted beneath a node path."""

    path: str
    access: int
    flags: int = 0


@record(frozen=True)
class CgroupOp:
    """One cgroup op run by the launcher (see CgroupAction)."""

    action: CgroupAction
    path: str
    file: str = ""
    value: str = ""


@record(frozen=True)
class Smack:
    """The program's SMACK label; optional: run unlabelled where the kernel has no SMACK."""

    label: str
    optional: bool = False


@record(frozen=True)
class LaunchPlan:
    """Everything the C core needs to start a node, in the order it applies it."""

    namespaces: Ns = Ns.MNT
    joins: tuple[Join, ...] = ()
    uid_map: str = ""
    gid_map: str = ""
    setgroups_deny: bool = False
    uid: int | None = None
    gid: int | None = None
    drop_groups: bool = False
    hostname: str = ""
    chdir: str = ""
    umask: int | None = None
    die_with_parent: bool = False
    new_session: bool = False
    caps: Caps = field(default_factory=Caps)
    mounts: tuple[Mount, ...] = ()
    inherit_env: bool = False
    env: tuple[EnvOp, ...] = ()
    keep_fds: tuple[int, ...] = ()
    execfd_timeout_ms: int = 0
    seccomp: tuple[bytes, ...] = ()
    landlock: tuple[LandlockRule, ...] = ()
    cgroup: tuple[CgroupOp, ...] = ()
    smack: Smack | None = None
    cacheable: bool = False
    caller_uid: int = 0
    caller_gid: int = 0
    file_deps: tuple[FileDep, ...] = ()
    env_deps: tuple[EnvDep, ...] = ()

    def encode(self) -> bytes:
        """The binary plan the C core reads; raises PlanError on values it cannot hold."""
        return _Encoder(self).run()

    @staticmethod
    def decode(data: bytes) -> LaunchPlan:
        """Parses a binary plan; raises PlanError if it is corrupt, truncated or unknown."""
        try:
            return _decode(bytes(data))
        except PlanError:
            raise
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as err:
            raise PlanError(f"invalid launch plan: {err}") from err

    def dump(self) -> str:
        """Readable, stable text of the plan (redwrap --dump, golden tests)."""
        return _dump(self)


# ---- encoding --------------------------------------------------------------------------

def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _u32(value: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise PlanError(f"launch plan: {what} {value!r} is not a 32-bit unsigned number")
    return value


def _u64(value: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise PlanError(f"launch plan: {what} {value!r} is not a 64-bit unsigned number")
    return value


def _abs(path: str, what: str) -> str:
    if not path.startswith("/") or "\0" in path:
        raise PlanError(f"launch plan: {what} {path!r} must be an absolute path")
    return path


class _Encoder:
    def __init__(self, plan: LaunchPlan):
        self.plan = plan
        self.strings = bytearray(b"\0")
        self.index: dict[str, int] = {"": 0}
        self.blobs = bytearray()

    def s(self, value: str) -> int:
        ref = self.index.get(value)
        if ref is None:
            raw = _enc(value)
            if b"\0" in raw:
                raise PlanError(f"launch plan: string {value!r} holds a NUL byte")
            ref = len(self.strings)
            self.strings += raw + b"\0"
            self.index[value] = ref
        return ref

    def blob(self, data: bytes) -> tuple[int, int]:
        if not data:
            return 0, 0
        off = len(self.blobs)
        self.blobs += data
        return off, len(data)

    def process(self) -> bytes:
        p = self.plan
        flags = ((_PROC_DIE_WITH_PARENT if p.die_with_parent else 0)
                 | (_PROC_NEW_SESSION if p.new_session else 0)
                 | (_PROC_INHERIT_ENV if p.inherit_env else 0)
                 | (_PROC_SET_UID if p.uid is not None else 0)
                 | (_PROC_SET_GID if p.gid is not None else 0)
                 | (_PROC_DROP_GROUPS if p.drop_groups else 0)
                 | (_PROC_SETGROUPS_DENY if p.setgroups_deny else 0)
                 | (_PROC_SET_UMASK if p.umask is not None else 0)
                 | (_PROC_CACHEABLE if p.cacheable else 0))
        if not p.namespaces & Ns.MNT:
            raise PlanError("launch plan: the mount namespace must be new (Ns.MNT)")
        if (p.uid_map or p.gid_map) and not p.namespaces & Ns.USER:
            raise PlanError("launch plan: uid_map/gid_map need a new user namespace (Ns.USER)")
        if p.umask is not None and not 0 <= p.umask <= 0o777:
            raise PlanError(f"launch plan: umask {p.umask:#o} out of range")
        if p.chdir:
            _abs(p.chdir, "chdir")
        c = p.caps
        if c.ambient & ~(c.permitted & c.inheritable) or c.effective & ~c.permitted:
            raise PlanError("launch plan: ambient caps must be permitted and inheritable, "
                            "effective caps permitted")
        return _PROCESS.pack(
            flags, int(p.namespaces), _u32(p.uid or 0, "uid"), _u32(p.gid or 0, "gid"),
            p.umask or 0, self.s(p.hostname), self.s(p.chdir), self.s(p.uid_map),
            self.s(p.gid_map), _u32(p.caller_uid, "caller_uid"), _u32(p.caller_gid, "caller_gid"),
            _u32(p.execfd_timeout_ms, "execfd_timeout_ms"), _u64(c.bounding, "caps"),
            _u64(c.permitted, "caps"), _u64(c.effective, "caps"), _u64(c.inheritable, "caps"),
            _u64(c.ambient, "caps"))

    def mount(self, m: Mount) -> bytes:
        kind = MountKind(m.kind)
        _abs(m.target, "mount target")
        if kind in (MountKind.BIND, MountKind.BIND_FILE):
            _abs(m.source, "bind source")
        if m.flags & MountFlag.BENEATH:
            top = m.data.decode("utf-8", "surrogateescape")
            if (kind not in (MountKind.BIND, MountKind.BIND_FILE) or not top.startswith("/")
                    or not m.source.startswith(top.rstrip("/") + "/")):
                raise PlanError(f"launch plan: op at {m.target}: 'beneath' needs a bind whose "
                                "source lies in the directory its data names")
        if kind in (MountKind.SYMLINK, MountKind.EXECFD) and not m.source:
            raise PlanError(f"launch plan: {kind.name.lower()} op at {m.target} needs a source")
        if (kind == MountKind.FD) != (m.fd >= 0) or m.fd < -1:
            raise PlanError(f"launch plan: op at {m.target}: only FD ops take a descriptor")
        if not 0 <= m.mode <= 0o7777:
            raise PlanError(f"launch plan: op at {m.target}: mode {m.mode:#o} out of range")
        off, length = self.blob(m.data)
        return _MOUNT.pack(kind, int(m.flags), m.mode, m.fd, self.s(m.source),
                           self.s(m.target), off, length)

    def env(self, e: EnvOp) -> bytes:
        if not e.name or "=" in e.name:
            raise PlanError(f"launch plan: environment name {e.name!r} is empty or holds '='")
        return _ENV.pack(EnvAction(e.action), self.s(e.name), self.s(e.value), 0)

    def run(self) -> bytes:
        p = self.plan
        if sum(1 for m in p.mounts if m.kind == MountKind.LOCK) > MAX_LOCKS:
            raise PlanError(f"launch plan: more than {MAX_LOCKS} lock ops")
        for fd in p.keep_fds:
            if fd < 3:
                raise PlanError(f"launch plan: kept descriptor {fd} must be 3 or more")
        sections: list[tuple[int, bytes]] = [
            (1, self.process()),
            (len(p.joins), b"".join(
                _JOIN.pack(_ns_bit(j.ns), self.s(_abs(j.path, "namespace path")))
                for j in p.joins)),
            (len(p.mounts), b"".join(self.mount(m) for m in p.mounts)),
            (len(p.env), b"".join(self.env(e) for e in p.env)),
            (len(p.keep_fds), b"".join(_KEEP_FD.pack(fd, 0) for fd in p.keep_fds)),
            (len(p.file_deps), b"".join(
                _FILE_DEP.pack(self.s(_abs(d.path, "dependency")), 0, d.dev, d.ino, d.size,
                               d.mtime_ns) for d in p.file_deps)),
            (len(p.env_deps), b"".join(
                _ENV_DEP.pack(self.s(d.name), self.s(d.value or ""),
                              _ENV_DEP_UNSET if d.value is None else 0, 0) for d in p.env_deps)),
            (len(p.seccomp), b"".join(self.seccomp(prog) for prog in p.seccomp)),
            (len(p.landlock), b"".join(
                _LANDLOCK.pack(_u64(r.access, "landlock access"), self.s(_abs(r.path, "landlock")),
                               _u32(r.flags, "landlock flags")) for r in p.landlock)),
            (len(p.cgroup), b"".join(
                _CGROUP.pack(CgroupAction(c.action), self.s(_abs(c.path, "cgroup")),
                             self.s(c.file), self.s(c.value)) for c in p.cgroup)),
            (1 if p.smack else 0, _SMACK.pack(self.s(p.smack.label),
                                              _SMACK_OPTIONAL if p.smack.optional else 0)
             if p.smack else b""),
        ]
        # Strings and blobs last in the code (records intern into them) but first in the file.
        sections = [(len(self.strings), bytes(self.strings)),
                    (len(self.blobs), bytes(self.blobs))] + sections
        table = []
        body = bytearray()
        pos = HEADER_SIZE
        for count, raw in sections:
            if count == 0:
                table.append(_SECTION.pack(0, 0, _RECORD_SIZES[len(table)], 0))
                continue
            table.append(_SECTION.pack(pos, count, _RECORD_SIZES[len(table)], 0))
            raw += b"\0" * (-len(raw) % 8)
            body += raw
            pos += len(raw)
        table += [_SECTION.pack(0, 0, 0, 0)] * (SLOTS - len(table))
        total = HEADER_SIZE + len(body)
        if total > MAX_SIZE:
            raise PlanError(f"launch plan: {total} bytes is over the {MAX_SIZE} byte limit")
        rest = struct.pack("<II", 0, SLOTS) + b"".join(table) + bytes(body)
        return MAGIC + struct.pack("<IIQQ", VERSION, HEADER_SIZE, total, fnv1a64(rest)) + rest

    def seccomp(self, prog: bytes) -> bytes:
        if not prog or len(prog) % 8:
            raise PlanError("launch plan: a seccomp program is a non-empty array of 8-byte "
                            "BPF instructions")
        off, length = self.blob(prog)
        return _SECCOMP.pack(off, length, 0, 0)


def _fnv1a64_py(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64-bit hash: the plan checksum (the C core's when built, ~60x faster)."""
    global _fnv
    if _fnv is None:
        try:
            from redpak._core import checksum as _fnv
        except ImportError:
            _fnv = _fnv1a64_py
    return _fnv(data)


_fnv = None


def _ns_bit(ns: Ns) -> int:
    v = int(ns)
    if v == 0 or v & (v - 1) or v == Ns.MNT or v & ~0xFF:
        raise PlanError(f"launch plan: join needs exactly one namespace other than mnt, got {ns!r}")
    return v


# ---- decoding --------------------------------------------------------------------------

def _decode(data: bytes) -> LaunchPlan:
    if len(data) < HEADER_SIZE:
        raise PlanError(f"invalid launch plan: {len(data)} bytes is shorter than its header")
    magic, version, hsize, total, checksum, flags, nsec = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise PlanError("invalid launch plan: bad magic (not a redpak plan)")
    if version != VERSION:
        raise PlanError(f"invalid launch plan: unsupported version {version}")
    if hsize != HEADER_SIZE or nsec != SLOTS or flags:
        raise PlanError("invalid launch plan: unexpected header size, section count or flags")
    if total != len(data):
        raise PlanError(f"invalid launch plan: size {len(data)} != {total} (truncated?)")
    if fnv1a64(data[32:]) != checksum:
        raise PlanError("invalid launch plan: checksum mismatch (corrupt)")
    secs = []
    end = HEADER_SIZE
    for i in range(SLOTS):
        off, count, rsize, reserved = _SECTION.unpack_from(data, 40 + 16 * i)
        if i >= len(_RECORD_SIZES):
            if off or count or rsize or reserved:
                raise PlanError(f"invalid launch plan: reserved section slot {i} in use")
            continue
        if rsize != _RECORD_SIZES[i] or reserved or (count == 0 and off):
            raise PlanError(f"invalid launch plan: section {_NAMES[i]} malformed")
        if count:
            if off % 8 or off < end or off + count * rsize > len(data):
                raise PlanError(f"invalid launch plan: section {_NAMES[i]} out of bounds")
            end = off + count * rsize
        secs.append((off, count))
    if (end + 7) & ~7 != len(data) or any(data[end:]):
        raise PlanError("invalid launch plan: total size does not end at the last section")

    def records(slot: int, st: struct.Struct) -> list[tuple]:
        off, count = secs[slot]
        return [st.unpack_from(data, off + k * st.size) for k in range(count)]

    soff, scount = secs[_S_STRINGS]
    strings = data[soff:soff + scount]
    boff, bcount = secs[_S_BLOBS]
    blobs = data[boff:boff + bcount]
    if not strings or strings[0] or strings[-1]:
        raise PlanError("invalid launch plan: string table must start and end with NUL")

    def s(ref: int) -> str:
        if ref >= len(strings):
            raise PlanError(f"invalid launch plan: string reference {ref} out of table")
        return _dec(strings[ref:strings.index(b"\0", ref)])

    def blob(off: int, length: int) -> bytes:
        if off + length > len(blobs):
            raise PlanError("invalid launch plan: blob reference out of table")
        return blobs[off:off + length]

    proc = records(_S_PROCESS, _PROCESS)
    if len(proc) != 1:
        raise PlanError("invalid launch plan: process section must hold one record")
    (pflags, new_ns, uid, gid, umask, hostname, chdir, uid_map, gid_map, caller_uid,
     caller_gid, timeout, *caps) = proc[0]
    if pflags & ~0x1FF or new_ns & ~0xFF or not new_ns & Ns.MNT:
        raise PlanError("invalid launch plan: unknown process flags or namespaces")
    smack = records(_S_SMACK, _SMACK)
    if len(smack) > 1:
        raise PlanError("invalid launch plan: more than one smack label")
    return LaunchPlan(
        namespaces=Ns(new_ns),
        joins=tuple(Join(Ns(_ns_bit_checked(t)), s(p)) for t, p in records(_S_JOINS, _JOIN)),
        uid_map=s(uid_map), gid_map=s(gid_map),
        setgroups_deny=bool(pflags & _PROC_SETGROUPS_DENY),
        uid=uid if pflags & _PROC_SET_UID else None,
        gid=gid if pflags & _PROC_SET_GID else None,
        drop_groups=bool(pflags & _PROC_DROP_GROUPS),
        hostname=s(hostname), chdir=s(chdir),
        umask=umask if pflags & _PROC_SET_UMASK else None,
        die_with_parent=bool(pflags & _PROC_DIE_WITH_PARENT),
        new_session=bool(pflags & _PROC_NEW_SESSION),
        caps=Caps(*caps),
        mounts=tuple(Mount(MountKind(k), s(t), s(src), MountFlag(fl), mode, fd, blob(do, dl))
                     for k, fl, mode, fd, src, t, do, dl in records(_S_MOUNTS, _MOUNT)),
        inherit_env=bool(pflags & _PROC_INHERIT_ENV),
        env=tuple(EnvOp(EnvAction(a), s(n), s(v)) for a, n, v, _ in records(_S_ENV, _ENV)),
        keep_fds=tuple(fd for fd, _ in records(_S_KEEP_FDS, _KEEP_FD)),
        execfd_timeout_ms=timeout,
        seccomp=tuple(blob(o, n) for o, n, _, _ in records(_S_SECCOMP, _SECCOMP)),
        landlock=tuple(LandlockRule(s(p), a, f) for a, p, f in records(_S_LANDLOCK, _LANDLOCK)),
        cgroup=tuple(CgroupOp(CgroupAction(a), s(p), s(f), s(v))
                     for a, p, f, v in records(_S_CGROUP, _CGROUP)),
        smack=Smack(s(smack[0][0]), bool(smack[0][1] & _SMACK_OPTIONAL)) if smack else None,
        cacheable=bool(pflags & _PROC_CACHEABLE),
        caller_uid=caller_uid, caller_gid=caller_gid,
        file_deps=tuple(FileDep(s(p), dev, ino, size, mt)
                        for p, _, dev, ino, size, mt in records(_S_FILE_DEPS, _FILE_DEP)),
        env_deps=tuple(EnvDep(s(n), None if f & _ENV_DEP_UNSET else s(v))
                       for n, v, f, _ in records(_S_ENV_DEPS, _ENV_DEP)),
    )


def _ns_bit_checked(v: int) -> int:
    return _ns_bit(Ns(v & 0xFF) if v <= 0xFF else v)


# ---- dump ------------------------------------------------------------------------------

_NS_ORDER = (Ns.USER, Ns.MNT, Ns.PID, Ns.NET, Ns.IPC, Ns.UTS, Ns.CGROUP, Ns.TIME)


def _ns_names(ns: int) -> str:
    return " ".join(n.name.lower() for n in _NS_ORDER if ns & n) or "-"


def _flag_names(flags: int) -> str:
    return ",".join(f.name.lower() for f in MountFlag if flags & f)


def _caps(mask: int) -> str:
    return f"{mask:#018x}"


def _dump(p: LaunchPlan) -> str:
    q = repr
    out = [f"redpak launch plan v{VERSION}", f"namespaces: {_ns_names(p.namespaces)}"]
    out += [f"join {_ns_names(j.ns)} {q(j.path)}" for j in p.joins]
    if p.uid_map or p.gid_map or p.setgroups_deny:
        out.append(f"userns: uid_map {q(p.uid_map)} gid_map {q(p.gid_map)} setgroups "
                   + ("deny" if p.setgroups_deny else "allow"))
    ident = []
    if p.uid is not None:
        ident.append(f"uid {p.uid}")
    if p.gid is not None:
        ident.append(f"gid {p.gid}")
    if p.drop_groups:
        ident.append("drop-groups")
    out.append("identity: " + (" ".join(ident) or "unchanged"))
    out.append(f"process: hostname {q(p.hostname)} chdir {q(p.chdir)} umask "
               + (f"{p.umask:04o}" if p.umask is not None else "unchanged")
               + (" die-with-parent" if p.die_with_parent else "")
               + (" new-session" if p.new_session else ""))
    c = p.caps
    out.append(f"caps: bounding {_caps(c.bounding)} permitted {_caps(c.permitted)} "
               f"effective {_caps(c.effective)} inheritable {_caps(c.inheritable)} "
               f"ambient {_caps(c.ambient)}")
    for i, m in enumerate(p.mounts):
        line = f"mount[{i}] {m.kind.name.lower()} {q(m.target)}"
        if m.source:
            line += f" source {q(m.source)}"
        if m.flags & ~MountFlag.BENEATH:
            line += f" flags {_flag_names(m.flags & ~MountFlag.BENEATH)}"
        if m.mode:
            line += f" mode {m.mode:04o}"
        if m.fd >= 0:
            line += f" fd {m.fd}"
        if m.data and m.flags & MountFlag.BENEATH:
            line += f" beneath {q(m.data.decode('utf-8', 'surrogateescape'))}"
        elif m.data:
            line += f" data {q(m.data)}"
        out.append(line)
    out.append("env: " + ("inherit caller" if p.inherit_env else "empty")
               + (f" (execfd timeout {p.execfd_timeout_ms} ms)" if p.execfd_timeout_ms else ""))
    for i, e in enumerate(p.env):
        value = "" if e.action in (EnvAction.UNSET, EnvAction.INHERIT) else f" {q(e.value)}"
        out.append(f"env[{i}] {e.action.name.lower()} {e.name}{value}")
    if p.keep_fds:
        out.append("keep fds: " + " ".join(str(fd) for fd in p.keep_fds))
    for i, prog in enumerate(p.seccomp):
        out.append(f"seccomp[{i}] {len(prog) // 8} instructions fnv1a64 {fnv1a64(prog):#018x}")
    for r in p.landlock:
        out.append(f"landlock {q(r.path)} access {r.access:#x}"
                   + (" optional" if r.flags & LANDLOCK_OPTIONAL else "")
                   + (f" flags {r.flags:#x}" if r.flags & ~LANDLOCK_OPTIONAL else ""))
    for cg in p.cgroup:
        if cg.action == CgroupAction.WRITE:
            detail = f" {cg.file}={q(cg.value)}"
        elif cg.action == CgroupAction.COPY:
            detail = f" {cg.file} from parent"
        elif cg.action == CgroupAction.CHECK:
            detail = f" hierarchy {q(cg.file or 'v2')} caller {q(cg.value)}"
        elif cg.action == CgroupAction.ATTACH and cg.file:
            detail = f" through {cg.file}"
        else:
            detail = ""
        out.append(f"cgroup {cg.action.name.lower()} {q(cg.path)}{detail}")
    if p.smack:
        out.append(f"smack {q(p.smack.label)}" + (" optional" if p.smack.optional else ""))
    out.append(f"cache: {'cacheable' if p.cacheable else 'not cacheable'} caller uid "
               f"{p.caller_uid} gid {p.caller_gid}")
    for d in p.file_deps:
        out.append(f"dep file {q(d.path)} dev {d.dev} ino {d.ino} size {d.size} "
                   f"mtime_ns {d.mtime_ns}")
    for d in p.env_deps:
        out.append(f"dep env {d.name} " + ("unset" if d.value is None else q(d.value)))
    return "\n".join(out) + "\n"
