"""Bar charts drawn on the server as inline SVG: no JavaScript, no CDN, no vendored library (so no
licence to track), and the page works with no internet and with scripts blocked.

``bar_chart`` computes the geometry only; the template ``_chart.html`` draws it, so every label
goes through Jinja2's escaping like any other value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH = 640
HEIGHT = 180
LEFT = 70  # room for the axis labels
BOTTOM = 20
TOP = 10
MAX_BAR = 40  # a bar of a job that ran once is a bar, not a wall


@dataclass(frozen=True)
class Bar:
    """One bar: where it is drawn, and its tooltip."""

    x: float
    y: float
    width: float
    height: float
    label: str
    css: str


@dataclass(frozen=True)
class Chart:
    """A chart's geometry: bars, the value at the top of the axis, and its title."""

    title: str
    bars: list[Bar]
    max_label: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    bottom: int = BOTTOM

    @property
    def empty(self) -> bool:
        """True when there is nothing to draw."""
        return not self.bars


def bar_chart(
    title: str,
    points: Sequence[tuple[str, float | None, str]],
    fmt: Callable[[float], str],
) -> Chart:
    """Bars for ``(label, value, css class)`` points, oldest first; a point without a value is left
    out. The axis starts at zero so bars compare honestly."""
    drawn = [(label, value, css) for label, value, css in points if value is not None]
    if not drawn:
        return Chart(title=title, bars=[], max_label="")
    top_value = max(v for _, v, _ in drawn) or 1.0
    plot_w = WIDTH - LEFT - 10
    plot_h = HEIGHT - TOP - BOTTOM
    step = min(plot_w / len(drawn), MAX_BAR / 0.8)
    bars = []
    for i, (label, value, css) in enumerate(drawn):
        h = max(plot_h * value / top_value, 1.0)
        bars.append(
            Bar(
                x=round(LEFT + i * step + step * 0.1, 1),
                y=round(TOP + plot_h - h, 1),
                width=round(max(step * 0.8, 1.0), 1),
                height=round(h, 1),
                label=f"{label}: {fmt(value)}",
                css=css,
            )
        )
    return Chart(title=title, bars=bars, max_label=fmt(top_value))
