#!/usr/bin/env python3
# Package-management timing: resolve + install one small package, and 100 packages at
# once, into the leaf of a three-level family, against plain `rpm -i` of the same files.
"""Benchmark redwrap-dnf against rpm -i (never collected by pytest).

    sudo .venv/bin/python bench/bench_pkg.py [--runs N] [--json]

Measures, as medians (and p95) over N runs, each run on a node emptied beforehand:
  redpak API      redpak.pkg.ops.install() in a warm process: family load and merge,
                  metadata (cached), installed sets of all three nodes, resolution,
                  journal, librpm transaction
  redpak CLI      `redwrap-dnf -y -q install ...` as a new process
  rpm -i          `rpm --root NODE --dbpath /var/lib/rpm -i --nodeps --noscripts FILES`
                  (no resolution, the files given), as a new process
for one small package and for 100 packages at once. Needs root (librpm chroots into the
node), rpmbuild and createrepo_c.
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))


def _spec(name: str, files: int) -> str:
    return "\n".join([
        f"Name: {name}", "Version: 1.0", "Release: 1", f"Summary: bench package {name}",
        "License: MIT", "BuildArch: noarch", "%description", name, "%install",
        f"mkdir -p %{{buildroot}}/usr/share/{name}",
        f"for i in $(seq 1 {files}); do echo $i > %{{buildroot}}/usr/share/{name}/f$i; done",
        "%files", f"/usr/share/{name}", ""])


def build(work: Path) -> tuple[Path, list[str]]:
    """Build `small` and p001..p100 and a repository of them."""
    specs = work / "specs"
    specs.mkdir()
    names = ["small"] + [f"p{i:03d}" for i in range(1, 101)]
    paths = []
    for name in names:
        path = specs / f"{name}.spec"
        path.write_text(_spec(name, 1 if name == "small" else 3))
        paths.append(str(path))
    top = work / "build"
    subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", *paths],
                   check=True, capture_output=True)
    repo = work / "repo"
    shutil.copytree(top / "RPMS" / "noarch", repo)
    subprocess.run(["createrepo_c", "--quiet", str(repo)], check=True)
    return repo, names


def make_family(work: Path, repo: Path) -> Path:
    from redpak.pkg import ops

    quiet = ops.Options(out=lambda text: None)
    system = work / "nodes" / "system"
    ops.manager(str(system / "platform"), None, False, None, None, False, quiet)
    app = system / "platform" / "app"
    ops.manager(str(app), None, False, None, None, False, quiet)
    (system / "etc/yum.repos.d/bench.repo").write_text(
        f"[bench]\nname=bench\nbaseurl=file://{repo}\n")
    return app


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"median_ms": statistics.median(ordered) * 1000, "p95_ms": p95 * 1000,
            "runs": len(ordered)}


def _rpm_erase_all(app: Path) -> None:
    out = subprocess.run(["rpm", "--root", str(app), "--dbpath", "/var/lib/rpm", "-qa"],
                         capture_output=True, text=True, check=True).stdout.split()
    if out:
        subprocess.run(["rpm", "--root", str(app), "--dbpath", "/var/lib/rpm", "-e",
                        "--nodeps", "--noscripts", *out], check=True, capture_output=True)


def bench(app: Path, repo: Path, names: list[str], runs: int) -> dict[str, dict]:
    from redpak.pkg import ops
    from redpak.pkg.progress import Progress

    opts = ops.Options(assumeyes=True, out=lambda t: None, progress=Progress(quiet=True))
    env = dict(os.environ, REDPAK_REDWRAP="")
    cli = [sys.executable, "-m", "redpak.cli.redwrap_dnf", "-y", "-q", "--redpath", str(app)]
    results: dict[str, dict] = {}
    for label, pkgs in (("1 package", names[:1]), ("100 packages", names[1:])):
        files = [str(repo / f"{n}-1.0-1.noarch.rpm") for n in pkgs]
        ops.install(str(app), pkgs, opts)           # warm: metadata cache, page cache
        _rpm_erase_all(app)
        api, proc, plain = [], [], []
        for _ in range(runs):
            t = time.perf_counter()
            ops.install(str(app), pkgs, opts)
            api.append(time.perf_counter() - t)
            _rpm_erase_all(app)
            t = time.perf_counter()
            subprocess.run([*cli, "install", *pkgs], check=True, env=env,
                           stdout=subprocess.DEVNULL)
            proc.append(time.perf_counter() - t)
            _rpm_erase_all(app)
            t = time.perf_counter()
            subprocess.run(["rpm", "--root", str(app), "--dbpath", "/var/lib/rpm", "-i",
                            "--nodeps", "--noscripts", *files], check=True,
                           capture_output=True)
            plain.append(time.perf_counter() - t)
            _rpm_erase_all(app)
        results[label] = {"redpak API": _stats(api), "redpak CLI": _stats(proc),
                          "rpm -i": _stats(plain)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_pkg: needs root (librpm chroots into the node)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="redpak-bench-pkg-") as tmp:
        work = Path(tmp)
        repo, names = build(work)
        app = make_family(work, repo)
        results = bench(app, repo, names, args.runs)
    info = {"kernel": platform.release(), "cpu": _cpu(), "python": platform.python_version(),
            "runs": args.runs}
    if args.json:
        print(json.dumps({"machine": info, "results": results}, indent=2))
        return 0
    print(f"kernel {info['kernel']}, {info['cpu']}, Python {info['python']}, "
          f"{args.runs} runs, family system > platform > app, install into app")
    for label, rows in results.items():
        base = rows["rpm -i"]["median_ms"]
        print(f"\n{label}:")
        for name, s in rows.items():
            print(f"  {name:<11} median {s['median_ms']:8.1f} ms   p95 {s['p95_ms']:8.1f} ms"
                  f"   x{s['median_ms'] / base:5.2f} of rpm -i")
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


if __name__ == "__main__":
    sys.exit(main())
