"""security.py: the plan-time isolation rules (issue 9), on compiled plans."""

from __future__ import annotations

import pytest

from redpak.errors import PlanError
from redpak.planfile import LaunchPlan, Mount, MountFlag, MountKind
from redpak.security import SAFE_WITH_HOST_USERNS
from test_plan import APP, ROOT, SYS, USER, Identity, caps, compile_nodes, exp, mknode, share


def _plan(ident, root=None, **leaf):
    return compile_nodes([mknode(SYS, "sys", **(root or {})), mknode(APP, "app", **leaf)],
                         ident).plan


def test_node_sources_are_opened_beneath_the_outermost_node():
    plan = _plan(USER, exports=[exp("Public", "/a", f"{APP}/var"), exp("Public", "/b", "/srv")])
    a, b = plan.mounts
    assert a.flags & MountFlag.BENEATH and a.data == SYS.encode()
    assert not b.flags & MountFlag.BENEATH and b.data == b""
    assert LaunchPlan.decode(plan.encode()) == plan
    assert f"beneath '{SYS}'" in plan.dump()


def test_beneath_needs_a_bind_inside_the_directory_it_names():
    for m in (Mount(MountKind.BIND, "/x", "/srv/a", MountFlag.BENEATH, data=b"/other"),
              Mount(MountKind.TMPFS, "/x", "", MountFlag.BENEATH, data=b"/srv")):
        with pytest.raises(PlanError):
            LaunchPlan(mounts=(m,)).encode()


@pytest.mark.parametrize("new_session,guard", [(None, True), ("enabled", False)])
def test_a_node_sharing_the_terminal_gets_the_tiocsti_filter(new_session, guard):
    from redpak.model import Tristate
    root = {"new_session": Tristate.ENABLED} if new_session else {}
    assert bool(_plan(USER, root=root).seccomp) is guard


def test_cap_sys_admin_is_refused_where_uid_0_is_host_root():
    with pytest.raises(PlanError) as err:
        _plan(ROOT, capabilities=caps(("cap_sys_admin", True)))
    assert "cap_sys_admin" in str(err.value) and "node 'app'" in str(err.value)
    _plan(ROOT, capabilities=caps(("cap_sys_module", True)))   # inert in a new userns
    _plan(USER, capabilities=caps(("cap_sys_admin", True)))    # the caller's own userns


def test_map_root_user_onto_another_user_contains_cap_sys_admin():
    nobody = Identity(0, 0, 65534, 65534, True)
    plan = _plan(nobody, root={"map_root_user": True}, capabilities=caps(("cap_sys_admin", True)))
    assert plan.uid_map == "0 65534 1\n"


@pytest.mark.parametrize("cap", ["cap_sys_module", "cap_net_admin", "cap_kill",
                                 "cap_dac_read_search", "cap_sys_admin"])
def test_the_hosts_user_namespace_allows_only_the_short_list(cap):
    shared = {"share_user": share("enabled")}
    with pytest.raises(PlanError) as err:
        _plan(ROOT, root=shared, capabilities=caps((cap, True)))
    assert cap in str(err.value) and "host's user namespace" in str(err.value)
    for ok in sorted(SAFE_WITH_HOST_USERNS):
        _plan(ROOT, root=shared, capabilities=caps((ok, True)))


@pytest.mark.parametrize("arch,audit", [("x86_64", 0xC000003E), ("aarch64", 0xC00000B7)])
@pytest.mark.parametrize("name", ["io_uring_setup", "io_uring_enter", "io_uring_register"])
def test_default_profile_denies_io_uring_on_both_architectures(arch, audit, name):
    from redpak.controls import Host
    from redpak.family import SeccompSettings
    from test_controls_compile import EPERM, controls_of, nr, run_filter
    (prog,) = controls_of({"seccomp": SeccompSettings(profile="default")},
                          host=Host(arch=arch)).seccomp
    assert nr(name, arch) in (425, 426, 427)  # the generic numbers, on both
    assert run_filter(prog, nr(name, arch), audit) == EPERM


@pytest.mark.parametrize("request_word", [0x5412, 0x541C, 0x1_0000_5412])
def test_tty_guard_alone_denies_only_the_injection_ioctls(request_word):
    import os
    from test_controls_compile import ALLOW, ARM, EPERM, X86, nr, run_filter
    arch = os.uname().machine  # the plan is compiled for this machine
    audit = X86 if arch == "x86_64" else ARM
    (prog,) = _plan(USER).seccomp
    ioctl = nr("ioctl", arch)
    assert run_filter(prog, ioctl, audit, (0, request_word, 0, 0, 0, 0)) == EPERM
    assert run_filter(prog, ioctl, audit, (0, 0x5413, 0, 0, 0, 0)) == ALLOW  # TIOCGWINSZ
    assert run_filter(prog, nr("mount", arch), audit) == ALLOW
