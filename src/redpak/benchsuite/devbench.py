"""Helpers of the developer benchmarks in bench/ (the C core by build flavour, the controls'
phases): the same families, timing, peers and memory probes as `redpak-bench run`, with
redpak's internals allowed (these benches compile plans and drive the C core directly)."""

from __future__ import annotations

import os
import platform

from . import families, harness, machine
from .stats import median, percentile

TRUE = "/bin/true"


def machine_line() -> str:
    m = machine.describe()
    return (f"{m['arch']} kernel {m['kernel']}, {m['cpu']}, {m['cores']} cores, "
            f"cgroups {m['cgroups']}, python {platform.python_version()}")


def make_family(top: str, extra_exports: int = 0) -> str:
    """The stock two-level family under `top`, with `extra_exports` read-only binds of
    `top`/data in the leaf; returns the leaf."""
    system = os.path.join(top, "system")
    app = os.path.join(system, "app")
    families.redconf_create([(system, "root"), (app, "leaf")])
    if extra_exports:
        data = os.path.join(top, "data")
        os.makedirs(data, exist_ok=True)
        families.edit_config(app, "exports:", families.export_lines(extra_exports, data))
    return app


def compiled_plan(app: str):
    from redpak.plan import build_plan
    return build_plan(app).plan


def bwrap_argv(plan, tmp: str) -> list[str]:
    """bwrap options equivalent to a compiled plan (read from its dump, as the suite reads
    `redwrap -D`)."""
    return families.bwrap_argv(harness.which("bwrap") or "bwrap",
                               families.parse_dump(plan.dump()), tmp)


def timed(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Samples (ms) of each argv, launched in interleaved rounds (harness.time_commands)."""
    return harness.time_commands({name: harness.Command(argv) for name, argv in
                                  commands.items()}, runs, warmup=5)


def stats(samples: list[float]) -> tuple[float, float]:
    """(median, p95)."""
    return median(samples), percentile(samples, 95)


def launcher_pss(argv: list[str], program: str = "sleep") -> int:
    """PSS (KiB) of the launcher's own processes (all but the program) while `argv`
    followed by `/bin/sleep 30` runs."""
    import signal
    import subprocess
    import time
    proc = subprocess.Popen(argv + ["/bin/sleep", "30"])
    progs: list[int] = []
    try:
        end = time.monotonic() + 5
        while not progs and time.monotonic() < end:
            progs = [p for p in harness.tree(proc.pid) if harness.comm_of(p) == program]
            time.sleep(0.02)
        time.sleep(0.3)
        return sum(harness.pss_kib(p) for p in harness.tree(proc.pid) if p not in progs)
    finally:
        for p in progs:
            os.kill(p, signal.SIGTERM)
        proc.wait()
