#!/usr/bin/env python3
"""Launch benchmark: redwrap vs bwrap vs unshare vs plain fork+exec, measured side by side.

Run as root from the checkout (after ./tools/setup.sh):
    .venv/bin/python bench/bench_launch.py [--runs 300] [--quick]

Sections (each reports medians and p95, with the goal of issue 3 beside it):
1. launch latency on the stock two-level family (root + leaf templates): redwrap (cached
   plan, native), bwrap with the equivalent options (generated from the same plan),
   `unshare -m -p -i -u -f`, plain fork+exec — all through hyperfine -N in one run;
2. cost per extra export (0..1000 read-only binds), redwrap vs bwrap (vs crun if present);
3. memory (PSS) of the launcher's own processes while the program runs;
4. Python API: launches per second with 8 concurrent launches, vs bwrap under the same load.
Never a pass/fail: it prints figures. `--json FILE` also writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
VENV_BIN = os.path.join(TOP, ".venv", "bin")
TRUE = "/bin/true"


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=True, **kw)


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{platform.machine()} kernel {platform.release()}, {cpu}, {os.cpu_count()} cores,"
            f" python {platform.python_version()}")


def make_family(top: str, extra_exports: int = 0) -> str:
    """The stock family: a system node (root template) and an app node (leaf template)."""
    from redpak.node import create_node
    system = os.path.join(top, "system")
    app = os.path.join(system, "app")
    create_node(system, model="root")
    create_node(app, model="leaf")
    if extra_exports:
        data = os.path.join(top, "data")
        os.makedirs(data, exist_ok=True)
        lines = []
        for i in range(extra_exports):
            lines += ["  - mode: Restricted", f"    mount: /extra/e{i:04d}", f"    path: {data}"]
        conf = os.path.join(app, "etc", "redpak.yaml")
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace("exports:\n", "exports:\n" + "\n".join(lines) + "\n", 1))
    return app


def compiled_plan(app: str):
    from redpak.plan import build_plan
    return build_plan(app).plan


def bwrap_argv(plan, tmp: str) -> list[str]:
    """bwrap options equivalent to a redpak launch plan (same namespaces, mounts, env)."""
    from redpak.planfile import EnvAction, MountFlag, MountKind, Ns
    argv = ["bwrap"]
    for flag, opt in ((Ns.USER, "--unshare-user"), (Ns.PID, "--unshare-pid"),
                      (Ns.NET, "--unshare-net"), (Ns.IPC, "--unshare-ipc"),
                      (Ns.UTS, "--unshare-uts"), (Ns.CGROUP, "--unshare-cgroup")):
        if plan.namespaces & flag:
            argv.append(opt)
    if plan.namespaces & Ns.USER and plan.uid is not None:
        argv += ["--uid", str(plan.uid), "--gid", str(plan.gid)]
    for i, m in enumerate(plan.mounts):
        ro = bool(m.flags & MountFlag.RDONLY)
        opt = bool(m.flags & MountFlag.OPTIONAL)
        if m.kind in (MountKind.BIND, MountKind.BIND_FILE):
            if opt and not os.path.exists(m.source):
                continue
            argv += [("--ro-bind" if ro else "--bind") + ("-try" if opt else ""),
                     m.source, m.target]
        elif m.kind is MountKind.DIR:
            argv += ["--dir", m.target]
        elif m.kind is MountKind.SYMLINK:
            argv += ["--symlink", m.source, m.target]
        elif m.kind is MountKind.TMPFS:
            argv += ["--tmpfs", m.target]
        elif m.kind is MountKind.PROC:
            argv += ["--proc", m.target]
        elif m.kind is MountKind.DEV:
            argv += ["--dev", m.target]
        elif m.kind is MountKind.MQUEUE:
            argv += ["--mqueue", m.target]
        elif m.kind is MountKind.DATA:
            path = os.path.join(tmp, f"data{i}")
            with open(path, "wb") as f:
                f.write(m.data)
            argv += ["--ro-bind", path, m.target]
    if plan.hostname:
        argv += ["--hostname", plan.hostname]
    argv += ["--clearenv"]
    for op in plan.env:
        if op.action is EnvAction.SET:
            argv += ["--setenv", op.name, op.value]
    if plan.chdir:
        argv += ["--chdir", plan.chdir]
    if plan.die_with_parent:
        argv.append("--die-with-parent")
    if plan.new_session:
        argv.append("--new-session")
    return argv


def hyperfine(commands: dict[str, list[str]], runs: int, tmp: str) -> dict[str, list[float]]:
    """Times each command with hyperfine -N (no shell); returns samples in ms."""
    import shlex
    out = os.path.join(tmp, "hf.json")
    names = list(commands)
    argv = ["hyperfine", "-N", "--warmup", "10", "--runs", str(runs), "--export-json", out,
            "--style", "none"]
    for name in names:
        argv += ["-n", name, shlex.join(commands[name])]
    sh(*argv, stdout=subprocess.DEVNULL)
    with open(out) as f:
        results = json.load(f)["results"]
    return {name: [t * 1000 for t in r["times"]] for name, r in zip(names, results)}


def stats(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(len(s) * 0.95))]


def section_latency(app: str, redwrap: str, runs: int, tmp: str, report: dict) -> None:
    plan = compiled_plan(app)
    cmds = {
        "redwrap": [redwrap, "--redpath", app, "--", TRUE],
        "bwrap": bwrap_argv(plan, tmp) + ["--", TRUE],
        "unshare": ["unshare", "-m", "-p", "-i", "-u", "-f", TRUE],
        "fork+exec": [TRUE],
    }
    for name, argv in cmds.items():  # each must work before it is timed
        r = subprocess.run(argv, capture_output=True)
        if r.returncode != 0:
            raise SystemExit(f"{name} does not run: {r.stderr.decode(errors='replace')}")
    samples = hyperfine(cmds, runs, tmp)
    print(f"\n## 1. launch latency, stock two-level family, {runs} launches each (ms)")
    med = {}
    for name, s in samples.items():
        med[name], p95 = stats(s)
        print(f"  {name:<10} median {med[name]:7.3f}   p95 {p95:7.3f}")
    r_b = med["redwrap"] / med["bwrap"]
    r_u = med["redwrap"] / med["unshare"]
    print(f"  redwrap / bwrap   = {r_b:.2f}  (goal <= 0.50)")
    print(f"  redwrap / unshare = {r_u:.2f}  (goal <= 1.30)")
    report["latency_ms"] = {k: {"median": stats(v)[0], "p95": stats(v)[1]}
                            for k, v in samples.items()}
    report["latency_ratio"] = {"redwrap/bwrap": r_b, "redwrap/unshare": r_u}


def crun_bundle(tmp: str, n: int, data: str) -> str | None:
    if not shutil.which("crun"):
        return None
    bundle = os.path.join(tmp, f"crun{n}")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs)
    for d in ("bin", "lib", "lib64", "usr", "proc", "dev", "extra"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    mounts = [{"destination": "/proc", "type": "proc", "source": "proc"},
              {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
              {"destination": "/usr", "type": "bind", "source": "/usr",
               "options": ["rbind", "ro"]},
              {"destination": "/bin", "type": "bind", "source": "/usr/bin",
               "options": ["rbind", "ro"]},
              {"destination": "/lib", "type": "bind", "source": "/usr/lib",
               "options": ["rbind", "ro"]},
              {"destination": "/lib64", "type": "bind", "source": "/usr/lib64",
               "options": ["rbind", "ro"]}]
    mounts += [{"destination": f"/extra/e{i:04d}", "type": "bind", "source": data,
                "options": ["rbind", "ro"]} for i in range(n)]
    config = {
        "ociVersion": "1.0.2",
        "process": {"args": [TRUE], "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/bin"]},
        "root": {"path": "rootfs"},
        "mounts": mounts,
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts")]},
    }
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def section_exports(redwrap: str, runs: int, tmp: str, report: dict, counts: list[int]) -> None:
    print(f"\n## 2. cost per extra export ({runs} launches per point, median ms)")
    print(f"  {'exports':>7} {'redwrap':>9} {'bwrap':>9} {'crun':>9}")
    rows = {}
    crun_ok = None
    for n in counts:
        top = tempfile.mkdtemp(prefix=f"rp-exp{n}-", dir=tmp)
        app = make_family(top, n)
        plan = compiled_plan(app)
        cmds = {"redwrap": [redwrap, "--redpath", app, "--", TRUE],
                "bwrap": bwrap_argv(plan, top) + ["--", TRUE]}
        bundle = crun_bundle(top, n, os.path.join(top, "data"))
        if bundle and crun_ok is not False:
            argv = ["crun", "run", "--bundle", bundle, f"rpbench{n}"]
            r = subprocess.run(argv, capture_output=True, text=True)
            crun_ok = r.returncode == 0
            if crun_ok:
                cmds["crun"] = argv
            else:  # e.g. crun refuses hybrid cgroup hosts
                print(f"  (crun left out: {r.stderr.strip().splitlines()[-1:]})")
        k = max(5, runs if n <= 100 else runs // 4)
        samples = hyperfine(cmds, k, top)
        rows[n] = {name: stats(s)[0] for name, s in samples.items()}
        print(f"  {n:>7} {rows[n]['redwrap']:9.3f} {rows[n]['bwrap']:9.3f} "
              f"{rows[n].get('crun', float('nan')):9.3f}")
    lo, hi = min(counts), max(counts)
    for name in ("redwrap", "bwrap", "crun"):
        if name in rows[hi] and name in rows[lo]:
            slope = (rows[hi][name] - rows[lo][name]) / (hi - lo) * 1000
            print(f"  {name}: {slope:.1f} µs per export ({lo}->{hi})"
                  + ("  (goal <= 10 µs, linear)" if name == "redwrap" else ""))
    report["exports_ms"] = rows


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def launcher_pss(argv: list[str], program: str = "sleep") -> int:
    """PSS (KiB) of the launcher's own processes (not the program) while it runs."""
    proc = subprocess.Popen(argv + ["/bin/sleep", "2"])
    try:
        time.sleep(0.8)
        total = 0
        for p in descendants(proc.pid):
            try:
                with open(f"/proc/{p}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if comm != program:
                total += pss_kib(p)
        return total
    finally:
        proc.wait()


def section_memory(app: str, redwrap: str, tmp: str, report: dict) -> None:
    plan = compiled_plan(app)
    subprocess.run([redwrap, "--redpath", app, "--", TRUE], check=True,
                   stderr=subprocess.DEVNULL)  # warm the plan cache: measure the fast path
    r = launcher_pss([redwrap, "--redpath", app, "--"])
    b = launcher_pss(bwrap_argv(plan, tmp) + ["--"])
    print("\n## 3. memory of the launcher's own processes while the program runs (PSS)")
    print(f"  redwrap {r / 1024:.2f} MiB   (goal <= 0.5 MiB)")
    print(f"  bwrap   {b / 1024:.2f} MiB")
    report["pss_kib"] = {"redwrap": r, "bwrap": b}


def section_api(app: str, tmp: str, report: dict, seconds: float) -> None:
    import redpak
    plan = compiled_plan(app)
    bwrap = bwrap_argv(plan, tmp) + ["--", TRUE]
    node = redpak.Node(app)
    if node.run([TRUE]) != 0:
        raise SystemExit("the Python API cannot run /bin/true in the stock family")

    def load(launch) -> float:
        count = [0] * 8
        stop = time.monotonic() + seconds

        def worker(i: int) -> None:
            while time.monotonic() < stop:
                launch()
                count[i] += 1
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(count) / (time.monotonic() - t0)

    api = load(lambda: node.run([TRUE]))
    bw = load(lambda: subprocess.run(bwrap, check=True))
    print(f"\n## 4. Python API, 8 concurrent launches on {os.cpu_count()} cores, {seconds:g} s")
    print(f"  redpak.Node.run   {api:8.0f} launches/s")
    print(f"  bwrap (subprocess){bw:8.0f} launches/s   ratio {api / bw:.2f}x")
    report["api_launches_per_s"] = {"redpak": api, "bwrap": bw}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="fewer runs and export points")
    ap.add_argument("--redwrap", default=os.path.join(VENV_BIN, "redwrap"))
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--only", help="comma list of sections: latency,exports,memory,api")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_launch: run as root (bwrap and crun are compared as root)", file=sys.stderr)
        return 2
    for tool in ("hyperfine", "bwrap", "unshare"):
        if not shutil.which(tool):
            print(f"bench_launch: {tool} is missing (./tools/setup.sh installs it)",
                  file=sys.stderr)
            return 2
    runs = 50 if args.quick else args.runs
    counts = [0, 100, 1000] if args.quick else [0, 10, 100, 250, 500, 1000]
    only = set((args.only or "latency,exports,memory,api").split(","))
    report: dict = {"machine": machine_line()}
    print(f"# {report['machine']}")
    with tempfile.TemporaryDirectory(prefix="rp-bench-") as tmp:
        os.chmod(tmp, 0o755)
        app = make_family(tmp)
        if "latency" in only:
            section_latency(app, args.redwrap, runs, tmp, report)
        if "exports" in only:
            section_exports(args.redwrap, max(20, runs // 3), tmp, report, counts)
        if "memory" in only:
            section_memory(app, args.redwrap, tmp, report)
        if "api" in only:
            section_api(app, tmp, report, 3.0 if args.quick else 10.0)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
