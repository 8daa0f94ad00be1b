"""SVG plots drawn in plain Python (no plotting library): a distribution plot (box and
whiskers per row, log or linear scale), grouped horizontal bars and a line chart.

Every mark carries its data as attributes (data-median, data-value, data-x, data-y...) and
a <title> tooltip, so a reader hovering a mark, and a test parsing the SVG, see the number
it was drawn from.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape, quoteattr

from .stats import percentile, quartiles

PALETTE = ("#1f6fb2", "#d9641e", "#2e9e44", "#b8322f", "#7b52ab", "#8a5a44", "#c6499a",
           "#6b6b6b", "#a6a21c", "#17a2b8")
WIDTH = 760
LEFT = 250          # room for row labels
RIGHT = 90          # room for value labels
FONT = "font-family='sans-serif' font-size='12'"


def num(v: float) -> str:
    """A number as written in attributes: 6 significant digits."""
    return f"{v:.6g}"


def short(label: str, width: int = 38) -> str:
    """A label that fits left of the plot (the full one is in the mark's tooltip)."""
    return label if len(label) <= width else label[:width - 1] + "\u2026"


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _svg(height: float, title: str, body: list[str], plot_id: str) -> str:
    head = (f"<svg xmlns='http://www.w3.org/2000/svg' class='plot' id={quoteattr(plot_id)} "
            f"width='{WIDTH}' height='{height:.0f}' viewBox='0 0 {WIDTH} {height:.0f}' "
            f"role='img' aria-label={quoteattr(title)}>")
    return "\n".join([head, f"<title>{escape(title)}</title>",
                      f"<text x='10' y='18' {FONT} font-weight='bold'>{escape(title)}</text>",
                      *body, "</svg>"])


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks per decade covering [lo, hi] (both > 0)."""
    first = math.floor(math.log10(lo))
    last = math.ceil(math.log10(hi))
    ticks = [m * 10 ** e for e in range(first, last + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if lo <= t <= hi]
    below = [t for t in ticks if t < lo]
    above = [t for t in ticks if t > hi]
    return ([below[-1]] if below else []) + inside + ([above[0]] if above else [])


class Scale:
    """Maps data values to pixels along one axis, linearly or logarithmically."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False):
        self.log = log and lo > 0
        self.ticks = log_ticks(lo, hi) if self.log else nice_ticks(lo, hi)
        self.lo, self.hi = self.ticks[0], self.ticks[-1]
        self.p0, self.p1 = p0, p1

    def __call__(self, v: float) -> float:
        if self.log:
            v = max(v, self.lo)
            a, b, v = math.log10(self.lo), math.log10(self.hi), math.log10(v)
        else:
            a, b = self.lo, self.hi
        return self.p0 + (v - a) / ((b - a) or 1) * (self.p1 - self.p0)


def _grid(scale: Scale, vertical: bool, a: float, b: float) -> list[str]:
    """Grid lines at the scale's ticks spanning a..b on the other axis, and their labels
    (below a vertical line at b, left of a horizontal line at a)."""
    out = []
    for t in scale.ticks:
        p = scale(t)
        if vertical:
            line, label = (p, a, p, b), (p, b + 14, "middle")
        else:
            line, label = (a, p, b, p), (a - 6, p + 4, "end")
        out.append("<line x1='{:.1f}' y1='{:.1f}' x2='{:.1f}' y2='{:.1f}' "
                   "stroke='#ddd'/>".format(*line))
        out.append(f"<text x='{label[0]:.1f}' y='{label[1]:.1f}' {FONT} "
                   f"text-anchor='{label[2]}'>{num(t)}</text>")
    return out


def _x_axis(scale: Scale, y0: float, y1: float, label: str) -> list[str]:
    return _grid(scale, True, y0, y1) + [
        f"<text x='{(scale.p0 + scale.p1) / 2:.1f}' y='{y1 + 30:.1f}' {FONT} "
        f"text-anchor='middle'>{escape(label)}</text>"]


def distribution(title: str, rows: list[dict], unit: str, plot_id: str,
                 log: bool = True) -> str:
    """One box per row: rows are {"label", "samples", "color"}. The box spans Q1..Q3 with
    the median drawn across it, the whiskers the 5th..95th percentiles, dots the min and
    max. Log scale by default: latencies span from a fork (0.5 ms) to a cold launch."""
    rows = [r for r in rows if r.get("samples")]
    top, row_h = 34, 24
    height = top + row_h * max(1, len(rows)) + 46
    if not rows:
        return _svg(height, title, [f"<text x='{LEFT}' y='50' {FONT}>no data</text>"], plot_id)
    lo = min(min(r["samples"]) for r in rows)
    hi = max(max(r["samples"]) for r in rows)
    scale = Scale(lo, hi, LEFT, WIDTH - RIGHT, log=log)
    y_end = top + row_h * len(rows)
    body = _x_axis(scale, top, y_end, f"{unit}" + (" (log scale)" if scale.log else ""))
    for i, r in enumerate(rows):
        s = r["samples"]
        q1, med, q3 = quartiles(s)
        p5, p95 = percentile(s, 5), percentile(s, 95)
        c = r.get("color") or color(i)
        y = top + row_h * i + row_h / 2
        tip = (f"{r['label']}: median {num(med)} {unit}, p95 {num(p95)}, "
               f"min {num(min(s))}, max {num(max(s))}, {len(s)} runs")
        body.append(f"<g class='dist' data-label={quoteattr(r['label'])} "
                    f"data-median='{num(med)}' data-p95='{num(p95)}' data-n='{len(s)}'>"
                    f"<title>{escape(tip)}</title>")
        body.append(f"<text x='{LEFT - 8}' y='{y + 4:.1f}' {FONT} text-anchor='end'>"
                    f"{escape(short(r['label']))}</text>")
        body.append(f"<line x1='{scale(p5):.1f}' y1='{y:.1f}' x2='{scale(p95):.1f}' "
                    f"y2='{y:.1f}' stroke='{c}'/>")
        body.append(f"<rect x='{scale(q1):.1f}' y='{y - 7:.1f}' "
                    f"width='{max(1.0, scale(q3) - scale(q1)):.1f}' height='14' "
                    f"fill='{c}' fill-opacity='0.35' stroke='{c}'/>")
        body.append(f"<line x1='{scale(med):.1f}' y1='{y - 9:.1f}' x2='{scale(med):.1f}' "
                    f"y2='{y + 9:.1f}' stroke='{c}' stroke-width='2.5'/>")
        for v in (min(s), max(s)):
            body.append(f"<circle cx='{scale(v):.1f}' cy='{y:.1f}' r='2' fill='{c}'/>")
        body.append(f"<text x='{WIDTH - RIGHT + 6}' y='{y + 4:.1f}' {FONT}>{num(med)}</text>")
        body.append("</g>")
    return _svg(height, title, body, plot_id)


def bars(title: str, groups: list[tuple[str, list[tuple[str, float, str]]]], unit: str,
         plot_id: str, reference: float | None = None) -> str:
    """Grouped horizontal bars: groups are (label, [(series, value, color)]); `reference`
    draws a dashed line (1.0 for ratios)."""
    top, bar_h, gap = 34, 16, 10
    nbars = sum(len(g[1]) for g in groups)
    height = top + nbars * bar_h + len(groups) * gap + 46
    values = [v for _, series in groups for _, v, _ in series]
    if not values:
        return _svg(height, title, [f"<text x='{LEFT}' y='50' {FONT}>no data</text>"], plot_id)
    hi = max(values + ([reference] if reference else []))
    scale = Scale(min(0.0, min(values)), hi, LEFT, WIDTH - RIGHT)
    y_end = height - 46
    body = _x_axis(scale, top, y_end, unit)
    if reference is not None:
        x = scale(reference)
        body.append(f"<line x1='{x:.1f}' y1='{top}' x2='{x:.1f}' y2='{y_end:.1f}' "
                    "stroke='#444' stroke-dasharray='4 3'/>")
    y = top + gap / 2
    for label, series in groups:
        if series:
            mid = y + len(series) * bar_h / 2
            body.append(f"<text x='{LEFT - 8}' y='{mid + 4:.1f}' {FONT} text-anchor='end'>"
                        f"{escape(short(label))}</text>")
        for name, value, c in series:
            x0, x1 = scale(0), scale(value)
            body.append(f"<g class='bar' data-group={quoteattr(label)} "
                        f"data-series={quoteattr(name)} data-value='{num(value)}'>"
                        f"<title>{escape(f'{label}, {name}: {num(value)} {unit}')}</title>"
                        f"<rect x='{min(x0, x1):.1f}' y='{y + 1:.1f}' "
                        f"width='{max(1.0, abs(x1 - x0)):.1f}' height='{bar_h - 2}' "
                        f"fill='{c}'/><text x='{max(x0, x1) + 4:.1f}' y='{y + bar_h - 4:.1f}' "
                        f"{FONT}>{num(value)}</text></g>")
            y += bar_h
        y += gap
    return _svg(height, title, body, plot_id)


def lines(title: str, series: list[tuple[str, str, list[tuple[float, float]]]],
          xlabel: str, ylabel: str, plot_id: str, ylog: bool | None = None) -> str:
    """A line chart: series are (label, color, [(x, y)]), each point a marked circle. The
    y axis is logarithmic when `ylog`, or (None) when the values span over 30 times."""
    top, plot_h = 34, 260
    height = top + plot_h + 60 + 16 * len(series)
    points = [p for _, _, pts in series for p in pts]
    if not points:
        return _svg(height, title, [f"<text x='{LEFT}' y='50' {FONT}>no data</text>"], plot_id)
    left = 70
    xs = Scale(min(0.0, min(p[0] for p in points)), max(p[0] for p in points), left,
               WIDTH - 30)
    ylo, yhi = min(p[1] for p in points), max(p[1] for p in points)
    if ylog is None:
        ylog = ylo > 0 and yhi / ylo > 30
    ys = Scale(ylo if ylog else min(0.0, ylo), yhi, top + plot_h, top, log=ylog)
    body = _x_axis(xs, top, top + plot_h, xlabel) + _grid(ys, False, left, WIDTH - 30)
    ylabel += " (log scale)" if ys.log else ""
    body.append(f"<text x='14' y='{top + plot_h / 2:.1f}' {FONT} text-anchor='middle' "
                f"transform='rotate(-90 14 {top + plot_h / 2:.1f})'>{escape(ylabel)}</text>")
    for i, (label, c, pts) in enumerate(series):
        pts = sorted(pts)
        path = " ".join(f"{xs(x):.1f},{ys(y):.1f}" for x, y in pts)
        body.append(f"<g class='series' data-series={quoteattr(label)}>"
                    f"<polyline points='{path}' fill='none' stroke='{c}' stroke-width='1.5'/>")
        for x, y in pts:
            body.append(f"<circle class='point' data-series={quoteattr(label)} "
                        f"data-x='{num(x)}' data-y='{num(y)}' cx='{xs(x):.1f}' "
                        f"cy='{ys(y):.1f}' r='3' fill='{c}'><title>"
                        f"{escape(f'{label}: {num(x)} -> {num(y)}')}</title></circle>")
        body.append("</g>")
        ly = top + plot_h + 46 + 16 * i
        body.append(f"<rect x='{left}' y='{ly - 9}' width='10' height='10' fill='{c}'/>"
                    f"<text x='{left + 16}' y='{ly}' {FONT}>{escape(label)}</text>")
    return _svg(height, title, body, plot_id)
