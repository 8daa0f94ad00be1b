# systemd readiness through a node: when the launcher runs with NOTIFY_SOCKET (a
# Type=notify service), the program in the node gets the same variable and can reach the
# socket, so its own sd_notify("READY=1") tells systemd the service is up.
"""Pass systemd's NOTIFY_SOCKET into a launch plan (see docs/integrations.md)."""

from __future__ import annotations

from collections.abc import Mapping

from .planfile import EnvAction, EnvDep, EnvOp, LaunchPlan, Mount, MountFlag, MountKind, Ns
from .record import replace

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def _components(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


def pass_notify_socket(plan: LaunchPlan, environ: Mapping[str, str]
                       ) -> tuple[LaunchPlan, tuple[str, ...]]:
    """PLAN with the caller's NOTIFY_SOCKET passed through; returns (plan, warnings).

    A socket path is bound (read-only, optional: skipped if gone at launch) at the same
    path in the node, in mount order, and the variable is set last (the service manager
    wins over the family's environ). An abstract socket (@name) is only reachable when the
    node shares the network namespace. The variable is a cache dependency, set or not,
    so a plan cached from a shell is rebuilt when systemd launches the node."""
    value = environ.get(NOTIFY_SOCKET)
    deps = tuple(d for d in plan.env_deps if d.name != NOTIFY_SOCKET)
    deps = tuple(sorted(deps + (EnvDep(NOTIFY_SOCKET, value),), key=lambda d: d.name))
    plan = replace(plan, env_deps=deps)
    if not value:
        return plan, ()
    warnings: list[str] = []
    env = tuple(op for op in plan.env if op.name != NOTIFY_SOCKET)
    env += (EnvOp(EnvAction.SET, NOTIFY_SOCKET, value),)
    mounts = plan.mounts
    if value.startswith("@"):
        if plan.namespaces & Ns.NET:
            warnings.append(f"{NOTIFY_SOCKET} '{value}' is an abstract socket, which the "
                            "node's new network namespace cannot reach: readiness "
                            "notifications will not arrive (set share_net, or give the "
                            "service a socket path)")
    elif value.startswith("/") and not any(p in (".", "..") for p in _components(value)):
        target = "/" + "/".join(_components(value))
        if all(m.target != target for m in mounts):
            key = _components(target)
            at = sum(1 for m in mounts if _components(m.target) <= key)
            sock = Mount(MountKind.BIND_FILE, target, target,
                         MountFlag.RDONLY | MountFlag.OPTIONAL)
            mounts = mounts[:at] + (sock,) + mounts[at:]
    else:
        warnings.append(f"{NOTIFY_SOCKET} '{value}' is neither an absolute path nor an "
                        "abstract socket: it is passed as is, without its socket")
    return replace(plan, env=env, mounts=mounts), tuple(warnings)
