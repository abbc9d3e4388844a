"""Inline SVG plots for the site and the study pages, made at build time: no JavaScript, no images, no
external requests.

Colours of lines and points come from CSS classes (so the light and dark schemes both work);
heatmap cells carry their own fill, with a text colour chosen for contrast. Every string that
reaches the SVG is escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import markupsafe
from markupsafe import Markup


def escape(value) -> str:
    """Escaped text (markupsafe's characters), as a ``str`` to join into the SVG."""
    return str(markupsafe.escape(value))

# viridis, 9 stops: perceptually uniform and readable for colour-blind readers
_VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"]
_VIRIDIS_RGB = [tuple(int(h[k:k + 2], 16) for k in (1, 3, 5)) for h in _VIRIDIS]


def _f(x: float) -> str:
    """Compact, deterministic coordinate text."""
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def colour(value: float | None, lo: float = 0.0, hi: float = 1.0) -> str:
    if value is None:
        return "#888888"
    t = min(1.0, max(0.0, (value - lo) / (hi - lo) if hi > lo else 0.5)) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    a, b, u = _VIRIDIS_RGB[i], _VIRIDIS_RGB[i + 1], t - i
    v = 1 - u
    return "#%02x%02x%02x" % (round(a[0] * v + b[0] * u), round(a[1] * v + b[1] * u), round(a[2] * v + b[2] * u))


def _luminance(fill: str) -> float:
    def lin(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(fill[k:k + 2], 16) for k in (1, 3, 5))
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


@lru_cache(maxsize=4096)
def _text_on(fill: str) -> str:
    """CSS class of the cell text with the higher WCAG contrast on ``fill`` (black or white; the
    stylesheet sets the colour, so a scheme's text colour never overrides it)."""
    lum = _luminance(fill)
    return "on-light" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "on-dark"


def _svg(width: int, height: int, title: str, body: list[str], cls: str = "plot", fixed: bool = False) -> Markup:
    """An inline SVG; ``fixed`` ones keep their natural pixel size (shrinking on narrow screens)."""
    size = f' width="{round(width * 1.25)}" height="{round(height * 1.25)}"' if fixed else ""
    head = (f'<svg class="{cls}" viewBox="0 0 {width} {height}"{size} role="img" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>')
    return Markup(head + "".join(body) + "</svg>")


@dataclass(frozen=True)
class Frame:
    """A plot area with linear axes."""

    width: int = 360
    height: int = 260
    left: int = 46
    right: int = 12
    top: int = 12
    bottom: int = 40
    x0: float = 0.0
    x1: float = 1.0
    y0: float = 0.0
    y1: float = 1.0

    def x(self, v: float) -> float:
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        return self.height - self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.height - self.top - self.bottom)

    def axes(self, xticks: list[tuple[float, str]], yticks: list[tuple[float, str]], xlabel: str, ylabel: str) -> list[str]:
        out = []
        bx, by = self.height - self.bottom, self.left
        for v, lab in yticks:
            y = _f(self.y(v))
            out.append(f'<line class="grid" x1="{by}" x2="{self.width - self.right}" y1="{y}" y2="{y}"/>'
                       f'<text class="tick" x="{by - 4}" y="{y}" text-anchor="end" dy="0.32em">{escape(lab)}</text>')
        for v, lab in xticks:
            x = _f(self.x(v))
            out.append(f'<line class="grid" x1="{x}" x2="{x}" y1="{self.top}" y2="{bx}"/>'
                       f'<text class="tick" x="{x}" y="{bx + 14}" text-anchor="middle">{escape(lab)}</text>')
        out.append(f'<line class="axis" x1="{by}" x2="{self.width - self.right}" y1="{bx}" y2="{bx}"/>'
                   f'<line class="axis" x1="{by}" x2="{by}" y1="{self.top}" y2="{bx}"/>')
        mid_x = _f((self.left + self.width - self.right) / 2)
        mid_y = _f((self.top + bx) / 2)
        out.append(f'<text class="label" x="{mid_x}" y="{self.height - 6}" text-anchor="middle">{escape(xlabel)}</text>'
                   f'<text class="label" transform="translate(12 {mid_y}) rotate(-90)" text-anchor="middle">'
                   f'{escape(ylabel)}</text>')
        return out


def _ticks(lo: float, hi: float, step: float, pct: bool = True) -> list[tuple[float, str]]:
    out, k = [], round(lo / step)
    while k * step <= hi + 1e-9:
        v = k * step
        out.append((v, f"{v * 100:.0f}" if pct else f"{v:g}"))
        k += 1
    return out


def _range(values: list[float]) -> float:
    """Lower axis bound: the multiple of 0.1 below the data (and below 0.5), at least 0."""
    m = min([0.5] + [v for v in values if v is not None])
    return max(0.0, math.floor(m * 10 - 1e-9) / 10)


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    href: str
    cls: str = "pt"  # CSS class (e.g. erm / adversarial)


LABELLED_POINTS = 200  # scatter points with a hover title (the first ones given: a board's best-ranked)


def scatter(points: list[Point], *, xlabel: str, ylabel: str, title: str, chance: float | None,
            labelled: int = LABELLED_POINTS) -> Markup:
    """Balanced accuracy vs balanced accuracy (percent axes), with y = x and chance lines; the first
    ``labelled`` points have a hover title naming the model."""
    vals = [p.x for p in points] + [p.y for p in points] + ([chance] if chance is not None else [])
    lo = _range(vals)
    fr = Frame(x0=lo, y0=lo)
    body = fr.axes(_ticks(lo, 1, 0.1), _ticks(lo, 1, 0.1), xlabel, ylabel)
    body.append(f'<line class="ref" x1="{_f(fr.x(lo))}" y1="{_f(fr.y(lo))}" x2="{_f(fr.x(1))}" y2="{_f(fr.y(1))}"/>')
    if chance is not None and chance >= lo:
        body.append(f'<line class="chance" x1="{_f(fr.x(lo))}" x2="{_f(fr.x(1))}" y1="{_f(fr.y(chance))}" '
                    f'y2="{_f(fr.y(chance))}"/>')
    # Past the first ``labelled`` points (the board's best-ranked), points are drawn without a hover title, as
    # round dots of one path per class: 13 bytes a point instead of ~100, which keeps a 1,000-model board
    # page under 1 MB. They go first, so the labelled points lie on top.
    dots: dict[str, list[str]] = {}
    for p in points[labelled:]:
        dots.setdefault(p.cls, []).append(f"M{_f(fr.x(p.x))} {_f(fr.y(p.y))}h0")
    for cls, d in sorted(dots.items()):
        body.append(f'<path class="dots {escape(cls)}" d="{"".join(d)}"/>')
    for p in points[:labelled]:  # no links: an image (role="img") must hold nothing focusable; the table links them
        body.append(f'<circle class="{escape(p.cls)}" cx="{_f(fr.x(p.x))}" '
                    f'cy="{_f(fr.y(p.y))}" r="4"><title>{escape(p.label)}: {p.x * 100:.1f} / {p.y * 100:.1f}'
                    f'</title></circle>')
    return _svg(fr.width, fr.height, title, body)


@dataclass(frozen=True)
class Series:
    name: str
    cls: str
    points: list[tuple[int, float]]  # (category index, value)


def line_chart(categories: list[str], series: list[Series], *, xlabel: str, ylabel: str, title: str,
               chance: float | None) -> Markup:
    """Balanced accuracy (percent) over categorical x values (eps or sigma), with a legend.

    The y axis is always 0-100%, so curves of different models compare at a glance."""
    lo = 0.0
    n = max(1, len(categories) - 1)
    fr = Frame(x0=0, x1=n, y0=lo, top=12 + 16 * len(series))
    body = fr.axes([(i, c) for i, c in enumerate(categories)], _ticks(lo, 1, 0.1), xlabel, ylabel)
    if chance is not None and chance >= lo:
        body.append(f'<line class="chance" x1="{fr.left}" x2="{_f(fr.x(n))}" y1="{_f(fr.y(chance))}" '
                    f'y2="{_f(fr.y(chance))}"/>')
    safe_categories = [escape(c) for c in categories]
    for k, s in enumerate(series):
        xy = [(i, _f(fr.x(i)), _f(fr.y(v)), v) for i, v in s.points]
        body.append(f'<polyline class="line {s.cls}" points="{" ".join(f"{x},{y}" for _, x, y, _ in xy)}"/>')
        name = escape(s.name)
        for i, x, y, v in xy:
            body.append(f'<circle class="dot {s.cls}" cx="{x}" cy="{y}" r="3">'
                        f'<title>{name} at {safe_categories[i]}: {v * 100:.1f}</title></circle>')
        ly = 10 + 16 * k
        body.append(f'<line class="line {s.cls}" x1="{fr.left + 8}" x2="{fr.left + 28}" y1="{ly}" y2="{ly}"/>'
                    f'<text class="legend" x="{fr.left + 34}" y="{ly}" dy="0.32em">{name}</text>')
    return _svg(fr.width, fr.height, title, body)


def heatmap(rows: list[str], cols: list[str], values: dict[tuple[str, str], float | None], *, title: str,
            lo: float = 0.0, hi: float = 1.0) -> Markup:
    """A corruption x severity grid of balanced accuracies (percent in each cell)."""
    label_w, cell_w, cell_h, top = 130, 46, 22, 22
    width, height = label_w + cell_w * len(cols) + 4, top + cell_h * len(rows) + 4
    body = []
    safe_cols = [escape(c) for c in cols]
    for j, c in enumerate(safe_cols):
        body.append(f'<text class="tick" x="{label_w + cell_w * j + cell_w / 2:g}" y="14" '
                    f'text-anchor="middle">{c}</text>')
    # (a model page has ~75 cells: what depends on the column only is formatted once)
    xs = [label_w + cell_w * j for j in range(len(cols))]
    text_xs = [f"{x + (cell_w - 2) / 2:g}" for x in xs]
    for i, r in enumerate(rows):
        y = top + cell_h * i
        short = r if len(r) <= 20 else r[:19] + "…"
        safe_r = escape(r)
        body.append(f'<text class="tick" x="{label_w - 6}" y="{y + cell_h / 2:g}" text-anchor="end" '
                    f'dy="0.32em"><title>{safe_r}</title>{escape(short)}</text>')
        ty = f"{y + (cell_h - 2) / 2:g}"
        cell = f'" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="'
        for j, c in enumerate(cols):
            v = values.get((r, c))
            fill = colour(v, lo, hi)
            text = "–" if v is None else f"{v * 100:.1f}"
            body.append(f'<rect x="{xs[j]}{cell}{fill}"><title>{safe_r}, {safe_cols[j]}: {text}</title></rect>'
                        f'<text x="{text_xs[j]}" y="{ty}" dy="0.32em" '
                        f'text-anchor="middle" class="cell {_text_on(fill)}">{text}</text>')
    return _svg(width, height, title, body, cls="plot heatmap", fixed=True)


def bars(labels: list[str], values: list[float | None], *, title: str, chance: float | None = None) -> Markup:
    """Horizontal bars in percent (per-class recall); missing values are marked, not drawn as 0."""
    label_w, bar_w, h, top = 170, 200, 18, 4
    width, height = label_w + bar_w + 56, top + h * len(labels) + 18
    body = []
    for i, (lab, v) in enumerate(zip(labels, values)):
        y = top + h * i
        short = lab if len(lab) <= 26 else lab[:25] + "…"
        body.append(f'<text class="tick" x="{label_w - 6}" y="{y + h / 2:g}" dy="0.32em" text-anchor="end">'
                    f'<title>{escape(lab)}</title>{escape(short)}</text>')
        if v is None:
            body.append(f'<text class="tick" x="{label_w + 4}" y="{y + h / 2:g}" dy="0.32em">absent from the test split</text>')
            continue
        body.append(f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{_f(bar_w * v)}" height="{h - 4}">'
                    f'<title>{escape(lab)}: {v * 100:.1f}</title></rect>'
                    f'<text class="tick" x="{_f(label_w + bar_w * v + 4)}" y="{y + h / 2:g}" dy="0.32em">'
                    f'{v * 100:.1f}</text>')
    axis_y = top + h * len(labels)
    body.append(f'<line class="axis" x1="{label_w}" x2="{label_w + bar_w}" y1="{axis_y}" y2="{axis_y}"/>')
    for v in (0, 0.5, 1):
        body.append(f'<text class="tick" x="{_f(label_w + bar_w * v)}" y="{axis_y + 13}" '
                    f'text-anchor="middle">{v * 100:.0f}</text>')
    if chance is not None:
        x = _f(label_w + bar_w * chance)
        body.append(f'<line class="chance" x1="{x}" x2="{x}" y1="{top}" y2="{axis_y}"/>')
    return _svg(width, height, title, body, cls="plot bars", fixed=True)


@dataclass(frozen=True)
class ShapePoint:
    x: float  # > 0 (log axis)
    y: float  # a fraction
    label: str
    cls: str = "pt"  # colour (CSS class: pt / pt adv)
    group: str = ""  # marker shape, one per group (shown in the legend)


_SHAPES = ("circle", "square", "triangle", "diamond", "cross")


def _marker(shape: str, x: float, y: float, cls: str, title: str) -> str:
    t = f"<title>{escape(title)}</title>"
    if shape == "circle":
        return f'<circle class="{escape(cls)}" cx="{_f(x)}" cy="{_f(y)}" r="4.5">{t}</circle>'
    if shape == "square":
        return f'<rect class="{escape(cls)}" x="{_f(x - 4)}" y="{_f(y - 4)}" width="8" height="8">{t}</rect>'
    pts = {"triangle": [(0, -5.5), (5, 4), (-5, 4)], "diamond": [(0, -5.5), (5.5, 0), (0, 5.5), (-5.5, 0)],
           "cross": [(-2, -5), (2, -5), (2, -2), (5, -2), (5, 2), (2, 2), (2, 5), (-2, 5), (-2, 2), (-5, 2), (-5, -2),
                     (-2, -2)]}[shape]
    coords = " ".join(f"{_f(x + dx)},{_f(y + dy)}" for dx, dy in pts)
    return f'<polygon class="{escape(cls)}" points="{coords}">{t}</polygon>'


def log_scatter(points: list[ShapePoint], *, xlabel: str, ylabel: str, title: str, chance: float | None) -> Markup:
    """Balanced accuracy (percent) over a log-scaled count (e.g. parameters); one marker shape per group, colour
    by CSS class; a legend of the shapes above the plot."""
    groups = list(dict.fromkeys(p.group for p in points))
    lo = _range([p.y for p in points] + ([chance] if chance is not None else []))
    lx = [math.log10(p.x) for p in points if p.x > 0] or [0.0, 1.0]
    x0, x1 = math.floor(min(lx)), math.ceil(max(lx))
    x1 = x1 if x1 > x0 else x0 + 1
    rows = (len(groups) + 2) // 3
    fr = Frame(x0=x0, x1=x1, y0=lo, top=14 + 16 * rows)
    names = {3: "1k", 4: "10k", 5: "100k", 6: "1M", 7: "10M", 8: "100M", 9: "1G"}
    body = fr.axes([(e, names.get(e, f"1e{e}")) for e in range(x0, x1 + 1)], _ticks(lo, 1, 0.1), xlabel, ylabel)
    if chance is not None and chance >= lo:
        body.append(f'<line class="chance" x1="{fr.left}" x2="{_f(fr.x(x1))}" y1="{_f(fr.y(chance))}" '
                    f'y2="{_f(fr.y(chance))}"/>')
    shape = {g: _SHAPES[i % len(_SHAPES)] for i, g in enumerate(groups)}
    for i, g in enumerate(groups):
        lx_, ly_ = fr.left + 8 + 104 * (i % 3), 8 + 16 * (i // 3)
        body.append(_marker(shape[g], lx_, ly_, "pt legend-key", g)
                    + f'<text class="legend" x="{lx_ + 9}" y="{ly_}" dy="0.32em">{escape(g)}</text>')
    for p in points:
        body.append(_marker(shape[p.group], fr.x(math.log10(p.x)), fr.y(p.y), p.cls,
                            f"{p.label}: {p.x:,.0f}, {p.y * 100:.1f}"))
    return _svg(fr.width, fr.height, title, body)
