#!/usr/bin/env python3
# Timing of the offline proof (issue 14) on a three-level family holding 200 packages,
# against rpm's own checks of the same databases (rpm -Va, rpm -qa).
"""Benchmark `redconf check --packages` on a 3-level tree of 200 packages (not collected
by pytest).

    sudo .venv/bin/python bench/bench_proof.py [--runs N] [--json] [--rebuild]

The tree (system > platform > app; 80, 60 and 60 packages of 5 files each, every package
requiring packages of its own node and of its ancestors, installed by redwrap-dnf) is
built once and kept in $TMPDIR/redpak-bench-proof-v1 (--rebuild makes it again).
Measures, as medians (and p95) over N runs:
  proof API          redpak.proof.prove_tree() in a warm process (package half)
  redconf check      `redconf check --packages ROOT` as a new process (config half too)
  redconf --verify   the same with --verify (sizes and digests of every file)
  rpm -qa            `rpm -qa` of the three databases (peer: opening them, no check)
  rpm -Va            `rpm -Va --nodeps` of the three nodes (peer of --verify)
Needs root (installing makes librpm chroot into the node), rpmbuild and createrepo_c.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench_pkg import _cpu, _stats  # noqa: E402 (the same statistics as the other benches)

LEVELS = (("system", "lib", 80), ("platform", "mid", 60), ("app", "top", 60))
FILES = 5
CACHE = Path(tempfile.gettempdir()) / "redpak-bench-proof-v1"


def _spec(name: str, requires: list[str]) -> str:
    return "\n".join([
        f"Name: {name}", "Version: 1.0", "Release: 1", f"Summary: bench package {name}",
        "License: MIT", "BuildArch: noarch", *(f"Requires: {r}" for r in requires),
        "%description", name, "%install",
        f"mkdir -p %{{buildroot}}/usr/share/{name}",
        f"for i in $(seq 1 {FILES}); do echo {name} $i > %{{buildroot}}/usr/share/{name}/f$i;"
        " done", "%files", f"/usr/share/{name}", ""])


def _names() -> list[list[str]]:
    return [[f"{prefix}{i:03d}" for i in range(count)] for _, prefix, count in LEVELS]


def build(work: Path) -> Path:
    """Build the 200 packages and the tree; returns the tree's top directory."""
    from redpak.pkg import ops
    from redpak.pkg.progress import Progress

    specs = work / "specs"
    specs.mkdir(parents=True)
    levels = _names()
    paths = []
    for depth, names in enumerate(levels):
        for i, name in enumerate(names):
            requires = [levels[d][(i + k) % len(levels[d])] for d in range(depth)
                        for k in (0, 1)]
            if i:
                requires.append(names[i - 1])
            path = specs / f"{name}.spec"
            path.write_text(_spec(name, requires))
            paths.append(str(path))
    top = work / "build"
    subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
                    "--define", "_build_id_links none", *paths],
                   check=True, capture_output=True)
    repo = work / "repo"
    shutil.copytree(top / "RPMS" / "noarch", repo)
    subprocess.run(["createrepo_c", "--quiet", str(repo)], check=True)
    quiet = ops.Options(out=lambda text: None)
    system = work / "nodes" / "system"
    nodes = [system, system / "platform", system / "platform" / "app"]
    ops.manager(str(nodes[1]), None, False, None, None, False, quiet)
    ops.manager(str(nodes[2]), None, False, None, None, False, quiet)
    (system / "etc/yum.repos.d/bench.repo").write_text(
        f"[bench]\nname=bench\nbaseurl=file://{repo}\n")
    opts = ops.Options(assumeyes=True, out=lambda t: None, progress=Progress(quiet=True))
    for node, names in zip(nodes, levels):
        ops.install(str(node), names, opts)
    return work / "nodes"


def tree(rebuild: bool) -> Path:
    marker = CACHE / "complete"
    if rebuild or not marker.exists():
        shutil.rmtree(CACHE, ignore_errors=True)
        os.environ["REDPAK_REDWRAP"] = ""       # no scriptlets in these packages
        build(CACHE)
        marker.write_text("built\n")
    return CACHE / "nodes"


def _timed(cmd: list[str], ok: tuple[int, ...] = (0,)) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                         f"{proc.stdout}{proc.stderr}")
    return elapsed


def bench(root: Path, runs: int) -> dict[str, dict]:
    from redpak.node import find_tree
    from redpak.proof import prove_tree

    nodes = find_tree(str(root))
    report = prove_tree(nodes)
    if report.findings or report.packages != sum(n for _, _, n in LEVELS):
        raise SystemExit(f"bench tree is not clean: {report.packages} packages, "
                         f"{[f.message for f in report.findings][:3]}")
    redconf = [sys.executable, "-m", "redpak.cli.redconf", "check", "--packages", str(root)]
    samples: dict[str, list[float]] = {k: [] for k in (
        "proof API", "redconf check", "redconf --verify", "rpm -qa", "rpm -Va")}
    for _ in range(runs):
        t = time.perf_counter()
        prove_tree(nodes)
        samples["proof API"].append(time.perf_counter() - t)
        samples["redconf check"].append(_timed(redconf))
        samples["redconf --verify"].append(_timed([*redconf, "--verify"]))
        samples["rpm -qa"].append(sum(_timed(["rpm", "--dbpath", f"{n}/var/lib/rpm", "-qa"])
                                      for n in nodes))
        samples["rpm -Va"].append(sum(_timed(["rpm", "--root", n, "--dbpath", "/var/lib/rpm",
                                              "-Va", "--nodeps", "--noscripts"], (0, 1))
                                      for n in nodes))
    return {k: _stats(v) for k, v in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rebuild", action="store_true",
                        help=f"build the tree again (cached in {CACHE})")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_proof: needs root (installing makes librpm chroot into the node)",
              file=sys.stderr)
        return 1
    root = tree(args.rebuild)
    results = bench(root, args.runs)
    info = {"kernel": platform.release(), "cpu": _cpu(), "python": platform.python_version(),
            "runs": args.runs, "packages": sum(n for _, _, n in LEVELS),
            "files": sum(n for _, _, n in LEVELS) * FILES, "tree": str(root)}
    if args.json:
        print(json.dumps({"machine": info, "results": results}, indent=2))
        return 0
    print(f"kernel {info['kernel']}, {info['cpu']}, Python {info['python']}, "
          f"{args.runs} runs; tree system > platform > app, {info['packages']} packages, "
          f"{info['files']} files ({root})")
    for name, s in results.items():
        print(f"  {name:<17} median {s['median_ms']:8.1f} ms   p95 {s['p95_ms']:8.1f} ms")
    goal = results["redconf check"]["median_ms"] / 1000
    print(f"proof of the tree: {goal:.2f} s (goal < 5 s: {'met' if goal < 5 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
