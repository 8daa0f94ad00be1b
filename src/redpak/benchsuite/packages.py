"""Package install timing: 1 and 100 small packages into the leaf of a three-level family
with `redwrap-dnf`, against `rpm -i` of the same files and `dnf --installroot` when present.
The packages are built here with rpmbuild (one spec, 101 sub-packages) into a repository
made by createrepo_c."""

from __future__ import annotations

import os
import subprocess
import time

from . import families
from .harness import Skip, which
from .schema import figure
from .stats import ratio, summary

PREFIX = "rpbench"


def _spec(count: int) -> str:
    lines = [f"Name: {PREFIX}-small", "Version: 1.0", "Release: 1",
             "Summary: redpak-bench package", "License: MIT", "BuildArch: noarch",
             "AutoReqProv: no",
             "%description", "A package of redpak-bench."]
    for i in range(1, count + 1):
        lines += [f"%package -n {PREFIX}-p{i:03d}", f"Summary: redpak-bench package {i}",
                  "AutoReqProv: no",
                  f"%description -n {PREFIX}-p{i:03d}", "A package of redpak-bench."]
    lines += ["%install", f"mkdir -p %{{buildroot}}/usr/share/{PREFIX}",
              f"for p in small $(seq -f 'p%03g' 1 {count}); do",
              f"  mkdir -p %{{buildroot}}/usr/share/{PREFIX}/$p",
              f"  for f in 1 2 3; do echo $p $f > %{{buildroot}}/usr/share/{PREFIX}/$p/f$f; done",
              "done", "%files", f"/usr/share/{PREFIX}/small"]
    for i in range(1, count + 1):
        lines += [f"%files -n {PREFIX}-p{i:03d}", f"/usr/share/{PREFIX}/p{i:03d}"]
    return "\n".join(lines) + "\n"


def build_repo(work: str, count: int = 100) -> tuple[str, list[str]]:
    """Build the packages and their repository; returns (repo dir, package names)."""
    rpmbuild, createrepo = which("rpmbuild"), which("createrepo_c")
    if not rpmbuild:
        raise Skip("rpmbuild is not installed: the benchmark packages cannot be built")
    if not createrepo:
        raise Skip("createrepo_c is not installed: no repository for the packages")
    spec = os.path.join(work, "bench.spec")
    with open(spec, "w", encoding="utf-8") as f:
        f.write(_spec(count))
    top = os.path.join(work, "rpmbuild")
    # no compression, no post-install scripts, no build-id links: building 101 packages
    # takes a second or two instead of ten, and the packages install the same
    quick = ["--define", "_binary_payload w0.ufdio", "--define", "__os_install_post %{nil}",
             "--define", "_build_id_links none"]
    r = subprocess.run([rpmbuild, "-bb", "--quiet", "--define", f"_topdir {top}", *quick, spec],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip(f"rpmbuild failed: {r.stderr.strip()[-300:]}")
    repo = os.path.join(top, "RPMS", "noarch")
    r = subprocess.run([createrepo, "--quiet", repo], capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip(f"createrepo_c failed: {r.stderr.strip()[-300:]}")
    return repo, [f"{PREFIX}-small"] + [f"{PREFIX}-p{i:03d}" for i in range(1, count + 1)]


def _run(argv: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip(f"{os.path.basename(argv[0])} failed (status {r.returncode}): "
                   f"{(r.stderr or r.stdout).strip()[-300:]}")
    return (time.perf_counter() - t0) * 1000


def packages(ctx) -> dict:
    if os.geteuid() != 0:
        raise Skip("needs root (rpm installs into a node through chroot)")
    rpm, dnf_cli = which("rpm"), families.tool("redwrap-dnf")
    if not rpm:
        raise Skip("rpm is not installed")
    if not dnf_cli:
        raise Skip("the redwrap-dnf command is not installed")
    work = os.path.join(ctx.tmp, "packages")
    os.makedirs(work)
    ctx.progress("packages", "building 101 packages with rpmbuild")
    repo, names = build_repo(work)
    system = os.path.join(work, "nodes", "system")
    app = os.path.join(system, "platform", "app")
    env = dict(ctx.env, REDPAK_REDWRAP="")
    _run([dnf_cli, "-q", "--redpath", os.path.dirname(app), "manager"], env)
    _run([dnf_cli, "-q", "--redpath", app, "manager"], env)
    os.makedirs(os.path.join(system, "etc", "yum.repos.d"), exist_ok=True)
    with open(os.path.join(system, "etc", "yum.repos.d", "bench.repo"), "w") as f:
        f.write(f"[rpbench]\nname=redpak-bench\nbaseurl=file://{repo}\ngpgcheck=0\n")
    rpmdb = [rpm, "--root", app, "--dbpath", "/var/lib/rpm"]

    def erase() -> None:
        out = subprocess.run(rpmdb + ["-qa"], capture_output=True, text=True).stdout.split()
        if out:
            _run(rpmdb + ["-e", "--nodeps", "--noscripts", *out])
    dnf = which("dnf")
    if not dnf:
        ctx.skip("packages: dnf --installroot", "dnf is not installed")
    sets = {}
    for label, pkgs in (("1", names[:1]), ("100", names[1:])):
        runs = (3 if label == "1" else 1) if ctx.quick else 11
        files = [os.path.join(repo, f"{n}-1.0-1.noarch.rpm") for n in pkgs]
        tools = {"redwrap-dnf": lambda: _run([dnf_cli, "-y", "-q", "--redpath", app,
                                              "install", *pkgs], env),
                 "rpm -i": lambda: _run(rpmdb + ["-i", "--nodeps", "--noscripts", *files])}
        if dnf:
            tools["dnf --installroot"] = lambda: _dnf(dnf, work, repo, pkgs)
        times: dict[str, list[float]] = {name: [] for name in tools}
        erase()
        for i in range(runs):
            ctx.progress("packages", f"{label} package(s), run {i + 1}/{runs}")
            for name, install in list(tools.items()):
                try:
                    times[name].append(install())
                except Skip as err:
                    if name == "redwrap-dnf":
                        raise
                    ctx.skip(f"packages: {name}", str(err))
                    del tools[name], times[name]
                erase()
        sets[label] = {name: summary(t) for name, t in times.items()}
        med = sets[label]["redwrap-dnf"]["median"]
        ctx.figures[f"packages.{label}.redwrap-dnf.median"] = figure(med, "ms")
        r = ratio(med, sets[label].get("rpm -i", {}).get("median"))
        if r is not None:
            ctx.figures[f"ratio.packages {label}: redwrap-dnf/rpm -i"] = figure(r, "ratio")
    return {"sets": sets}


def _dnf(dnf: str, work: str, repo: str, pkgs: list[str]) -> float:
    """`dnf --installroot` into a fresh root, the benchmark repository only."""
    import shutil
    import tempfile
    root = tempfile.mkdtemp(dir=work, prefix="dnfroot-")
    try:
        return _run([dnf, "-y", "-q", "--installroot", root, "--setopt=reposdir=/dev/null",
                     "--setopt=install_weak_deps=False", "--nogpgcheck",
                     f"--repofrompath=rpbench,file://{repo}", "--repo=rpbench",
                     "install", *pkgs])
    finally:
        shutil.rmtree(root, ignore_errors=True)
