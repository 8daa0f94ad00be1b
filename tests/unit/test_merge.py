# Unit tests of family.merge_family (SPEC §3): one table per Russian-doll rule, built from
# plain NodeConfig objects (no YAML, no file system).

from __future__ import annotations

import json
import os

import pytest

from redpak.errors import ConfigError, MergeError, NodeError
from redpak.config import cgroup_settings, parse_cpu_max, parse_cpuset, parse_size
from redpak.family import CAP_NAMES, merge_family, size_order
from redpak.model import (
    NAMESPACES,
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

E, D, U = Share.ENABLED, Share.DISABLED, Share.UNSET


def cfg(base: str, alias: str, file: str = "etc/redpak.yaml", /, *, exports=(), environ=(),
        warnings=(), lines=None, **settings) -> NodeConfig:
    return NodeConfig(file=f"{base}/{file}", alias=alias, name=f"uuid-{alias}",
                      info=f"info of {alias}",
                      settings=Settings(**settings, lines=dict(lines or {})),
                      exports=tuple(exports), environ=tuple(environ), warnings=tuple(warnings))


def node(alias: str, *, admin: dict | None = None, state: NodeState = NodeState.ENABLE,
         **kw) -> Node:
    base = f"/t/{alias}"
    admin_cfg = (cfg(base, f"admin-of-{alias}", "etc/redpak-admin.yaml", **admin)
                 if admin is not None else None)
    return Node(base, NodeStatus(base, state), cfg(base, alias, **kw), admin_cfg)


def sv(state: Share, path: str = "") -> ShareValue:
    return ShareValue(state, path)


def cap(name: str, add: bool) -> Capability:
    return Capability(name, add)


# --- node state -------------------------------------------------------------------------

@pytest.mark.parametrize("state", [NodeState.DISABLE, NodeState.UNKNOWN, NodeState.ERROR])
@pytest.mark.parametrize("position", [0, 1])
def test_node_not_enabled_is_refused(state, position):
    nodes = [node("sys"), node("app")]
    bad = nodes[position]
    nodes[position] = node(bad.alias, state=state)
    with pytest.raises(NodeError) as err:
        merge_family(nodes)
    text = str(err.value)
    assert bad.alias in text and bad.path in text and state.value in text
    assert ".rednode.yaml" in text and "redconf" in text


def test_empty_family_is_refused():
    with pytest.raises(NodeError):
        merge_family([])


# --- node-local settings ----------------------------------------------------------------

LOCAL_CASES = [
    ("hostname", "roothost", "leafhost"),
    ("chdir", "/home/root", "/home/leaf"),
    ("rpmdir", "/var/lib/rpm", "/t/app/var/lib/rpm"),
    ("persistdir", "/p/root", "/p/leaf"),
    ("cachedir", "/c/root", "/c/leaf"),
    ("verbose", 1, 3),
    ("cgrouproot", "/sys/fs/cgroup/a", "/sys/fs/cgroup/a/b"),  # inside: see below
    ("map_root_user", True, False),
    ("inherit_env", False, True),
    ("unsafe", True, False),
]


@pytest.mark.parametrize("name,root_value,leaf_value", LOCAL_CASES)
def test_node_local_closest_to_leaf_wins(name, root_value, leaf_value):
    fam = merge_family([node("sys", **{name: root_value}), node("mid"),
                        node("app", **{name: leaf_value})])
    got = getattr(fam, name)
    assert got.value == leaf_value
    assert got.origin.alias == "app"
    assert any(n.standing.alias == "app" and n.ignored.alias == "sys" and n.level == "info"
               for n in fam.overrides)
    assert not fam.warnings


def test_cgrouproot_outside_an_ancestors_is_ignored_with_a_warning():
    fam = merge_family([node("sys", cgrouproot="/sys/fs/cgroup/a"),
                        node("mid", cgrouproot="/sys/fs/cgroup/a/m"),
                        node("app", cgrouproot="/sys/fs/cgroup/ab")])
    assert fam.cgrouproot.value == "/sys/fs/cgroup/a/m"
    assert fam.cgrouproot.origin.alias == "mid"
    [w] = [w for w in fam.warnings if w.key == "cgrouproot"]
    assert w.standing.alias == "mid" and w.ignored.alias == "app"
    assert "outside its ancestor's /sys/fs/cgroup/a/m: ignored" in w.text


@pytest.mark.parametrize("name,root_value,leaf_value", LOCAL_CASES)
def test_node_local_inherited_when_leaf_silent(name, root_value, leaf_value):
    fam = merge_family([node("sys", **{name: root_value}), node("app")])
    assert getattr(fam, name).value == root_value
    assert getattr(fam, name).origin.alias == "sys"


# --- cumulative path / ldpath -----------------------------------------------------------

@pytest.mark.parametrize("key", ["path", "ldpath"])
def test_cumulative_leaf_first_dedup_and_empty_dropped(key):
    fam = merge_family([
        node("sys", **{key: ("/bin", "/usr/bin", "")}),
        node("mid", **{key: ("/mid/bin:/bin",)}),
        node("app", **{key: ("/app/bin", "/usr/bin")}),
    ])
    entries = getattr(fam, key)
    assert [e.value for e in entries] == ["/app/bin", "/usr/bin", "/mid/bin", "/bin"]
    assert [e.origin.alias for e in entries] == ["app", "app", "mid", "mid"]


def test_cumulative_entries_with_variables_kept_per_node():
    fam = merge_family([node("sys", path=("/nodes/$NODE_ALIAS/bin", "/bin")),
                        node("app", path=("/nodes/$NODE_ALIAS/bin", "/bin"))])
    assert [(e.value, e.origin.alias) for e in fam.path] == [
        ("/nodes/$NODE_ALIAS/bin", "app"), ("/bin", "app"), ("/nodes/$NODE_ALIAS/bin", "sys")]


# --- namespaces -------------------------------------------------------------------------

def test_namespace_defaults_when_nothing_set():
    fam = merge_family([node("sys"), node("app")])
    for ns in NAMESPACES:
        expected = E if ns == "time" else D
        assert fam.share(ns).state is expected, ns
        assert fam.namespaces[ns].origin is None


# (root settings, mid settings, leaf settings, namespace, expected state or error ancestor)
NS_CASES = [
    ("closest wins: tighten", dict(share_net=sv(E)), {}, dict(share_net=sv(D)), "net", D),
    ("inherit ancestor", dict(share_net=sv(E)), {}, {}, "net", E),
    ("share_X over share_all", dict(share_all=sv(D), share_net=sv(E)), {}, {}, "net", E),
    ("share_all applies", dict(share_all=sv(E)), {}, {}, "ipc", E),
    ("share_all covers time", dict(share_all=sv(D)), {}, {}, "time", D),
    ("unset falls to share_all", dict(share_all=sv(D), share_pid=sv(U)), {}, {}, "pid", D),
    ("leaf unset inherits", dict(share_uts=sv(E)), {}, dict(share_uts=sv(U)), "uts", E),
    ("leaf disables time", {}, {}, dict(share_time=sv(D)), "time", D),
    ("leaf enables when nothing above", {}, {}, dict(share_user=sv(E)), "user", E),
    ("leaf share_all tightens", dict(share_all=sv(E)), {}, dict(share_all=sv(D)), "cgroup", D),
    ("join then same join", dict(share_net=sv(Share.JOIN, "/proc/1/ns/net")), {},
     dict(share_net=sv(Share.JOIN, "/proc/1/ns/net")), "net", Share.JOIN),
    ("join then disabled", dict(share_net=sv(Share.JOIN, "/proc/1/ns/net")), {},
     dict(share_net=sv(D)), "net", D),
    ("enabled then join", dict(share_net=sv(E)), {},
     dict(share_net=sv(Share.JOIN, "/proc/1/ns/net")), "net", Share.JOIN),
    # loosening: errors naming the ancestor
    ("disabled -> enabled", dict(share_net=sv(D)), {}, dict(share_net=sv(E)), "net", "sys"),
    ("disabled -> join", dict(share_ipc=sv(D)), {},
     dict(share_ipc=sv(Share.JOIN, "/proc/1/ns/ipc")), "ipc", "sys"),
    ("share_all disabled -> enabled", dict(share_all=sv(D)), {}, dict(share_net=sv(E)), "net",
     "sys"),
    ("share_all disabled -> join", dict(share_all=sv(D)), {},
     dict(share_pid=sv(Share.JOIN, "/proc/1/ns/pid")), "pid", "sys"),
    ("share_all disabled -> share_all enabled", dict(share_all=sv(D)), {},
     dict(share_all=sv(E)), "user", "sys"),
    ("disabled via mid", {}, dict(share_all=sv(D)), dict(share_time=sv(E)), "time", "mid"),
    ("disabled two levels up", dict(share_user=sv(D)), {}, dict(share_user=sv(E)), "user",
     "sys"),
    ("disabled twice names root-most", dict(share_cgroup=sv(D)), dict(share_cgroup=sv(D)),
     dict(share_cgroup=sv(E)), "cgroup", "sys"),
    ("tighten then loosen", dict(share_net=sv(E)), dict(share_net=sv(D)),
     dict(share_net=sv(E)), "net", "mid"),
    ("join -> enabled", dict(share_net=sv(Share.JOIN, "/proc/1/ns/net")), {},
     dict(share_net=sv(E)), "net", "sys"),
    ("join -> other join", dict(share_net=sv(Share.JOIN, "/proc/1/ns/net")), {},
     dict(share_net=sv(Share.JOIN, "/proc/2/ns/net")), "net", "sys"),
]


@pytest.mark.parametrize("root,mid,leaf,ns,expected", [c[1:] for c in NS_CASES],
                         ids=[c[0] for c in NS_CASES])
def test_namespace_rules(root, mid, leaf, ns, expected):
    nodes = [node("sys", **root), node("mid", **mid), node("app", **leaf)]
    if isinstance(expected, str):
        with pytest.raises(MergeError) as err:
            merge_family(nodes)
        text = str(err.value)
        assert f"share_{ns}" in text
        assert f"'{expected}'" in text and f"/t/{expected}" in text
        assert "'app'" in text and "/t/app" in text
        assert err.value.ancestor.startswith(expected)
        assert err.value.descendant.startswith("app")
        if "share_all" in str(root) + str(mid):
            assert "share_all" in text
    else:
        assert merge_family(nodes).share(ns).state is expected


def test_namespace_origin_names_defining_key():
    fam = merge_family([node("sys", share_all=sv(D), lines={"share_all": 7}), node("app")])
    origin = fam.namespaces["net"].origin
    assert (origin.alias, origin.key, origin.line) == ("sys", "share_all", 7)


# --- capabilities -----------------------------------------------------------------------

# (root caps, mid caps, leaf caps, expected set or ("error", ancestor alias, cap))
CAP_CASES = [
    ("empty", [], [], [], set()),
    ("ancestor add", [cap("cap_net_admin", True)], [], [], {"cap_net_admin"}),
    ("child drops ancestor add", [cap("cap_net_admin", True)], [],
     [cap("cap_net_admin", False)], set()),
    ("child adds new", [], [], [cap("cap_net_raw", True)], {"cap_net_raw"}),
    ("all first in node", [cap("cap_net_raw", True), cap("all", False)], [], [],
     {"cap_net_raw"}),
    ("drop all then add in same node", [cap("all", False), cap("cap_kill", True)], [],
     [cap("cap_kill", True)], {"cap_kill"}),
    ("all add then child drop", [cap("all", True)], [], [cap("cap_sys_admin", False)],
     set(CAP_NAMES) - {"cap_sys_admin"}),
    ("child drop then grandchild add", [], [cap("cap_chown", False)], [], set()),
    ("error: re-add dropped", [cap("cap_sys_admin", False)], [], [cap("cap_sys_admin", True)],
     ("error", "sys", "cap_sys_admin")),
    ("error: add after all drop", [cap("all", False)], [], [cap("cap_net_raw", True)],
     ("error", "sys", "cap_net_raw")),
    ("error: all add after a drop", [cap("cap_sys_module", False)], [], [cap("all", True)],
     ("error", "sys", "cap_sys_module")),
    ("error: through a silent mid", [cap("cap_bpf", False)], [], [cap("cap_bpf", True)],
     ("error", "sys", "cap_bpf")),
    ("error: mid drops", [cap("cap_bpf", True)], [cap("cap_bpf", False)],
     [cap("cap_bpf", True)], ("error", "mid", "cap_bpf")),
]


@pytest.mark.parametrize("root,mid,leaf,expected", [c[1:] for c in CAP_CASES],
                         ids=[c[0] for c in CAP_CASES])
def test_capability_rules(root, mid, leaf, expected):
    nodes = [node("sys", capabilities=tuple(root)), node("mid", capabilities=tuple(mid)),
             node("app", capabilities=tuple(leaf))]
    if isinstance(expected, tuple):
        _, anc, name = expected
        with pytest.raises(MergeError) as err:
            merge_family(nodes)
        text = str(err.value)
        assert name in text and f"'{anc}'" in text and f"/t/{anc}" in text
        assert "'app'" in text and "/t/app" in text
        assert err.value.key == "capabilities"
    else:
        fam = merge_family(nodes)
        assert set(fam.cap_names) == expected
        assert list(fam.cap_names) == sorted(fam.cap_names, key=CAP_NAMES.index)


def test_capabilities_are_typed_at_load_not_renamed_by_the_merge():
    # load_config turns NET_ADMIN into cap_net_admin (test_config); the merge takes the
    # typed name as it is and refuses one a caller built in code without canonicalising it
    from redpak.config import parse_config

    loaded = parse_config(b"headers: {alias: sys}\nconfig:\n  capabilities:\n"
                          b"    - {cap: NET_ADMIN, add: 1}\n", "/t/sys/etc/redpak.yaml")
    assert loaded.settings.capabilities[0].cap == "cap_net_admin"
    assert merge_family([node("sys", capabilities=loaded.settings.capabilities)]
                        ).cap_names == ("cap_net_admin",)
    with pytest.raises(ConfigError) as err:
        merge_family([node("sys", capabilities=(cap("NET_ADMIN", True),))])
    assert "NET_ADMIN" in str(err.value) and "cap_net_admin" in str(err.value)


def test_capability_origin_is_the_adding_entry():
    fam = merge_family([node("sys", capabilities=(cap("cap_kill", True),)),
                        node("app", capabilities=(cap("cap_chown", True),))])
    origins = {c.value: c.origin.alias for c in fam.capabilities}
    assert origins == {"cap_kill": "sys", "cap_chown": "app"}


def test_unknown_capability_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        merge_family([node("app", capabilities=(Capability("cap_net_admn", True, 4),))])
    assert "/t/app/etc/redpak.yaml" in str(err.value) and "cap_net_admin" in str(err.value)


def test_cap_names_match_kernel_header():
    header = "/usr/include/linux/capability.h"
    if not os.path.exists(header):
        pytest.skip("no linux/capability.h")
    import re

    found = dict(re.findall(r"#define\s+(CAP_[A-Z_]+)\s+(\d+)\s*$", open(header).read(), re.M))
    found = {k: int(v) for k, v in found.items() if k not in ("CAP_LAST_CAP",)}
    for bit, name in enumerate(CAP_NAMES):
        assert found[name.upper()] == bit
    assert len(CAP_NAMES) == 41


# --- exports ----------------------------------------------------------------------------

def exp(mount, mode=ExportMode.PUBLIC, path=None):
    return Export(mode, mount, path)


def test_export_redefinition_ignored_with_warning():
    fam = merge_family([node("sys", exports=[exp("/data", ExportMode.RESTRICTED, "/srv")]),
                        node("app", exports=[exp("/data/", ExportMode.PUBLIC, "/home"),
                                             exp("/extra")])])
    assert [(e.value.mount, e.value.mode, e.origin.alias) for e in fam.exports] == [
        ("/data", ExportMode.RESTRICTED, "sys"), ("/extra", ExportMode.PUBLIC, "app")]
    [w] = fam.warnings
    assert "'sys'" in w.text and "'app'" in w.text and "/data" in w.text and "stands" in w.text
    assert w.standing.alias == "sys" and w.ignored.alias == "app"


def test_export_mounts_compared_case_sensitively():
    fam = merge_family([node("sys", exports=[exp("/Data")]), node("app", exports=[exp("/data")])])
    assert [e.value.mount for e in fam.exports] == ["/Data", "/data"]
    assert not fam.warnings


@pytest.mark.parametrize("mode", [ExportMode.PRIVATE, ExportMode.PRIVATE_RESTRICTED,
                                  ExportMode.PRIVATE_FILE])
def test_private_exports_apply_to_their_node_only(mode):
    fam = merge_family([node("sys", exports=[exp("/secret", mode)]),
                        node("app", exports=[exp("/own", mode)])])
    assert [(e.value.mount, e.origin.alias) for e in fam.exports] == [("/own", "app")]


def test_private_export_of_ancestor_does_not_block_descendant():
    fam = merge_family([node("sys", exports=[exp("/x", ExportMode.PRIVATE)]),
                        node("app", exports=[exp("/x", ExportMode.RESTRICTED)])])
    assert [(e.value.mode, e.origin.alias) for e in fam.exports] == [(ExportMode.RESTRICTED,
                                                                       "app")]
    assert not fam.warnings


# --- environ ----------------------------------------------------------------------------

def test_environ_ancestor_stands_with_warning():
    fam = merge_family([node("sys", environ=[EnvEntry("LANG", "C"),
                                             EnvEntry("PS1", mode=EnvMode.REMOVE)]),
                        node("app", environ=[EnvEntry("LANG", "fr_FR"), EnvEntry("PS1", "$ "),
                                             EnvEntry("lang", "x"), EnvEntry("NEW", "1")])])
    got = {(e.value.key, e.value.value, e.value.mode, e.origin.alias) for e in fam.environ}
    assert got == {("LANG", "C", EnvMode.DEFAULT, "sys"), ("PS1", None, EnvMode.REMOVE, "sys"),
                   ("lang", "x", EnvMode.DEFAULT, "app"), ("NEW", "1", EnvMode.DEFAULT, "app")}
    assert len(fam.warnings) == 2
    assert all("'sys'" in w.text and "'app'" in w.text for w in fam.warnings)
    assert {w.key for w in fam.warnings} == {"environ LANG", "environ PS1"}


# --- unions and root-most ---------------------------------------------------------------

@pytest.mark.parametrize("masks,expected", [
    ((None, None), None), ((0o027, None), 0o027), ((None, 0o002), 0o002),
    ((0o022, 0o005), 0o027), ((0o077, 0o000), 0o077)])
def test_umask_is_union(masks, expected):
    fam = merge_family([node("sys", umask=masks[0]), node("app", umask=masks[1])])
    assert (fam.umask.value if fam.umask else None) == expected


@pytest.mark.parametrize("values,expected", [
    ((None, None), None), ((True, None), True), ((None, True), True), ((True, False), True),
    ((False, True), True), ((False, None), False), ((False, False), False)])
@pytest.mark.parametrize("which", ["gpgcheck", "landlock"])
def test_enabled_anywhere_means_enabled(which, values, expected):
    def kw(v):
        if v is None:
            return {}
        return {"gpgcheck": v} if which == "gpgcheck" else {"landlock": LandlockSettings(v)}

    fam = merge_family([node("sys", **kw(values[0])), node("app", **kw(values[1]))])
    got = getattr(fam, which)
    assert (got.value if got is not None else None) == expected


@pytest.mark.parametrize("values,expected", [
    ((None, None), Tristate.UNSET), ((Tristate.UNSET, Tristate.UNSET), Tristate.UNSET),
    ((Tristate.ENABLED, Tristate.DISABLED), Tristate.ENABLED),
    ((Tristate.DISABLED, Tristate.ENABLED), Tristate.ENABLED),
    ((Tristate.DISABLED, None), Tristate.DISABLED),
    ((Tristate.UNSET, Tristate.DISABLED), Tristate.DISABLED)])
@pytest.mark.parametrize("which", ["die_with_parent", "new_session"])
def test_tristate_enabled_anywhere(which, values, expected):
    fam = merge_family([node("sys", **{which: values[0]}), node("app", **{which: values[1]})])
    assert getattr(fam, which).value is expected


@pytest.mark.parametrize("which", ["set_user", "set_group", "smack"])
@pytest.mark.parametrize("values,expected,warned", [
    (("root", None), "root", False), ((None, "leaf"), "leaf", False),
    (("root", "leaf"), "root", True), (("same", "same"), "same", False)])
def test_root_most_wins(which, values, expected, warned):
    fam = merge_family([node("sys", **{which: values[0]}), node("app", **{which: values[1]})])
    assert getattr(fam, which).value == expected
    warns = [w for w in fam.warnings if which.replace("_", "-") in w.key]
    assert bool(warns) == warned
    if warned:
        assert "'sys'" in warns[0].text and "'app'" in warns[0].text


# --- seccomp ----------------------------------------------------------------------------

def sc(**kw):
    return SeccompSettings(**kw)


def test_seccomp_default_profile_anywhere():
    for root, leaf in [("default", None), (None, "default"), ("default", "none"),
                       ("none", "default")]:
        fam = merge_family([node("sys", seccomp=sc(profile=root)),
                            node("app", seccomp=sc(profile=leaf))])
        assert fam.seccomp.profile.value == "default"
    fam = merge_family([node("sys", seccomp=sc(profile="none")), node("app")])
    assert fam.seccomp.profile.value == "none"
    fam = merge_family([node("sys", seccomp=sc(profile="default")),
                        node("app", seccomp=sc(profile="none"))])
    assert any(w.key == "seccomp.profile" for w in fam.warnings)


def test_seccomp_deny_union_and_allow_minus_deny():
    fam = merge_family([
        node("sys", seccomp=sc(deny=("mount", "keyctl"), allow=("ptrace",))),
        node("app", seccomp=sc(deny=("ptrace", "bpf"), allow=("mount", "personality"))),
    ])
    assert [s.value for s in fam.seccomp.deny] == ["mount", "keyctl", "ptrace", "bpf"]
    assert {s.value: s.origin.alias for s in fam.seccomp.deny}["ptrace"] == "app"
    assert [s.value for s in fam.seccomp.allow] == ["personality"]
    [w] = [w for w in fam.warnings if w.key == "seccomp.allow"]
    assert "mount" in w.text and "'sys'" in w.text and "'app'" in w.text


def test_seccomp_errno_root_most():
    fam = merge_family([node("sys", seccomp=sc(errno="EPERM")),
                        node("app", seccomp=sc(errno="ENOSYS"))])
    assert fam.seccomp.errno.value == "EPERM"
    assert any(w.key == "seccomp.errno" for w in fam.warnings)


# --- cgroups ----------------------------------------------------------------------------

@pytest.mark.parametrize("a,b,expected", [
    ("64M", "1G", -1), ("1G", "64M", 1), ("1G", "1024M", 0), ("max", "1G", 1),
    ("1G", "max", -1), ("max", "max", 0), ("4096", "4K", 0), ("1k", "1000", 1)])
def test_sizes_typed_at_load_order_as_sizes(a, b, expected):
    x, y = size_order(parse_size(a)), size_order(parse_size(b))
    assert (x > y) - (x < y) == expected


def test_value_parsers_reject_garbage():
    with pytest.raises(ValueError):
        parse_size("12 parsecs")
    with pytest.raises(ValueError):
        parse_cpu_max("half")
    with pytest.raises(ValueError):
        parse_cpuset("3-1")
    assert parse_size("max") == "max" and parse_size("2G") == 2 << 30
    assert str(parse_cpuset("0-2,6,7,9")) == "0-2,6-7,9"


# (field, root value, mid value, leaf value, expected effective, expected origin alias)
CG_CASES = [
    ("mem_max", "1G", None, "64M", "64M", "app"),
    ("mem_max", "64M", None, "1G", "64M", "sys"),
    ("mem_max", "max", "2G", "max", "2G", "mid"),
    ("mem_high", "512M", "256M", "1G", "256M", "mid"),
    ("mem_min", "100M", None, "50M", "50M", "app"),
    ("mem_low", "10M", None, "20M", "10M", "sys"),
    ("mem_swap_max", "0", None, "1G", "0", "sys"),
    ("mem_swap_high", "max", None, None, "max", "sys"),
    ("pids_max", "100", "max", "500", "100", "sys"),
    ("cpu_max", "50000 100000", None, "30000 50000", "50000 100000", "sys"),
    ("cpu_max", "max", None, "20000", "20000", "app"),
    ("cpuset_cpus", "0-3", None, "2-7", "2-3", "app"),
    ("cpuset_mems", "0", None, None, "0", "sys"),
    ("io_max", "8:0 rbps=1048576 wbps=max", None,
     "8:0 wbps=524288 rbps=2097152\n8:16 riops=10",
     "8:0 rbps=1048576 wbps=524288\n8:16 riops=10", "app"),
    ("cpu_weight", 100, None, 50, 50, "app"),
    ("cpu_weight", 50, None, 100, 100, "app"),
    ("cpu_weight_nice", 5, None, None, 5, "sys"),
    ("io_weight", "100", "200", None, "200", "mid"),
    ("mem_oom_group", True, None, False, False, "app"),
    ("cpuset_cpus_partition", "root", None, "member", "member", "app"),
]


@pytest.mark.parametrize("name,root,mid,leaf,expected,origin", CG_CASES)
def test_cgroup_effective_is_tightest(name, root, mid, leaf, expected, origin):
    def kw(v):
        return {"cgroups": cgroup_settings(**{name: v})} if v is not None else {}

    def typed(v):
        return getattr(cgroup_settings(**{name: v}), name)

    fam = merge_family([node("sys", **kw(root)), node("mid", **kw(mid)), node("app", **kw(leaf))])
    assert getattr(fam.cgroups_effective, name) == typed(expected)
    assert type(getattr(fam.cgroups_effective, name)) is type(typed(expected))
    assert fam.cgroups_effective_origins[name].alias == origin
    per_node = [getattr(s.value, name) for s in fam.cgroups]
    assert per_node == [typed(v) if v is not None else None for v in (root, mid, leaf)]
    assert [s.origin.alias for s in fam.cgroups] == ["sys", "mid", "app"]


def test_cgroup_disjoint_cpusets_are_an_error():
    with pytest.raises(MergeError) as err:
        merge_family([node("sys", cgroups=cgroup_settings(cpuset_cpus="0-1")),
                      node("app", cgroups=cgroup_settings(cpuset_cpus="4"))])
    assert "cpuset.cpus" in str(err.value) and "'app'" in str(err.value)


def test_cgroup_bad_size_is_refused_when_typed_naming_the_key():
    # values are typed before any merge: a bad one never reaches merge_family
    with pytest.raises(ValueError) as err:
        cgroup_settings(mem_max="lots")
    assert "cgroups.mem.max" in str(err.value) and "lots" in str(err.value)


# --- admin layering ---------------------------------------------------------------------

def test_admin_layering_inside_node():
    sys_node = node(
        "sys", hostname="normal", path=("/bin",), share_net=sv(E),
        capabilities=(cap("cap_chown", True), cap("cap_kill", True)),
        exports=[exp("/var/lib/rpm", ExportMode.RESTRICTED), exp("/usr")],
        environ=[EnvEntry("MODE", "normal"), EnvEntry("KEEP", "1")],
        cgroups=cgroup_settings(mem_max="1G", pids_max="50"),
        admin=dict(hostname="admin", path=("/sbin",), share_all=sv(D),
                   capabilities=(cap("all", False), cap("cap_setuid", True)),
                   exports=[exp("/var/lib/rpm", ExportMode.PUBLIC), exp("/etc/admin")],
                   environ=[EnvEntry("MODE", "admin")],
                   cgroups=cgroup_settings(mem_max="2G")))
    fam = merge_family([sys_node, node("app")], admin=True)
    assert fam.admin
    assert fam.hostname.value == "admin"
    assert fam.hostname.origin.file.endswith("redpak-admin.yaml")
    assert [p.value for p in fam.path] == ["/sbin", "/bin"]
    # admin share_all disabled wins over the normal share_net enabled inside the node
    assert fam.share("net").state is D
    # admin caps applied after normal ones: its 'all' drop removes the normal adds
    assert fam.cap_names == ("cap_setuid",)
    mounts = {e.value.mount: (e.value.mode, e.origin.file.rsplit("/", 1)[1])
              for e in fam.exports}
    assert mounts == {"/var/lib/rpm": (ExportMode.PUBLIC, "redpak-admin.yaml"),
                      "/usr": (ExportMode.PUBLIC, "redpak.yaml"),
                      "/etc/admin": (ExportMode.PUBLIC, "redpak-admin.yaml")}
    env = {e.value.key: e.value.value for e in fam.environ}
    assert env == {"MODE": "admin", "KEEP": "1"}
    assert not fam.warnings
    assert fam.cgroups[0].value.mem_max == 2 << 30 and fam.cgroups[0].value.pids_max == 50


def test_admin_config_ignored_in_normal_mode():
    n = node("sys", hostname="normal", admin=dict(hostname="admin",
                                                   exports=[exp("/etc/admin")]))
    fam = merge_family([n, node("app")])
    assert fam.hostname.value == "normal"
    assert not fam.exports


def test_admin_rules_between_nodes_still_apply():
    nodes = [node("sys", admin=dict(capabilities=(cap("cap_sys_admin", False),))),
             node("app", admin=dict(capabilities=(cap("cap_sys_admin", True),)))]
    merge_family(nodes)  # normal mode: admin configs not used
    with pytest.raises(MergeError) as err:
        merge_family(nodes, admin=True)
    assert "redpak-admin.yaml" in str(err.value)


# --- origins, warnings carried, to_dict ------------------------------------------------

def test_origins_record_file_and_line():
    fam = merge_family([
        node("sys", hostname="h", lines={"hostname": 12, "capabilities": 20},
             capabilities=(Capability("cap_kill", True, 21),),
             exports=[Export(ExportMode.TMPFS, "/tmp", line=30)],
             environ=[EnvEntry("A", "1", line=40)]),
        node("app", umask=0o22, lines={"umask": 3})])
    assert (fam.hostname.origin.file, fam.hostname.origin.line) == ("/t/sys/etc/redpak.yaml",
                                                                     12)
    assert fam.capabilities[0].origin.line == 21
    assert fam.exports[0].origin.line == 30 and fam.exports[0].origin.key == "exports[0]"
    assert fam.environ[0].origin.line == 40
    assert fam.umask.origin.alias == "app" and fam.umask.origin.line == 3


def test_node_config_warnings_are_carried():
    fam = merge_family([node("sys", warnings=["maxage is obsolete and ignored"]), node("app")])
    assert any("maxage" in w.text and "'sys'" in w.text for w in fam.warnings)


def _walk(value):
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def test_to_dict_round_trips_through_json():
    fam = merge_family([
        node("sys", umask=0o027, share_all=sv(D), share_net=sv(E), hostname="h",
             capabilities=(cap("cap_kill", True),), die_with_parent=Tristate.ENABLED,
             seccomp=sc(profile="default", deny=("bpf",)), landlock=LandlockSettings(True),
             cgroups=cgroup_settings(mem_max="1G", cpu_max="max"),
             exports=[exp("/data", ExportMode.RESTRICTED, "/srv")],
             environ=[EnvEntry("A", "1")]),
        node("app", hostname="leaf", share_ipc=sv(Share.UNSET),
             exports=[exp("/data")], environ=[EnvEntry("A", "2", EnvMode.STATIC)],
             cgroups=cgroup_settings(mem_max="64M"))])
    d = fam.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) >= {"headers", "config", "exports", "environ", "warnings"}
    assert d["config"]["umask"]["value"] == "0027"
    assert d["config"]["hostname"] == {"value": "leaf", "origin": {
        "node": "app", "path": "/t/app", "file": "/t/app/etc/redpak.yaml", "line": 0}}
    assert d["config"]["share_net"]["value"] == "enabled"
    assert d["config"]["die-with-parent"]["value"] == "enabled"
    assert d["config"]["cgroups"]["mem"]["max"]["value"] == 64 << 20
    # typed values print as their canonical text, a plain str (json, yaml safe dumpers)
    cpu_max = d["config"]["cgroups"]["cpu"]["max"]["value"]
    assert cpu_max == "max 100000" and type(cpu_max) is str
    assert d["exports"][0]["mode"] == "Restricted" and d["exports"][0]["origin"]["node"] == "sys"
    assert len(d["warnings"]) == 2 and all(isinstance(w, str) for w in d["warnings"])
    plain = fam.to_dict(origins=False)
    assert json.loads(json.dumps(plain)) == plain
    assert not any("origin" in m for m in _walk(plain))
    assert plain["config"]["hostname"] == "leaf" and plain["config"]["umask"] == "0027"
    assert plain["environ"] == [{"key": "A", "value": "1", "mode": "Default"}]
