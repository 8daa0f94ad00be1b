#!/usr/bin/env python3
"""Controls benchmark: the launch cost each control adds to the stock family, vs bwrap.

Run as root from the checkout (after ./tools/setup.sh):
    .venv/bin/python bench/bench_controls.py [--runs 300] [--quick] [--json FILE] [--cgroup-entry]

Every variant is the stock two-level family (root + leaf templates) with one control
added in the root node's config; its plan is compiled once, then launched by a small C
driver built here from csrc/ (read the plan, rp_launch, rp_wait, OOM check, cgroup
cleanup: what the native redwrap does with a cached plan), timed (interleaved
rounds, redpak.benchsuite) against bwrap's plain launch of the same mounts, in 5 rounds
that each time every variant in turn (noise hits them alike). Reports the
median and p95 of each, the cost each control adds, the cost per node of cgroups (2- and
4-node families), the plan compile time and, where the controllers are on cgroup v2, the
cost of entering the node's cgroup by clone3(CLONE_INTO_CGROUP) against the cgroup.procs
write (--cgroup-entry: that alone, e.g. in the v2 lane's guest). Never a pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
from redpak.benchsuite.devbench import bwrap_argv, machine_line, stats, timed  # noqa: E402
from redpak.benchsuite.sections import CONTROLS  # noqa: E402

TRUE = "/bin/true"
CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]

DRIVER = r"""
/* bench driver: launch a plan once, as the native redwrap does with a cached plan */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "redpak.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    struct rp_plan plan;
    struct rp_child child;
    struct rp_error err;
    char what[256];
    void *buf;
    long len;
    int status = 0, loops = 1;
    struct rp_launch_opts opts = {0};
    FILE *f;

    while (argc > 2 && (!strcmp(argv[1], "-n") || !strcmp(argv[1], "-d"))) {
        if (argv[1][1] == 'n') /* -n N: N launches, phases printed in µs */
            loops = atoi(argv[2]);
        else                   /* -d MASK: RP_FEAT_* forced off */
            opts.disable = (unsigned)strtoul(argv[2], NULL, 0);
        argv += 2;
        argc -= 2;
    }
    if (argc < 4 || strcmp(argv[2], "--"))
        return fprintf(stderr, "usage: %s [-n N] [-d MASK] PLAN -- PROGRAM [ARGS]\n", argv[0]), 125;
    f = fopen(argv[1], "rb");
    if (!f || fseek(f, 0, SEEK_END) < 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0 ||
        posix_memalign(&buf, 8, (size_t)len) || fread(buf, 1, (size_t)len, f) != (size_t)len)
        return perror(argv[1]), 125;
    fclose(f);
    if (rp_plan_open(&plan, buf, (size_t)len, &err) < 0)
        return fprintf(stderr, "%s\n", err.msg), 125;
    for (int i = 0; i < loops; i++) {
        double t0 = now_us(), t1, t2;
        if (rp_launch(buf, (size_t)len, argv + 3, &opts, &child, &err) < 0)
            return fprintf(stderr, "%s: %s\n", rp_step_name(err.step), err.msg), 125;
        t1 = now_us();
        status = rp_wait(&child, &err);
        t2 = now_us();
        if (rp_cgroup_oom_killed(&plan, &child, what, sizeof(what)))
            fprintf(stderr, "OOM: %s\n", what);
        if (rp_cgroup_cleanup(&plan, &child, &err) < 0)
            fprintf(stderr, "cleanup: %s\n", err.msg);
        if (loops > 1)
            printf("%.1f %.1f %.1f\n", t1 - t0, t2 - t1, now_us() - t2);
    }
    return status;
}
"""

VARIANTS = CONTROLS  # the variants of redpak-bench's controls section


def build_driver(tmp: str) -> str:
    src = os.path.join(tmp, "driver.c")
    with open(src, "w") as f:
        f.write(DRIVER)
    out = os.path.join(tmp, "rpbench")
    sources = sorted(os.path.join(TOP, "csrc", n) for n in os.listdir(os.path.join(TOP, "csrc"))
                     if n.endswith(".c"))
    subprocess.run(["gcc", *CFLAGS, "-I", os.path.join(TOP, "csrc"), "-o", out, src, *sources],
                   check=True)
    return out


def make_family(top: str, extra: str, nested: int) -> str:
    """The stock family (root and leaf templates), `extra` appended to the root's config,
    with `nested` more leaf nodes between root and leaf."""
    from redpak.node import create_node
    system = os.path.join(top, "system")
    create_node(system, model="root")
    conf = os.path.join(system, "etc", "redpak.yaml")
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("config:\n", "config:\n" + extra, 1))
    parent = system
    for i in range(nested):
        parent = os.path.join(parent, f"mid{i}")
        create_node(parent, model="leaf")
    app = os.path.join(parent, "app")
    create_node(app, model="leaf")
    return app


def in_process(driver: str, cmds: dict[str, list[str]], runs: int) -> dict[str, tuple]:
    """Median (rp_launch, rp_wait, cleanup) µs per variant, from rounds of 10 launches."""
    got: dict[str, list[list[float]]] = {n: [] for n in cmds if n != "bwrap"}
    for _ in range(max(1, runs // 10)):
        for name in got:
            argv = cmds[name]
            out = subprocess.run([driver, "-n", "10", *argv[1:]], capture_output=True,
                                 text=True, check=True).stdout
            got[name] += [[float(x) for x in line.split()] for line in out.splitlines()]
    return {n: tuple(statistics.median(row[k] for row in rows) for k in range(3))
            for n, rows in got.items()}


def cgroup_entry(driver: str, plan, path: str, runs: int) -> dict | None:
    """A cgroup launch started in its v2 cgroup by clone3(CLONE_INTO_CGROUP) against the
    same launch with the feature forced off (the launcher writes cgroup.procs), interleaved
    in one run: whole launches (ms) and rp_launch alone (µs, 10 in a loop per process).
    None where the plan has no v2 cgroup or the kernel lacks the flag (hybrid hosts)."""
    from redpak import _core
    from redpak.planfile import CgroupAction
    if not any(op.action is CgroupAction.ATTACH and op.file != "tasks" for op in plan.cgroup):
        return None
    if not _core.features() & _core.FEAT_INTO_CGROUP:
        return None
    off = ["-d", hex(_core.FEAT_INTO_CGROUP)]
    cmds = {"into-cgroup": [driver, path, "--", TRUE],
            "cgroup.procs": [driver, *off, path, "--", TRUE]}
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(5):
        for name, got in timed(cmds, max(10, runs // 5)).items():
            samples[name] += got
    launch: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(max(1, runs // 10)):
        for name, argv in cmds.items():
            out = subprocess.run([driver, "-n", "10", *argv[1:]], capture_output=True,
                                 text=True, check=True).stdout
            launch[name] += [float(line.split()[0]) for line in out.splitlines()]
    med = {name: stats(s)[0] for name, s in samples.items()}
    rp = {name: statistics.median(v) for name, v in launch.items()}
    print("\n## entering the node's cgroup (v2): clone3(CLONE_INTO_CGROUP) vs cgroup.procs")
    print(f"  {'path':<14} {'launch ms':>10} {'p95':>8} {'rp_launch µs':>13}")
    for name, s in samples.items():
        print(f"  {name:<14} {med[name]:10.3f} {stats(s)[1]:8.3f} {rp[name]:13.0f}")
    ratio = med["into-cgroup"] / med["cgroup.procs"]
    print(f"  into-cgroup / cgroup.procs: launch {ratio:.2f}, "
          f"rp_launch {rp['into-cgroup'] / rp['cgroup.procs']:.2f}")
    return {"launch_ms": med, "rp_launch_us": rp, "ratio": ratio}


def compile_time(app: str, runs: int = 20) -> float:
    from redpak.plan import build_plan
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        build_plan(app)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="100 runs")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--cgroup-entry", action="store_true",
                    help="only the cost of entering a v2 cgroup: CLONE_INTO_CGROUP vs "
                    "cgroup.procs (for the cgroup v2 VM guest, where the rest is too slow)")
    args = ap.parse_args()
    runs = 100 if args.quick else args.runs
    if os.geteuid() != 0:
        raise SystemExit("run as root (namespaces, cgroups)")
    for tool in ("bwrap", "gcc"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed")
    from redpak.controls import probe_host
    from redpak.plan import build_plan

    host = probe_host()
    print(f"# redpak controls benchmark\n{machine_line()}\ncgroups: {host.mode} "
          f"({', '.join(f'v{h.version}:{h.mount}' for h in host.hierarchies)})\n"
          f"build: gcc {' '.join(CFLAGS)}; {runs} launches of {TRUE} each, interleaved rounds")
    report: dict = {"machine": machine_line(), "cgroups": host.mode, "runs": runs}
    tmp = tempfile.mkdtemp(prefix="rp-bench-ctl-")
    os.chmod(tmp, 0o755)
    try:
        driver = build_driver(tmp)
        if args.cgroup_entry:
            extra, nested = VARIANTS["cgroups"]
            plan = build_plan(make_family(os.path.join(tmp, "cgroups"), extra, nested)).plan
            path = os.path.join(tmp, "cgroups.plan")
            with open(path, "wb") as f:
                f.write(plan.encode())
            report["cgroup_entry"] = cgroup_entry(driver, plan, path, runs)
            if report["cgroup_entry"] is None:
                print("\nno cgroup v2 controllers here, or no CLONE_INTO_CGROUP: nothing to "
                      "compare (run it in the v2 lane's guest)")
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(report, f, indent=2)
            return 0
        cmds: dict[str, list[str]] = {}
        compile_ms: dict[str, float] = {}
        for name, (extra, nested) in VARIANTS.items():
            app = make_family(os.path.join(tmp, name), extra, nested)
            plan = build_plan(app).plan
            path = os.path.join(tmp, f"{name}.plan")
            with open(path, "wb") as f:
                f.write(plan.encode())
            cmds[name] = [driver, path, "--", TRUE]
            compile_ms[name] = compile_time(app)
            if name == "base":
                cmds["bwrap"] = bwrap_argv(plan, tmp) + ["--", TRUE]
        for name, argv in cmds.items():
            r = subprocess.run(argv, capture_output=True)
            if r.returncode != 0 or r.stderr:
                raise SystemExit(f"{name} does not run cleanly: "
                                 f"{r.stderr.decode(errors='replace')}")
        # rounds of every variant in turn: a disturbance on this machine hits them alike
        samples: dict[str, list[float]] = {name: [] for name in cmds}
        rounds = 5
        for _ in range(rounds):
            for name, got in timed(cmds, max(10, runs // rounds)).items():
                samples[name] += got
        med = {k: stats(v)[0] for k, v in samples.items()}
        print(f"\n## launch latency (ms): plan ready -> {TRUE} exited, cgroups removed")
        print(f"  {'variant':<16} {'median':>8} {'p95':>8} {'added':>8} {'/bwrap':>7}")
        for name, s in samples.items():
            m, p95 = stats(s)
            added = "" if name in ("base", "bwrap") else f"{m - med['base']:+8.3f}"
            print(f"  {name:<16} {m:8.3f} {p95:8.3f} {added:>8} {m / med['bwrap']:7.2f}")
        per_node = (med["cgroups-4-nodes"] - med["cgroups"]) / 2
        print(f"\n  cgroups per node of the family: {per_node * 1000:+.0f} µs "
              f"((4-node - 2-node) / 2, {host.mode} host)")
        goal = med["cgroups+seccomp"] / med["bwrap"]
        print(f"  stock family + cgroups + default seccomp / bwrap plain = {goal:.2f} "
              "(goal <= 0.50)")
        phases = in_process(driver, cmds, max(50, runs // 2))
        print("\n## where the time goes (µs, medians; launches in a loop in one process, "
              "variants interleaved)")
        print(f"  {'variant':<16} {'rp_launch':>9} {'rp_wait':>8} {'cleanup':>8} {'added':>7}")
        base_total = sum(phases["base"])
        for name, (launch, wait, clean) in phases.items():
            added = "" if name == "base" else f"{launch + wait + clean - base_total:+7.0f}"
            print(f"  {name:<16} {launch:9.0f} {wait:8.0f} {clean:8.0f} {added:>7}")
        report["phases_us"] = phases
        with open(cmds["cgroups"][1], "rb") as f:
            from redpak.planfile import LaunchPlan
            report["cgroup_entry"] = cgroup_entry(driver, LaunchPlan.decode(f.read()),
                                                  cmds["cgroups"][1], runs)
        print("\n## plan compile time (ms, median of 20; the seccomp filter is built here)")
        for name, ms in compile_ms.items():
            print(f"  {name:<16} {ms:8.2f}")
        report["latency_ms"] = {k: {"median": stats(v)[0], "p95": stats(v)[1]}
                                for k, v in samples.items()}
        report["cgroups_per_node_ms"] = per_node
        report["goal_ratio"] = goal
        report["compile_ms"] = compile_ms
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
