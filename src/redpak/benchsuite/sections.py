"""The measurements of `redpak-bench run`, one function per section. Each returns the
section's JSON object, records its figures in ctx.figures and the peers or parts it could
not measure in ctx.skipped (raising Skip drops the whole section with a reason)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from . import families
from .harness import (Command, Skip, comm_of, exe_of, host_program, mapped_files,
                      pss_kib, time_commands, tree, which)
from .schema import figure
from .stats import linear_fit, ratio, summary


class Context:
    """What the sections share: the scratch directory, the settings, the results."""

    def __init__(self, tmp: str, quick: bool, progress, concurrency: int = 8):
        self.tmp, self.quick, self.progress = tmp, quick, progress
        self.concurrency = concurrency
        self.skipped: list[dict] = []
        self.figures: dict[str, dict] = {}
        self.redwrap = families.tool("redwrap")
        self.cache = os.path.join(tmp, "plan-cache")
        os.makedirs(self.cache, exist_ok=True)
        # the run's own plan cache: nothing of the board's cache is used or changed
        self.env = dict(os.environ, REDPAK_CACHE_DIR=self.cache)
        self._families: dict[int, str] = {}

    def skip(self, what: str, reason: str) -> None:
        self.skipped.append({"what": what, "reason": reason})
        self.progress.note(f"skipped {what}: {reason}")

    def peer(self, name: str) -> str | None:
        path = which(name)
        if path is None:
            self.skip(name, f"{name} is not installed (not found in PATH)")
        return path

    def family(self, levels: int) -> str:
        """The stock family of `levels` nodes (root template, then leaf templates), made
        once with `redconf create`; returns the leaf."""
        if levels not in self._families:
            top = os.path.join(self.tmp, f"family{levels}", "system")
            nodes = [(top, "root")]
            for name in ["platform", "profile"][:levels - 2] + ["app"]:
                nodes.append((os.path.join(nodes[-1][0], name), "leaf"))
            families.redconf_create(nodes)
            self._families[levels] = nodes[-1][0]
        return self._families[levels]

    def bwrap_argv(self, what: str, node: str, argv: list[str]) -> list[str] | None:
        """bwrap doing what redwrap does for `node` then running argv; None (and a skip
        for `what`) when bwrap is missing or the plan cannot be read."""
        bwrap = which("bwrap")
        if not bwrap:
            return None
        try:
            plan = families.dump_plan(self.redwrap, node, self.env, argv[0])
        except Skip as err:
            self.skip(what, str(err))
            return None
        return families.bwrap_argv(bwrap, plan, self.tmp) + ["--", *argv]

    def cached_cmd(self, node: str, argv: list[str]) -> Command:
        """redwrap running argv in node from a cached plan: launched once to cache the
        plan, then once with no interpreter for the cold path (REDPAK_PYTHON pointing
        nowhere), which succeeds only if the native launcher used the cached plan."""
        cmd = self.redwrap_cmd(node, argv)
        cmd.check()
        native = Command(cmd.argv, env=dict(self.env, REDPAK_PYTHON="/nonexistent/python"))
        try:
            native.check()
        except Skip as err:
            raise Skip(f"the plan of {node} is not used from the cache ({err})") from None
        return cmd

    def redwrap_cmd(self, node: str, argv: list[str], env=None) -> Command:
        if not self.redwrap:
            raise Skip("the redwrap command is not installed")
        return Command([self.redwrap, "--redpath", node, "--", *argv], env=env or self.env)


def _measure(ctx: Context, section: str, commands: dict[str, Command], runs: int,
             budget_s: float | None = None) -> dict[str, list[float]]:
    """Check each command once (a failing peer is skipped with its error), then time the
    ones that work."""
    working = {}
    for name, cmd in commands.items():
        try:
            cmd.check()
            working[name] = cmd
        except Skip as err:
            ctx.skip(f"{section}: {name}", str(err))
    if not working:
        return {}
    return time_commands(working, runs, budget_s=budget_s,
                         tick=lambda n: ctx.progress(section, n))


def samples_summary(samples: list[float]) -> dict:
    """The samples as kept in the JSON (ms, to 0.1 µs) and their statistics."""
    kept = [round(x, 4) for x in samples]
    return {"samples": kept, **summary(kept)}


def latency(ctx: Context) -> dict:
    """Launch latency of /bin/true: redpak cold and cached, vs fork+exec, unshare, bwrap,
    crun, in interleaved rounds."""
    import redpak

    true = host_program("true")
    two, three = ctx.family(2), ctx.family(3)
    cmds = {}
    for name, node in (("redwrap 2-level cached", two), ("redwrap 3-level cached", three)):
        try:
            cmds[name] = ctx.cached_cmd(node, [true])
        except Skip as err:
            ctx.skip(f"latency: {name}", str(err))
    node = redpak.Node(two)
    cmds["Node.run 2-level"] = Command(call=lambda: node.run([true]))
    kinds = dict.fromkeys(cmds, "redpak")
    cmds["fork+exec"] = Command([true])
    unshare = ctx.peer("unshare")
    if unshare:
        cmds["unshare -m -p -i -u -f"] = Command([unshare, "-m", "-p", "-i", "-u", "-f", true])
    if ctx.peer("bwrap") and (argv := ctx.bwrap_argv("latency: bwrap", two, [true])):
        cmds["bwrap"] = Command(argv)
    crun = ctx.peer("crun")
    if crun:
        bundle = families.crun_bundle(ctx.tmp, "latency", true, 0, ctx.tmp)
        cmds["crun"] = Command([crun, "--root", os.path.join(ctx.tmp, "crun-state"), "run",
                                "--bundle", bundle, f"rpbench-{os.getpid()}"])
    runs = 30 if ctx.quick else 300
    samples = _measure(ctx, "latency", cmds, runs)

    def fresh_cache() -> dict:
        return dict(ctx.env, REDPAK_CACHE_DIR=tempfile.mkdtemp(dir=ctx.tmp, prefix="cold-"))
    cold = {"redwrap 2-level cold": ctx.redwrap_cmd(two, [true], env=fresh_cache),
            "redwrap 3-level cold": ctx.redwrap_cmd(three, [true], env=fresh_cache)}
    samples.update(_measure(ctx, "latency (cold)", cold, 5 if ctx.quick else 30))
    kinds.update(dict.fromkeys(cold, "redpak"))
    out = {"program": true, "commands": {}, "ratios": {}}
    for name, s in samples.items():
        out["commands"][name] = {"kind": kinds.get(name, "peer"), **samples_summary(s)}
        if kinds.get(name) == "redpak":
            ctx.figures[f"latency.{name}.median"] = figure(out["commands"][name]["median"], "ms")
            ctx.figures[f"latency.{name}.p95"] = figure(out["commands"][name]["p95"], "ms")
    med = {name: c["median"] for name, c in out["commands"].items()}
    base = med.get("redwrap 2-level cached")
    for label, a, b in (("redwrap/bwrap", base, med.get("bwrap")),
                        ("redwrap/unshare", base, med.get("unshare -m -p -i -u -f")),
                        ("redwrap/crun", base, med.get("crun")),
                        ("redwrap/fork+exec", base, med.get("fork+exec")),
                        ("3-level/2-level cached", med.get("redwrap 3-level cached"), base),
                        ("cold/cached 2-level", med.get("redwrap 2-level cold"), base),
                        ("Node.run/redwrap", med.get("Node.run 2-level"), base)):
        r = ratio(a, b)
        if r is not None:
            out["ratios"][label] = r
            ctx.figures[f"ratio.{label}"] = figure(r, "ratio")
    return out


def exports(ctx: Context) -> dict:
    """Launch latency with 0..1000 extra read-only exports; least-squares cost per export."""
    true = host_program("true")
    counts = [0, 250, 1000] if ctx.quick else [0, 10, 100, 250, 500, 1000]
    peer_max = 250 if ctx.quick else 1000       # bwrap is quadratic: 1.5 s a launch at 1000
    top = os.path.join(ctx.tmp, "exports", "system")
    data = os.path.join(ctx.tmp, "exports", "data")
    os.makedirs(data)
    families.redconf_create([(top, "root")] + [(os.path.join(top, f"e{n}"), "leaf")
                                               for n in counts])
    bwrap = which("bwrap")
    crun = which("crun")
    cmds: dict[str, Command] = {}
    for n in counts:
        node = os.path.join(top, f"e{n}")
        if n:
            families.edit_config(node, "exports:", families.export_lines(n, data))
        cmds[f"redwrap @ {n}"] = ctx.redwrap_cmd(node, [true])
        if bwrap and n <= peer_max and (
                argv := ctx.bwrap_argv(f"exports: bwrap at {n}", node, [true])):
            cmds[f"bwrap @ {n}"] = Command(argv)
        if crun and n <= peer_max:
            bundle = families.crun_bundle(ctx.tmp, f"e{n}", true, n, data)
            cmd = Command([crun, "--root", os.path.join(ctx.tmp, "crun-state"), "run",
                           "--bundle", bundle, f"rpbench-{os.getpid()}-{n}"])
            if n == 0:              # a crun that cannot run here is said once, not per count
                try:
                    cmd.check()
                except Skip as err:
                    ctx.skip("exports: crun", str(err))
                    crun = None
                    continue
            cmds[f"crun @ {n}"] = cmd
    # each tool and count in a block of its own: a launch with many mounts leaves the kernel
    # deferred teardown work that would land on the next launch, so interleaving would
    # charge the 1000-export launch's teardown to the 0-export one. In a block every launch
    # pays for a predecessor like itself: the steady-state cost. The blocks run in two
    # passes of half the runs each, counts ascending then descending: a load that drifts
    # during the section weighs on every count alike instead of tilting the line.
    samples: dict[str, list[float]] = {}
    runs, budget = (20, 1.5) if ctx.quick else (40, 10.0)
    failed: set[str] = set()
    for order in (list(cmds.items()), list(cmds.items())[::-1]):
        for name, cmd in order:
            if name in failed:
                continue
            got = _measure(ctx, f"exports: {name}", {name: cmd}, runs // 2, budget_s=budget / 2)
            if name not in got:                 # skipped, with its reason, once
                failed.add(name)
                samples.pop(name, None)
                continue
            samples.setdefault(name, []).extend(got[name])
    tools: dict[str, dict] = {}
    for name, s in samples.items():
        tool, _, n = name.rpartition(" @ ")
        row = tools.setdefault(tool, {"counts": [], "median_ms": [], "p95_ms": []})
        summ = summary(s)
        row["counts"].append(int(n))
        row["median_ms"].append(summ["median"])
        row["p95_ms"].append(summ["p95"])
    missing = [n for n in counts if f"redwrap @ {n}" not in samples]
    if missing:
        raise Skip(f"redwrap cannot launch a node with {missing[0]} exports")
    if bwrap and peer_max < max(counts):
        ctx.skip(f"exports: peers above {peer_max}",
                 "--quick measures bwrap and crun up to 250 exports only (bwrap grows "
                 "quadratically; the full run goes to 1000)")
    fits = {}
    for name, row in tools.items():
        if len(set(row["counts"])) >= 2:
            fit = linear_fit(row["counts"], row["median_ms"])
            segs = segments(row["counts"], row["median_ms"])
            fits[name] = {"us_per_export": fit["slope"] * 1000, "intercept_ms": fit["intercept"],
                          "r2": fit["r2"], "up_to": max(row["counts"]),
                          "segments": segs, "marginal_us_per_export": segs[-1]["us_per_export"]}
    if "redwrap" in fits:
        fit = fits["redwrap"]
        ctx.figures["exports.redwrap.us_per_export"] = figure(fit["us_per_export"], "µs/export")
        # linearity: the cost of one more export at the top of the range, and the fit's r²
        ctx.figures["exports.redwrap.marginal_us_per_export"] = figure(
            fit["marginal_us_per_export"], "µs/export")
        ctx.figures["exports.redwrap.r2"] = figure(fit["r2"], "r²", "higher")
    return {"counts": counts, "tools": tools, "fit": fits}


def segments(counts: list[int], medians: list[float]) -> list[dict]:
    """The marginal cost of an export between consecutive counts: [{"from", "to",
    "us_per_export"}] in increasing order (a constant cost gives equal segments; a cost
    growing with the count, increasing ones)."""
    points = sorted(zip(counts, medians))
    return [{"from": a, "to": b, "us_per_export": (mb - ma) / (b - a) * 1000}
            for (a, ma), (b, mb) in zip(points, points[1:]) if b > a]


def _wait_for(pids_of, count: int, timeout: float = 5.0) -> list[int]:
    """Poll until pids_of() lists `count` processes (the programs have started)."""
    end = time.monotonic() + timeout
    while True:
        found = pids_of()
        if len(found) >= count or time.monotonic() > end:
            return found
        time.sleep(0.02)


def _launcher_pss(procs: list[subprocess.Popen], program_comm: str, count: int
                  ) -> tuple[int, int, list[int], bool]:
    """(launcher KiB, program KiB, program pids, cold) summed over the trees of `procs`
    once `count` programs run: the launcher's own processes are all but the programs.
    `cold` tells that a launcher is a Python process (redwrap's cold path)."""
    def programs() -> list[int]:
        return [p for proc in procs for p in tree(proc.pid) if comm_of(p) == program_comm]
    progs = _wait_for(programs, count)
    if len(progs) < count:
        raise Skip(f"only {len(progs)} of {count} programs started")
    time.sleep(0.3)                             # let the launchers settle (pid 1 waiting)
    launcher = program = 0
    cold = False
    for proc in procs:
        for p in tree(proc.pid):
            if p in progs:
                program += pss_kib(p)
            else:
                launcher += pss_kib(p)
                cold = cold or os.path.basename(exe_of(p)).startswith("python")
    return launcher, program, progs, cold


def _running(ctx: Context, argvs: list[list[str]], comm: str,
             warm: list[list[str]]) -> tuple[int, int]:
    """(launcher KiB, program KiB) with every argv running at once. The `warm` launches
    come first (concurrently), so that redwrap finds cached plans; if a launcher still took
    the cold path (a plan went stale meanwhile: something changed a file it depends on),
    once more, then a Skip: a Python launcher's memory is not the figure."""
    for _ in range(2):
        for proc in [subprocess.Popen(a, env=ctx.env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for a in warm]:
            proc.wait()
        procs = [subprocess.Popen(a, env=ctx.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for a in argvs]
        progs: list[int] = []
        try:
            launcher, program, progs, cold = _launcher_pss(procs, comm, len(argvs))
        finally:
            _stop(procs, progs)
        if not cold:
            return launcher, program
    raise Skip("redwrap took the cold path (Python) twice although its plans were just "
               "cached: a file the plans depend on keeps changing on this machine")


def _stop(procs: list[subprocess.Popen], programs: list[int]) -> None:
    """End the programs we started (by pid), then reap their launchers."""
    for p in programs:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def memory(ctx: Context) -> dict:
    """PSS of the launcher's own processes (one node, and per node with N running), and
    the sharing claim: N nodes running the same binary and library vs N copies."""
    import redpak

    sleep = host_program("sleep")
    comm = os.path.basename(sleep)
    n = 20
    out: dict = {"program": sleep, "launcher_pss_kib": {}, "nodes": n}
    two = ctx.family(2)
    argv = [sleep, "30"]
    launchers = {"redwrap": ctx.redwrap_cmd(two, argv).argv}
    if bwrap := ctx.bwrap_argv("memory: bwrap", two, argv):
        launchers["bwrap"] = bwrap
    true = host_program("true")
    for name, cmd in launchers.items():
        ctx.progress("memory", f"launcher PSS, {name}")
        warm = [ctx.redwrap_cmd(two, [true]).argv] if name == "redwrap" else []
        try:
            out["launcher_pss_kib"][name] = _running(ctx, [cmd], comm, warm)[0]
        except Skip as err:
            ctx.skip(f"memory: {name}", str(err))
    # the Python API: the caller is the supervisor; the launcher's own process is pid 1
    ctx.progress("memory", "launcher PSS, Node.spawn")
    try:
        proc = redpak.Node(two).spawn(argv)
    except Exception as err:   # the API's error, said as a skip of this measurement only
        ctx.skip("memory: Node.spawn", f"{type(err).__name__}: {err}")
    else:
        progs = []
        try:
            progs = _wait_for(lambda: [p for p in tree(proc.pid) if comm_of(p) == comm], 1)
            time.sleep(0.3)
            out["launcher_pss_kib"]["Node.spawn"] = sum(pss_kib(p) for p in tree(proc.pid)
                                                        if p not in progs)
        finally:
            for p in progs:
                os.kill(p, signal.SIGTERM)
            proc.wait()
    if "redwrap" in out["launcher_pss_kib"]:
        ctx.figures["memory.launcher_pss_kib.redwrap"] = figure(
            out["launcher_pss_kib"]["redwrap"], "KiB")

    # N nodes of one family, each running the same program
    ctx.progress("memory", f"{n} nodes")
    top = os.path.join(ctx.tmp, "memory", "system")
    nodes = [os.path.join(top, f"n{i:02d}") for i in range(n)]
    families.redconf_create([(top, "root")] + [(p, "leaf") for p in nodes])
    launcher, shared = _running(ctx, [ctx.redwrap_cmd(p, argv).argv for p in nodes], comm,
                                [ctx.redwrap_cmd(p, [true]).argv for p in nodes])
    out["launcher_pss_per_node_kib"] = launcher / n
    ctx.figures["memory.launcher_pss_per_node_kib"] = figure(launcher / n, "KiB")

    ctx.progress("memory", f"{n} copies")
    copies = _copies_pss(ctx, sleep, n)
    out["sharing"] = {"nodes": n, "program": sleep, "files": copies["files"],
                      "shared_total_kib": shared, "copies_total_kib": copies["total"],
                      "ratio": ratio(shared, copies["total"])}
    ctx.figures["memory.sharing.shared_total_kib"] = figure(shared, "KiB")
    if out["sharing"]["ratio"] is not None:
        ctx.figures["memory.sharing.ratio"] = figure(out["sharing"]["ratio"], "ratio")
    return out


def _copies_pss(ctx: Context, program: str, n: int) -> dict:
    """N copies of the program and the ELF files it maps (loader, libraries), each set in
    its own directory, started through the copied loader: total PSS of the N programs."""
    probe = subprocess.Popen([program, "30"])
    try:
        time.sleep(0.2)
        files = [f for f in mapped_files(probe.pid) if _is_elf(f)]
    finally:
        probe.kill()
        probe.wait()
    real = os.path.realpath(program)
    if real not in [os.path.realpath(f) for f in files]:
        files.insert(0, real)
    loader = next((f for f in files if os.path.basename(f).startswith("ld-")), None)
    procs = []
    try:
        for i in range(n):
            d = os.path.join(ctx.tmp, "copies", f"c{i:02d}")
            os.makedirs(d)
            for f in files:
                shutil.copy2(f, os.path.join(d, os.path.basename(f)))
            prog = os.path.join(d, os.path.basename(real))
            argv = ([os.path.join(d, os.path.basename(loader)), "--library-path", d, prog]
                    if loader and os.path.realpath(loader) != real else [prog])
            procs.append(subprocess.Popen(argv + ["30"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise Skip(f"a copy of {program} does not run from its own directory "
                       f"(status {dead[0].returncode})")
        total = sum(pss_kib(p.pid) for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    return {"files": files, "total": total}


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


CGROUPS = "  cgroups:\n    pids: {max: 4000}\n    mem: {max: 4G}\n"
SECCOMP = "  seccomp: {profile: default}\n"
LANDLOCK = "  landlock: true\n"
CONTROLS = {
    # name: (lines added to the system node's config, extra nodes between system and app)
    "base": ("", 0),
    "cgroups": (CGROUPS, 0),
    "cgroups-4-nodes": (CGROUPS, 2),
    "seccomp": (SECCOMP, 0),
    "landlock": (LANDLOCK, 0),
    "cgroups+seccomp": (CGROUPS + SECCOMP, 0),
    "all": (CGROUPS + SECCOMP + LANDLOCK, 0),
}


def controls(ctx: Context) -> dict:
    """Launch latency of the stock family with each control added in its system node."""
    true = host_program("true")
    nodes, leaves = [], {}
    for i, (name, (extra, nested)) in enumerate(CONTROLS.items()):
        top = os.path.join(ctx.tmp, "controls", f"v{i}", "system")
        nodes.append((top, "root"))
        parent = top
        for k in range(nested):
            parent = os.path.join(parent, f"mid{k}")
            nodes.append((parent, "leaf"))
        leaves[name] = os.path.join(parent, "app")
        nodes.append((leaves[name], "leaf"))
    families.redconf_create(nodes)
    for i, (name, (extra, _)) in enumerate(CONTROLS.items()):
        if extra:
            families.edit_config(os.path.join(ctx.tmp, "controls", f"v{i}", "system"),
                                 "config:", extra)
    cmds = {name: ctx.redwrap_cmd(leaf, [true]) for name, leaf in leaves.items()}
    samples = _measure(ctx, "controls", cmds, 20 if ctx.quick else 200)
    if "base" not in samples:
        raise Skip("the stock family does not launch")
    out = {"variants": {}, "added_ms": {}}
    for name, s in samples.items():
        out["variants"][name] = samples_summary(s)
        ctx.figures[f"controls.{name}.median"] = figure(out["variants"][name]["median"], "ms")
    base = out["variants"]["base"]["median"]
    for name, v in out["variants"].items():
        if name != "base":
            out["added_ms"][name] = v["median"] - base
    if "cgroups" in samples and "cgroups-4-nodes" in samples:
        out["cgroups_per_node_ms"] = (out["variants"]["cgroups-4-nodes"]["median"]
                                      - out["variants"]["cgroups"]["median"]) / 2
    return out


def throughput(ctx: Context) -> dict:
    """Launches per second with N concurrent launchers: Node.run threads, redwrap
    processes, bwrap processes (peer)."""
    import redpak

    true = host_program("true")
    two = ctx.family(2)
    seconds = 1.5 if ctx.quick else 10.0
    n = ctx.concurrency
    node = redpak.Node(two)
    redwrap = ctx.redwrap_cmd(two, [true])
    launchers = {"Node.run": Command(call=lambda: node.run([true])), "redwrap": redwrap}
    if bwrap := ctx.bwrap_argv("throughput: bwrap", two, [true]):
        launchers["bwrap"] = Command(bwrap)
    out = {"concurrency": n, "seconds": seconds, "launches_per_s": {}}
    for name, cmd in launchers.items():
        try:
            cmd.check()
        except Skip as err:
            ctx.skip(f"throughput: {name}", str(err))
            continue
        ctx.progress("throughput", f"{name}, {n} concurrent, {seconds:g} s")
        try:
            out["launches_per_s"][name] = _load(cmd, n, seconds)
        except Skip as err:
            ctx.skip(f"throughput: {name}", str(err))
            continue
        if name != "bwrap":
            ctx.figures[f"throughput.{name}.launches_per_s"] = figure(
                out["launches_per_s"][name], "launches/s", "higher")
    return out


def _load(cmd: Command, threads: int, seconds: float) -> float:
    counts = [0] * threads
    failures: list[int] = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        while time.monotonic() < stop and not failures:
            _, status = cmd.once(devnull)
            if status != 0:
                failures.append(status)
            counts[i] += 1
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.monotonic()
    try:
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    finally:
        os.close(devnull)
    if failures:
        raise Skip(f"a launch failed under load (status {failures[0]})")
    return sum(counts) / (time.monotonic() - t0)
