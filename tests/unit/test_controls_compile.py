# Unit tests of controls.py: the seccomp BPF it generates (run through a BPF interpreter
# written here), the cgroup v2 and v1 mappings and their ops, Landlock rules and SMACK
# labels, all compiled from FamilyConfig built in Python; host probing from fake /proc files.

from __future__ import annotations

import struct

import pytest

import redpak.controls as controls
from redpak.controls import (
    DEFAULT_PROFILE,
    LL_READ_DIR,
    LL_RO,
    LL_RW,
    Hierarchy,
    Host,
    compile_controls,
    seccomp_program,
    syscall_numbers,
)
from redpak.errors import PlanError
from redpak.expand import expand_family
from redpak.family import merge_family
from redpak.config import cgroup_settings
from redpak.model import (
    CgroupSettings,
    Export,
    ExportMode,
    LandlockSettings,
    Node,
    NodeConfig,
    NodeState,
    NodeStatus,
    SeccompSettings,
    Settings,
)
from redpak.plan import Identity, LaunchOptions, compile_plan
from redpak.planfile import (
    LANDLOCK_OPTIONAL,
    CgroupAction,
    CgroupOp,
    LaunchPlan,
    Mount,
    MountFlag,
    MountKind,
)

SYS, APP = "/fam/sys", "/fam/sys/app"
ROOT = Identity(caller_uid=0, caller_gid=0, host_uid=0, host_gid=0, privileged=True)
X86, ARM = 0xC000003E, 0xC00000B7
I386 = 0x40000003
ALLOW, EPERM, ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026


def mknode(base: str, alias: str, admin: dict | None = None, exports=(), **settings) -> Node:
    def cfg(file, alias, **s):
        return NodeConfig(file=f"{base}/{file}", alias=alias, settings=Settings(**s),
                          exports=tuple(exports) if file.endswith("redpak.yaml") else ())
    return Node(base, NodeStatus(base, NodeState.ENABLE), cfg("etc/redpak.yaml", alias, **settings),
                cfg("etc/redpak-admin.yaml", f"admin-{alias}", **admin) if admin else None)


def family(root: dict | None = None, leaf: dict | None = None, admin: bool = False):
    nodes = [mknode(SYS, "sys", **(root or {})), mknode(APP, "app", **(leaf or {}))]
    return expand_family(merge_family(nodes, admin=admin), {}, 0, 0, 4242).family


def controls_of(root=None, leaf=None, host=None, mounts=(), admin=False, smack=None):
    return compile_controls(family(root, leaf, admin), mounts, host or Host(arch="x86_64"),
                            smack)


# ---- a classic BPF interpreter, enough for seccomp filters ----------------------------------

def run_filter(prog: bytes, nr: int, arch: int = X86, args=(0, 0, 0, 0, 0, 0)) -> int:
    """What a seccomp filter returns for one syscall; fails on a jump backwards or off the
    end, or an instruction a seccomp filter must not hold."""
    data = struct.pack("<iIQ6Q", nr, arch, 0x1000, *args)
    insns = [struct.unpack_from("<HBBI", prog, off) for off in range(0, len(prog), 8)]
    acc, pc = 0, 0
    for _ in range(len(insns) + 1):
        code, jt, jf, k = insns[pc]
        if code == 0x20:                       # ld [k]
            assert k % 4 == 0 and k + 4 <= len(data)
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == 0x06:                     # ret k
            return k
        elif code == 0x05:                     # ja k
            pc += 1 + k
        else:
            taken = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
        assert pc < len(insns), "ran off the end of the program"
    raise AssertionError("loop in a BPF program")


def nr(name: str, arch: str = "x86_64") -> int:
    return syscall_numbers(arch)[name]


@pytest.fixture(scope="module")
def default_x86() -> bytes:
    (prog,) = controls_of({"seccomp": SeccompSettings(profile="default")}).seccomp
    return prog


# ---- seccomp: the default profile --------------------------------------------------------

PLAIN_DENIED = sorted(n for n, (rule, _) in DEFAULT_PROFILE.items()
                      if rule == controls.DENY and n in syscall_numbers("x86_64"))


@pytest.mark.parametrize("name", PLAIN_DENIED)
def test_default_profile_denies(default_x86, name):
    assert run_filter(default_x86, nr(name)) == EPERM


@pytest.mark.parametrize("name", ["read", "write", "openat", "execve", "mmap", "clone",
                                  "exit_group", "futex", "getpid", "ioctl", "unshare",
                                  "personality", "landlock_create_ruleset", "seccomp"])
def test_default_profile_allows_what_programs_need(default_x86, name):
    assert run_filter(default_x86, nr(name)) == ALLOW


@pytest.mark.parametrize("request_word", [0x5412, 0x541C, 0x1_0000_5412, 0xFFFF_FFFF_0000_541C],
                         ids=["TIOCSTI", "TIOCLINUX", "TIOCSTI|1<<32", "TIOCLINUX|high"])
def test_tty_injection_ioctls_are_denied_on_their_low_32_bits(default_x86, request_word):
    assert run_filter(default_x86, nr("ioctl"), args=(0, request_word, 0, 0, 0, 0)) == EPERM


@pytest.mark.parametrize("request_word", [0x5413, 0x5401, 0x5412 << 16, 0x1_0000_0000])
def test_other_ioctls_pass(default_x86, request_word):
    assert run_filter(default_x86, nr("ioctl"), args=(0, request_word, 0, 0, 0, 0)) == ALLOW


@pytest.mark.parametrize("name,flags,want", [
    ("clone", 0x11, ALLOW),                        # fork: SIGCHLD
    ("clone", 0x3D0F00, ALLOW),                    # a pthread
    ("clone", 0x10000000 | 0x11, EPERM),           # CLONE_NEWUSER
    ("clone", 0x20000000, EPERM),                  # CLONE_NEWPID
    ("clone", 0x00020000, EPERM),                  # CLONE_NEWNS
    ("clone", 0x80, ALLOW),                        # NEWTIME's bit is the exit signal here
    ("unshare", 0x400, ALLOW),                     # CLONE_FILES
    ("unshare", 0x200, ALLOW),                     # CLONE_FS
    ("unshare", 0x80, EPERM),                      # CLONE_NEWTIME
    ("unshare", 0x40000000, EPERM),                # CLONE_NEWNET
    ("unshare", 0x02000000, EPERM),                # CLONE_NEWCGROUP
    ("personality", 0, ALLOW), ("personality", 8, ALLOW),
    ("personality", 0xFFFFFFFF, ALLOW),            # query
    ("personality", 0x0040000, EPERM),             # ADDR_NO_RANDOMIZE
    ("personality", 0x0400000, EPERM),             # READ_IMPLIES_EXEC
])
def test_argument_filters(default_x86, name, flags, want):
    assert run_filter(default_x86, nr(name), args=(flags, 0, 0, 0, 0, 0)) == want


def test_clone3_fails_with_enosys_so_libc_falls_back_to_clone(default_x86):
    assert run_filter(default_x86, nr("clone3")) == ENOSYS


def test_syscalls_newer_than_the_table_get_enosys(default_x86):
    assert run_filter(default_x86, max(syscall_numbers("x86_64").values()) + 1) == ENOSYS
    assert run_filter(default_x86, 1000) == ENOSYS


@pytest.mark.parametrize("name", ["getpid", "read", "unshare"])
def test_the_i386_entry_point_is_refused_whole(default_x86, name):
    # int 0x80 from a 64-bit process reports AUDIT_ARCH_I386 with i386 numbers
    assert run_filter(default_x86, {"getpid": 20, "read": 3, "unshare": 310}[name],
                      arch=I386) == EPERM


def test_x32_syscalls_are_refused(default_x86):
    assert run_filter(default_x86, 0x40000000 | nr("read")) == EPERM
    assert run_filter(default_x86, 0x40000000 | nr("unshare")) == EPERM


def test_aarch64_program_uses_its_arch_and_numbers():
    (prog,) = controls_of({"seccomp": SeccompSettings(profile="default")},
                          host=Host(arch="aarch64")).seccomp
    assert run_filter(prog, nr("unshare", "aarch64"), ARM, (0x10000000,) + (0,) * 5) == EPERM
    assert run_filter(prog, nr("keyctl", "aarch64"), ARM) == EPERM
    assert run_filter(prog, nr("read", "aarch64"), ARM) == ALLOW
    assert run_filter(prog, nr("keyctl", "aarch64"), 0x40000028) == EPERM  # 32-bit ARM
    assert run_filter(prog, nr("keyctl", "aarch64"), X86) == EPERM


def test_unknown_architecture_is_a_plan_error():
    with pytest.raises(PlanError) as err:
        controls_of({"seccomp": SeccompSettings(profile="default")}, host=Host(arch="mips"))
    assert "mips" in str(err.value)


def test_no_seccomp_section_no_filter():
    assert controls_of().seccomp == ()
    assert controls_of({"seccomp": SeccompSettings(profile="none")}).seccomp == ()


# ---- seccomp: lists, errno, merging ---------------------------------------------------------

def test_errno_is_configurable_by_name_or_number():
    (prog,) = controls_of({"seccomp": SeccompSettings(profile="default", errno="EACCES")}).seccomp
    assert run_filter(prog, nr("mount")) == 0x00050000 | 13
    (prog,) = controls_of({"seccomp": SeccompSettings(deny=("getpid",), errno="130")}).seccomp
    assert run_filter(prog, nr("getpid")) == 0x00050000 | 130


def test_unknown_errno_name_is_a_plan_error():
    with pytest.raises(PlanError) as err:
        controls_of({"seccomp": SeccompSettings(profile="default", errno="ENOPE")})
    assert "seccomp.errno" in str(err.value) and "ENOPE" in str(err.value)


def test_deny_list_alone_keeps_the_arch_check():
    (prog,) = controls_of(leaf={"seccomp": SeccompSettings(deny=("getpid", "uname"))}).seccomp
    assert run_filter(prog, nr("getpid")) == EPERM
    assert run_filter(prog, nr("uname")) == EPERM
    assert run_filter(prog, nr("mount")) == ALLOW       # no default profile
    assert run_filter(prog, 20, arch=I386) == EPERM     # getpid through int 0x80


def test_denials_are_the_union_across_the_family():
    (prog,) = controls_of({"seccomp": SeccompSettings(deny=("getpid",))},
                          {"seccomp": SeccompSettings(profile="default", deny=("uname",))}
                          ).seccomp
    for name in ("getpid", "uname", "mount", "keyctl"):
        assert run_filter(prog, nr(name)) == EPERM


def test_a_node_allow_relaxes_its_own_default_profile():
    (prog,) = controls_of(leaf={"seccomp": SeccompSettings(profile="default",
                                                           allow=("ptrace", "ioctl"))}).seccomp
    assert run_filter(prog, nr("ptrace")) == ALLOW
    assert run_filter(prog, nr("ioctl"), args=(0, 0x5412, 0, 0, 0, 0)) == ALLOW
    assert run_filter(prog, nr("mount")) == EPERM


def test_a_child_allow_never_relaxes_an_ancestors_profile():
    (prog,) = controls_of({"seccomp": SeccompSettings(profile="default")},
                          {"seccomp": SeccompSettings(profile="none", allow=("ptrace",))}
                          ).seccomp
    assert run_filter(prog, nr("ptrace")) == EPERM


def test_an_explicit_deny_wins_over_an_allow_and_covers_every_argument():
    (prog,) = controls_of({"seccomp": SeccompSettings(deny=("ioctl",))},
                          {"seccomp": SeccompSettings(profile="default", allow=("ioctl",))}
                          ).seccomp
    assert run_filter(prog, nr("ioctl"), args=(0, 0x5413, 0, 0, 0, 0)) == EPERM


def test_admin_config_seccomp_applies_in_admin_mode_only():
    nodes = [mknode(SYS, "sys"), mknode(APP, "app", admin={"seccomp": SeccompSettings(
        profile="default")})]
    normal = expand_family(merge_family(nodes), {}, 0, 0, 1).family
    admin = expand_family(merge_family(nodes, admin=True), {}, 0, 0, 1).family
    assert compile_controls(normal, (), Host(arch="x86_64")).seccomp == ()
    assert compile_controls(admin, (), Host(arch="x86_64")).seccomp


def test_unknown_syscall_is_a_plan_error_with_a_suggestion():
    with pytest.raises(PlanError) as err:
        controls_of(leaf={"seccomp": SeccompSettings(deny=("keyctrl",))})
    text = str(err.value)
    assert "seccomp.deny" in text and "keyctrl" in text and "did you mean keyctl" in text
    assert "node 'app'" in text


def test_syscall_of_another_architecture_is_a_warning():
    ctl = controls_of(leaf={"seccomp": SeccompSettings(deny=("open", "getpid"))},
                      host=Host(arch="aarch64"))
    assert any("'open'" in w and "aarch64" in w for w in ctl.warnings)
    assert run_filter(ctl.seccomp[0], nr("getpid", "aarch64"), ARM) == EPERM


def test_long_deny_lists_assemble_with_far_jumps():
    names = tuple(sorted(syscall_numbers("x86_64"))[:300])
    names = tuple(n for n in names if n not in ("read", "write"))
    (prog,) = controls_of(leaf={"seccomp": SeccompSettings(deny=names)}).seccomp
    assert len(prog) // 8 > 256
    for name in names:
        assert run_filter(prog, nr(name)) == EPERM, name
    assert run_filter(prog, nr("read")) == ALLOW


def test_program_is_deterministic():
    rules = {"mount": controls.DENY, "ioctl": controls.TTY_IOCTLS}
    assert seccomp_program("x86_64", rules, 1) == seccomp_program("x86_64", dict(reversed(
        list(rules.items()))), 1)


def test_syscall_tables_are_consistent():
    for arch in ("x86_64", "aarch64"):
        table = syscall_numbers(arch)
        assert len(set(table.values())) == len(table)
        for name in ("clone3", "open_tree", "mount_setattr", "landlock_restrict_self",
                     "open_tree_attr", "file_setattr"):
            assert name in table
    assert (nr("read"), nr("unshare"), nr("keyctl"), nr("clone3")) == (0, 272, 250, 435)
    assert (nr("read", "aarch64"), nr("unshare", "aarch64"), nr("mount", "aarch64")) == (63, 97,
                                                                                         40)


# ---- cgroups: v2 ------------------------------------------------------------------------

V2 = Host(arch="x86_64")  # the default: cgroup v2 offering every controller, caller at "/"


def ops_text(ops) -> list[str]:
    out = []
    for op in ops:
        name = op.path.rsplit("/", 1)[-1]
        if op.action is CgroupAction.WRITE:
            out.append(f"{name}:{op.file}={op.value}")
        elif op.action is CgroupAction.COPY:
            out.append(f"{name}:copy {op.file}")
        else:
            out.append(f"{op.action.name.lower()} {op.path}")
    return out


def writes(ops, node: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for op in ops:
        if op.action is CgroupAction.WRITE and op.path.rsplit("/", 1)[-1].startswith(
                f"redpak-{node}-"):
            found.setdefault(op.file, []).append(op.value)
    return found


FULL = cgroup_settings(cpuset_cpus="0-1", cpuset_mems="0", cpuset_cpus_partition="member",
                      mem_min="1M", mem_low="16M", mem_high="200M", mem_max="256M",
                      mem_oom_group=True, mem_swap_high="max", mem_swap_max="0",
                      cpu_weight_nice=5, cpu_max="50000 100000",
                      io_weight="default 100\n8:0 200", io_max="8:0 rbps=1048576 wiops=120",
                      pids_max="64")


def test_v2_every_key_is_written_with_v2_semantics():
    ops = controls_of(leaf={"cgroups": FULL}, host=V2).cgroup
    assert writes(ops, "app") == {
        "cpuset.cpus": ["0-1"], "cpuset.mems": ["0"], "cpuset.cpus.partition": ["member"],
        "memory.min": ["1048576"], "memory.low": ["16777216"], "memory.high": ["209715200"],
        "memory.max": ["268435456"], "memory.swap.high": ["max"], "memory.swap.max": ["0"],
        "memory.oom.group": ["1"], "cpu.weight.nice": ["5"], "cpu.max": ["50000 100000"],
        "io.weight": ["default 100", "8:0 200"], "io.max": ["8:0 rbps=1048576 wiops=120"],
        "pids.max": ["64"],
        "cgroup.subtree_control": ["+cpu +cpuset +io +memory +pids"]}
    assert writes(ops, "sys") == {"cgroup.subtree_control": ["+cpu +cpuset +io +memory +pids"]}


def test_v2_layout_nested_per_node_checked_root_attach_last():
    ops = controls_of({"cgroups": cgroup_settings(pids_max="100")},
                      {"cgroups": cgroup_settings(mem_max="64M")}, host=V2).cgroup
    text = ops_text(ops)
    sys_dir = ops[2].path
    app_dir = ops[5].path
    assert ops[0] == CgroupOp(CgroupAction.CHECK, "/sys/fs/cgroup", "", "/")
    assert text[1] == "cgroup:cgroup.subtree_control=+memory +pids"
    assert sys_dir.startswith("/sys/fs/cgroup/redpak-sys-")
    assert app_dir.startswith(sys_dir + "/redpak-app-")
    assert text[2:] == [f"mkdir {sys_dir}", f"{sys_dir.rsplit('/', 1)[1]}:pids.max=100",
                        f"{sys_dir.rsplit('/', 1)[1]}:cgroup.subtree_control=+memory +pids",
                        f"mkdir {app_dir}", f"{app_dir.rsplit('/', 1)[1]}:memory.max=67108864",
                        f"{app_dir.rsplit('/', 1)[1]}:cgroup.subtree_control=+memory +pids",
                        f"attach {app_dir}"]
    assert ops[-1].file == "cgroup.procs"


def test_v2_child_limits_above_the_parents_are_written_as_given():
    # cgroup v2 caps a child by its ancestors itself: no rewriting needed
    ops = controls_of({"cgroups": cgroup_settings(cpu_max="10000 100000", pids_max="10")},
                      {"cgroups": cgroup_settings(cpu_max="90000 100000", pids_max="1000")},
                      host=V2).cgroup
    assert writes(ops, "app")["cpu.max"] == ["90000 100000"]
    assert writes(ops, "app")["pids.max"] == ["1000"]


def test_v2_cpu_max_period_defaults_and_max():
    ops = controls_of(leaf={"cgroups": cgroup_settings(cpu_max="max")}, host=V2).cgroup
    assert writes(ops, "app")["cpu.max"] == ["max 100000"]
    ops = controls_of(leaf={"cgroups": cgroup_settings(cpu_max="25000")}, host=V2).cgroup
    assert writes(ops, "app")["cpu.max"] == ["25000 100000"]


def test_v2_controller_not_offered_is_a_plan_error():
    host = Host(arch="x86_64", hierarchies=(Hierarchy(2, "/sys/fs/cgroup", "",
                                                      frozenset({"memory"}), "/user.slice"),))
    with pytest.raises(PlanError) as err:
        controls_of(leaf={"cgroups": cgroup_settings(pids_max="10")}, host=host)
    text = str(err.value)
    assert text.startswith("cgroups.pids.max:") and "node 'app'" in text
    assert "'pids'" in text and "/sys/fs/cgroup/user.slice" in text


def test_no_limit_no_cgroups():
    assert controls_of({"cgroups": CgroupSettings()}, host=V2).cgroup == ()
    assert controls_of({"cgrouproot": "/sys/fs/cgroup/x"}, host=V2).cgroup == ()


def test_explicit_cgrouproot_has_no_check_and_must_exist():
    host = Host(arch="x86_64", isdir=lambda p: p == "/sys/fs/cgroup/redpak.slice")
    ops = controls_of({"cgrouproot": "/sys/fs/cgroup/redpak.slice"},
                      {"cgroups": cgroup_settings(pids_max="5")}, host=host).cgroup
    assert CgroupAction.CHECK not in [op.action for op in ops]
    assert ops[0] == CgroupOp(CgroupAction.WRITE, "/sys/fs/cgroup/redpak.slice",
                              "cgroup.subtree_control", "+pids")
    with pytest.raises(PlanError) as err:
        controls_of({"cgrouproot": "/sys/fs/cgroup/nope"},
                    {"cgroups": cgroup_settings(pids_max="5")}, host=host)
    assert "cgrouproot" in str(err.value) and "does not exist" in str(err.value)
    with pytest.raises(PlanError) as err:
        controls_of({"cgrouproot": "/srv/cg"}, {"cgroups": cgroup_settings(pids_max="5")},
                    host=host)
    assert "not inside a cgroup hierarchy" in str(err.value)


def test_directory_names_follow_the_node_and_its_settings():
    a = controls_of({"cgroups": cgroup_settings(pids_max="10")}, host=V2).cgroup
    b = controls_of({"cgroups": cgroup_settings(pids_max="10")}, host=V2).cgroup
    c = controls_of({"cgroups": cgroup_settings(pids_max="11")}, host=V2).cgroup
    assert a == b
    assert a[2].path != c[2].path          # other limits: not shared with those launches
    assert a[5].path.rsplit("/", 1)[1] == c[5].path.rsplit("/", 1)[1]  # app's own: same


# ---- cgroups: hybrid (v1 hierarchies) --------------------------------------------------------

def hybrid(memsw=True, bfq=False, caller="/") -> Host:
    def read(path):
        if path.endswith("memory.memsw.limit_in_bytes"):
            return "9223372036854771712\n" if memsw else None
        if path.endswith("blkio.bfq.weight"):
            return "default 100\n" if bfq else None
        return ""
    hs = tuple(Hierarchy(1, f"/sys/fs/cgroup/{c}", c, frozenset({c}), caller)
               for c in ("blkio", "cpu", "cpuset", "memory", "pids"))
    return Host(arch="x86_64", hierarchies=hs + (Hierarchy(2, "/sys/fs/cgroup/unified", "",
                                                            frozenset(), "/"),), read=read)


def test_v1_mapping_of_each_supported_key():
    cg = cgroup_settings(cpuset_cpus="0-1", cpuset_mems="0", cpuset_cpus_partition="member",
                        mem_low="16M", mem_max="256M", mem_swap_max="64M", mem_oom_group=False,
                        mem_min="0", mem_high="max", cpu_weight=200, cpu_max="50000 100000",
                        io_max="8:0 rbps=1048576 wiops=max", pids_max="64")
    ops = controls_of(leaf={"cgroups": cg}, host=hybrid()).cgroup
    assert writes(ops, "app") == {
        "cgroup.clone_children": ["1"], "cpuset.cpus": ["0-1"], "cpuset.mems": ["0"],
        "memory.limit_in_bytes": ["268435456"],
        "memory.memsw.limit_in_bytes": [str(256 * 2**20 + 64 * 2**20)],
        "memory.soft_limit_in_bytes": ["16777216"], "cpu.shares": ["2048"],
        "cpu.cfs_period_us": ["100000"], "cpu.cfs_quota_us": ["50000"],
        "blkio.throttle.read_bps_device": ["8:0 1048576"],
        "blkio.throttle.write_iops_device": ["8:0 0"], "pids.max": ["64"]}


def test_v1_ops_go_to_each_controllers_hierarchy():
    ops = controls_of(leaf={"cgroups": cgroup_settings(mem_max="64M", pids_max="9")},
                      host=hybrid()).cgroup
    hierarchies = {op.path.split("/")[4] for op in ops}
    assert hierarchies == {"memory", "pids"}
    checks = [op for op in ops if op.action is CgroupAction.CHECK]
    assert [(c.path, c.file, c.value) for c in checks] == [
        ("/sys/fs/cgroup/memory", "memory", "/"), ("/sys/fs/cgroup/pids", "pids", "/")]
    assert all(op.file != "cgroup.subtree_control" for op in ops)   # v1 has none
    attach = [op for op in ops if op.action is CgroupAction.ATTACH]
    assert [op.path.split("/")[4] for op in attach] == ["memory", "pids"]
    assert {op.file for op in attach} == {"tasks"}      # v1: the one thread, cheaply


def test_v1_root_is_the_callers_cgroup_in_each_hierarchy():
    host = hybrid(caller="/process_api/abc")
    ops = controls_of(leaf={"cgroups": cgroup_settings(mem_max="64M")}, host=host).cgroup
    assert ops[0] == CgroupOp(CgroupAction.CHECK, "/sys/fs/cgroup/memory/process_api/abc",
                              "memory", "/process_api/abc")
    assert ops[1].path.startswith("/sys/fs/cgroup/memory/process_api/abc/redpak-sys-")


@pytest.mark.parametrize("field,value,words", [
    ("mem_min", "16M", "memory protection"),
    ("mem_high", "200M", "memory.high"),
    ("mem_swap_high", "1G", "swap throttling"),
    ("mem_oom_group", True, "as a group"),
    ("cpuset_cpus_partition", "root", "partitions"),
])
def test_v1_keys_without_an_honest_equivalent_are_errors(field, value, words):
    with pytest.raises(PlanError) as err:
        controls_of(leaf={"cgroups": CgroupSettings(**{field: value})}, host=hybrid())
    text = str(err.value)
    assert text.startswith(f"cgroups.{controls._CG_FIELDS[field][0]}:")
    assert "node 'app'" in text and "cgroup v1" in text and words in text


def test_v1_swap_needs_accounting_and_a_memory_limit():
    with pytest.raises(PlanError) as err:
        controls_of(leaf={"cgroups": cgroup_settings(mem_max="64M", mem_swap_max="0")},
                    host=hybrid(memsw=False))
    assert "swapaccount" in str(err.value)
    with pytest.raises(PlanError) as err:
        controls_of(leaf={"cgroups": cgroup_settings(mem_swap_max="0")}, host=hybrid())
    assert "needs mem.max in the same node" in str(err.value)


def test_v1_io_weight_needs_bfq():
    with pytest.raises(PlanError) as err:
        controls_of(leaf={"cgroups": cgroup_settings(io_weight="default 100")}, host=hybrid())
    assert "cgroups.io.weight" in str(err.value) and "BFQ" in str(err.value)
    ops = controls_of(leaf={"cgroups": cgroup_settings(io_weight="default 100")},
                      host=hybrid(bfq=True)).cgroup
    assert writes(ops, "app")["blkio.bfq.weight"] == ["default 100"]


@pytest.mark.parametrize("nice,shares", [(0, "1024"), (-20, "88761"), (19, "15"), (5, "335")])
def test_v1_weight_nice_maps_to_the_schedulers_weight(nice, shares):
    ops = controls_of(leaf={"cgroups": cgroup_settings(cpu_weight_nice=nice)},
                      host=hybrid()).cgroup
    assert writes(ops, "app")["cpu.shares"] == [shares]


@pytest.mark.parametrize("weight,shares", [(100, "1024"), (1, "10"), (10000, "102400")])
def test_v1_weight_maps_to_shares(weight, shares):
    ops = controls_of(leaf={"cgroups": cgroup_settings(cpu_weight=weight)}, host=hybrid()).cgroup
    assert writes(ops, "app")["cpu.shares"] == [shares]


@pytest.mark.parametrize("v1", [True, False], ids=["v1", "v2"])
def test_weight_and_weight_nice_in_one_node_is_an_error(v1):
    with pytest.raises(PlanError) as err:
        controls_of(leaf={"cgroups": cgroup_settings(cpu_weight=100, cpu_weight_nice=0)},
                    host=hybrid() if v1 else V2)
    assert "cgroups.cpu.weight_nice" in str(err.value) and "node 'app'" in str(err.value)


def test_v1_cpu_quota_above_the_parents_is_capped():
    ops = controls_of({"cgroups": cgroup_settings(cpu_max="20000 100000")},
                      {"cgroups": cgroup_settings(cpu_max="90000 100000")}, host=hybrid()).cgroup
    assert writes(ops, "app")["cpu.cfs_quota_us"] == ["20000"]
    ops = controls_of({"cgroups": cgroup_settings(cpu_max="20000 100000")},
                      {"cgroups": cgroup_settings(cpu_max="5000 100000")}, host=hybrid()).cgroup
    assert writes(ops, "app")["cpu.cfs_quota_us"] == ["5000"]
    ops = controls_of({"cgroups": cgroup_settings(cpu_max="20000 100000")},
                      {"cgroups": cgroup_settings(cpu_max="max")}, host=hybrid()).cgroup
    assert writes(ops, "app")["cpu.cfs_quota_us"] == ["-1"]  # the parent's quota applies


def test_v1_cpusets_intersect_along_the_family_and_copy_the_parents():
    ops = controls_of({"cgroups": cgroup_settings(cpuset_cpus="0-3")},
                      {"cgroups": cgroup_settings(cpuset_cpus="2-7")}, host=hybrid()).cgroup
    text = ops_text(ops)
    sys_name = next(t.split(":")[0] for t in text if t.startswith("redpak-sys-"))
    assert f"{sys_name}:cpuset.cpus=0-3" in text
    assert f"{sys_name}:copy cpuset.mems" in text          # root-most: the parent's nodes
    assert writes(ops, "app")["cpuset.cpus"] == ["2-3"]
    assert "cpuset.mems" not in writes(ops, "app")          # inherited (clone_children)


def test_v2_cpusets_intersect_along_the_family():
    # v2 refuses CPUs the machine lacks (ERANGE): a child says 2-7 under a parent's 0-3,
    # it gets 2-3, as on v1 (found by the cgroup v2 VM lane, tools/vm/lane v2)
    ops = controls_of({"cgroups": cgroup_settings(cpuset_cpus="0-3")},
                      {"cgroups": cgroup_settings(cpuset_cpus="2-7", cpuset_mems="0")}).cgroup
    assert writes(ops, "sys")["cpuset.cpus"] == ["0-3"]
    assert writes(ops, "app")["cpuset.cpus"] == ["2-3"]
    assert writes(ops, "app")["cpuset.mems"] == ["0"]


def test_v1_memory_limits_stay_per_node():
    # v1 memory limits are hierarchical: a child above its parent is capped by the kernel
    ops = controls_of({"cgroups": cgroup_settings(mem_max="64M")},
                      {"cgroups": cgroup_settings(mem_max="1G")}, host=hybrid()).cgroup
    assert writes(ops, "sys")["memory.limit_in_bytes"] == [str(64 << 20)]
    assert writes(ops, "app")["memory.limit_in_bytes"] == [str(1 << 30)]


def test_controller_on_no_hierarchy_is_an_error():
    host = Host(arch="x86_64", hierarchies=(Hierarchy(1, "/sys/fs/cgroup/memory", "memory",
                                                      frozenset({"memory"}), "/"),))
    with pytest.raises(PlanError) as err:
        controls_of(leaf={"cgroups": cgroup_settings(pids_max="10")}, host=host)
    assert "cgroups.pids.max" in str(err.value) and "no 'pids' cgroup controller" in str(
        err.value)


def test_admin_cgroups_only_in_admin_mode():
    nodes = [mknode(SYS, "sys"), mknode(APP, "app",
                                        admin={"cgroups": cgroup_settings(pids_max="7")})]
    normal = expand_family(merge_family(nodes), {}, 0, 0, 1).family
    admin = expand_family(merge_family(nodes, admin=True), {}, 0, 0, 1).family
    assert compile_controls(normal, (), hybrid()).cgroup == ()
    assert writes(compile_controls(admin, (), hybrid()).cgroup, "app")["pids.max"] == ["7"]


# ---- probing the host -----------------------------------------------------------------------

HYBRID_CGROUP = """9:name=systemd:/
8:pids:/
4:memory:/process_api/xyz
2:cpu,cpuacct:/
0::/
"""
HYBRID_MOUNTINFO = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
37 30 0:33 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
"""
V2_CGROUP = "0::/user.slice/app\\040x.scope\n"
V2_MOUNTINFO = """\
28 23 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw
"""


def fake_files(monkeypatch, files: dict[str, str]) -> None:
    monkeypatch.setattr(controls, "_read_file", files.get)


def test_probe_hybrid_host(monkeypatch):
    fake_files(monkeypatch, {"/proc/self/cgroup": HYBRID_CGROUP,
                             "/proc/self/mountinfo": HYBRID_MOUNTINFO,
                             "/sys/fs/cgroup/unified/cgroup.controllers": ""})
    host = controls.probe_host()
    assert host.mode == "hybrid"
    by_key = {h.key: h for h in host.hierarchies}
    assert set(by_key) == {"", "cpu,cpuacct", "memory", "pids"}   # name=systemd: no controller
    assert by_key["memory"].caller == "/process_api/xyz"
    assert by_key["memory"].dir_of("/process_api/xyz") == "/sys/fs/cgroup/memory/process_api/xyz"
    assert host.hierarchy_for("cpu").mount == "/sys/fs/cgroup/cpu,cpuacct"
    assert host.hierarchy_for("memory").version == 1
    assert host.hierarchy_for("io").version == 2       # blkio is on no v1 hierarchy here


def test_probe_v2_host(monkeypatch):
    fake_files(monkeypatch, {"/proc/self/cgroup": V2_CGROUP.replace("\\040", " "),
                             "/proc/self/mountinfo": V2_MOUNTINFO,
                             "/sys/fs/cgroup/user.slice/app x.scope/cgroup.controllers":
                                 "cpu memory pids\n"})
    host = controls.probe_host()
    assert host.mode == "v2"
    (h,) = host.hierarchies
    assert h.controllers == {"cpu", "memory", "pids"}
    assert h.dir_of(h.caller) == "/sys/fs/cgroup/user.slice/app x.scope"


def test_hierarchy_seen_through_a_mount_root():
    h = Hierarchy(2, "/sys/fs/cgroup", "", frozenset(), "/ctr/app", mount_root="/ctr")
    assert h.dir_of("/ctr/app") == "/sys/fs/cgroup/app"
    assert h.dir_of("/other") is None


# ---- Landlock -------------------------------------------------------------------------------

MOUNTS = (
    Mount(MountKind.BIND, "/bin", "/usr/bin", MountFlag.RDONLY | MountFlag.OPTIONAL),
    Mount(MountKind.BIND, "/data", "/srv/data"),
    Mount(MountKind.BIND_FILE, "/etc/hosts", "/etc/hosts", MountFlag.RDONLY),
    Mount(MountKind.TMPFS, "/tmp"), Mount(MountKind.PROC, "/proc"), Mount(MountKind.DEV, "/dev"),
    Mount(MountKind.DIR, "/var"), Mount(MountKind.SYMLINK, "/home/u", "/data"),
    Mount(MountKind.DATA, "/etc/passwd", flags=MountFlag.RDONLY, data=b"x"),
)


def test_landlock_rules_follow_the_exports():
    rules = controls_of({"landlock": LandlockSettings(enabled=True)}, mounts=MOUNTS).landlock
    by_path = {r.path: r for r in rules}
    assert by_path["/"].access == LL_READ_DIR
    assert by_path["/bin"].access == LL_RO and by_path["/bin"].flags == LANDLOCK_OPTIONAL
    assert by_path["/data"].access == LL_RW and not by_path["/data"].flags
    assert by_path["/etc/hosts"].access == LL_RO
    assert by_path["/tmp"].access == LL_RW and by_path["/var"].access == LL_RW
    assert by_path["/dev/shm"].access == LL_RW
    assert not by_path["/dev"].access & (controls.LL_MAKE_REG | controls.LL_REMOVE_FILE)
    assert not by_path["/proc"].access & controls.LL_MAKE_REG
    assert by_path["/etc/passwd"].access == controls.LL_READ_FILE
    assert "/home/u" not in by_path


def test_read_only_rules_grant_no_write_right():
    write_rights = (controls.LL_WRITE_FILE | controls.LL_REMOVE_FILE | controls.LL_MAKE_REG
                    | controls.LL_TRUNCATE | controls.LL_REMOVE_DIR | controls.LL_MAKE_DIR)
    assert not LL_RO & write_rights


def test_landlock_off_or_merged_from_any_node():
    assert controls_of(mounts=MOUNTS).landlock == ()
    assert controls_of({"landlock": LandlockSettings(enabled=False)}, mounts=MOUNTS).landlock == ()
    assert controls_of(leaf={"landlock": LandlockSettings(enabled=True)}, mounts=MOUNTS).landlock


# ---- SMACK ----------------------------------------------------------------------------------

def test_smack_label_from_the_root_most_node_and_its_optional_flag():
    ctl = controls_of({"smack": "System", "smack_optional": True}, {"smack": "App"})
    assert (ctl.smack.label, ctl.smack.optional) == ("System", True)
    assert any("runs unlabelled" in w for w in ctl.warnings)
    ctl = controls_of({"smack": "System"}, {"smack_optional": True})
    assert ctl.smack.optional is False   # the flag belongs to the node that set the label


def test_cli_smack_label_is_never_optional():
    ctl = controls_of({"smack": "System", "smack_optional": True}, smack="Cli")
    assert (ctl.smack.label, ctl.smack.optional) == ("Cli", False)


def test_smack_present_no_warning():
    ctl = controls_of({"smack": "System", "smack_optional": True},
                      host=Host(arch="x86_64", smack=True))
    assert ctl.warnings == ()


@pytest.mark.parametrize("label", ["", "a b", "a/b", "-x", "x" * 256, "q'", "tab\t"])
def test_bad_smack_labels_are_plan_errors(label):
    with pytest.raises(PlanError) as err:
        controls_of(smack=label or None, root={"smack": label} if label else {"smack": " "})
    assert "smack" in str(err.value)


# ---- the plan -------------------------------------------------------------------------------

def test_controls_survive_encode_decode_and_dump():
    nodes = [mknode(SYS, "sys", seccomp=SeccompSettings(profile="default"),
                    landlock=LandlockSettings(enabled=True),
                    cgroups=cgroup_settings(pids_max="10", cpuset_cpus="0")),
             mknode(APP, "app", smack="App", smack_optional=True,
                    exports=(Export(ExportMode.TMPFS, "/tmp"),))]
    fam = expand_family(merge_family(nodes), {}, 0, 0, 1).family
    plan = compile_plan(fam, ROOT, LaunchOptions(), host=hybrid()).plan
    assert LaunchPlan.decode(plan.encode()) == plan
    dump = plan.dump()
    assert "cgroup copy" in dump and "cpuset.mems from parent" in dump
    assert "cgroup check '/sys/fs/cgroup/pids' hierarchy 'pids' caller '/'" in dump
    assert "landlock '/tmp' access 0xffff" in dump
    assert "smack 'App' optional" in dump
    assert "seccomp[0]" in dump
