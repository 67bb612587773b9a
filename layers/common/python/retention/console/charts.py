"""Charts drawn on the server as SVG (no JavaScript): bars for a few named values, columns for a daily
series. Every label is escaped; the markup is returned as Markup for the templates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape


def _num(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _fmt(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ") if value == int(value) else f"{value:,.2f}".replace(",", " ")


def bars(items: Sequence[tuple[str, Any]], *, width: int = 420, row: int = 22, title: str = "") -> Markup:
    """Horizontal bars: one row per (label, value)."""
    items = list(items)
    if not items:
        return Markup("")
    top = max((_num(v) for _, v in items), default=0.0) or 1.0
    label_w, value_w = 150, 70
    bar_w = width - label_w - value_w
    height = row * len(items) + 4
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i, (label, value) in enumerate(items):
        y = i * row + 2
        w = max(1.0, bar_w * _num(value) / top) if _num(value) else 0.0
        parts.append(f'<text x="{label_w - 6}" y="{y + row * 0.68:.1f}" text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" class="bar"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + row * 0.68:.1f}">{escape(_fmt(_num(value)))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above


def columns(series: Sequence[dict[str, Any]], keys: Sequence[str], *, width: int = 640, height: int = 160,
            title: str = "") -> Markup:
    """Daily columns, one colour per key (side by side), with the first and last dates under the axis."""
    series = list(series)
    if not series:
        return Markup("")
    top = max((_num(p.get(k)) for p in series for k in keys), default=0.0) or 1.0
    plot_h = height - 30
    step = width / len(series)
    bar = max(1.0, min(step * 0.8 / len(keys), 28.0))
    parts = [f'<svg class="chart wide" role="img" viewBox="0 0 {width} {height}" width="100%" '
             f'style="max-height: {height * 1.6:.0f}px" xmlns="http://www.w3.org/2000/svg">'
             f'<title>{escape(title)}</title>']
    for i, point in enumerate(series):
        for j, key in enumerate(keys):
            h = plot_h * _num(point.get(key)) / top
            x = i * step + step * 0.1 + j * bar
            parts.append(f'<rect x="{x:.1f}" y="{plot_h - h + 4:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'class="s{j}"><title>{escape(point.get("date", ""))} {escape(key)}: '
                         f'{escape(_fmt(_num(point.get(key))))}</title></rect>')
    parts.append(f'<line x1="0" y1="{plot_h + 4}" x2="{width}" y2="{plot_h + 4}" class="axis"/>'
                 f'<text x="0" y="{height - 6}">{escape(series[0].get("date", ""))}</text>'
                 f'<text x="{width}" y="{height - 6}" text-anchor="end">{escape(series[-1].get("date", ""))}</text>'
                 f'<text x="{width}" y="12" text-anchor="end">max {escape(_fmt(top))}</text></svg>')
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above


PALETTE = 8  # classes l0 … l7 in console.css; more series reuse them


def lines(series: Sequence[dict[str, Any]], keys: Sequence[str], *, width: int = 640, height: int = 200,
          title: str = "") -> Markup:
    """One line per key over daily points (e.g. each segment's size per day), with a legend under it."""
    series, keys = list(series), list(keys)
    if not series or not keys:
        return Markup("")
    top = max((_num(p.get(k)) for p in series for k in keys), default=0.0) or 1.0
    legend_rows = (len(keys) + 3) // 4
    plot_h = height - 30
    full_h = height + 18 * legend_rows
    step = width / max(1, len(series) - 1)
    parts = [f'<svg class="chart wide" role="img" viewBox="0 0 {width} {full_h}" width="100%" '
             f'style="max-height: {full_h * 1.6:.0f}px" xmlns="http://www.w3.org/2000/svg">'
             f'<title>{escape(title)}</title>']
    for j, key in enumerate(keys):
        points = " ".join(f"{i * step:.1f},{plot_h - plot_h * _num(p.get(key)) / top + 4:.1f}"
                          for i, p in enumerate(series))
        last = _fmt(_num(series[-1].get(key)))
        parts.append(f'<polyline points="{points}" class="line l{j % PALETTE}" fill="none">'
                     f'<title>{escape(key)}: {escape(last)}</title></polyline>')
        x, y = (j % 4) * (width / 4), height + 14 + (j // 4) * 18
        parts.append(f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" class="l{j % PALETTE} key"/>'
                     f'<text x="{x + 14:.1f}" y="{y}">{escape(key)} ({escape(last)})</text>')
    parts.append(f'<line x1="0" y1="{plot_h + 4}" x2="{width}" y2="{plot_h + 4}" class="axis"/>'
                 f'<text x="0" y="{height - 6}">{escape(series[0].get("date", ""))}</text>'
                 f'<text x="{width}" y="{height - 6}" text-anchor="end">{escape(series[-1].get("date", ""))}</text>'
                 f'<text x="{width}" y="12" text-anchor="end">max {escape(_fmt(top))}</text></svg>')
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
