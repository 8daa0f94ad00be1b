#!/usr/bin/env python3
"""Command start-up benchmark: `--help` of the Python commands, redwrap's cold path (Python
compiles the plan) and its launch from a plan compiled ahead of time (`redconf compile`),
side by side with the interpreter's own start (`python3 -c pass`, the floor of any Python
command) in one hyperfine run.

Run as root from the checkout (after ./tools/setup.sh):
    .venv/bin/python bench/bench_cli.py [--runs 50] [--json FILE]

Prints mean and user+system CPU time of each command with the goal of issue 15 beside it
(`--help` under 60 ms, cold path at most 80 ms for the stock family). Never a pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
BIN = os.path.join(TOP, ".venv", "bin")
TRUE = "/bin/true"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if not shutil.which("hyperfine"):
        print("bench_cli: hyperfine is missing (apt-get install hyperfine)", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("bench_cli: run as root (the launches need namespaces)", file=sys.stderr)
        return 1
    sys.path.insert(0, os.path.join(TOP, "src"))
    from redpak.node import create_node

    top = tempfile.mkdtemp(prefix="rp-bench-cli-")
    try:
        app = os.path.join(top, "system", "app")
        create_node(os.path.join(top, "system"), model="root")
        create_node(app)
        aot = os.path.join(top, "system", "aot")
        create_node(aot)
        cache = os.path.join(top, "cache")
        env = {**os.environ, "REDPAK_CACHE_DIR": cache}
        # as installed: bytecode compiled (PYTHONDONTWRITEBYTECODE would recompile each time)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        import redpak
        subprocess.run([sys.executable, "-m", "compileall", "-q",
                        os.path.dirname(redpak.__file__)], env=env, check=True)
        subprocess.run([os.path.join(BIN, "redconf"), "compile", aot], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        redwrap = os.path.join(BIN, "redwrap")
        cases = [
            ("python3 -c pass (floor)", f"{sys.executable} -c pass", None),
            ("redconf --help", f"{BIN}/redconf --help", 60.0),
            ("redwrap-dnf --help", f"{BIN}/redwrap-dnf --help", 60.0),
            ("redwrap cold path (-f: Python compiles)", f"{redwrap} -f -r {app} -- {TRUE}",
             80.0),
            ("redwrap after redconf compile (native)", f"{redwrap} -r {aot} -- {TRUE}", None),
        ]
        out = os.path.join(top, "hyperfine.json")
        subprocess.run(["hyperfine", "-N", "-w", "5", "-r", str(args.runs), "--export-json",
                        out, *[c[1] for c in cases]], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        with open(out) as f:
            results = json.load(f)["results"]
        figures = []
        print(f"{'command':42} {'mean ms':>8} {'cpu ms':>7} {'goal ms':>8}  mean/cpu vs goal")
        for (name, _, goal), r in zip(cases, results):
            mean, cpu = r["mean"] * 1e3, (r["user"] + r["system"]) * 1e3
            verdict = "" if goal is None else "  " + "/".join(
                "ok" if v <= goal else "over" for v in (mean, cpu))
            print(f"{name:42} {mean:8.1f} {cpu:7.1f} {goal or '':>8}{verdict}")
            figures.append({"name": name, "command": r["command"], "mean_ms": mean,
                            "cpu_ms": cpu, "goal_ms": goal})
        print(f"load average at the end: {os.getloadavg()[0]:.2f} "
              f"(wall times are only comparable on an idle machine)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=2)
        return 0
    finally:
        subprocess.run(["umount", "-R", "-l", top], stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
