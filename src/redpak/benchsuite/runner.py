"""`redpak-bench run`: every section in turn, a progress line on stderr, one JSON result."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from . import machine, packages, sections
from .harness import Skip
from .schema import SCHEMA, with_goals

SECTIONS = {
    "latency": sections.latency,
    "exports": sections.exports,
    "memory": sections.memory,
    "controls": sections.controls,
    "packages": packages.packages,
    "throughput": sections.throughput,
}


class Progress:
    """One progress line on stderr, rewritten in place on a terminal (a line per change of
    section otherwise, so logs stay short). Notes (skips) get lines of their own."""

    def __init__(self, stream=sys.stderr, quiet: bool = False):
        self.stream, self.quiet = stream, quiet
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.monotonic()
        self.section = None
        self.width = 0

    def __call__(self, section: str, detail: str = "") -> None:
        if self.quiet:
            return
        line = f"redpak-bench [{time.monotonic() - self.t0:5.1f}s] {section}: {detail}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(self.width))
            self.width = min(120, len(line))
        elif section != self.section:
            self.stream.write(line + "\n")
        self.section = section
        self.stream.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            self.end()
            self.stream.write(f"redpak-bench: {text}\n")
            self.stream.flush()

    def end(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.width = 0
        self.section = None


def run(quick: bool, only: list[str], label: str | None, concurrency: int,
        progress: Progress) -> dict:
    """Measure the chosen sections; a section that cannot run is skipped with its reason."""
    started = time.time()
    info = machine.describe()
    doc = {"schema": SCHEMA, "label": label or f"{info['arch']} {info['cpu']}",
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
           "quick": quick, "machine": info, "skipped": [], "figures": {}, "durations_s": {}}
    tmp = tempfile.mkdtemp(prefix="redpak-bench-")
    os.chmod(tmp, 0o755)
    try:
        ctx = sections.Context(tmp, quick, progress, concurrency)
        if not ctx.redwrap:
            ctx.skip("redwrap", "the redwrap command is not installed: no launch figures")
        for name in only:
            progress(name, "starting")
            t0 = time.monotonic()
            try:
                doc[name] = SECTIONS[name](ctx)
            except Skip as err:
                ctx.skip(name, str(err))
            except Exception as err:        # a board's surprise: said, and the run goes on
                ctx.skip(name, f"failed: {type(err).__name__}: {err}")
            doc["durations_s"][name] = round(time.monotonic() - t0, 2)
        doc["skipped"], doc["figures"] = ctx.skipped, with_goals(ctx.figures)
    finally:
        progress.end()
        _cleanup(tmp)
    doc["duration_s"] = round(time.time() - started, 2)
    return doc


def _cleanup(tmp: str) -> None:
    """Remove the scratch tree; nodes hold read-only directories, so make them writable."""
    def onerror(func, path, _exc):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass
    shutil.rmtree(tmp, onerror=onerror)
