"""LaunchPlan encoding: round trips, refusal of corrupt plans, value checks, stable dump."""

from __future__ import annotations

import struct

import pytest

from redpak.errors import PlanError
from redpak.planfile import (
    HEADER_SIZE,
    Caps,
    EnvAction,
    EnvDep,
    EnvOp,
    FileDep,
    Join,
    LaunchPlan,
    Mount,
    MountFlag,
    MountKind,
    Ns,
    Smack,
    _fnv1a64_py,
    fnv1a64,
)

RICH = LaunchPlan(
    namespaces=Ns.USER | Ns.MNT | Ns.PID | Ns.UTS,
    joins=(Join(Ns.NET, "/proc/1/ns/net"),),
    uid_map="0 1000 1\n", gid_map="0 1000 1\n", setgroups_deny=True, uid=0, gid=0,
    hostname="node", chdir="/home/me", umask=0o027, die_with_parent=True,
    caps=Caps(0x3000, 0x3000, 0x1000, 0x1000, 0x1000),
    mounts=(Mount(MountKind.BIND, "/usr", "/usr", MountFlag.RDONLY),
            Mount(MountKind.DATA, "/etc/passwd", data=b"me:x:1:1::/:/sh\n", mode=0o644),
            Mount(MountKind.FD, "/etc/fd", fd=5), Mount(MountKind.SYMLINK, "/bin", "usr/bin")),
    env=(EnvOp(EnvAction.SET, "PATH", "/bin"), EnvOp(EnvAction.INHERIT, "TERM")),
    keep_fds=(5,), seccomp=(b"\x06\0\0\0\0\0\xff\x7f",), smack=Smack("App", True),
    cacheable=True, caller_uid=1000, caller_gid=1000,
    file_deps=(FileDep("/etc/x", 1, 2, 3, 4),), env_deps=(EnvDep("HOME", "/root"),
                                                           EnvDep("NOPE", None)))


def reseal(data: bytearray) -> bytes:
    data[24:32] = struct.pack("<Q", fnv1a64(bytes(data[32:])))
    return bytes(data)


def test_round_trip_is_exact():
    data = RICH.encode()
    assert LaunchPlan.decode(data) == RICH
    assert LaunchPlan.decode(data).encode() == data
    assert LaunchPlan.decode(LaunchPlan().encode()) == LaunchPlan()


def test_non_utf8_paths_survive():
    plan = LaunchPlan(mounts=(Mount(MountKind.DIR, "/caf\udce9"),))
    assert LaunchPlan.decode(plan.encode()) == plan


def test_every_truncation_is_refused():
    data = RICH.encode()
    for n in range(len(data)):
        with pytest.raises(PlanError):
            LaunchPlan.decode(data[:n])


def test_every_flipped_byte_is_refused():
    data = RICH.encode()
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x40
        with pytest.raises(PlanError):
            LaunchPlan.decode(bytes(bad))


@pytest.mark.parametrize("offset,value,message", [
    (0, b"X", "magic"),
    (8, struct.pack("<I", 2), "version"),
    (40 + 16 * 15, struct.pack("<I", 8), "reserved section"),
    (40 + 16 * 2 + 8, struct.pack("<I", 12), "process"),
])
def test_structural_damage_is_named(offset, value, message):
    bad = bytearray(RICH.encode())
    bad[offset:offset + len(value)] = value
    with pytest.raises(PlanError, match=message):
        LaunchPlan.decode(reseal(bad) if offset >= 32 else bytes(bad))


def test_string_reference_out_of_table_is_refused():
    data = bytearray(RICH.encode())
    proc_off = struct.unpack_from("<I", data, 40 + 16 * 2)[0]
    struct.pack_into("<I", data, proc_off + 20, 0xFFFFFF)  # hostname reference
    with pytest.raises(PlanError, match="string reference"):
        LaunchPlan.decode(reseal(data))


@pytest.mark.parametrize("plan,message", [
    (LaunchPlan(namespaces=Ns.PID), "mount namespace"),
    (LaunchPlan(mounts=(Mount(MountKind.DIR, "relative"),)), "absolute"),
    (LaunchPlan(mounts=(Mount(MountKind.BIND, "/a", "b"),)), "absolute"),
    (LaunchPlan(mounts=(Mount(MountKind.SYMLINK, "/a"),)), "needs a source"),
    (LaunchPlan(mounts=(Mount(MountKind.DIR, "/a", fd=3),)), "descriptor"),
    (LaunchPlan(mounts=(Mount(MountKind.DIR, "/a\0b"),)), "absolute path"),
    (LaunchPlan(joins=(Join(Ns.MNT, "/proc/1/ns/mnt"),)), "exactly one namespace"),
    (LaunchPlan(joins=(Join(Ns.NET | Ns.IPC, "/x"),)), "exactly one namespace"),
    (LaunchPlan(keep_fds=(2,)), "3 or more"),
    (LaunchPlan(umask=0o1000), "umask"),
    (LaunchPlan(uid_map="0 0 1"), "user namespace"),
    (LaunchPlan(caps=Caps(ambient=1)), "ambient"),
    (LaunchPlan(uid=-1), "32-bit"),
    (LaunchPlan(env=(EnvOp(EnvAction.SET, "A=B", "x"),)), "holds '='"),
    (LaunchPlan(hostname="a\0b"), "NUL"),
    (LaunchPlan(mounts=tuple(Mount(MountKind.LOCK, f"/l{i}") for i in range(17))), "lock"),
    (LaunchPlan(seccomp=(b"123",)), "8-byte"),
])
def test_values_the_core_cannot_hold_are_refused(plan, message):
    with pytest.raises(PlanError, match=message):
        plan.encode()


def test_checksum_matches_the_reference_vectors():
    assert _fnv1a64_py(b"") == 0xCBF29CE484222325
    assert _fnv1a64_py(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == _fnv1a64_py(b"foobar") == 0x85944171F73967E8


def test_dump_is_stable_and_readable():
    plan = LaunchPlan(namespaces=Ns.MNT | Ns.PID, hostname="h", umask=0o22,
                      mounts=(Mount(MountKind.BIND, "/usr", "/usr", MountFlag.RDONLY),
                              Mount(MountKind.TMPFS, "/tmp", mode=0o1777)),
                      env=(EnvOp(EnvAction.SET, "PATH", "/bin"), EnvOp(EnvAction.UNSET, "X")))
    assert plan.dump() == (
        "redpak launch plan v1\n"
        "namespaces: mnt pid\n"
        "identity: unchanged\n"
        "process: hostname 'h' chdir '' umask 0022\n"
        "caps: bounding 0x0000000000000000 permitted 0x0000000000000000 "
        "effective 0x0000000000000000 inheritable 0x0000000000000000 "
        "ambient 0x0000000000000000\n"
        "mount[0] bind '/usr' source '/usr' flags rdonly\n"
        "mount[1] tmpfs '/tmp' mode 1777\n"
        "env: empty\n"
        "env[0] set PATH '/bin'\n"
        "env[1] unset X\n"
        "cache: not cacheable caller uid 0 gid 0\n")
    assert LaunchPlan.decode(plan.encode()).dump() == plan.dump()
    assert "dep env NOPE unset" in RICH.dump()


def test_header_size_constant_matches_layout():
    data = LaunchPlan().encode()
    assert struct.unpack_from("<I", data, 12)[0] == HEADER_SIZE == 296
    assert len(data) % 8 == 0
