#!/usr/bin/env python3
"""Benchmark the configuration layer: load, validate, merge and expand a deep family.

Builds a 5-level family (50 exports and 10 environ entries per node) in a temporary
directory, then times each stage and the whole chain (whatever flow the installed redpak
has: the same script measures an older checkout with PYTHONPATH=OLD/src). Prints medians
and p95 in µs.
Usage: .venv/bin/python bench/bench_config.py [--levels 5] [--exports 50] [--runs 300] [--cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time


def write_family(top: str, levels: int, exports: int) -> str:
    """Create LEVELS nested nodes under TOP; return the leaf's path."""
    path = top
    for level in range(levels):
        path = os.path.join(path, f"n{level}")
        os.makedirs(os.path.join(path, "etc"))
        with open(os.path.join(path, ".rednode.yaml"), "w") as f:
            f.write(f"realpath: {path}\nstate: Enable\ninfo: bench\ntimestamp: 0\n")
        lines = [
            "headers:", f"  alias: n{level}", f"  name: node-{level}", "config:",
            f"  path: /nodes/$NODE_ALIAS/usr/bin:/usr/bin{level}",
            "  umask: '022'", f"  hostname: h{level}-$LEAF_ALIAS",
            "exports:",
        ]
        for i in range(exports):
            lines += [f"  - mode: Restricted", f"    mount: /nodes/$NODE_ALIAS/m{i}",
                      f"    path: $NODE_PATH/data/{i}"]
        lines.append("environ:")
        for i in range(10):
            lines += [f"  - key: V{level}_{i}", f"    value: ${{NODE_ALIAS}}-{i}-$LEAF_ALIAS"]
        with open(os.path.join(path, "etc", "redpak.yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return path


CLOCK = time.perf_counter_ns


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = CLOCK()
        fn()
        out.append((CLOCK() - t0) / 1000.0)
    return out


def report(name: str, samples: list[float]) -> None:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    print(f"{name:<34} median {statistics.median(samples):9.1f} µs   p95 {p95:9.1f} µs")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--exports", type=int, default=50)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--cpu", action="store_true",
                    help="time with the thread's CPU clock instead of the wall clock (less "
                         "sensitive to other load on a shared machine)")
    args = ap.parse_args()
    global CLOCK
    if args.cpu:
        CLOCK = time.thread_time_ns

    from redpak.expand import expand_family
    from redpak.family import merge_family
    from redpak.node import load_family

    try:    # redpak >= issue 8: each node expanded in its own context, then merged
        from redpak.build import family_config

        def pipeline(nodes):
            return family_config(nodes, False, env, uid, gid, pid)
        flow = "load + expand + merge (build.family_config)"
    except ImportError:     # before: merge as written, then expand the merged family
        def pipeline(nodes):
            return expand_family(merge_family(nodes), env, uid, gid, pid)
        flow = "load + merge + expand (old flow)"

    env = dict(os.environ)
    uid, gid, pid = os.getuid(), os.getgid(), os.getpid()
    with tempfile.TemporaryDirectory(prefix="rp-bench-") as top:
        leaf = write_family(top, args.levels, args.exports)
        nodes = load_family(leaf)
        print(f"# {platform.node()} {platform.machine()} kernel {platform.release()} "
              f"python {platform.python_version()}")
        print(f"# family: {args.levels} levels x {args.exports} exports, {args.runs} runs")
        print(f"# {flow}; exports kept: {len(pipeline(nodes).family.exports)}")
        report("load + validate (all nodes)", timed(lambda: load_family(leaf), args.runs))
        report("merge (as written)", timed(lambda: merge_family(nodes), args.runs))
        report("expand + merge" if "build" in flow else "expand (merged family)",
               timed(lambda: pipeline(nodes), args.runs))
        report("load + merge + expand", timed(lambda: pipeline(load_family(leaf)), args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
