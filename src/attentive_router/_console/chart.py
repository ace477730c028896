"""The overview's chart: a minute-by-minute stacked bar chart, drawn as SVG on the server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

COLOURS = {
    "delivered": "#2f855a",
    "retried": "#dd6b20",
    "throttled": "#6b46c1",
    "dead_lettered": "#c53030",
}
"""One colour per kind of count (the legend uses the same)."""

LABELS = {
    "delivered": "delivered",
    "retried": "retried",
    "throttled": "429",
    "dead_lettered": "dead-lettered",
}

WIDTH = 560
HEIGHT = 120
_LEFT = 44
_BOTTOM = 20
_TOP = 8


def bar_chart(series: Mapping[str, Sequence[int]], title: str) -> str:
    """An SVG stacked bar per minute (oldest left), one colour per kind of count.

    Args:
        series: Per kind (``COLOURS``' keys), the counts per minute, all of the same length.
        title: What the chart shows, for screen readers.
    """
    minutes = max((len(values) for values in series.values()), default=0)
    totals = [sum(series[kind][i] for kind in series) for i in range(minutes)]
    peak = max(max(totals, default=0), 1)
    plot_w = WIDTH - _LEFT - 4
    plot_h = HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(minutes, 1)
    bar = max(step - 2, 1)
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">'
        ),
        f"<title>{escape(title)}</title>",
        (
            f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH - 4}" y2="{_TOP + plot_h}" '
            'stroke="#999"/>'
        ),
        f'<text x="{_LEFT - 6}" y="{_TOP + 10}" text-anchor="end" font-size="11">{peak:,}</text>',
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end" font-size="11">0</text>',
        f'<text x="{_LEFT}" y="{HEIGHT - 4}" font-size="11">{minutes} min ago</text>',
        f'<text x="{WIDTH - 4}" y="{HEIGHT - 4}" text-anchor="end" font-size="11">now</text>',
    ]
    for i in range(minutes):
        x = _LEFT + i * step + 1
        y = float(_TOP + plot_h)
        shown = []
        for kind, colour in COLOURS.items():
            value = series.get(kind, [0] * minutes)[i]
            if not value:
                continue
            height = value / peak * plot_h
            y -= height
            shown.append(f"{LABELS[kind]} {value:,}")
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{colour}"/>'
            )
        if shown:
            ago = minutes - 1 - i
            when = "this minute" if ago == 0 else f"{ago} min ago"
            parts.append(
                f'<rect x="{x:.1f}" y="{_TOP}" width="{bar:.1f}" height="{plot_h}" '
                f'fill="transparent"><title>{when}: {escape(", ".join(shown))}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)
