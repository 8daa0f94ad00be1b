"""`redpak-bench check`: compare a result's figures with a baseline's, for CI."""

from __future__ import annotations

from redpak.record import record

from .schema import goal_met, goal_text

DEFAULT_TOLERANCE = 25.0   # percent: a shared VM moves by ±20% between runs


@record
class Finding:
    name: str
    unit: str
    base: float
    value: float
    change: float          # percent, signed (positive: the number grew)
    regressed: bool


def compare(result: dict, baseline: dict, tolerance: float) -> tuple[list[Finding], list[str]]:
    """Every figure the two share, and the names the result lacks. A figure regressed when
    it moved in its worse direction by more than `tolerance` percent of the baseline."""
    findings, missing = [], []
    for name, base in baseline["figures"].items():
        fig = result["figures"].get(name)
        if fig is None:
            missing.append(name)
            continue
        b, v = base["value"], fig["value"]
        change = 0.0 if b == v else (v - b) / abs(b) * 100 if b else float("inf")
        worse = change > 0 if base["better"] == "lower" else change < 0
        findings.append(Finding(name, fig["unit"], b, v, change,
                                worse and abs(change) > tolerance))
    return findings, missing


def report_lines(findings: list[Finding], missing: list[str], tolerance: float) -> list[str]:
    bad = [f for f in findings if f.regressed]
    lines = [f"REGRESSION {f.name}: {f.value:.6g} {f.unit} vs {f.base:.6g} in the baseline "
             f"({f.change:+.1f}%, tolerance {tolerance:g}%)" for f in bad]
    lines += [f"not measured: {name} (in the baseline, not in the result)" for name in missing]
    lines.append(f"{len(findings) - len(bad)} of {len(findings)} figures within "
                 f"{tolerance:g}% of the baseline" + (f", {len(bad)} regressed" if bad else ""))
    return lines


def goal_lines(result: dict) -> list[str]:
    """The result's figures that miss their goal (informational: the exit status only
    follows regressions against the baseline)."""
    return [f"goal missed: {name} {fig['value']:.6g} {fig['unit']} ({goal_text(fig)})"
            for name, fig in result["figures"].items() if goal_met(fig) is False]


def context_notes(result: dict, baseline: dict) -> list[str]:
    """What makes the comparison less direct: another mode, machine or version."""
    notes = []
    if bool(result.get("quick")) != bool(baseline.get("quick")):
        modes = ["quick" if d.get("quick") else "full" for d in (result, baseline)]
        notes.append(f"note: a {modes[0]} run compared with a {modes[1]} baseline "
                     "(fewer runs: wider spread)")
    for key in ("arch", "cpu", "cores", "kernel", "redpak_version"):
        a, b = result["machine"].get(key), baseline["machine"].get(key)
        if a != b:
            notes.append(f"note: {key} differs: {a} (result) vs {b} (baseline)")
    return notes
