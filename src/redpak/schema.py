"""The config schema, the one place that knows key names (SPEC §2): per key its YAML
spelling, the model field it fills, its value kind, how a family merges it, and for cgroup
keys the controller and the files written on cgroup v2 and v1. config.py validates with it,
family.py merges with it, controls.py writes cgroup files from it, mergeconfig renders it."""

from __future__ import annotations


from .model import NAMESPACES
from .record import record

CAPABILITY_NAMES: tuple[str, ...] = (
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid",
    "cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable",
    "cap_net_bind_service", "cap_net_broadcast", "cap_net_admin", "cap_net_raw",
    "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot",
    "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
    "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
    "cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override",
    "cap_mac_admin", "cap_syslog", "cap_wake_alarm", "cap_block_suspend", "cap_audit_read",
    "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
)
"""Linux capability names; the index of a name is its capability number."""


@record(frozen=True)
class Key:
    """One YAML key of the schema: canonical spelling, model field it fills, value kind,
    how the merge combines the values of a family (a key of MERGE_RULES), and for a
    cgroup key its controller and the file it writes on cgroup v2 and v1."""

    name: str
    field: str | None       # None: obsolete key, accepted with a warning
    kind: str               # a key of KINDS
    required: bool = False
    merge: str = ""         # a key of MERGE_RULES ("" inside records: whole entries merge)
    controller: str = ""    # cgroups: v2 controller name
    v2: str = ""            # cgroups: interface file on cgroup v2
    v1: str = ""            # cgroups: interface file(s) on cgroup v1 ("": none)


KINDS: dict[str, str] = {
    # kind -> what a value must look like; used in messages and docs
    "string": "a string",
    "path": "a path",
    "alias": "an alias made of letters, digits and + - _ @ :",
    "bool": "a bool (true/false)",
    "int": "a non-negative integer",
    "octal": "an octal umask such as 027",
    "pathlist": "a colon-separated string or a list of strings",
    "share": "enabled, disabled, unset or an absolute namespace path",
    "share_all": "enabled, disabled or unset",
    "tristate": "enabled, disabled or unset",
    "capabilities": "a list of {cap, add} mappings",
    "cap": "a capability name such as cap_net_admin, or all",
    "cgroups": "a mapping of cgroup controllers (cpuset, mem, cpu, io, pids)",
    "seccomp": "a mapping {profile, deny, allow, errno}",
    "landlock": "a mapping {enabled} or a bool",
    "obsolete": "anything (obsolete, ignored)",
    "export_mode": "an export mode",
    "export_path": "a string",
    "env_mode": "an environ mode",
    "env_key": "a variable name ([A-Za-z_][A-Za-z0-9_]*)",
    "cpulist": "a CPU/node list such as 0-3,5",
    "partition": "member, root or isolated",
    "size": "max or an integer with an optional K/M/G/T suffix",
    "cpu_weight": "an integer from 1 to 10000",
    "weight_nice": "an integer from -20 to 19",
    "cpu_max": "max or QUOTA [PERIOD] in microseconds",
    "pids_max": "max or an integer",
    "io_weight": "N, 'default N' or 'MAJ:MIN N' (N from 1 to 10000), one per line",
    "io_max": "'MAJ:MIN rbps=N wbps=N riops=N wiops=N' (N an integer or max), one per line",
    "profile": "default or none",
    "syscalls": "a list of syscall names",
    "errno": "an errno name such as EPERM, or a number",
}


MERGE_RULES: dict[str, str] = {
    # rule -> what it does (family.py applies them; docs/config.md lists them per key)
    "": "entries of a list merge whole (exports, environ: by mount point, by key)",
    "leaf": "the value closest to the leaf wins",
    "root": "the root-most value wins; a differing descendant value is a warning",
    "or": "the bits (umask) or the truth (gpgcheck, landlock) of every node are combined",
    "enabled": "enabled anywhere wins; disabled never undoes an ancestor's enabled",
    "cumulative": "every node's entries, leaf's first, duplicates dropped",
    "namespace": "closest to the leaf, but never looser than an ancestor",
    "capabilities": "added in order; a capability an ancestor dropped cannot come back",
    "cgroups": "per node (nested cgroups); the tightest value along the chain is effective",
    "seccomp": "default profile anywhere wins, denials add up, allows of a denial drop",
    "min": "the smallest value along the chain (max is the largest)",
    "min-ratio": "the smallest quota/period along the chain",
    "intersect": "the intersection of the chain's sets",
    "min-per-device": "per device and key, the smallest value along the chain",
    "with-smack": "not merged: read from the config file that set the winning smack label",
    "node": "not merged: a policy of the node itself, read by redwrap-dnf from its own config",
    "obsolete": "ignored",
}


def _table(*keys: Key) -> dict[str, Key]:
    return {k.name: k for k in keys}


HEADERS = _table(
    Key("alias", "alias", "alias", required=True),
    Key("name", "name", "string"),
    Key("info", "info", "string"),
)

CONFIG = _table(
    Key("path", "path", "pathlist", merge="cumulative"),
    Key("ldpath", "ldpath", "pathlist", merge="cumulative"),
    Key("rpmdir", "rpmdir", "path", merge="leaf"),
    Key("persistdir", "persistdir", "path", merge="leaf"),
    Key("cachedir", "cachedir", "path", merge="leaf"),
    Key("gpgcheck", "gpgcheck", "bool", merge="or"),
    Key("pkg-devices", "pkg_devices", "bool", merge="node"),  # redwrap-dnf: device nodes
    Key("verbose", "verbose", "int", merge="leaf"),
    Key("umask", "umask", "octal", merge="or"),
    Key("hostname", "hostname", "string", merge="leaf"),
    Key("chdir", "chdir", "path", merge="leaf"),
    Key("set-user", "set_user", "string", merge="root"),
    Key("set-group", "set_group", "string", merge="root"),
    Key("smack", "smack", "string", merge="root"),
    Key("smack-optional", "smack_optional", "bool", merge="with-smack"),
    Key("capabilities", "capabilities", "capabilities", merge="capabilities"),
    Key("share_all", "share_all", "share_all", merge="namespace"),
    *(Key(f"share_{ns}", f"share_{ns}", "share", merge="namespace") for ns in NAMESPACES),
    Key("die-with-parent", "die_with_parent", "tristate", merge="enabled"),
    Key("new-session", "new_session", "tristate", merge="enabled"),
    Key("map-root-user", "map_root_user", "bool", merge="leaf"),
    Key("inherit-env", "inherit_env", "bool", merge="leaf"),
    Key("cgrouproot", "cgrouproot", "path", merge="leaf"),
    Key("cgroups", "cgroups", "cgroups", merge="cgroups"),
    Key("seccomp", "seccomp", "seccomp", merge="seccomp"),
    Key("landlock", "landlock", "landlock", merge="or"),
    Key("unsafe", "unsafe", "bool", merge="leaf"),
    Key("maxage", None, "obsolete", merge="obsolete"),
    Key("inherit", None, "obsolete", merge="obsolete"),
)

EXPORT = _table(
    Key("mode", "mode", "export_mode", required=True),
    Key("mount", "mount", "path", required=True),
    Key("path", "path", "export_path"),
    Key("info", "info", "string"),
    Key("warn", "warn", "string"),
    Key("optional", "optional", "bool"),
)

ENVIRON = _table(
    Key("key", "key", "env_key", required=True),
    Key("value", "value", "string"),
    Key("mode", "mode", "env_mode"),
    Key("info", "info", "string"),
    Key("warn", "warn", "string"),
)

CAPABILITY = _table(
    Key("cap", "cap", "cap", required=True),
    Key("add", "add", "bool", required=True),
)

def _cg(name: str, field: str, kind: str, merge: str, controller: str, v2: str,
        v1: str = "") -> Key:
    return Key(name, field, kind, merge=merge, controller=controller, v2=v2, v1=v1)


CGROUPS: dict[str, dict[str, Key]] = {
    "cpuset": _table(
        _cg("cpus", "cpuset_cpus", "cpulist", "intersect", "cpuset", "cpuset.cpus",
            "cpuset.cpus"),
        _cg("mems", "cpuset_mems", "cpulist", "intersect", "cpuset", "cpuset.mems",
            "cpuset.mems"),
        _cg("cpus_partition", "cpuset_cpus_partition", "partition", "leaf", "cpuset",
            "cpuset.cpus.partition"),
    ),
    "mem": _table(
        _cg("min", "mem_min", "size", "min", "memory", "memory.min"),
        _cg("low", "mem_low", "size", "min", "memory", "memory.low",
            "memory.soft_limit_in_bytes"),
        _cg("high", "mem_high", "size", "min", "memory", "memory.high"),
        _cg("max", "mem_max", "size", "min", "memory", "memory.max",
            "memory.limit_in_bytes"),
        _cg("oom_group", "mem_oom_group", "bool", "leaf", "memory", "memory.oom.group"),
        _cg("swap_high", "mem_swap_high", "size", "min", "memory", "memory.swap.high"),
        _cg("swap_max", "mem_swap_max", "size", "min", "memory", "memory.swap.max",
            "memory.memsw.limit_in_bytes"),
    ),
    "cpu": _table(
        _cg("weight", "cpu_weight", "cpu_weight", "leaf", "cpu", "cpu.weight", "cpu.shares"),
        _cg("weight_nice", "cpu_weight_nice", "weight_nice", "leaf", "cpu", "cpu.weight.nice",
            "cpu.shares"),
        _cg("max", "cpu_max", "cpu_max", "min-ratio", "cpu", "cpu.max",
            "cpu.cfs_quota_us cpu.cfs_period_us"),
    ),
    "io": _table(
        _cg("weight", "io_weight", "io_weight", "leaf", "io", "io.weight", "blkio.bfq.weight"),
        _cg("max", "io_max", "io_max", "min-per-device", "io", "io.max",
            "blkio.throttle.read_bps_device blkio.throttle.write_bps_device "
            "blkio.throttle.read_iops_device blkio.throttle.write_iops_device"),
    ),
    "pids": _table(
        _cg("max", "pids_max", "pids_max", "min", "pids", "pids.max", "pids.max"),
    ),
}

CGROUP_FILES: dict[str, str] = {
    "controllers": "cgroup.controllers",        # v2: the controllers a cgroup offers
    "subtree_control": "cgroup.subtree_control",  # v2: the controllers its children get
    "join_v2": "cgroup.procs",                  # v2: join
    "join_v1": "tasks",                         # v1: join (one thread)
    "clone_children": "cgroup.clone_children",  # v1 cpuset: children copy cpus and mems
}
"""The core (controller-less) cgroup files redpak writes, by role."""

CGROUP_KEYS: dict[str, tuple[str, Key]] = {
    key.field: (f"{section}.{key.name}", key)
    for section, table in CGROUPS.items() for key in table.values()}
"""Every cgroup key by CgroupSettings field: (YAML key path below cgroups, Key)."""

SECCOMP = _table(
    Key("profile", "profile", "profile"),
    Key("deny", "deny", "syscalls"),
    Key("allow", "allow", "syscalls"),
    Key("errno", "errno", "errno"),
)

LANDLOCK = _table(
    Key("enabled", "enabled", "bool"),
)

TOP = ("headers", "config", "exports", "environ")
"""Top-level sections; only headers is required."""

SCHEMA: dict[str, dict[str, Key]] = {
    "headers": HEADERS,
    "config": CONFIG,
    "exports[]": EXPORT,
    "environ[]": ENVIRON,
    "config.capabilities[]": CAPABILITY,
    **{f"config.cgroups.{name}": table for name, table in CGROUPS.items()},
    "config.seccomp": SECCOMP,
    "config.landlock": LANDLOCK,
}
"""Every mapping of the schema by its key path: the single source for messages and docs."""

YAML_KEYS: dict[str, str] = {k.field: k.name for k in CONFIG.values() if k.field}
"""YAML spelling of every `config` field (set_user -> set-user)."""


def config_keys(rule: str) -> tuple[str, ...]:
    """The `config` fields merged by RULE, in schema order."""
    return tuple(k.field for k in CONFIG.values() if k.merge == rule and k.field)


assert all(k.merge in MERGE_RULES for k in CONFIG.values())
assert all(k.merge in MERGE_RULES for _, k in CGROUP_KEYS.values())

