"""Plan-time isolation policy (issue 9): what the plan compiler adds to or refuses in a
compiled plan so that a node cannot reach the host, whatever its configs say.

`harden(plan, fam, ident, host)` is called once by `plan.compile_plan()` on the plan it
built. It is pure (no I/O), like the compiler:

- **bind sources inside node directories** get the BENEATH flag: the C core opens them
  below the outermost node directory that holds them without following any symlink, so a
  node's payload cannot turn one of its directories into a link to a host path;
- **the caller's terminal**: a node without `new-session` shares it, so TIOCSTI and
  TIOCLINUX are refused by a seccomp rule (added to the family's filter, or a filter of
  its own);
- **capabilities whose effect would reach the host** are refused (see
  `HOST_CAPS`/`capability_scope()` and docs/launch.md, "Threat model").
"""

from __future__ import annotations


from .controls import Host, compile_seccomp
from .errors import PlanError
from .family import FamilyConfig
from .planfile import LaunchPlan, Mount, MountFlag, MountKind, Ns
from .record import replace

SAFE_WITH_HOST_USERNS: frozenset[str] = frozenset({
    "cap_chown", "cap_dac_override", "cap_fowner", "cap_fsetid", "cap_setgid", "cap_setuid",
    "cap_setpcap", "cap_net_bind_service", "cap_ipc_lock", "cap_lease", "cap_audit_write",
})
"""Capabilities a root-launched node may hold in the host's own user namespace: they act
on files the node's mounts show and on the program's own identity, never on kernel-wide
state. Every other one (cap_sys_admin, cap_sys_module, cap_net_admin, cap_kill,
cap_dac_read_search's open_by_handle_at, ...) would be host root's."""

MAPPED_ROOT_REFUSED: frozenset[str] = frozenset({"cap_sys_admin"})
"""Refused in a new user namespace that maps host root (a root caller without
map-root-user onto another user): CAP_SYS_ADMIN there owns the node's mount and cgroup
namespaces, so it could remount read-only exports read-write, unmount the read-only
/proc/sys and write kernel.core_pattern as host uid 0, or mount cgroupfs and rewrite the
caller's limits. Capabilities checked against the initial user namespace (sys_module,
sys_rawio, mknod, sys_time, ...) do nothing there, and the others act on the node's own
namespaces."""


def _outermost_node(source: str, node_dirs: tuple[str, ...]) -> str | None:
    best = None
    for d in node_dirs:
        top = d.rstrip("/") or "/"
        if source.startswith(top + "/") and (best is None or len(top) < len(best)):
            best = top
    return best


def _beneath(mounts: tuple[Mount, ...], node_dirs: tuple[str, ...]) -> tuple[Mount, ...]:
    out = []
    for m in mounts:
        top = (_outermost_node(m.source, node_dirs)
               if m.kind in (MountKind.BIND, MountKind.BIND_FILE) else None)
        if top is not None:
            m = replace(m, flags=m.flags | MountFlag.BENEATH, data=top.encode())
        out.append(m)
    return tuple(out)


def capability_scope(plan: LaunchPlan, privileged: bool) -> str:
    """Whose capabilities the program's are: 'host' (the host's user namespace, launched
    by root), 'host-root' (a new user namespace mapping host uid 0), or 'contained'."""
    if not privileged:
        return "contained"  # the caller's own user namespace: never more than the caller
    if not plan.namespaces & Ns.USER:
        return "host"        # shared with the host, or joined: treat as the host's
    first = plan.uid_map.split()
    return "host-root" if first[:2] == ["0", "0"] else "contained"


def _check_caps(plan: LaunchPlan, fam: FamilyConfig, privileged: bool) -> None:
    scope = capability_scope(plan, privileged)
    if scope == "contained":
        return
    for cap in fam.capabilities:
        name = cap.value
        if (name in MAPPED_ROOT_REFUSED if scope == "host-root"
                else name not in SAFE_WITH_HOST_USERNS):
            where = cap.origin.describe() if cap.origin else "capabilities"
            if scope == "host":
                why = ("the node shares the host's user namespace, so it would be host "
                       "root's own (set share_user: disabled)")
            else:
                why = ("its user namespace maps host root, so it would let the node remount "
                       "read-only exports, unmount /proc/sys and write kernel knobs as host "
                       "root (add map-root-user with set-user to run as another host user, "
                       "or launch as that user)")
            raise PlanError(f"capabilities: {name} ({where}) is refused: {why}")


def harden(plan: LaunchPlan, fam: FamilyConfig, privileged: bool, host: Host) -> LaunchPlan:
    """The plan with the isolation rules above applied; raises PlanError for a capability
    that would reach the host."""
    _check_caps(plan, fam, privileged)
    mounts = _beneath(plan.mounts, tuple(n.path for n in fam.nodes))
    seccomp = plan.seccomp
    if not plan.new_session:  # the program can reach the caller's terminal
        seccomp = compile_seccomp(fam, host.arch, [], tty_guard=True)
    return replace(plan, mounts=mounts, seccomp=seccomp)


__all__ = ["MAPPED_ROOT_REFUSED", "SAFE_WITH_HOST_USERNS", "capability_scope", "harden"]
