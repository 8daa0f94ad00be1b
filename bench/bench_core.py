#!/usr/bin/env python3
"""C-core benchmark: the launcher alone (tools/rplaunch.c, no Python), by build flavour.

Run as root from the checkout:
    .venv/bin/python bench/bench_core.py [--runs 300] [--quick] [--only latency,exports,memory,floor]

1. launch latency of /bin/true in the stock two-level family, side by side in interleaved
   rounds: rplaunch built static with glibc, static with musl (when musl-gcc is
   installed), dynamic with glibc; bwrap with the equivalent options; unshare; plain exec;
2. cost per extra read-only export (0, 250, 500, 1000 exports of one directory): the slope
   and the marginal cost of each segment (linearity), beside the goal (<= 10 us);
3. PSS of the launcher's own processes (launcher and the node's pid 1) while the program runs;
4. the kernel's floor per export, measured in isolation: mkdir, a copy of a read-only tree
   (open_tree), move_mount, and the teardown when the mount namespace dies.
Never a pass/fail: it prints figures. The family, timing, bwrap translation and PSS probe
are redpak-bench's (redpak.benchsuite.devbench).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
from redpak.benchsuite.devbench import (TRUE, bwrap_argv, compiled_plan,  # noqa: E402
                                        launcher_pss, machine_line, make_family, stats, timed)
from redpak.benchsuite.sections import segments  # noqa: E402

FLOOR_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/mount.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
#define CK(x) do { if ((x) < 0) { perror(#x); _exit(1); } } while (0)
int main(int argc, char **argv)
{
    int n = atoi(argv[1]), reps = atoi(argv[2]);
    double *r = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), total = 0;
    for (int k = 0; k < reps; k++) {
        double t0 = now();
        pid_t pid = fork();
        if (pid == 0) {
            struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
            char name[32];
            int root, fs, dir, src, tree;
            CK(unshare(CLONE_NEWNS));
            CK(mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL));
            CK(fs = syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC));
            CK(syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0));
            CK(root = syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0));
            CK(syscall(SYS_move_mount, root, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH));
            CK(mkdirat(root, "extra", 0755));
            CK(dir = openat(root, "extra", O_PATH | O_DIRECTORY));
            CK(src = syscall(SYS_open_tree, AT_FDCWD, argv[3], OPEN_TREE_CLONE | AT_RECURSIVE));
            CK(syscall(SYS_mount_setattr, src, "", AT_EMPTY_PATH | AT_RECURSIVE, &ro, sizeof(ro)));
            for (int i = 0; i < n; i++) {
                double a = now(), b, c, d;
                snprintf(name, sizeof(name), "e%04d", i);
                CK(mkdirat(dir, name, 0755));
                b = now();
                CK(tree = syscall(SYS_open_tree, src, "", OPEN_TREE_CLONE | AT_EMPTY_PATH | AT_RECURSIVE));
                c = now();
                CK(syscall(SYS_move_mount, tree, "", dir, name, MOVE_MOUNT_F_EMPTY_PATH));
                d = now();
                close(tree);
                r[0] += b - a; r[1] += c - b; r[2] += d - c;
            }
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        total += now() - t0;
    }
    printf("%f %f %f %f\n", r[0] / reps / n, r[1] / reps / n, r[2] / reps / n, total / reps);
    return 0;
}
"""


def kernel_headers(tmp: str) -> str:
    """A directory holding only the kernel's uapi headers, for musl-gcc."""
    d = os.path.join(tmp, "kh")
    os.makedirs(d, exist_ok=True)
    arch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout.strip()
    for name, target in (("linux", "/usr/include/linux"), ("asm-generic", "/usr/include/asm-generic"),
                         ("asm", f"/usr/include/{arch}/asm")):
        if os.path.isdir(target) and not os.path.exists(os.path.join(d, name)):
            os.symlink(target, os.path.join(d, name))
    return d


def build(tmp: str) -> dict[str, str]:
    """rplaunch in each flavour the toolchain offers: name -> path."""
    srcs = [os.path.join(TOP, "tools", "rplaunch.c")] + sorted(
        os.path.join(TOP, "csrc", f) for f in os.listdir(os.path.join(TOP, "csrc"))
        if f.endswith(".c"))
    common = ["-O2", "-std=gnu11", "-I", os.path.join(TOP, "csrc")]
    flavours = {"glibc-static": ["gcc", "-static"], "glibc-dynamic": ["gcc"]}
    if shutil.which("musl-gcc"):
        flavours["musl-static"] = ["musl-gcc", "-static", "-idirafter", kernel_headers(tmp)]
    out = {}
    for name, cc in flavours.items():
        exe = os.path.join(tmp, f"rplaunch-{name}")
        r = subprocess.run(cc + common + ["-o", exe] + srcs, capture_output=True, text=True)
        if r.returncode == 0:
            out[name] = exe
        else:
            print(f"  ({name}: build failed: {r.stderr.strip().splitlines()[-1:]})")
    return out


def plan_file(app: str, path: str) -> str:
    with open(path, "wb") as f:
        f.write(compiled_plan(app).encode())
    return path


def section_latency(exes: dict[str, str], app: str, runs: int, tmp: str) -> None:
    plan = plan_file(app, os.path.join(tmp, "plan.bin"))
    cmds = {name: [exe, plan, "--", TRUE] for name, exe in exes.items()}
    cmds["bwrap"] = bwrap_argv(compiled_plan(app), tmp) + ["--", TRUE]
    cmds["unshare"] = ["unshare", "-m", "-p", "-i", "-u", "-f", TRUE]
    cmds["exec"] = [TRUE]
    samples = timed(cmds, runs)
    med = {name: stats(s)[0] for name, s in samples.items()}
    print(f"\n## 1. launch latency, stock two-level family, {runs} runs each (ms)")
    for name, s in samples.items():
        m, p95 = stats(s)
        extra = ""
        if name.startswith(("glibc", "musl")):
            rb, ru = m / med['bwrap'], m / med['unshare']
            extra = (f"   / bwrap {rb:.2f} (goal <= 0.50 {met(rb, 0.5)})"
                     f"   / unshare {ru:.2f} (goal <= 1.30 {met(ru, 1.3)})")
        print(f"  {name:<14} median {m:7.3f}   p95 {p95:7.3f}{extra}")


def section_exports(exes: dict[str, str], runs: int, tmp: str, counts: list[int]) -> None:
    print(f"\n## 2. cost per extra read-only export (median ms)")
    rows = {}
    for n in counts:
        top = tempfile.mkdtemp(prefix=f"rp-core-exp{n}-", dir=tmp)
        plan = plan_file(make_family(top, n), os.path.join(top, "plan.bin"))
        k = max(5, runs if n <= 100 else runs // 4)
        samples = timed({name: [exe, plan, "--", TRUE] for name, exe in exes.items()}, k)
        rows[n] = {name: stats(s)[0] for name, s in samples.items()}
        print(f"  {n:>5} exports  " + "  ".join(f"{name} {v:8.3f}" for name, v in rows[n].items()))
    lo, hi = min(counts), max(counts)
    for name in exes:
        slope = (rows[hi][name] - rows[lo][name]) / (hi - lo) * 1000
        segs = segments(counts, [rows[n][name] for n in counts])
        marginal = ", ".join(f"{s['from']}->{s['to']} {s['us_per_export']:.1f}" for s in segs)
        print(f"  {name}: {slope:.1f} us per export ({lo}->{hi}; goal <= 10 {met(slope, 10)}); "
              f"marginal {marginal} us (last segment: goal <= 10 "
              f"{met(segs[-1]['us_per_export'], 10)})")


def met(value: float, goal: float) -> str:
    return "met" if value <= goal else "MISSED"


def section_memory(exes: dict[str, str], app: str, tmp: str) -> None:
    plan = plan_file(app, os.path.join(tmp, "plan-mem.bin"))
    print("\n## 3. PSS of the launcher and the node's pid 1 while the program runs (goal <= 512 KiB)")
    for name, exe in exes.items():
        kib = launcher_pss([exe, plan, '--'])
        print(f"  {name:<14} {kib:5d} KiB ({met(kib, 512)})")


def section_floor(tmp: str, n: int) -> None:
    src = os.path.join(tmp, "floor.c")
    exe = os.path.join(tmp, "floor")
    with open(src, "w") as f:
        f.write(FLOOR_C)
    subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)
    data = tempfile.mkdtemp(prefix="rp-core-floor-", dir=tmp)

    def run(count: int) -> list[float]:
        out = subprocess.run([exe, str(count), "10", data], check=True, capture_output=True, text=True)
        return [float(x) for x in out.stdout.split()]
    base, full = run(1), run(n)
    per = (full[3] - base[3]) / (n - 1)
    print(f"\n## 4. kernel floor per read-only export, in isolation ({n} exports, us)")
    print(f"  mkdir {full[0]:.1f}   open_tree copy {full[1]:.1f}   move_mount {full[2]:.1f}"
          f"   all in, teardown included: {per:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma list of sections: latency,exports,memory,floor")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_core: run as root", file=sys.stderr)
        return 2
    for tool in ("bwrap", "unshare", "gcc"):
        if not shutil.which(tool):
            print(f"bench_core: {tool} is missing", file=sys.stderr)
            return 2
    runs = 50 if args.quick else args.runs
    only = set((args.only or "latency,exports,memory,floor").split(","))
    print(f"# {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="rp-bench-core-") as tmp:
        os.chmod(tmp, 0o755)
        exes = build(tmp)
        print("# flavours: " + ", ".join(f"{n} ({os.path.getsize(p) // 1024} KiB)" for n, p in exes.items()))
        app = make_family(os.path.join(tmp, "family"))
        if "latency" in only:
            section_latency(exes, app, runs, tmp)
        if "exports" in only:
            section_exports(exes, max(20, runs // 3), tmp, [0, 250, 500, 1000])
        if "memory" in only:
            section_memory(exes, app, tmp)
        if "floor" in only:
            section_floor(tmp, 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
