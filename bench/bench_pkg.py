#!/usr/bin/env python3
# Package-management timing: resolve + install one small package, and 100 packages at
# once, into the leaf of a three-level family, against plain `rpm -i` of the same files,
# `dnf --installroot`, and the in-place install of a baseline revision (the atomic cost).
"""Benchmark redwrap-dnf against rpm -i and dnf (never collected by pytest).

    sudo .venv/bin/python bench/bench_pkg.py [--runs N] [--baseline REV] [--json]

Measures, as medians (and p95) over N runs, each run on a node emptied beforehand:
  redpak API      redpak.pkg.ops.install() in a warm process: family load and merge,
                  metadata (cached), installed sets of all three nodes, resolution,
                  staging, librpm transaction, swap
  redpak CLI      `redwrap-dnf -y -q install ...` as a new process (atomic update), the
                  installed script beside the interpreter; issue 15's goal: one package
                  in at most 0.5x the time of dnf
  baseline CLI    the same command run from `git archive REV src` (default REV: main;
                  before the atomic update: librpm wrote the live node in place), so
                  "redpak CLI / baseline CLI" is what atomicity costs
  dnf             `dnf --installroot DIR install ...` from the same repository (cached
                  metadata), into a fresh directory each run, when dnf is installed
  rpm -i          `rpm --root NODE --dbpath /var/lib/rpm -i --nodeps --noscripts FILES`
                  (no resolution, the files given), as a new process
for one small package into an empty node, one small package into a node already holding
100 packages (the stage clones what is there), and 100 packages at once. Needs root
(librpm chroots into the node), rpmbuild and createrepo_c.
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


def make_baseline_family(work: Path, repo: Path, baseline: Path) -> Path:
    """The same family, made by the baseline's own code (its templates and schema: a
    family made by this checkout may hold keys the baseline does not know)."""
    system = work / "base-nodes" / "system"
    code = ("import sys\nfrom redpak.pkg import ops\n"
            "q = ops.Options(out=lambda text: None)\n"
            "for path in sys.argv[1:]:\n"
            "    ops.manager(path, None, False, None, None, False, q)\n")
    subprocess.run([sys.executable, "-c", code, str(system / "platform"),
                    str(system / "platform" / "app")], check=True,
                   env=dict(os.environ, PYTHONPATH=str(baseline)))
    (system / "etc/yum.repos.d/bench.repo").write_text(
        f"[bench]\nname=bench\nbaseurl=file://{repo}\n")
    return system / "platform" / "app"


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


def _baseline(work: Path, rev: str) -> Path | None:
    """`src` of revision REV of this repository, exported into WORK (None without git)."""
    out = work / "baseline"
    out.mkdir()
    try:
        archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev, "src"],
                                 check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"bench_pkg: no baseline ({rev}): {err}", file=sys.stderr)
        return None
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    # bytecode compiled, as an installed redpak is (else each run compiles every module)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(out / "src")], check=True)
    return out / "src"


def _timed(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    return time.perf_counter() - t


def bench(app: Path, repo: Path, names: list[str], runs: int, work: Path,
          baseline: Path | None, base_app: Path | None = None) -> dict[str, dict]:
    from redpak.pkg import ops
    from redpak.pkg.progress import Progress

    opts = ops.Options(assumeyes=True, out=lambda t: None, progress=Progress(quiet=True))
    env = dict(os.environ, REDPAK_REDWRAP="")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: the bytecode is used
    base_env = dict(env, PYTHONPATH=str(baseline)) if baseline else None
    # the command as users run it: the installed script (python -m adds runpy's imports)
    script = Path(sys.executable).parent / "redwrap-dnf"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "redpak.cli.redwrap_dnf"]
    cli = [*cmd, "-y", "-q", "--redpath", str(app)]
    base_cli = [*cli[:-1], str(base_app or app)]
    dnf = shutil.which("dnf")
    root = work / "dnfroot"
    dnf_cmd = [dnf or "dnf", "--installroot", str(root), "--setopt=reposdir=/nonexistent",
               "--setopt=cachedir=/var/cache/dnf", f"--repofrompath=bench,file://{repo}",
               "--repo=bench", "--nogpgcheck", "--releasever=1", "-y", "-q",
               "--setopt=install_weak_deps=False", "--setopt=metadata_expire=-1", "install"]
    results: dict[str, dict] = {}
    for label, pkgs, prefill in (("1 package", names[:1], []),
                                 ("1 package, node holds 100", names[:1], names[1:]),
                                 ("100 packages", names[1:], [])):
        files = [str(repo / f"{n}-1.0-1.noarch.rpm") for n in pkgs]
        prefill_files = [str(repo / f"{n}-1.0-1.noarch.rpm") for n in prefill]

        def reset() -> None:
            _rpm_erase(app, pkgs)
            shutil.rmtree(root, ignore_errors=True)

        for node in {app, base_app or app}:
            _rpm_erase_all(node)
            if prefill_files:
                subprocess.run(["rpm", "--root", str(node), "--dbpath", "/var/lib/rpm", "-i",
                                "--nodeps", "--noscripts", *prefill_files], check=True,
                               capture_output=True)
        ops.install(str(app), pkgs, opts)           # warm: metadata cache, page cache
        reset()
        if dnf:
            _timed(dnf_cmd + pkgs)                 # warm dnf's metadata cache too
            reset()
        rows: dict[str, list[float]] = {"redpak API": [], "redpak CLI": []}
        if base_env:
            rows["baseline CLI"] = []
        if dnf:
            rows["dnf"] = []
        rows["rpm -i"] = []
        for _ in range(runs):
            t = time.perf_counter()
            ops.install(str(app), pkgs, opts)
            rows["redpak API"].append(time.perf_counter() - t)
            reset()
            rows["redpak CLI"].append(_timed([*cli, "install", *pkgs], env=env))
            reset()
            if base_env:
                rows["baseline CLI"].append(_timed([*base_cli, "install", *pkgs],
                                                   env=base_env))
                _rpm_erase(base_app or app, pkgs)
            if dnf:
                rows["dnf"].append(_timed(dnf_cmd + pkgs))
                reset()
            rows["rpm -i"].append(_timed(["rpm", "--root", str(app), "--dbpath",
                                          "/var/lib/rpm", "-i", "--nodeps", "--noscripts",
                                          *files]))
            reset()
        results[label] = {name: _stats(samples) for name, samples in rows.items()}
    _rpm_erase_all(app)
    return results


def _rpm_erase(app: Path, names: list[str]) -> None:
    out = subprocess.run(["rpm", "--root", str(app), "--dbpath", "/var/lib/rpm", "-qa",
                          "--qf", "%{NAME}\\n"], capture_output=True, text=True,
                         check=True).stdout.split()
    present = [n for n in out if n in names]
    if present:
        subprocess.run(["rpm", "--root", str(app), "--dbpath", "/var/lib/rpm", "-e",
                        "--nodeps", "--noscripts", *present], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--baseline", default="main", metavar="REV",
                        help="git revision whose in-place install is compared (default "
                             "main; 'none' to skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_pkg: needs root (librpm chroots into the node)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="redpak-bench-pkg-") as tmp:
        work = Path(tmp)
        repo, names = build(work)
        app = make_family(work, repo)
        baseline = None if args.baseline == "none" else _baseline(work, args.baseline)
        base_app = make_baseline_family(work, repo, baseline) if baseline else None
        results = bench(app, repo, names, args.runs, work, baseline, base_app)
    info = {"kernel": platform.release(), "cpu": _cpu(), "python": platform.python_version(),
            "runs": args.runs, "baseline": args.baseline}
    if args.json:
        print(json.dumps({"machine": info, "results": results}, indent=2))
        return 0
    print(f"kernel {info['kernel']}, {info['cpu']}, Python {info['python']}, "
          f"{args.runs} runs, family system > platform > app, install into app")
    for label, rows in results.items():
        base = rows["rpm -i"]["median_ms"]
        print(f"\n{label}:")
        for name, s in rows.items():
            print(f"  {name:<12} median {s['median_ms']:8.1f} ms   p95 {s['p95_ms']:8.1f} ms"
                  f"   x{s['median_ms'] / base:5.2f} of rpm -i")
        if "baseline CLI" in rows:
            ratio = rows["redpak CLI"]["median_ms"] / rows["baseline CLI"]["median_ms"]
            print(f"  atomic update cost: redpak CLI = x{ratio:.2f} of the baseline's "
                  f"in-place install ({args.baseline}; goal <= 1.3)")
        if "dnf" in rows:
            ratio = rows["redpak CLI"]["median_ms"] / rows["dnf"]["median_ms"]
            print(f"  redpak CLI = x{ratio:.2f} of dnf --installroot (goal <= 0.5 for one "
                  f"package: {'met' if ratio <= 0.5 else 'NOT met'})"
                  if label == "1 package" else f"  redpak CLI = x{ratio:.2f} of dnf "
                  "--installroot")
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
