"""redpak-bench: measure redpak on this board, report results as HTML, check regressions.

    redpak-bench run [--quick] [-o result.json] [--only SECTIONS] [--label TEXT]
    redpak-bench report A.json [B.json ...] -o report.html
    redpak-bench check result.json --baseline base.json [--tolerance PCT]

Exit status: 0 success (check: no figure regressed); 1 check found a regression, or run
could measure nothing; 2 usage error or an unusable input file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .schema import ResultError, goal_text

SECTION_NAMES = ("latency", "exports", "memory", "controls", "packages", "throughput")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="redpak-bench",
                description="Measure redpak on this board, compare results in an HTML "
                            "report, check for regressions.",
                epilog="Exit status: 0 success; 1 check found a regression (run: nothing "
                       "could be measured); 2 usage error or unusable input file. "
                       "docs/benchmarks.md describes what each figure measures and how.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    r = sub.add_parser("run", help="measure this board into a JSON result",
                       description="Measure redpak on this board (as root for every section) "
                                   "and write a JSON result. Peers that are missing are "
                                   "skipped and named. A progress line goes to stderr.")
    r.add_argument("--quick", action="store_true",
                   help="fewer runs and points (about a minute) instead of the full run")
    r.add_argument("-o", "--output", metavar="FILE",
                   help="write the JSON result here (default: standard output)")
    r.add_argument("--only", metavar="SECTIONS",
                   help="comma-separated sections to run (default: all): "
                        + ",".join(SECTION_NAMES))
    r.add_argument("--label", help="name of this run in reports (default: arch and CPU)")
    r.add_argument("--concurrency", type=int, default=8, metavar="N",
                   help="concurrent launchers in the throughput section (default: 8)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    rp = sub.add_parser("report", help="one self-contained HTML page from results",
                        description="Write one self-contained HTML page comparing the "
                                    "results (the first is the reference), with SVG plots.")
    rp.add_argument("results", nargs="+", metavar="RESULT.json")
    rp.add_argument("-o", "--output", metavar="FILE", required=True,
                    help="the HTML file to write")
    c = sub.add_parser("check", help="exit 1 if a figure regressed against a baseline",
                       description="Compare a result's figures with a baseline's. Exit 1 "
                                   "and name the figures that moved the worse way by more "
                                   "than the tolerance; 0 otherwise.")
    c.add_argument("result", metavar="RESULT.json")
    c.add_argument("--baseline", metavar="BASE.json", required=True)
    c.add_argument("--tolerance", type=float, metavar="PCT", default=None,
                   help="allowed change in percent of the baseline (default: 25)")
    return p


def _write(path: str, text: str) -> None:
    """Write a whole file or nothing (a temporary file renamed); errors name `path`."""
    from ..fileio import write_atomic
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as err:
        raise OSError(err.errno, err.strerror, path) from None


def _run(args) -> int:
    from .runner import Progress, run
    only = SECTION_NAMES
    if args.only:
        only = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = [s for s in only if s not in SECTION_NAMES]
        if unknown or not only:
            print(f"redpak-bench run: error: unknown section(s) {', '.join(unknown) or '(none)'}"
                  f"; choose among {', '.join(SECTION_NAMES)}", file=sys.stderr)
            return 2
    if args.concurrency < 1:
        print("redpak-bench run: error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    if args.output:
        parent = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(parent):
            print(f"redpak-bench run: error: {args.output}: directory {parent} does not exist",
                  file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("redpak-bench: not root: sections that need root are skipped", file=sys.stderr)
    doc = run(bool(args.quick), list(only), args.label, args.concurrency,
              Progress(quiet=args.quiet))
    text = json.dumps(doc, indent=1) + "\n"
    if args.output:
        _write(args.output, text)
    else:
        sys.stdout.write(text)
    _summary(doc)
    if not doc["figures"]:
        print("redpak-bench run: error: nothing could be measured (see the skips above)",
              file=sys.stderr)
        return 1
    return 0


def _summary(doc: dict) -> None:
    """The key figures and the skips, on stderr."""
    out = [f"redpak-bench: {doc['label']}, {doc['duration_s']:.0f} s"]
    for name, fig in doc["figures"].items():
        out.append(f"  {name:<52} {fig['value']:12.4g} {fig['unit']:<10} {goal_text(fig)}"
                   .rstrip())
    fit = ((doc.get("exports") or {}).get("fit") or {}).get("redwrap")
    if fit and fit.get("segments"):
        out.append("  exports.redwrap linearity: " + ", ".join(
            f"{s['from']}→{s['to']} {s['us_per_export']:.1f}" for s in fit["segments"])
            + f" µs/export; r² {fit['r2']:.4f}")
    for s in doc["skipped"]:
        out.append(f"  skipped {s['what']}: {s['reason']}")
    print("\n".join(out), file=sys.stderr)


def _report(args) -> int:
    from . import report
    from .schema import load
    results = [(path, load(path)) for path in args.results]
    _write(args.output, report.render(results))
    print(f"redpak-bench: wrote {args.output} ({len(results)} result(s))", file=sys.stderr)
    return 0


def _check(args) -> int:
    from .check import DEFAULT_TOLERANCE, compare, context_notes, goal_lines, report_lines
    from .schema import load
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance >= 0:
        print("redpak-bench check: error: --tolerance must be a percentage >= 0",
              file=sys.stderr)
        return 2
    result, baseline = load(args.result), load(args.baseline)
    findings, missing = compare(result, baseline, tolerance)
    print("\n".join(context_notes(result, baseline)
                    + report_lines(findings, missing, tolerance)
                    + goal_lines(result)))
    return 1 if any(f.regressed for f in findings) else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"run": _run, "report": _report, "check": _check}[args.command](args)
    except ResultError as err:
        print(f"redpak-bench {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"redpak-bench {args.command}: error: {err.filename or ''}: {err.strerror}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("redpak-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
