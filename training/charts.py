"""Line charts as inline SVG, drawn on the server: no chart library, nothing to load.

    svg_line_chart("loss", [(1, 2.3), (2, 2.1), ...])  -> SafeString "<svg ...>...</svg>"

Every text in the SVG goes through `format_html`, so a metric name cannot inject markup.
"""

import math

from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from training.jobs.kinds import run_kinds

WIDTH, HEIGHT = 320, 150
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 46, 8, 20, 22
COLORS = ("#2f5bd3", "#d9480f", "#0f7b3f", "#7048e8")


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.2e}"
    return f"{value:.3g}"


def svg_line_chart(title: str, series: dict[str, list[tuple[float, float]]]):
    """One chart of one or more named series of (step, value) points, sharing the axes."""
    points = [(x, y) for pts in series.values() for x, y in pts if math.isfinite(y)]
    if not points:
        return format_html('<p class="muted">{}: no points yet</p>', title)
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    inner_w, inner_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def sx(x):
        return PAD_LEFT + (x - x0) / (x1 - x0) * inner_w

    def sy(y):
        return PAD_TOP + (1 - (y - y0) / (y1 - y0)) * inner_h

    lines = []
    for i, (name, pts) in enumerate(series.items()):
        finite = [(x, y) for x, y in pts if math.isfinite(y)]
        if not finite:
            continue
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in finite)
        lines.append(
            format_html(
                '<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"><title>{}</title>'
                "</polyline>",
                color,
                coords,
                name,
            )
        )
        if len(finite) == 1:
            lines.append(
                format_html(
                    '<circle cx="{}" cy="{}" r="2.5" fill="{}"/>',
                    f"{sx(finite[0][0]):.1f}",
                    f"{sy(finite[0][1]):.1f}",
                    color,
                )
            )
    legend = format_html_join(
        "",
        '<tspan fill="{}">{} </tspan>',
        ((COLORS[i % len(COLORS)], f"■ {name}") for i, name in enumerate(series)),
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="{title}">'
        '<text x="{pl}" y="13" font-size="12" font-weight="600">{title} '
        '<tspan font-weight="400" font-size="11">{legend}</tspan></text>'
        '<line x1="{pl}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>'
        '<line x1="{pl}" y1="{pt}" x2="{pl}" y2="{bottom}" stroke="#999"/>'
        '<text x="{yl}" y="{ytop}" font-size="10" text-anchor="end">{ymax}</text>'
        '<text x="{yl}" y="{bottom}" font-size="10" text-anchor="end">{ymin}</text>'
        '<text x="{pl}" y="{xlab}" font-size="10">{xmin}</text>'
        '<text x="{right}" y="{xlab}" font-size="10" text-anchor="end">step {xmax}</text>'
        "{lines}</svg>",
        w=WIDTH, h=HEIGHT, title=title, legend=legend, pl=PAD_LEFT, pt=PAD_TOP,
        bottom=HEIGHT - PAD_BOTTOM, right=WIDTH - PAD_RIGHT, yl=PAD_LEFT - 4, ytop=PAD_TOP + 4,
        ymax=_fmt(y1), ymin=_fmt(y0), xlab=HEIGHT - 6, xmin=_fmt(x0), xmax=_fmt(x1),
        lines=mark_safe("".join(lines)),  # each built by format_html above
    )  # fmt: skip


def run_charts(kind: str, curves: dict[str, list[tuple[int, float]]]) -> list:
    """The charts a run of `kind` shows (`RunKind.charts`), of the curves it has points of."""
    spec = run_kinds().get(kind)
    charts = []
    for title, names in (spec.charts if spec else {}).items():
        series = {name: curves[name] for name in names if name in curves}
        if series:
            charts.append(svg_line_chart(title, series))
    return charts


def svg_interval_chart(title: str, rows: list[tuple[str, float, float, float]], *,
                       unit: str = ""):  # fmt: skip
    """One row per (name, value, low, high), best first: a dot at the value and a bar over its
    interval, on a shared axis (the leaderboard's ratings with their 95% intervals)."""
    rows = [r for r in rows if math.isfinite(r[1])]
    if not rows:
        return format_html('<p class="muted">{}: no votes yet</p>', title)
    ends = [v for _, value, low, high in rows for v in (value, low, high) if math.isfinite(v)]
    x0, x1 = min(ends), max(ends)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    label_w, row_h, width = 150, 18, 560
    height = PAD_TOP + row_h * len(rows) + PAD_BOTTOM
    inner = width - label_w - PAD_RIGHT - 10

    def sx(x):
        return label_w + (x - x0) / (x1 - x0) * inner

    marks = []
    for i, (name, value, low, high) in enumerate(rows):
        y = PAD_TOP + row_h * i + row_h / 2
        lo = low if math.isfinite(low) else value
        hi = high if math.isfinite(high) else value
        marks.append(format_html(
            '<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>'
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="3"/>'
            '<circle cx="{}" cy="{}" r="4" fill="{}"><title>{}: {} ({} to {})</title></circle>',
            label_w - 6, f"{y + 4:.1f}", name, f"{sx(lo):.1f}", f"{y:.1f}", f"{sx(hi):.1f}",
            f"{y:.1f}", "#9db2ec", f"{sx(value):.1f}", f"{y:.1f}", COLORS[0], name, _fmt(value),
            _fmt(lo), _fmt(hi),
        ))  # fmt: skip
    bottom = height - PAD_BOTTOM
    return format_html(
        '<svg class="chart interval-chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        'role="img" aria-label="{title}">'
        '<text x="{lw}" y="13" font-size="12" font-weight="600">{title}</text>'
        '<line x1="{lw}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>'
        '<text x="{lw}" y="{xlab}" font-size="10">{xmin}</text>'
        '<text x="{right}" y="{xlab}" font-size="10" text-anchor="end">{xmax} {unit}</text>'
        "{marks}</svg>",
        w=width, h=height, title=title, lw=label_w, bottom=bottom, right=width - PAD_RIGHT,
        xlab=height - 6, xmin=_fmt(x0), xmax=_fmt(x1), unit=unit,
        marks=mark_safe("".join(marks)),  # each built by format_html above
    )  # fmt: skip
