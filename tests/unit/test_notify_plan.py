"""pass_notify_socket() on plain plans: where the socket's bind goes, the variable, the
cache dependency, and the cases it cannot serve."""

from redpak.planfile import (EnvAction, EnvDep, EnvOp, LaunchPlan, Mount, MountFlag,
                             MountKind, Ns)
from redpak.sdnotify import pass_notify_socket

PLAN = LaunchPlan(
    namespaces=Ns.MNT | Ns.PID | Ns.NET,
    mounts=(Mount(MountKind.BIND, "/bin", "/bin"), Mount(MountKind.TMPFS, "/run"),
            Mount(MountKind.BIND, "/run/user", "/run/user"), Mount(MountKind.TMPFS, "/tmp")),
    env=(EnvOp(EnvAction.SET, "NOTIFY_SOCKET", "/from/config"), EnvOp(EnvAction.SET, "A", "1")),
    env_deps=(EnvDep("HOME", "/root"), EnvDep("USER", None)))


def test_socket_path_bound_in_mount_order_and_variable_set_last():
    plan, warnings = pass_notify_socket(PLAN, {"NOTIFY_SOCKET": "/run/systemd/notify"})
    assert warnings == ()
    assert [m.target for m in plan.mounts] == ["/bin", "/run", "/run/systemd/notify",
                                               "/run/user", "/tmp"]
    sock = plan.mounts[2]
    assert sock.kind is MountKind.BIND_FILE and sock.source == "/run/systemd/notify"
    assert sock.flags == MountFlag.RDONLY | MountFlag.OPTIONAL
    assert plan.env == (EnvOp(EnvAction.SET, "A", "1"),
                        EnvOp(EnvAction.SET, "NOTIFY_SOCKET", "/run/systemd/notify"))
    assert plan.env_deps == (EnvDep("HOME", "/root"),
                             EnvDep("NOTIFY_SOCKET", "/run/systemd/notify"),
                             EnvDep("USER", None))
    plan.encode()  # still a valid plan


def test_unset_is_a_dependency_and_changes_nothing_else():
    plan, warnings = pass_notify_socket(PLAN, {})
    assert warnings == () and plan.mounts == PLAN.mounts and plan.env == PLAN.env
    assert EnvDep("NOTIFY_SOCKET", None) in plan.env_deps


def test_path_already_exported_is_not_bound_twice():
    base = LaunchPlan(mounts=(Mount(MountKind.BIND_FILE, "/run/n", "/run/n"),))
    plan, _ = pass_notify_socket(base, {"NOTIFY_SOCKET": "//run//n/"})
    assert plan.mounts == base.mounts


def test_abstract_socket_warns_with_a_new_network_namespace():
    plan, warnings = pass_notify_socket(PLAN, {"NOTIFY_SOCKET": "@sd-notify"})
    assert plan.mounts == PLAN.mounts
    assert plan.env[-1] == EnvOp(EnvAction.SET, "NOTIFY_SOCKET", "@sd-notify")
    assert len(warnings) == 1 and "network namespace" in warnings[0]
    shared = LaunchPlan(namespaces=Ns.MNT)
    assert pass_notify_socket(shared, {"NOTIFY_SOCKET": "@x"})[1] == ()


def test_relative_or_dotted_path_is_not_bound():
    for bad in ("run/notify", "/run/../etc/shadow"):
        plan, warnings = pass_notify_socket(PLAN, {"NOTIFY_SOCKET": bad})
        assert plan.mounts == PLAN.mounts
        assert warnings and "neither" in warnings[0]
