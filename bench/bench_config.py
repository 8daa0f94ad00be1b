#!/usr/bin/env python3
"""Benchmark the configuration layer: load, validate, merge and expand a deep family.

Builds a 5-level family (50 exports and 10 environ entries per node) in a temporary
directory, then times loading it and the whole chain (load, expand, merge), whatever flow
the package has. With --baseline SRC the redpak package of another checkout is timed in the
same process, interleaved. Prints medians and p95 in µs.
Usage: .venv/bin/python bench/bench_config.py [--levels 5] [--exports 50] [--runs 300]
       [--cpu] [--baseline OLD/src]
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


def _baseline(src: str, workdir: str):
    """The redpak package of another checkout (SRC: its src/ directory, e.g. from
    `git archive REV src | tar -x -C DIR`), importable as `redpak_base` next to this one."""
    import shutil

    root = os.path.join(workdir, "base")
    shutil.copytree(os.path.join(src, "redpak"), os.path.join(root, "redpak_base"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path) as f:
                    text = f.read()
                text = text.replace("from redpak.", "from redpak_base.").replace(
                    "import redpak.", "import redpak_base.")
                with open(path, "w") as f:
                    f.write(text)
    sys.path.insert(0, root)
    import importlib
    return importlib.import_module("redpak_base")


def _pipeline(pkg: str, env, uid, gid, pid):
    """(description, load, load + expand + merge) of the redpak package named pkg."""
    import importlib
    node = importlib.import_module(f"{pkg}.node")
    try:    # redpak >= issue 8: each node expanded in its own context, then merged
        build = importlib.import_module(f"{pkg}.build")

        def run(leaf):
            return build.family_config(node.load_family(leaf), False, env, uid, gid, pid)
        return "load + expand + merge (build.family_config)", node.load_family, run
    except ImportError:     # before: merge as written, then expand the merged family
        family = importlib.import_module(f"{pkg}.family")
        expand = importlib.import_module(f"{pkg}.expand")

        def run(leaf):
            return expand.expand_family(family.merge_family(node.load_family(leaf)),
                                        env, uid, gid, pid)
        return "load + merge + expand (merged family expanded)", node.load_family, run


def main() -> int:
    global CLOCK
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--exports", type=int, default=50)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--cpu", action="store_true",
                    help="time with the thread's CPU clock instead of the wall clock (less "
                         "sensitive to other load on a shared machine)")
    ap.add_argument("--baseline", metavar="SRC",
                    help="also time the redpak package in SRC (another checkout's src/), "
                         "interleaved with this one in the same process")
    args = ap.parse_args()
    if args.cpu:
        CLOCK = time.thread_time_ns

    env = dict(os.environ)
    uid, gid, pid = os.getuid(), os.getgid(), os.getpid()
    with tempfile.TemporaryDirectory(prefix="rp-bench-") as top:
        leaf = write_family(top, args.levels, args.exports)
        peers = [("this", _pipeline("redpak", env, uid, gid, pid))]
        if args.baseline:
            _baseline(args.baseline, top)
            peers.append(("baseline", _pipeline("redpak_base", env, uid, gid, pid)))
        print(f"# {platform.node()} {platform.machine()} kernel {platform.release()} "
              f"python {platform.python_version()}")
        print(f"# family: {args.levels} levels x {args.exports} exports, {args.runs} runs, "
              f"{'CPU' if args.cpu else 'wall'} clock")
        for name, (flow, _load, run) in peers:
            print(f"# {name}: {flow}; exports kept: {len(run(leaf).family.exports)}")
        samples: dict[str, dict[str, list[float]]] = {
            name: {"load": [], "all": []} for name, _ in peers}
        rounds = 10         # interleaved, so both see the same machine load
        for _ in range(rounds):
            for name, (_flow, load, run) in peers:
                samples[name]["load"] += timed(lambda: load(leaf), args.runs // rounds)
                samples[name]["all"] += timed(lambda: run(leaf), args.runs // rounds)
        for name, _ in peers:
            report(f"{name}: load + validate", samples[name]["load"])
            report(f"{name}: load + merge + expand", samples[name]["all"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
