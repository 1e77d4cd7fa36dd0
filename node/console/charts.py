"""Charts drawn on the server as SVG (no chart library, nothing from elsewhere): bars and columns.

The markup is built here from numbers and escaped labels only, and styled by classes from the
console's own stylesheet (the CSP allows no inline style)."""

from __future__ import annotations

from html import escape

from markupsafe import Markup


def bars(rows: list[tuple[str, float]], *, title: str, unit: str = "") -> Markup:
    """Horizontal ranked bars: one row per label, longest first as given."""
    if not rows:
        return Markup("")
    width, label_w, row_h = 560, 140, 22
    top = max(value for _, value in rows) or 1
    height = row_h * len(rows) + 10
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}"'
        f' height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for n, (label, value) in enumerate(rows):
        y = 5 + n * row_h
        length = (width - label_w - 70) * value / top
        parts.append(
            f'<text class="label" x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{length:.1f}"'
            f' height="{row_h - 6}"><title>{escape(label)}: {value:g}{unit}</title></rect>'
            f'<text class="value" x="{label_w + length + 6:.1f}" y="{y + 15}">'
            f"{value:g}{unit}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from escaped labels and numbers


def columns(rows: list[tuple[str, float]], *, title: str) -> Markup:
    """Vertical columns in order (e.g. reports per week), labels under every few columns."""
    if not rows:
        return Markup("")
    width, height, bottom = 560, 200, 30
    top = max(value for _, value in rows) or 1
    step = min((width - 20) / len(rows), 40.0)  # a few weeks do not make giant columns
    every = max(1, len(rows) // 6)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}"'
        f' height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for n, (label, value) in enumerate(rows):
        h = (height - bottom - 10) * value / top
        x = 10 + n * step
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{height - bottom - h:.1f}" width="{step * 0.8:.1f}"'
            f' height="{h:.1f}"><title>{escape(label)}: {value:g}</title></rect>'
        )
        if n % every == 0:
            parts.append(
                f'<text class="label" x="{x:.1f}" y="{height - 10}">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from escaped labels and numbers
