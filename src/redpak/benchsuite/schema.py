"""The JSON result of `redpak-bench run`: its schema, loading with clear errors, validation.

A result is one JSON object:

    schema          "redpak-bench/1"
    label           short name of the run, shown in reports (default: arch and CPU)
    started         UTC time the run started (ISO 8601); duration_s; quick (bool)
    machine         arch, cpu, cores, kernel, cgroups, lsms, python, redpak_version
    skipped         [{"what": ..., "reason": ...}]: every measurement that could not run
    figures         {name: {"value": number, "unit": str, "better": "lower"|"higher"}}:
                    the numbers `check` compares (redpak's own figures and its ratios);
                    a figure the project sets a goal for also has "goal": number (the
                    bound its value must not pass in its worse direction; see GOALS)
    latency, exports, memory, controls, packages, throughput
                    one object per section that ran (see docs/benchmarks.md)
"""

from __future__ import annotations

import json
import math

SCHEMA = "redpak-bench/1"
SECTIONS = ("latency", "exports", "memory", "controls", "packages", "throughput")
MACHINE_KEYS = ("arch", "cpu", "cores", "kernel", "cgroups", "lsms", "redpak_version")


# The project's goals (issue 15), by figure name: a "lower" figure meets its goal when its
# value is at most the goal, a "higher" one when at least. The run records them beside the
# figures and the summary prints them; `report` shows them in the figures table.
GOALS = {
    "ratio.redwrap/unshare": 1.3,
    "ratio.redwrap/bwrap": 0.5,
    "latency.redwrap 2-level cold.median": 80.0,
    "exports.redwrap.us_per_export": 10.0,
    "exports.redwrap.marginal_us_per_export": 10.0,
    "memory.launcher_pss_kib.redwrap": 512.0,
}


class ResultError(Exception):
    """A result file that cannot be used: the message names the file and what is wrong."""


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate(doc) -> list[str]:
    """The problems of a parsed result (empty when it is valid), each naming its key."""
    if not isinstance(doc, dict):
        return ["the top level is not a JSON object"]
    errors = []
    if doc.get("schema") != SCHEMA:
        errors.append(f"'schema' is {doc.get('schema')!r}, expected {SCHEMA!r} "
                      "(not a redpak-bench result, or from an incompatible version)")
    machine = doc.get("machine")
    if not isinstance(machine, dict):
        errors.append("'machine' is missing or not an object")
    else:
        errors += [f"'machine.{k}' is missing" for k in MACHINE_KEYS if k not in machine]
    skipped = doc.get("skipped")
    if not isinstance(skipped, list) or not all(
            isinstance(s, dict) and isinstance(s.get("what"), str)
            and isinstance(s.get("reason"), str) for s in skipped):
        errors.append("'skipped' must be a list of {\"what\": str, \"reason\": str}")
    figures = doc.get("figures")
    if not isinstance(figures, dict):
        errors.append("'figures' is missing or not an object")
    else:
        for name, fig in figures.items():
            if not isinstance(fig, dict) or not _number(fig.get("value")):
                errors.append(f"'figures.{name}.value' is not a finite number")
            elif fig.get("better") not in ("lower", "higher"):
                errors.append(f"'figures.{name}.better' must be \"lower\" or \"higher\"")
            elif not isinstance(fig.get("unit"), str):
                errors.append(f"'figures.{name}.unit' is not a string")
            elif "goal" in fig and not _number(fig["goal"]):
                errors.append(f"'figures.{name}.goal' is not a finite number")
    for section in SECTIONS:
        if section in doc and not isinstance(doc[section], dict):
            errors.append(f"'{section}' is not an object")
    latency = doc.get("latency")
    if isinstance(latency, dict):
        for name, cmd in (latency.get("commands") or {}).items():
            if not isinstance(cmd, dict) or not all(_number(cmd.get(k)) for k in ("median", "p95")):
                errors.append(f"'latency.commands.{name}' lacks a numeric median and p95")
            elif not isinstance(cmd.get("samples"), list) or not all(
                    _number(x) for x in cmd["samples"]):
                errors.append(f"'latency.commands.{name}.samples' is not a list of numbers")
    exports = doc.get("exports")
    if isinstance(exports, dict):
        for tool, row in (exports.get("tools") or {}).items():
            if (not isinstance(row, dict) or not isinstance(row.get("counts"), list)
                    or not isinstance(row.get("median_ms"), list)
                    or len(row["counts"]) != len(row["median_ms"])
                    or not all(_number(x) for x in row["counts"] + row["median_ms"])):
                errors.append(f"'exports.tools.{tool}' needs equal-length numeric "
                              "'counts' and 'median_ms'")
    return errors


def load(path: str) -> dict:
    """Read and validate a result; raises ResultError with a message for the user."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ResultError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ResultError(f"{path}: cannot be read: {err}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: "
                          f"{err.msg})") from None
    problems = validate(doc)
    if problems:
        raise ResultError(f"{path}: not a valid redpak-bench result: " + "; ".join(problems))
    return doc


def figure(value: float, unit: str, better: str = "lower") -> dict:
    return {"value": value, "unit": unit, "better": better}


def with_goals(figures: dict) -> dict:
    """The figures, each one named in GOALS given its "goal" (a copy)."""
    return {name: dict(fig, goal=GOALS[name]) if name in GOALS else fig
            for name, fig in figures.items()}


def goal_met(fig: dict) -> bool | None:
    """Whether a figure meets its goal; None when it has none."""
    goal = fig.get("goal")
    if goal is None:
        return None
    return fig["value"] <= goal if fig["better"] == "lower" else fig["value"] >= goal


def goal_text(fig: dict) -> str:
    """'goal ≤ 1.3 met' / 'goal ≤ 10 MISSED' / '' for a figure without a goal."""
    met = goal_met(fig)
    if met is None:
        return ""
    sign = "≤" if fig["better"] == "lower" else "≥"
    return f"goal {sign} {fig['goal']:g} {'met' if met else 'MISSED'}"
