# Unit tests of plan.py: every policy decision of compile_plan() (pure, table-driven, on
# FamilyConfig built in Python), golden dumps of the shipped templates, and build_plan()
# on tmp node trees (file system only: no root, no namespaces).

from __future__ import annotations

import grp
import os
import pwd
import re
from pathlib import Path

import pytest

import redpak.build as plan_mod  # build_plan: identity, source checks
from redpak.errors import PlanError
from redpak.expand import DEFAULT_TIMEOUT, expand_family
from redpak.family import CAP_NAMES, merge_family
from redpak.config import cgroup_settings
from redpak.model import (
    Capability,
    EnvEntry,
    EnvMode,
    Export,
    ExportMode,
    LandlockSettings,
    Node,
    NodeConfig,
    NodeState,
    NodeStatus,
    SeccompSettings,
    Settings,
    Share,
    ShareValue,
    Tristate,
)
from redpak.node import create_node, write_status
from redpak.plan import (
    ABSENT_MTIME,
    Identity,
    LaunchOptions,
    build_plan,
    compile_plan,
    resolve_user,
)
from redpak.planfile import (
    EnvAction,
    EnvDep,
    EnvOp,
    Join,
    LaunchPlan,
    MountFlag,
    MountKind,
    Ns,
)

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "plans"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"

ROOT = Identity(caller_uid=0, caller_gid=0, host_uid=0, host_gid=0, privileged=True)
USER = Identity(caller_uid=1000, caller_gid=1000, host_uid=1000, host_gid=1000,
                privileged=False)
ALL_NS_BUT_TIME = Ns.USER | Ns.MNT | Ns.PID | Ns.NET | Ns.IPC | Ns.UTS | Ns.CGROUP
SYS, APP = "/fam/sys", "/fam/sys/app"
PID = 4242


# --- building families in Python --------------------------------------------------------

def mknode(base: str, alias: str, *, exports=(), environ=(), admin: dict | None = None,
           **settings) -> Node:
    def cfg(file: str, alias: str, exports=(), environ=(), **settings) -> NodeConfig:
        return NodeConfig(file=f"{base}/{file}", alias=alias, name=f"uuid-{alias}",
                          info=f"info of {alias}", settings=Settings(**settings),
                          exports=tuple(exports), environ=tuple(environ))
    admin_cfg = cfg("etc/redpak-admin.yaml", f"admin-of-{alias}", **admin) if admin else None
    return Node(base, NodeStatus(base, NodeState.ENABLE),
                cfg("etc/redpak.yaml", alias, exports, environ, **settings), admin_cfg)


def exp(mode: str, mount: str, path: str | None = None, line: int = 7) -> Export:
    return Export(ExportMode(mode), mount, path, line=line)


def env(key: str, value: str | None = None, mode: str = "Default") -> EnvEntry:
    return EnvEntry(key, value, EnvMode(mode))


def share(state: str, path: str = "") -> ShareValue:
    return ShareValue(Share(state) if state != "join" else Share.JOIN, path, line=3)


def kinds(table: dict[str, str] | None = None, default: str = "dir"):
    """A source_kind callback answering from a table (default: everything is a dir)."""
    table = table or {}
    return lambda path: table.get(path, default)


class Recorder:
    """A create_source callback that records what it is asked to create."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, path: str, kind: str, where: str) -> None:
        self.calls.append((path, kind, where))


def compile_nodes(nodes, ident: Identity = USER, options: LaunchOptions = LaunchOptions(),
                  source_kind=None, create_source=None, environ=None, admin=False):
    fam = merge_family(nodes, admin=admin)
    expanded = expand_family(fam, environ or {}, ident.host_uid, ident.host_gid, PID)
    return compile_plan(expanded.family, ident, options,
                        source_kind=source_kind or kinds(), create_source=create_source)


def compile_one(ident: Identity = USER, *, root: dict | None = None, **leaf):
    """Compile the family sys -> app; `root` holds sys's settings, keywords app's."""
    return compile_nodes([mknode(SYS, "sys", **(root or {})), mknode(APP, "app", **leaf)],
                         ident).plan


def host_uid_of(plan: LaunchPlan, inner: int) -> int:
    """The host uid an inner uid stands for, through the plan's uid_map."""
    if not plan.namespaces & Ns.USER:
        return inner
    for line in plan.uid_map.splitlines():
        first, lower, count = (int(v) for v in line.split())
        if first <= inner < first + count:
            return lower + inner - first
    raise AssertionError(f"uid {inner} not mapped by {plan.uid_map!r}")


@pytest.fixture
def accounts(monkeypatch):
    """A fixed host user database, so UserDb content does not depend on the test host."""
    users = {0: ("root", "x", 0, 0, "root", "/root", "/bin/bash"),
             1000: ("alice", "x", 1000, 1000, "Alice Liddell,Room 1,,", "/home/alice",
                    "/bin/bash")}
    groups = {0: ("root", "x", 0, []), 1000: ("wonder", "x", 1000, [])}

    def getpwuid(uid):
        if uid not in users:
            raise KeyError(f"getpwuid(): uid not found: {uid}")
        return pwd.struct_passwd(users[uid])

    def getgrgid(gid):
        if gid not in groups:
            raise KeyError(f"getgrgid(): gid not found: {gid}")
        return grp.struct_group(groups[gid])

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    monkeypatch.setattr(grp, "getgrgid", getgrgid)


# --- namespaces -------------------------------------------------------------------------

NS_BY_NAME = {"user": Ns.USER, "cgroup": Ns.CGROUP, "net": Ns.NET, "pid": Ns.PID,
              "ipc": Ns.IPC, "time": Ns.TIME, "uts": Ns.UTS}


def test_default_namespaces_all_new_but_time():
    plan = compile_one(ROOT)
    assert plan.namespaces == ALL_NS_BUT_TIME
    assert plan.joins == ()


def test_share_all_disabled_also_unshares_time():
    plan = compile_one(ROOT, root={"share_all": share("disabled")})
    assert plan.namespaces == ALL_NS_BUT_TIME | Ns.TIME


@pytest.mark.parametrize("ns", sorted(NS_BY_NAME))
@pytest.mark.parametrize("state", ["enabled", "disabled", "unset", "join"])
def test_namespace_flag_per_share_state(ns, state):
    value = share(state, f"/proc/$PID/ns/{ns}" if state == "join" else "")
    plan = compile_one(ROOT, **{f"share_{ns}": value})
    flag = NS_BY_NAME[ns]
    assert plan.namespaces & Ns.MNT  # the mount namespace is always new
    if state == "disabled" or (state == "unset" and ns != "time"):
        assert plan.namespaces & flag
        assert plan.joins == ()
    elif state == "enabled" or state == "unset":
        assert not plan.namespaces & flag
        assert plan.joins == ()
    else:  # the joined path is expanded ($PID) and the namespace is not also new
        assert not plan.namespaces & flag
        assert plan.joins == (Join(flag, f"/proc/{PID}/ns/{ns}"),)


def test_share_all_enabled_shares_everything_but_mount():
    plan = compile_one(ROOT, share_all=share("enabled"))
    assert plan.namespaces == Ns.MNT


def test_share_x_wins_over_share_all_in_the_same_node():
    plan = compile_one(ROOT, root={"share_all": share("disabled"),
                                   "share_net": share("enabled")})
    assert not plan.namespaces & Ns.NET
    assert plan.namespaces & Ns.PID and plan.namespaces & Ns.TIME


@pytest.mark.parametrize("uts", ["enabled", "unset", "disabled"])
def test_hostname_forces_a_private_uts_namespace(uts):
    plan = compile_one(ROOT, share_uts=share(uts), hostname="box-$NODE_ALIAS")
    assert plan.namespaces & Ns.UTS
    assert plan.hostname == "box-app"


def test_shared_uts_without_hostname_stays_shared():
    plan = compile_one(ROOT, share_uts=share("enabled"))
    assert not plan.namespaces & Ns.UTS
    assert plan.hostname == ""


def test_hostname_with_a_joined_uts_namespace_is_refused():
    with pytest.raises(PlanError) as err:
        compile_one(ROOT, share_uts=share("join", "/proc/1/ns/uts"), hostname="box")
    text = str(err.value)
    assert "hostname" in text and "/proc/1/ns/uts" in text and "'app'" in text


def test_unprivileged_caller_without_user_namespace_is_refused():
    with pytest.raises(PlanError) as err:
        compile_one(USER, root={"share_user": share("enabled")})
    text = str(err.value)
    assert "share_user" in text and "'sys'" in text and SYS in text
    assert "share_user: disabled" in text  # the way out


def test_unprivileged_caller_may_join_a_user_namespace():
    plan = compile_one(USER, share_user=share("join", "/proc/77/ns/user"))
    assert not plan.namespaces & Ns.USER
    assert plan.joins == (Join(Ns.USER, "/proc/77/ns/user"),)
    assert plan.uid_map == "" and plan.uid == 1000


def test_privileged_caller_may_share_the_user_namespace():
    plan = compile_one(ROOT, share_user=share("enabled"))
    assert not plan.namespaces & Ns.USER
    assert plan.uid_map == plan.gid_map == ""


# --- identity and uid/gid maps ----------------------------------------------------------

def ident(uid: int, gid: int, host_uid: int, host_gid: int) -> Identity:
    return Identity(uid, gid, host_uid, host_gid, uid == 0)


FULL = "0 0 4294967295\n"
IDENTITY_CASES = [
    # caller/host identity, leaf settings -> uid_map, gid_map, setgroups deny, uid, gid, drop
    ("root", ROOT, {}, (FULL, FULL, False, 0, 0, True)),
    ("root map-root", ROOT, {"map_root_user": True}, (FULL, FULL, False, 0, 0, True)),
    ("root set-user", ident(0, 0, 1234, 1235), {}, (FULL, FULL, False, 1234, 1235, True)),
    ("root shared userns", ROOT, {"share_user": share("enabled")},
     ("", "", False, 0, 0, True)),
    ("root shared userns set-user", ident(0, 0, 1234, 1235),
     {"share_user": share("enabled")}, ("", "", False, 1234, 1235, True)),
    ("user", USER, {}, ("1000 1000 1\n", "1000 1000 1\n", True, 1000, 1000, False)),
    ("user map-root", USER, {"map_root_user": True},
     ("0 1000 1\n", "0 1000 1\n", True, 0, 0, False)),
    ("user joined userns", USER, {"share_user": share("join", "/proc/9/ns/user")},
     ("", "", False, 1000, 1000, False)),
]


@pytest.mark.parametrize("name,who,settings,expected", IDENTITY_CASES,
                         ids=[c[0] for c in IDENTITY_CASES])
def test_identity_and_maps(name, who, settings, expected):
    plan = compile_one(who, **settings)
    got = (plan.uid_map, plan.gid_map, plan.setgroups_deny, plan.uid, plan.gid,
           plan.drop_groups)
    assert got == expected
    assert (plan.caller_uid, plan.caller_gid) == (who.caller_uid, who.caller_gid)


@pytest.mark.parametrize("name,who,settings,expected", IDENTITY_CASES,
                         ids=[c[0] for c in IDENTITY_CASES])
def test_program_runs_as_the_host_identity(name, who, settings, expected):
    plan = compile_one(who, **settings)
    # map-root-user for an unprivileged caller: root inside, the caller on the host.
    mapped = settings.get("map_root_user") and not who.privileged
    assert host_uid_of(plan, plan.uid) == (who.caller_uid if mapped else who.host_uid)


def test_root_caller_map_root_user_keeps_the_set_user_host_identity():
    plan = compile_nodes([mknode(SYS, "sys", set_user="1234"),
                          mknode(APP, "app", map_root_user=True)],
                         ident(0, 0, 1234, 1234)).plan
    assert plan.uid == 0
    assert host_uid_of(plan, plan.uid) == 1234


def test_switching_user_without_userns_or_privilege_is_refused():
    with pytest.raises(PlanError) as err:
        compile_one(ident(1000, 1000, 1234, 1000),
                    share_user=share("join", "/proc/9/ns/user"))
    assert "set-user" in str(err.value) and "share_user: disabled" in str(err.value)


@pytest.mark.parametrize("who,settings", [
    (ROOT, {"share_user": share("enabled")}),
    (USER, {"share_user": share("join", "/proc/9/ns/user")}),
])
def test_map_root_user_without_new_user_namespace_is_refused(who, settings):
    with pytest.raises(PlanError) as err:
        compile_one(who, map_root_user=True, **settings)
    assert "map-root-user" in str(err.value)


# --- capabilities -----------------------------------------------------------------------

def caps(*entries: tuple[str, bool]) -> tuple[Capability, ...]:
    return tuple(Capability(name, add) for name, add in entries)


ALL_CAPS = (1 << len(CAP_NAMES)) - 1


@pytest.mark.parametrize("entries,mask", [
    ((), 0),
    ((("cap_chown", True),), 1 << 0),
    ((("cap_net_bind_service", True),), 1 << 10),
    ((("cap_net_raw", True), ("cap_sys_admin", True)), (1 << 13) | (1 << 21)),
    ((("cap_checkpoint_restore", True),), 1 << 40),
    ((("all", True),), ALL_CAPS),
    ((("all", True), ("cap_sys_admin", False)), ALL_CAPS & ~(1 << 21)),
    ((("cap_kill", True), ("cap_kill", False)), 0),
])
@pytest.mark.parametrize("who,settings,root_inside", [
    (ROOT, {}, True),
    (ident(0, 0, 1234, 1234), {}, False),
    (USER, {}, False),
    (USER, {"map_root_user": True}, True),
])
def test_capability_masks(entries, mask, who, settings, root_inside):
    if who.privileged and mask & (1 << 21):
        # root's identity map: cap_sys_admin would be host root's, refused (security.py)
        with pytest.raises(PlanError, match="cap_sys_admin"):
            compile_one(who, capabilities=caps(*entries), **settings)
        return
    plan = compile_one(who, capabilities=caps(*entries), **settings)
    c = plan.caps
    assert (c.bounding, c.permitted, c.effective) == (mask, mask, mask)
    # Inheritable and ambient only carry added caps across exec for a non-root program.
    expected = 0 if root_inside else mask
    assert (c.inheritable, c.ambient) == (expected, expected)


def test_caps_of_the_whole_family_are_merged():
    plan = compile_one(ROOT, root={"capabilities": caps(("cap_kill", True),
                                                        ("cap_net_admin", True))},
                       capabilities=caps(("cap_kill", False)))
    assert plan.caps.bounding == 1 << 12


# --- mounts: order and targets -----------------------------------------------------------

def test_mounts_parents_before_children():
    plan = compile_one(exports=[exp("Tmpfs", m) for m in
                                ("/a/b", "/a-b", "/z", "/a/b/c", "/a", "/a.b")])
    targets = [m.target for m in plan.mounts]
    assert targets == ["/a", "/a/b", "/a/b/c", "/a-b", "/a.b", "/z"]
    for i, t in enumerate(targets):
        for later in targets[i + 1:]:
            assert not t.startswith(later + "/"), f"{later} must come before {t}"


def test_mounts_of_ancestors_and_leaf_are_sorted_together():
    plan = compile_nodes([mknode(SYS, "sys", exports=[exp("Tmpfs", "/srv/x"),
                                                      exp("Anonymous", "/data")]),
                          mknode(APP, "app", exports=[exp("Tmpfs", "/srv")])]).plan
    assert [m.target for m in plan.mounts] == ["/data", "/srv", "/srv/x"]


def test_mount_targets_are_normalised():
    plan = compile_one(exports=[exp("Tmpfs", "//a//b/")])
    assert [m.target for m in plan.mounts] == ["/a/b"]


@pytest.mark.parametrize("mount,words", [
    ("/", ["'/'", "root"]),
    ("//", ["'/'", "root"]),
    ("data", ["'data'", "absolute"]),
    ("/a/../etc", ["'/a/../etc'", "'..'"]),
    ("/a/./b", ["'/a/./b'", "'.'"]),
    ("/..", ["'/..'"]),
])
def test_bad_mount_targets_are_refused(mount, words):
    with pytest.raises(PlanError) as err:
        compile_one(exports=[exp("Tmpfs", mount, line=12)])
    text = str(err.value)
    assert all(w in text for w in words), text
    assert "node 'app'" in text and "etc/redpak.yaml:12" in text


# --- mounts: each export mode -----------------------------------------------------------

RO, OPT = MountFlag.RDONLY, MountFlag.OPTIONAL
NONE = MountFlag(0)
MODE_CASES = [
    # mode, mount, path, source kind -> kind, source, flags, mode, fd, data
    ("Public", "/srv", "/host/srv", "dir", (MountKind.BIND, "/host/srv", OPT, 0, -1)),
    ("Restricted", "/srv", "/host/srv", "dir", (MountKind.BIND, "/host/srv", RO | OPT, 0, -1)),
    ("Private", "/srv", "/host/srv", "dir", (MountKind.BIND, "/host/srv", OPT, 0, -1)),
    ("PrivateRestricted", "/srv", "/host/srv", "dir",
     (MountKind.BIND, "/host/srv", RO | OPT, 0, -1)),
    ("PublicFile", "/f", "/host/f", "file", (MountKind.BIND_FILE, "/host/f", OPT, 0, -1)),
    ("RestrictedFile", "/f", "/host/f", "file",
     (MountKind.BIND_FILE, "/host/f", RO | OPT, 0, -1)),
    ("PrivateFile", "/f", "/host/f", "file", (MountKind.BIND_FILE, "/host/f", OPT, 0, -1)),
    ("PublicFile", "/dev/null", None, "other",
     (MountKind.BIND_FILE, "/dev/null", OPT, 0, -1)),
    ("Public", "/srv", None, "dir", (MountKind.BIND, "/srv", OPT, 0, -1)),
    ("Anonymous", "/var", None, "dir", (MountKind.DIR, "", NONE, 0o755, -1)),
    ("Symlink", "/home/me", "/nodes/_private",
     "dir", (MountKind.SYMLINK, "/nodes/_private", NONE, 0, -1)),
    ("Tmpfs", "/tmp", None, "dir", (MountKind.TMPFS, "", NONE, 0o1777, -1)),
    ("Tmpfs", "/scratch", None, "dir", (MountKind.TMPFS, "", NONE, 0o755, -1)),
    ("Procfs", "/proc", None, "dir", (MountKind.PROC, "", NONE, 0, -1)),
    ("Devfs", "/dev", None, "dir", (MountKind.DEV, "", NONE, 0, -1)),
    ("Mqueue", "/dev/mqueue", None, "dir", (MountKind.MQUEUE, "", NONE, 0, -1)),
    ("Execfd", "/etc/motd", "echo hi", "dir",
     (MountKind.EXECFD, "echo hi", RO, 0o444, -1)),
    ("Internal", "/etc/token", "3", "dir", (MountKind.FD, "", RO, 0o444, 3)),
    ("Internal", "/etc/token", " 17 ", "dir", (MountKind.FD, "", RO, 0o444, 17)),
    ("Lock", "/run/app.lock", None, "dir",
     (MountKind.LOCK, "/run/app.lock", MountFlag.LOCK_EXCL | MountFlag.LOCK_WAIT, 0, -1)),
]


@pytest.mark.parametrize("mode,mount,path,found,expected", MODE_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in MODE_CASES])
def test_export_mode_to_mount_op(mode, mount, path, found, expected):
    plan = compile_nodes([mknode(SYS, "sys"), mknode(APP, "app",
                                                     exports=[exp(mode, mount, path)])],
                         source_kind=kinds(default=found)).plan
    assert len(plan.mounts) == 1
    m = plan.mounts[0]
    assert m.target == mount
    assert (m.kind, m.source, m.flags, m.mode, m.fd) == expected
    assert m.data == b""


@pytest.mark.parametrize("mode", ["Public", "Restricted", "PublicFile", "RestrictedFile"])
def test_strict_host_sources_are_not_optional(mode):
    found = "file" if mode.endswith("File") else "dir"
    plan = compile_nodes([mknode(SYS, "sys"), mknode(APP, "app",
                                                     exports=[exp(mode, "/x", "/host/x")])],
                         options=LaunchOptions(strict=True),
                         source_kind=kinds(default=found)).plan
    assert not plan.mounts[0].flags & MountFlag.OPTIONAL
    assert bool(plan.mounts[0].flags & MountFlag.RDONLY) == mode.startswith("Restricted")


@pytest.mark.parametrize("path", [f"{APP}/var", f"{SYS}/usr", APP])
def test_node_dir_sources_are_never_optional(path):
    plan = compile_one(exports=[exp("Restricted", "/x", path)])
    # opened beneath the family's outermost node directory, no symlink followed (issue 9)
    assert plan.mounts[0].flags == MountFlag.RDONLY | MountFlag.BENEATH
    assert plan.mounts[0].data == SYS.encode()


def test_a_sibling_dir_with_a_node_prefix_is_a_host_path():
    plan = compile_one(exports=[exp("Public", "/x", f"{SYS}2/data")])
    assert plan.mounts[0].flags == MountFlag.OPTIONAL


@pytest.mark.parametrize("mode,path,words", [
    ("Public", "relative/dir", ["path 'relative/dir'", "absolute"]),
    ("Symlink", None, ["Symlink needs a path"]),
    ("Execfd", None, ["Execfd needs a path"]),
    ("Internal", "three", ["descriptor number", "'three'"]),
    ("Internal", "-1", ["descriptor number", "'-1'"]),
    ("Internal", None, ["descriptor number"]),
    ("UserDb", "shadow", ["passwd' or 'group", "'shadow'"]),
])
def test_bad_export_paths_are_refused(mode, path, words):
    with pytest.raises(PlanError) as err:
        compile_one(exports=[exp(mode, "/etc/thing", path, line=21)])
    text = str(err.value)
    assert all(w in text for w in words), text
    assert "node 'app'" in text and ":21" in text


def test_internal_with_a_non_ascii_digit_is_a_plan_error():
    with pytest.raises(PlanError):
        compile_one(exports=[exp("Internal", "/etc/token", "²")])


def test_resolve_user_with_a_non_ascii_digit_is_a_plan_error():
    with pytest.raises(PlanError):
        resolve_user("²")


def test_resolve_user_numbers_and_unknown_names():
    assert resolve_user("4321") == 4321
    assert resolve_user("root") == 0
    with pytest.raises(PlanError) as err:
        resolve_user("no-such-user-xyz", "-U/--user")
    assert "-U/--user" in str(err.value) and "no-such-user-xyz" in str(err.value)


# --- mounts: missing sources and kind mismatches ----------------------------------------

@pytest.mark.parametrize("mode,want", [("Public", "dir"), ("RestrictedFile", "file"),
                                       ("PrivateFile", "file"), ("Private", "dir")])
def test_missing_source_inside_a_node_is_created(mode, want):
    rec = Recorder()
    src = f"{APP}/data/new"
    compiled = compile_nodes([mknode(SYS, "sys"), mknode(APP, "app", exports=[
        exp(mode, "/data", src, line=30)])], source_kind=kinds(default="missing"),
                             create_source=rec)
    assert len(rec.calls) == 1
    path, kind, where = rec.calls[0]
    assert (path, kind) == (src, want)
    assert "node 'app'" in where and ":30" in where
    assert [m.source for m in compiled.plan.mounts] == [src]
    assert not compiled.plan.mounts[0].flags & MountFlag.OPTIONAL
    assert compiled.warnings == ()


def test_missing_source_in_an_ancestor_node_is_created_even_when_strict():
    rec = Recorder()
    src = f"{SYS}/shared"
    compiled = compile_nodes([mknode(SYS, "sys", exports=[exp("Public", "/shared", src)]),
                              mknode(APP, "app")], options=LaunchOptions(strict=True),
                             source_kind=kinds(default="missing"), create_source=rec)
    assert [c[:2] for c in rec.calls] == [(src, "dir")]
    assert [m.target for m in compiled.plan.mounts] == ["/shared"]


def test_missing_source_inside_a_node_without_creator_is_kept_and_nothing_created():
    compiled = compile_nodes([mknode(SYS, "sys"), mknode(APP, "app", exports=[
        exp("Public", "/data", f"{APP}/data")])], source_kind=kinds(default="missing"))
    assert [m.target for m in compiled.plan.mounts] == ["/data"]


def test_missing_host_source_is_skipped_with_a_warning():
    rec = Recorder()
    compiled = compile_nodes([mknode(SYS, "sys", exports=[exp("Public", "/run/user/7",
                                                              "/run/user/7", line=40)]),
                              mknode(APP, "app", exports=[exp("Tmpfs", "/tmp")])],
                             source_kind=kinds({"/run/user/7": "missing"}),
                             create_source=rec)
    assert [m.target for m in compiled.plan.mounts] == ["/tmp"]
    assert rec.calls == []  # never creates anything on the host outside nodes
    (warning,) = compiled.warnings
    assert "'/run/user/7' does not exist" in warning and "skipped" in warning
    assert "node 'sys'" in warning and ":40" in warning


def test_missing_host_source_with_strict_is_an_error():
    with pytest.raises(PlanError) as err:
        compile_nodes([mknode(SYS, "sys"), mknode(APP, "app", exports=[
            exp("Restricted", "/opt", "/host/opt", line=8)])],
            options=LaunchOptions(strict=True), source_kind=kinds(default="missing"))
    text = str(err.value)
    assert "'/host/opt' does not exist" in text and "--strict" in text
    assert "node 'app'" in text


def test_missing_source_escaping_the_node_with_dotdot_is_refused():
    rec = Recorder()
    with pytest.raises(PlanError):
        compile_nodes([mknode(SYS, "sys"), mknode(APP, "app", exports=[
            exp("Public", "/esc", "$NODE_PATH/../../outside")])],
            source_kind=kinds(default="missing"), create_source=rec)
    assert rec.calls == []


@pytest.mark.parametrize("mode,found,words", [
    ("PublicFile", "dir", ["PublicFile needs a file", "is a dir"]),
    ("RestrictedFile", "dir", ["RestrictedFile needs a file", "is a dir"]),
])
def test_file_and_directory_mismatch_is_refused(mode, found, words):
    with pytest.raises(PlanError) as err:
        compile_nodes([mknode(SYS, "sys"), mknode(APP, "app", exports=[
            exp(mode, "/x", "/host/x")])], source_kind=kinds(default=found))
    text = str(err.value)
    assert all(w in text for w in words) and "'/host/x'" in text and "node 'app'" in text


# --- UserDb -----------------------------------------------------------------------------

PASSWD_ROOT = "root:x:0:0:root:/root:/bin/sh\n"
NOBODY = "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"


@pytest.mark.parametrize("who,settings,passwd,group", [
    (ROOT, {}, PASSWD_ROOT + NOBODY, "root:x:0:\nnogroup:x:65534:\n"),
    (USER, {}, PASSWD_ROOT + "alice:x:1000:1000:Alice Liddell:/home/alice:/bin/sh\n" + NOBODY,
     "root:x:0:\nwonder:x:1000:\nnogroup:x:65534:\n"),
    (USER, {"map_root_user": True}, PASSWD_ROOT + NOBODY, "root:x:0:\nnogroup:x:65534:\n"),
    (ident(0, 0, 1000, 1000), {}, PASSWD_ROOT
     + "alice:x:1000:1000:Alice Liddell:/home/alice:/bin/sh\n" + NOBODY,
     "root:x:0:\nwonder:x:1000:\nnogroup:x:65534:\n"),
    (ident(0, 0, 2345, 3456), {}, PASSWD_ROOT + "user2345:x:2345:3456::/home/user2345:/bin/sh\n"
     + NOBODY, "root:x:0:\ngroup3456:x:3456:\nnogroup:x:65534:\n"),
    (ident(0, 0, 65534, 65534), {},
     PASSWD_ROOT + "user65534:x:65534:65534::/home/user65534:/bin/sh\n",
     "root:x:0:\ngroup65534:x:65534:\n"),
])
def test_userdb_content(accounts, who, settings, passwd, group):
    plan = compile_one(who, exports=[exp("UserDb", "/etc/passwd", "passwd"),
                                     exp("UserDb", "/etc/group", "Group")], **settings)
    by_target = {m.target: m for m in plan.mounts}
    for target, content in (("/etc/passwd", passwd), ("/etc/group", group)):
        m = by_target[target]
        assert (m.kind, m.flags, m.mode) == (MountKind.DATA, MountFlag.RDONLY, 0o444)
        assert m.data.decode() == content


def test_userdb_defaults_to_the_mount_name(accounts):
    plan = compile_one(USER, exports=[exp("UserDb", "/etc/group")])
    assert plan.mounts[0].data.startswith(b"root:x:0:\n")


# --- environment ------------------------------------------------------------------------

def test_environ_modes_to_env_ops():
    plan = compile_nodes([
        mknode(SYS, "sys", environ=[env("A", "$NODE_ALIAS-a"), env("S", "$NODE_ALIAS",
                                                                     "Static")],
               path=("/bin",), ldpath=("/lib64",)),
        mknode(APP, "app", environ=[env("R", mode="Remove"), env("I", mode="Inherit"),
                                    env("X", "date +%s", "Execfd"), env("E")],
               path=("/nodes/$NODE_ALIAS/bin", "/bin"), ldpath=("/nodes/app/lib",)),
    ]).plan
    assert plan.env == (
        EnvOp(EnvAction.SET, "A", "sys-a"),
        EnvOp(EnvAction.SET, "S", "$NODE_ALIAS"),
        EnvOp(EnvAction.UNSET, "R"),
        EnvOp(EnvAction.INHERIT, "I"),
        EnvOp(EnvAction.EXECFD, "X", "date +%s"),
        EnvOp(EnvAction.SET, "E", ""),  # no value: empty, never a crash
        EnvOp(EnvAction.SET, "PATH", "/nodes/app/bin:/bin"),
        EnvOp(EnvAction.SET, "LD_LIBRARY_PATH", "/nodes/app/lib:/lib64"),
    )


def test_no_path_means_no_path_op():
    plan = compile_one()
    assert plan.env == ()
    assert plan.inherit_env is False


def test_inherit_env():
    assert compile_one(inherit_env=True).inherit_env is True


def test_execfd_commands_run_at_launch_have_the_spec_timeout():
    plan = compile_one(environ=[env("X", "sleep 999", "Execfd")],
                       exports=[exp("Execfd", "/etc/motd", "sleep 999")])
    assert plan.execfd_timeout_ms == int(DEFAULT_TIMEOUT * 1000)


# --- process settings -------------------------------------------------------------------

def test_chdir_defaults_to_root():
    assert compile_one().chdir == "/"


def test_chdir_is_expanded_and_leaf_wins():
    plan = compile_one(root={"chdir": "/home/$LEAF_ALIAS"}, chdir="/work/$NODE_ALIAS")
    assert plan.chdir == "/work/app"


def test_relative_chdir_is_refused():
    with pytest.raises(PlanError) as err:
        compile_one(chdir="work")
    assert "chdir" in str(err.value) and "'work'" in str(err.value)
    assert "node 'app'" in str(err.value)


@pytest.mark.parametrize("target,provider,refused", [
    ("/nodes/_private", None, True),                        # the stock root, launched alone
    ("/srv/data", None, True),
    ("/nodes/_private", exp("Private", "/nodes/_private", "/tmp/p"), False),
    ("/srv/data", exp("Public", "/srv", "/tmp/srv"), False),       # under an export
    ("/srv", exp("Tmpfs", "/srv/data/x"), False),                  # above a mount point
])
def test_chdir_through_a_symlink_to_nothing_is_refused(target, provider, refused):
    """chdir /home/app, a Symlink export to a directory no export provides: the launch
    would fail at chdir with ENOENT; refused at compile time, naming the node, both keys
    and what to do. When an export provides the target, at it or above, it compiles."""
    link = exp("Symlink", "/home/$LEAF_ALIAS", target)
    exports = [provider] if provider else []
    if not refused:
        assert compile_one(root={"chdir": "/home/$LEAF_ALIAS"}, exports=[link, *exports]
                           ).chdir == "/home/app"
        return
    with pytest.raises(PlanError) as err:
        compile_one(root={"chdir": "/home/$LEAF_ALIAS"}, exports=[link])
    text = str(err.value)
    assert text.startswith("node 'app' (") and "cannot be launched: its chdir /home/app" in text
    assert f"is a Symlink export to {target}" in text
    assert f"no node of its family exports {target}" in text
    assert ("redconf create --leaf" in text) == (target == "/nodes/_private")
    assert "set `chdir`" in text


@pytest.mark.parametrize("root,leaf,expected", [
    (None, None, None), (0o027, None, 0o027), (0o022, 0o007, 0o027), (None, 0o077, 0o077),
])
def test_umask_union(root, leaf, expected):
    plan = compile_one(root={"umask": root}, umask=leaf)
    assert plan.umask == expected


@pytest.mark.parametrize("root,leaf,expected", [
    (None, None, False), (Tristate.ENABLED, None, True), (None, Tristate.ENABLED, True),
    (Tristate.ENABLED, Tristate.DISABLED, True), (Tristate.DISABLED, None, False),
    (Tristate.UNSET, Tristate.UNSET, False),
])
@pytest.mark.parametrize("key", ["die_with_parent", "new_session"])
def test_die_with_parent_and_new_session(key, root, leaf, expected):
    plan = compile_one(root={key: root}, **{key: leaf})
    assert getattr(plan, key) is expected


def test_keep_fds_and_caller_are_recorded():
    compiled = compile_nodes([mknode(SYS, "sys"), mknode(APP, "app")], ident(1000, 1001,
                                                                              1000, 1001),
                             options=LaunchOptions(keep_fds=(5, 9)))
    assert compiled.plan.keep_fds == (5, 9)
    assert (compiled.plan.caller_uid, compiled.plan.caller_gid) == (1000, 1001)


def test_compile_needs_an_expanded_family():
    fam = merge_family([mknode(SYS, "sys"), mknode(APP, "app")])
    with pytest.raises(PlanError) as err:
        compile_plan(fam, USER)
    assert "expand_family" in str(err.value)


# --- controls reach the plan (their compilation: tests/unit/test_controls.py) -----------

CONTROLS = [
    ("cgroup", {"cgroups": cgroup_settings(pids_max="10", line=5)}),
    ("seccomp", {"seccomp": SeccompSettings(profile="default", line=5)}),
    ("seccomp", {"seccomp": SeccompSettings(deny=("keyctl",), line=5)}),
    ("landlock", {"landlock": LandlockSettings(enabled=True, line=5)}),
    ("smack", {"smack": "App"}),
]


@pytest.mark.parametrize("field,settings", CONTROLS, ids=[f"{k}-{i}" for i, (k, _) in
                                                          enumerate(CONTROLS)])
@pytest.mark.parametrize("where", ["sys", "app"])
def test_controls_are_compiled_into_the_plan(field, settings, where):
    # new-session: a node sharing the caller's terminal always gets the TIOCSTI filter
    alone = {"new_session": Tristate.ENABLED}
    nodes = [mknode(SYS, "sys", **alone, **(settings if where == "sys" else {})),
             mknode(APP, "app", **(settings if where == "app" else {}))]
    assert getattr(compile_nodes(nodes, ROOT).plan, field)
    assert not getattr(compile_nodes([mknode(SYS, "sys", **alone), mknode(APP, "app")],
                                     ROOT).plan, field)


def test_smack_option_labels_the_program():
    compiled = compile_nodes([mknode(SYS, "sys"), mknode(APP, "app")], ROOT,
                             options=LaunchOptions(smack="Label"))
    assert compiled.plan.smack.label == "Label" and not compiled.plan.smack.optional


@pytest.mark.parametrize("settings", [
    {"cgroups": cgroup_settings(line=5)},
    {"seccomp": SeccompSettings(profile="none", line=5)},
    {"seccomp": SeccompSettings(errno="EPERM", line=5)},
    {"landlock": LandlockSettings(enabled=False, line=5)},
])
def test_controls_that_ask_for_nothing_add_nothing(settings):
    plan = compile_one(ROOT, root={"new_session": Tristate.ENABLED}, **settings)
    assert (plan.seccomp, plan.landlock, plan.cgroup, plan.smack) == ((), (), (), None)


def test_controls_in_admin_config_only_matter_in_admin_mode():
    nodes = [mknode(SYS, "sys"), mknode(APP, "app", admin={"smack": "Adm"})]
    assert compile_nodes(nodes, ROOT).plan.smack is None
    assert compile_nodes(nodes, ROOT, admin=True).plan.smack.label == "Adm"


# --- encode / decode --------------------------------------------------------------------

def test_encode_decode_round_trip(accounts):
    compiled = compile_nodes([
        mknode(SYS, "sys", share_net=share("join", "/proc/$PID/ns/net"), umask=0o027,
               die_with_parent=Tristate.ENABLED, capabilities=caps(("cap_net_raw", True)),
               environ=[env("A", "x"), env("B", mode="Remove"), env("C", mode="Inherit"),
                        env("D", "echo d", "Execfd")], path=("/bin",), ldpath=("/lib",),
               exports=[exp("Restricted", "/bin", "/usr/bin"), exp("Tmpfs", "/tmp"),
                        exp("UserDb", "/etc/passwd", "passwd"), exp("Procfs", "/proc"),
                        exp("Devfs", "/dev"), exp("Internal", "/etc/k", "4"),
                        exp("Symlink", "/home/u", "/nodes/_private"),
                        exp("Execfd", "/etc/motd", "echo m"), exp("Lock", "/run/l"),
                        exp("Mqueue", "/dev/mqueue"), exp("Anonymous", "/var"),
                        exp("RestrictedFile", "/etc/hosts", "/etc/hosts")]),
        mknode(APP, "app", hostname="h", chdir="/w", new_session=Tristate.ENABLED,
               inherit_env=True),
    ], USER, options=LaunchOptions(keep_fds=(4,)),
        source_kind=lambda p: "file" if p == "/etc/hosts" else "dir")
    plan = compiled.plan
    assert plan.joins and plan.keep_fds == (4,)
    decoded = LaunchPlan.decode(plan.encode())
    assert decoded == plan
    assert decoded.dump() == plan.dump()


# --- golden plans of the shipped templates ----------------------------------------------

def _host_kind(tmp: Path):
    """source_kind for golden tests: real for the tmp tree, fixed for host paths, so the
    plan does not depend on what the test host has in /usr or /run."""
    real = plan_mod._source_kind

    def kind(path: str) -> str:
        if path.startswith(str(tmp) + "/"):
            return real(path)
        if path.startswith("/run/user/"):
            return "missing"
        return "file" if path == "/etc/resolv.conf" else "dir"
    return kind


_DEP_RE = re.compile(r"^(dep file '([^']*)') dev (\d+) ino (\d+) size (\d+) mtime_ns (-?\d+)$")


def normalise_dump(text: str, tmp: Path) -> str:
    """Replace what varies between runs (tmp dir, inode numbers, sizes, mtimes) with
    placeholders; drop deps on the status files of directories above tmp."""
    out = []
    for line in text.replace(str(tmp), "<TMP>").splitlines():
        m = _DEP_RE.match(line)
        if m:
            if not m[2].startswith(("<TMP>", "/etc/")):
                continue
            if int(m[6]) == ABSENT_MTIME:
                line = f"{m[1]} absent"
            else:
                line = f"{m[1]} dev <DEV> ino <INO> size <SIZE> mtime_ns <MTIME>"
        out.append(line)
    return "\n".join(out) + "\n"


GOLDEN_CASES = [
    # golden file, caller (uid, gid, privileged), admin
    ("root-leaf.user.plan", (1000, 1000, False), False),
    ("root-leaf.root.plan", (0, 0, True), False),
    ("root-leaf.admin-root.plan", (0, 0, True), True),
]


@pytest.mark.parametrize("golden,caller,admin", GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_golden_templates_plan(tmp_path, monkeypatch, accounts, golden, caller, admin):
    create_node(str(tmp_path / "fam" / "sys"), model="root")
    create_node(str(tmp_path / "fam" / "sys" / "app"))
    monkeypatch.setattr(plan_mod, "caller_identity", lambda: caller)
    monkeypatch.setattr(plan_mod, "_source_kind", _host_kind(tmp_path))
    compiled = build_plan(str(tmp_path / "fam" / "sys" / "app"), LaunchOptions(admin=admin),
                          environ={"USER": "alice"})
    text = normalise_dump(compiled.plan.dump(), tmp_path)
    text += "".join(f"warning: {w}\n" for w in compiled.warnings).replace(str(tmp_path),
                                                                           "<TMP>")
    path = GOLDEN_DIR / golden
    if UPDATE_GOLDEN:
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"plan changed; if intended: UPDATE_GOLDEN=1 pytest {__file__}"
    assert LaunchPlan.decode(compiled.plan.encode()) == compiled.plan


def test_normaliser_keeps_what_matters(tmp_path):
    text = (f"mount[0] bind '/x' source '{tmp_path}/a'\n"
            f"dep file '{tmp_path}/a/.rednode.yaml' dev 1 ino 2 size 3 mtime_ns 4\n"
            f"dep file '{tmp_path}/.rednode.yaml' dev 0 ino 0 size 0 mtime_ns -1\n"
            "dep file '/somewhere/.rednode.yaml' dev 0 ino 0 size 0 mtime_ns -1\n")
    assert normalise_dump(text, tmp_path) == (
        "mount[0] bind '/x' source '<TMP>/a'\n"
        "dep file '<TMP>/a/.rednode.yaml' dev <DEV> ino <INO> size <SIZE> mtime_ns <MTIME>\n"
        "dep file '<TMP>/.rednode.yaml' absent\n")


# --- build_plan on a tmp tree -----------------------------------------------------------

def disk_node(path: Path, body: str = "", admin_body: str | None = None) -> None:
    (path / "etc").mkdir(parents=True, exist_ok=True)
    (path / "etc" / "redpak.yaml").write_text(f"headers:\n  alias: {path.name}\n{body}")
    if admin_body is not None:
        (path / "etc" / "redpak-admin.yaml").write_text(
            f"headers:\n  alias: admin-of-{path.name}\n{admin_body}")
    write_status(str(path), NodeStatus(str(path), NodeState.ENABLE, "test", 1))


def snapshot(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_mtime_ns) for p in root.rglob("*"))


@pytest.fixture
def unprivileged(monkeypatch):
    """build_plan sees an unprivileged caller, whoever runs the tests."""
    monkeypatch.setattr(plan_mod, "caller_identity", lambda: (1000, 1000, False))


def test_dry_run_creates_nothing_and_runs_nothing(tmp_path, unprivileged):
    mark = tmp_path / "MARK"
    disk_node(tmp_path / "sys", f"config:\n  hostname: \"$(touch {mark})\"\n")
    disk_node(tmp_path / "sys" / "app", f"""\
exports:
  - mode: Public
    mount: /data
    path: $NODE_PATH/data
  - mode: PublicFile
    mount: /etc/app.conf
    path: $NODE_PATH/conf/app.conf
environ:
  - key: X
    value: $(touch {mark}.env)
""")
    before = snapshot(tmp_path)
    compiled = build_plan(str(tmp_path / "sys" / "app"), environ={}, dry_run=True)
    assert snapshot(tmp_path) == before
    assert not mark.exists() and not (tmp_path / "MARK.env").exists()
    plan = compiled.plan
    assert plan.hostname == f"$(touch {mark})"  # left as written, not run
    assert EnvOp(EnvAction.SET, "X", f"$(touch {mark}.env)") in plan.env
    assert {m.target for m in plan.mounts} == {"/data", "/etc/app.conf"}
    assert plan.cacheable is False


def test_real_run_creates_missing_sources_inside_the_node(tmp_path, unprivileged):
    disk_node(tmp_path / "sys")
    disk_node(tmp_path / "sys" / "app", """\
exports:
  - mode: Public
    mount: /data
    path: $NODE_PATH/data/sub
  - mode: RestrictedFile
    mount: /etc/app.conf
    path: $NODE_PATH/conf/app.conf
""")
    app = tmp_path / "sys" / "app"
    compiled = build_plan(str(app), environ={})
    assert (app / "data" / "sub").is_dir()
    assert (app / "conf" / "app.conf").is_file()
    assert (app / "conf" / "app.conf").stat().st_size == 0
    assert compiled.warnings == ()
    assert compiled.plan.cacheable is True


def test_missing_source_outside_nodes_is_never_created(tmp_path, unprivileged):
    disk_node(tmp_path / "sys")
    disk_node(tmp_path / "sys" / "app", f"""\
exports:
  - mode: Public
    mount: /data
    path: {tmp_path}/host/data
""")
    compiled = build_plan(str(tmp_path / "sys" / "app"), environ={})
    assert not (tmp_path / "host").exists()
    assert compiled.plan.mounts == ()
    assert len(compiled.warnings) == 1 and f"{tmp_path}/host/data" in compiled.warnings[0]


def test_skipped_missing_source_is_a_cache_dependency(tmp_path, unprivileged):
    disk_node(tmp_path / "sys")
    disk_node(tmp_path / "sys" / "app", f"""\
exports:
  - mode: Public
    mount: /data
    path: {tmp_path}/host/data
""")
    plan = build_plan(str(tmp_path / "sys" / "app"), environ={}).plan
    assert plan.cacheable
    assert any(d.path == f"{tmp_path}/host/data" and d.mtime_ns == ABSENT_MTIME
               for d in plan.file_deps)


@pytest.mark.parametrize("admin", [False, True])
def test_file_deps_cover_every_config_and_status_file(tmp_path, unprivileged, admin):
    disk_node(tmp_path / "sys", admin_body="")
    (tmp_path / "sys" / "mid").mkdir()  # not a node: its future status file is a dep
    disk_node(tmp_path / "sys" / "mid" / "app")
    plan = build_plan(str(tmp_path / "sys" / "mid" / "app"), LaunchOptions(admin=admin),
                      environ={}).plan
    deps = {d.path: d for d in plan.file_deps}
    present = [f"{n}/.rednode.yaml" for n in ("sys", "sys/mid/app")]
    present += [f"{n}/etc/redpak.yaml" for n in ("sys", "sys/mid/app")]
    absent = ["sys/mid/.rednode.yaml", ".rednode.yaml"]
    absent += [f"{n}/etc/redpack.yaml" for n in ("sys", "sys/mid/app")]
    if admin:
        present.append("sys/etc/redpak-admin.yaml")
        absent += ["sys/mid/app/etc/redpak-admin.yaml"]
        absent += [f"{n}/etc/redpack-admin.yaml" for n in ("sys", "sys/mid/app")]
    for rel in present:
        st = (tmp_path / rel).stat()
        d = deps.pop(f"{tmp_path}/{rel}")
        assert (d.dev, d.ino, d.size, d.mtime_ns) == (st.st_dev, st.st_ino, st.st_size,
                                                      st.st_mtime_ns), rel
    for rel in absent:
        d = deps.pop(f"{tmp_path}/{rel}")
        assert (d.dev, d.ino, d.size, d.mtime_ns) == (0, 0, 0, ABSENT_MTIME), rel
    # The plan compiler: a new release of redpak recompiles the plans cached by the old one.
    import redpak.plan
    compiler = deps.pop(plan_mod.COMPILER)
    st = os.stat(redpak.plan.__file__)
    assert plan_mod.COMPILER == redpak.plan.__file__
    assert (compiler.dev, compiler.ino, compiler.size, compiler.mtime_ns) == (
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    # What is left: the status files of the directories above tmp_path, all absent.
    parent = tmp_path.parent
    for path, d in deps.items():
        assert path == f"{parent}/.rednode.yaml" and d.mtime_ns == ABSENT_MTIME, path
        parent = parent.parent
    assert "/etc/passwd" not in deps  # no UserDb, no user name: not a dependency


@pytest.mark.parametrize("body", [
    "exports:\n  - mode: UserDb\n    mount: /etc/passwd\n    path: passwd\n",
    "config:\n  set-group: \"0\"\n",
])
def test_user_database_is_a_dep_when_used(tmp_path, monkeypatch, body):
    monkeypatch.setattr(plan_mod, "caller_identity", lambda: (0, 0, True))
    disk_node(tmp_path / "app", body)
    paths = [d.path for d in build_plan(str(tmp_path / "app"), environ={}).plan.file_deps]
    assert "/etc/passwd" in paths and "/etc/group" in paths


def test_env_deps_record_caller_variables_used(tmp_path, unprivileged):
    disk_node(tmp_path / "sys", "config:\n  hostname: $A-$FOO-$NODE_ALIAS\n"
                                "environ:\n  - key: A\n    value: a$BAR\n")
    disk_node(tmp_path / "sys" / "app", "config:\n  chdir: /$MISSING\n")
    compiled = build_plan(str(tmp_path / "sys" / "app"),
                          environ={"FOO": "foo", "BAR": "bar", "OTHER": "x"})
    plan = compiled.plan
    assert plan.hostname == "abar-foo-sys"
    assert plan.env_deps == (EnvDep("BAR", "bar"), EnvDep("FOO", "foo"),
                             EnvDep("MISSING", None),
                             EnvDep("NOTIFY_SOCKET", None))  # systemd's, always
    assert plan.cacheable is True


@pytest.mark.parametrize("value,cacheable", [
    ("$NODE_ALIAS", True), ("$UID-$GID", True), ("$(echo hi)", False), ("$TODAY", False),
    ("$UUID", False), ("$PID", False), ("${UUID}", False),
])
def test_cacheable_unless_volatile(tmp_path, unprivileged, value, cacheable):
    disk_node(tmp_path / "app", f"config:\n  hostname: \"{value}\"\n")
    plan = build_plan(str(tmp_path / "app"), environ={}).plan
    assert plan.cacheable is cacheable
    assert "$" not in plan.hostname


def test_keep_fds_make_a_plan_not_cacheable(tmp_path, unprivileged):
    disk_node(tmp_path / "app")
    plan = build_plan(str(tmp_path / "app"), LaunchOptions(keep_fds=(5,)), environ={}).plan
    assert plan.cacheable is False and plan.keep_fds == (5,)


def test_uid_variable_is_the_host_uid_for_a_root_caller_with_set_user(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "caller_identity", lambda: (0, 0, True))
    disk_node(tmp_path / "sys", "config:\n  set-user: \"1234\"\n  set-group: \"1235\"\n")
    disk_node(tmp_path / "sys" / "app", "environ:\n  - key: MYUID\n    value: $UID:$GID\n")
    plan = build_plan(str(tmp_path / "sys" / "app"), environ={}).plan
    assert EnvOp(EnvAction.SET, "MYUID", "1234:1235") in plan.env
    assert (plan.uid, plan.gid) == (1234, 1235)
    assert host_uid_of(plan, plan.uid) == 1234


def test_user_option_overrides_set_user(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "caller_identity", lambda: (0, 0, True))
    disk_node(tmp_path / "app", "config:\n  set-user: \"1234\"\n")
    plan = build_plan(str(tmp_path / "app"), LaunchOptions(user="4321", group="4322"),
                      environ={}).plan
    assert (plan.uid, plan.gid) == (4321, 4322)


def test_uid_variable_is_the_host_uid_for_an_unprivileged_caller_with_set_user(
        tmp_path, unprivileged):
    disk_node(tmp_path / "app", "config:\n  set-user: \"1234\"\n"
                                "environ:\n  - key: MYUID\n    value: $UID\n")
    plan = build_plan(str(tmp_path / "app"), environ={}).plan
    (value,) = [e.value for e in plan.env if e.name == "MYUID"]
    assert host_uid_of(plan, plan.uid) == int(value)


def test_dry_run_with_set_user_from_a_command_still_dumps(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "caller_identity", lambda: (0, 0, True))
    mark = tmp_path / "MARK"
    disk_node(tmp_path / "app", f"config:\n  set-user: $(touch {mark}; echo 1234)\n")
    compiled = build_plan(str(tmp_path / "app"), environ={}, dry_run=True)
    assert not mark.exists()
    assert any("set-user" in w for w in compiled.warnings)


def test_unknown_set_user_name_is_a_plan_error(tmp_path, unprivileged):
    disk_node(tmp_path / "app", "config:\n  set-user: no-such-user-xyz\n")
    with pytest.raises(PlanError) as err:
        build_plan(str(tmp_path / "app"), environ={})
    assert "set-user" in str(err.value) and "no-such-user-xyz" in str(err.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown to another user")
def test_created_source_is_owned_like_the_node(tmp_path, monkeypatch):
    """SPEC §4: a missing source under the node's directory is created owned as the
    node's files, not as the (root) caller."""
    from redpak.build import _create_source
    node = tmp_path / "app"
    node.mkdir()
    (node / ".rednode.yaml").write_text("state: Enable\n")
    os.chown(node, 4321, 4322)
    _create_source(str(node / "data" / "sub"), "dir", "test")
    _create_source(str(node / "files" / "f.txt"), "file", "test")
    for p in (node / "data", node / "data" / "sub", node / "files", node / "files" / "f.txt"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (4321, 4322), p


def test_ldpath_entries_of_missing_directories_are_left_out_and_watched(tmp_path,
                                                                         unprivileged):
    """An ldpath entry inside a directory bind whose host directory is missing is left out
    of LD_LIBRARY_PATH (the loader would search it on every exec) and becomes a cache
    dependency; an entry outside any bind is kept as written; all left out: unset."""
    disk_node(tmp_path / "sys")
    disk_node(tmp_path / "sys" / "app", """\
config:
  ldpath: /nodes/app/lib:/nodes/app/lib64:/elsewhere/lib
exports:
  - mode: Restricted
    mount: /nodes/app
    path: $NODE_PATH/usr
""")
    app = tmp_path / "sys" / "app"
    (app / "usr" / "lib64").mkdir(parents=True)
    compiled = build_plan(str(app), environ={})
    env = {op.name: op for op in compiled.plan.env}
    assert env["LD_LIBRARY_PATH"].value == "/nodes/app/lib64:/elsewhere/lib"
    absent = {d.path for d in compiled.plan.file_deps if d.mtime_ns == ABSENT_MTIME}
    assert str(app / "usr" / "lib") in absent
    (app / "usr" / "lib64").rmdir()
    disk_node(tmp_path / "sys" / "app", """\
config:
  ldpath: /nodes/app/lib64
exports:
  - mode: Restricted
    mount: /nodes/app
    path: $NODE_PATH/usr
""")
    env = {op.name: op for op in build_plan(str(app), environ={}).plan.env}
    assert env["LD_LIBRARY_PATH"] == EnvOp(EnvAction.UNSET, "LD_LIBRARY_PATH")


def test_ldpath_is_kept_as_written_without_a_look_at_the_host():
    """compile_plan alone does no I/O: without source_kind, every entry stays."""
    plan = compile_nodes([mknode(SYS, "sys", ldpath=("/nodes/x/none",))]).plan
    assert plan.env[-1] == EnvOp(EnvAction.SET, "LD_LIBRARY_PATH", "/nodes/x/none")


@pytest.mark.parametrize("text,ok", [("0", True), ("4294967294", True),
                                     ("4294967295", False), ("99999999999", False)])
def test_numeric_ids_stop_below_the_kernels_minus_one(text, ok):
    """4294967295 is (uid_t)-1, "leave unchanged" to setresuid/setresgid: as a -G it ran
    into 'gid is 0/0/0 after setresgid'; refused when resolved, naming the option."""
    from redpak.plan import resolve_group, resolve_user
    for resolve, kind in ((resolve_user, "uid"), (resolve_group, "gid")):
        if ok:
            assert resolve(text, "-X") == int(text)
            continue
        with pytest.raises(PlanError) as err:
            resolve(text, "-X")
        assert str(err.value) == f"-X: {text} is not a {kind} (0 to 4294967294)"
