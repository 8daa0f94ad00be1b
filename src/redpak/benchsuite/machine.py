"""The machine a result was measured on: CPU, cores, kernel, cgroup mode, LSMs, versions."""

from __future__ import annotations

import os
import platform


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cpu_model(cpuinfo: str) -> str:
    """The CPU's name from /proc/cpuinfo text: x86's "model name", else ARM's "Hardware" or
    "Model", else the implementer/part numbers."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields and value.strip():
            fields[key.strip()] = value.strip()
    for key in ("model name", "Hardware", "Model", "cpu model", "Processor"):
        if key in fields:
            return fields[key]
    if "CPU implementer" in fields:
        return f"implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')}"
    return platform.processor() or "unknown"


def cgroup_mode() -> str:
    """"v2" (unified), "hybrid" (v1 controllers plus a v2 tree), "v1", or "none"."""
    mounts = _read("/proc/self/mounts").splitlines()
    types = {parts[1]: parts[2] for parts in (m.split() for m in mounts) if len(parts) > 2}
    if types.get("/sys/fs/cgroup") == "cgroup2":
        return "v2"
    has_v1 = any(t == "cgroup" for t in types.values())
    has_v2 = any(t == "cgroup2" for t in types.values())
    if has_v1 and has_v2:
        return "hybrid"
    return "v1" if has_v1 else "v2" if has_v2 else "none"


# LSM ids of the lsm_list_modules syscall (include/uapi/linux/lsm.h)
LSM_IDS = {100: "capability", 101: "selinux", 102: "smack", 103: "tomoyo", 104: "apparmor",
           105: "yama", 106: "loadpin", 107: "safesetid", 108: "lockdown", 109: "bpf",
           110: "landlock", 111: "ima", 112: "evm", 113: "ipe"}
SYS_LSM_LIST_MODULES = 461      # the same number on x86_64 and arm64 (kernel 6.8+)


def lsms() -> list[str]:
    """The active LSMs: securityfs's list when it is mounted, else the kernel's answer to
    lsm_list_modules(2), else an empty list."""
    text = _read("/sys/kernel/security/lsm").strip()
    if text:
        return [x for x in text.split(",") if x]
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        ids = (ctypes.c_uint64 * 64)()
        size = ctypes.c_uint32(ctypes.sizeof(ids))
        count = libc.syscall(SYS_LSM_LIST_MODULES, ids, ctypes.byref(size), 0)
    except (OSError, AttributeError):
        return []
    if count <= 0:
        return []
    return [LSM_IDS.get(ids[i], f"lsm-{ids[i]}") for i in range(min(count, 64))]


def describe() -> dict:
    from .. import __version__
    osrel = dict(line.split("=", 1) for line in _read("/etc/os-release").splitlines()
                 if "=" in line)
    return {
        "arch": platform.machine(),
        "cpu": cpu_model(_read("/proc/cpuinfo")),
        "cores": os.cpu_count() or 0,
        "kernel": platform.release(),
        "cgroups": cgroup_mode(),
        "lsms": lsms(),
        "python": platform.python_version(),
        "os": osrel.get("PRETTY_NAME", "").strip('"') or platform.system(),
        "redpak_version": __version__,
    }
