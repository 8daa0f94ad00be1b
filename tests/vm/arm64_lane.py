"""Host side of the ARM64 lane (tools/vm/lane arm64): cross-builds the C core's programs
static for aarch64 and compiles the smoke test's plans for aarch64 with the Python compiler,
into a directory the guest sees at the same path; tools/vm/arm64-guest.sh runs the cases
in the guest and tests/vm/test_arm64.py checks what they printed.

    python tests/vm/arm64_lane.py DIR [--seccomp-arch ARCH]

--seccomp-arch compiles the plans for another architecture (the lane's --broken switch:
a seccomp table that does not match the guest must make the lane fail)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests" / "privileged"), str(REPO / "tests" / "c")]

CC = "aarch64-linux-gnu-gcc"
CORE = sorted(str(p) for p in (REPO / "csrc").glob("[a-z]*.c"))

# case name -> (plan, argv): run in the guest by arm64-guest.sh as `rplaunch PLAN -- ARGV`
CASES = {
    "info": ("plain", ["/probe", "info"]),
    "mounts": ("plain", ["/probe", "mounts"]),
    "files": ("plain", ["/ctl", "write", "/tmp/x", "write", "/x", "read", "/ctl",
                        "read", "/bin/sh"]),
    "seccomp": ("seccomp", ["/ctl", "status", "sys", "unshare", "sys", "mount", "sys", "bpf",
                            "sys", "keyctl", "sys", "ptrace", "sys", "kexec", "sys",
                            "init_module", "sys", "getpid", "sys", "unshare-files"]),
    "noseccomp": ("plain", ["/ctl", "status", "sys", "keyctl", "sys", "getpid"]),
    "forkbomb": ("pids", ["/ctl", "forkbomb"]),
    "exit7": ("plain", ["/probe", "exit", "7"]),
    "killed": ("plain", ["/probe", "kill", "9"]),
    "notfound": ("plain", ["/no/such/program"]),
}


def build(out: Path) -> None:
    """Static aarch64 builds: the C unit tests, the C core's launcher, redwrap, helpers."""
    def cc(target: str, *sources: str, flags: tuple[str, ...] = ()) -> None:
        subprocess.run([CC, "-static", "-O2", "-std=gnu11", "-Wall", *flags, "-o",
                        str(out / target), *sources], check=True)

    sys.path.insert(0, str(REPO / "csrc" / "main"))
    import gen_header
    (out / "redwrap_build.h").write_text(gen_header.header(b"/nonexistent/python3"))
    cc("test_plan", str(REPO / "tests/c/test_plan.c"), str(REPO / "csrc/plan.c"),
       str(REPO / "csrc/error.c"), flags=("-Werror", "-Wextra", "-Wno-unused-parameter",
                                          f"-I{REPO / 'csrc'}"))
    cc("rplaunch", str(REPO / "tools/rplaunch.c"), *CORE, flags=(f"-I{REPO / 'csrc'}",))
    cc("redwrap", *sorted(str(p) for p in (REPO / "csrc/main").glob("*.c")), *CORE,
       flags=(f"-I{REPO / 'csrc'}", f"-I{REPO / 'csrc/main'}", f"-I{out}"))
    cc("probe", str(REPO / "tools/probe.c"))
    cc("ctltool", str(REPO / "tests/privileged/helpers_controls/ctltool.c"))
    for p in out.iterdir():
        p.chmod(0o755)


def plans(out: Path, arch: str) -> None:
    """The family of the smoke test, and its plans compiled for ARCH on this host."""
    from redpak import build, record
    from redpak.controls import Host
    from redpak.plan import Identity, LaunchOptions, compile_plan
    from test_c import SAMPLE
    from test_controls import Family

    (out / "sample.plan").write_bytes(SAMPLE.encode())
    fams = out / "families"
    fams.mkdir()
    fam = Family(fams, out / "ctltool")
    probe = [{"mode": "RestrictedFile", "mount": "/probe", "path": str(out / "probe")}]
    leaves = {
        # new-session: no TIOCSTI rule either (a node sharing the caller's session gets
        # one, issue 9), so "plain" runs with no seccomp filter at all
        "plain": fam.make(root={"seccomp": {"profile": "none"}, "new-session": "enabled"},
                          root_exports=probe),
        "seccomp": fam.make(root={"seccomp": {"profile": "default"}}, root_exports=probe),
        "pids": fam.make(leaf={"cgroups": {"pids": {"max": "40"}}}, root_exports=probe),
    }
    host = Host(arch=arch)        # a cgroup v2 host, as the guest is
    for name, leaf in leaves.items():
        family = build.launch_family(str(leaf), LaunchOptions(), os.environ).expanded.family
        plan = compile_plan(family, Identity(0, 0, 0, 0, True), LaunchOptions(),
                            source_kind=build._source_kind, host=host).plan
        # The guest sees these files through 9p (other device and inode numbers): the
        # cache-validity records would make the C core refuse the plan as stale.
        plan = record.replace(plan, file_deps=(), env_deps=())
        (out / f"{name}.plan").write_bytes(plan.encode())
    with open(out / "cases", "w") as f:
        for case, (plan_name, argv) in CASES.items():
            f.write(f"{case} {out}/{plan_name}.plan {' '.join(argv)}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--seccomp-arch", default="aarch64")
    args = ap.parse_args()
    out = args.dir.resolve() / "bin"
    out.mkdir(parents=True)
    build(out)
    plans(out, args.seccomp_arch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
