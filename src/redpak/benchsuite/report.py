"""`redpak-bench report`: one self-contained HTML page comparing results side by side.

No external resource (no script, font, style sheet or image link): the plots are SVG drawn
here by svg.py from the numbers in the JSON files, so the page can be mailed or archived.
"""

from __future__ import annotations

import html
import os
import time

from . import svg
from .schema import MACHINE_KEYS, goal_met

CSS = """
body{font-family:sans-serif;margin:24px;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.worse{background:#fbe3e3}td.better{background:#e3f5e6}
figure{margin:12px 0}figcaption{font-size:12px;color:#555;max-width:760px}
.skip{color:#8a5a00;font-size:13px}
"""


def _labels(results: list[tuple[str, dict]]) -> list[str]:
    labels, seen = [], {}
    for path, doc in results:
        label = str(doc.get("label") or os.path.basename(path))
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return labels


def _fmt(v) -> str:
    if isinstance(v, float):
        return svg.num(v)
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "none"
    return "" if v is None else str(v)


def _table(head: list[str], rows: list[list], numeric_from: int = 1) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ""
            if isinstance(cell, tuple):      # (text, css class)
                cell, cls = cell
            if i >= numeric_from and isinstance(cell, (int, float)) and not cls:
                cls = "n"
            cells.append(f"<td class='{cls}'>{html.escape(_fmt(cell))}</td>" if cls
                         else f"<td>{html.escape(_fmt(cell))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def _figure(svg_text: str, caption: str) -> str:
    return f"<figure>{svg_text}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _machines(results, labels) -> str:
    keys = list(MACHINE_KEYS) + ["python", "os"]
    rows = [[k] + [r[1]["machine"].get(k) for r in results] for k in keys]
    rows += [["started (UTC)"] + [r[1].get("started") for r in results],
             ["duration (s)"] + [r[1].get("duration_s") for r in results],
             ["sections (s)"] + [", ".join(f"{k} {v:g}" for k, v in
                                           (r[1].get("durations_s") or {}).items())
                                 for r in results],
             ["mode"] + ["quick" if r[1].get("quick") else "full" for r in results],
             ["file"] + [r[0] for r in results]]
    return _table(["machine"] + labels, rows)


def _figures_table(results, labels) -> str:
    names = []
    for _, doc in results:
        names += [n for n in doc["figures"] if n not in names]
    head = (["figure", "unit", "goal"] + labels
            + [f"{lab} vs {labels[0]}" for lab in labels[1:]])
    rows = []
    for name in names:
        figs = [doc["figures"].get(name) for _, doc in results]
        unit = next(f["unit"] for f in figs if f)
        goal = next((f for f in figs if f and "goal" in f), None)
        row = [name, unit, (_goal_bound(goal) if goal else "-", "")]
        for f in figs:      # a value missing its goal is marked (class "worse")
            row.append("-" if not f else (f["value"], "n worse") if goal_met(f) is False
                       else f["value"])
        base = figs[0]
        for f in figs[1:]:
            if not (f and base) or base["value"] == 0:
                row.append("-")
                continue
            change = (f["value"] - base["value"]) / abs(base["value"]) * 100
            worse = change > 0 if base["better"] == "lower" else change < 0
            row.append((f"{change:+.1f}%", "worse" if worse and abs(change) >= 5
                        else "better" if abs(change) >= 5 else "n"))
        rows.append(row)
    return _table(head, rows, numeric_from=3)


def _goal_bound(fig: dict) -> str:
    return f"{'≤' if fig['better'] == 'lower' else '≥'} {fig['goal']:g}"


def _series_color(i_result: int, i_item: int, many: bool) -> str:
    return svg.color(i_result if many else i_item)


def _latency(results, labels, many) -> list[str]:
    rows, table = [], []
    for i, (_, doc) in enumerate(results):
        for j, (name, cmd) in enumerate((doc.get("latency") or {}).get("commands", {}).items()):
            label = f"{name} [{labels[i]}]" if many else name
            rows.append({"label": label, "samples": cmd["samples"],
                         "color": _series_color(i, j, many)})
            table.append([name, labels[i], cmd["median"], cmd["p95"], cmd.get("n")])
    if not rows:
        return []
    return ["<h2>Launch latency</h2>",
            _figure(svg.distribution("Launch latency of /bin/true", rows, "ms",
                                     "plot-latency"),
                    "Box: quartiles, thick line: median, whiskers: 5th-95th percentile, "
                    "dots: min and max. Cold = first launch (Python compiles the plan); "
                    "cached = the native launcher reuses the cached plan."),
            _table(["command", "result", "median ms", "p95 ms", "runs"], table, 2)]


def _ratios(results, labels, many) -> list[str]:
    names = []
    for _, doc in results:
        names += [n for n in (doc.get("latency") or {}).get("ratios", {}) if n not in names]
    groups = []
    for name in names:
        series = [(labels[i], doc["latency"]["ratios"][name], svg.color(i))
                  for i, (_, doc) in enumerate(results)
                  if name in (doc.get("latency") or {}).get("ratios", {})]
        groups.append((name, series))
    if not groups:
        return []
    return [_figure(svg.bars("Latency ratios (medians)", groups, "ratio", "plot-ratios",
                             reference=1.0),
                    "Ratios of median launch latencies measured in the same run; below "
                    "the dashed line the first is faster.")]


def _exports(results, labels, many) -> list[str]:
    series, table = [], []
    k = 0
    for i, (_, doc) in enumerate(results):
        ex = doc.get("exports") or {}
        for tool, row in ex.get("tools", {}).items():
            label = f"{tool} [{labels[i]}]" if many else tool
            series.append((label, svg.color(k), list(zip(row["counts"], row["median_ms"]))))
            k += 1
            fit = ex.get("fit", {}).get(tool)
            if fit:
                table.append([tool, labels[i], fit["us_per_export"], fit["intercept_ms"],
                              fit["r2"]])
    if not series:
        return []
    return ["<h2>Cost per export</h2>",
            _figure(svg.lines("Launch latency by number of read-only exports", series,
                              "exports", "median ms", "plot-exports"),
                    "Median launch latency of /bin/true in the stock two-level family with "
                    "N extra read-only bind exports."),
            _table(["tool", "result", "µs per export", "intercept ms", "r²"], table, 2)]


def _bar_section(results, labels, many, key, title, unit, plot_id, caption,
                 extract) -> list[str]:
    """Bars from `extract(doc) -> [(group, value)]`, one series per result."""
    groups: dict[str, list] = {}
    for i, (_, doc) in enumerate(results):
        if key not in doc:
            continue
        for group, value in extract(doc[key]):
            groups.setdefault(group, []).append((labels[i], value, svg.color(i)))
    if not groups:
        return []
    table = [[g] + [next((v for lab, v, _ in s if lab == label), "-") for label in labels]
             for g, s in groups.items()]
    return [_figure(svg.bars(title, list(groups.items()), unit, plot_id), caption),
            _table(["", *labels], table)]


def _memory_items(mem: dict) -> list[tuple[str, float]]:
    items = [(f"launcher PSS, one node: {tool}", kib)
             for tool, kib in mem.get("launcher_pss_kib", {}).items()]
    if "launcher_pss_per_node_kib" in mem:
        items.append((f"launcher PSS per node, {mem.get('nodes')} running",
                      mem["launcher_pss_per_node_kib"]))
    share = mem.get("sharing")
    if share:
        n = share["nodes"]
        items.append((f"program PSS per node, {n} redpak nodes", share["shared_total_kib"] / n))
        items.append((f"program PSS per node, {n} copies", share["copies_total_kib"] / n))
    return items


def render(results: list[tuple[str, dict]]) -> str:
    """The HTML page for (path, result) pairs, the first one the reference."""
    labels = _labels(results)
    many = len(results) > 1
    body = [f"<h1>redpak-bench report</h1><p>{len(results)} result(s); made "
            f"{html.escape(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}. "
            "Changes are relative to the first result.</p>",
            "<h2>Machines</h2>", _machines(results, labels)]
    for label, (_, doc) in zip(labels, results):
        if doc["skipped"]:
            body.append(f"<p class='skip'><b>{html.escape(label)}: skipped</b></p><ul "
                        "class='skip'>" + "".join(
                            f"<li>{html.escape(s['what'])}: {html.escape(s['reason'])}</li>"
                            for s in doc["skipped"]) + "</ul>")
    body += ["<h2>Figures</h2>", _figures_table(results, labels)]
    body += _latency(results, labels, many)
    body += _ratios(results, labels, many)
    body += _exports(results, labels, many)
    mem = _bar_section(
        results, labels, many, "memory", "Memory (PSS)", "KiB", "plot-memory",
        "PSS of the launcher's own processes (not the program) while a node runs, and the "
        "program's PSS per node when N nodes run the same binary and library: shared through "
        "redpak's read-only exports vs N copies in separate directories (a container with "
        "its own rootfs).", _memory_items)
    body += (["<h2>Memory</h2>"] + mem) if mem else []
    ctl = _bar_section(
        results, labels, many, "controls", "Launch latency with controls (medians)", "ms",
        "plot-controls", "The stock family with each control added in the system node, "
        "launched by redwrap with a cached plan.",
        lambda c: [(name, v["median"]) for name, v in c.get("variants", {}).items()])
    body += (["<h2>Controls</h2>"] + ctl) if ctl else []
    pkg = _bar_section(
        results, labels, many, "packages", "Package install (medians)", "ms", "plot-packages",
        "Install into the leaf of a three-level family, each run on an emptied node.",
        lambda p: [(f"{n} package(s): {tool}", v["median"])
                   for n, tools in p.get("sets", {}).items() for tool, v in tools.items()])
    body += (["<h2>Packages</h2>"] + pkg) if pkg else []
    thr = _bar_section(
        results, labels, many, "throughput", "Concurrent launches", "launches/s",
        "plot-throughput", "Launches of /bin/true per second with N concurrent launchers.",
        lambda t: [(f"{tool}, {t.get('concurrency')} concurrent", v)
                   for tool, v in t.get("launches_per_s", {}).items()])
    body += (["<h2>Throughput</h2>"] + thr) if thr else []
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<title>redpak-bench report</title><style>" + CSS + "</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
