"""A bar chart with a labelled scale, for the stats pane's latency and rate series.

One column per sample, newest on the right, so a single sample is a single bar; the
scale runs from 0 to a round number at or above the largest sample (1, 2 or 5 times a
power of ten), so the height of a bar means the same from one screen to the next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

BLOCKS = " \u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
"""Eighths of a cell, from empty to full."""
AXIS_TOP = "\u2524"  # ┤
AXIS = "\u2502"  # │


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 times 10^k that is at least ``value`` (1 for nothing to show)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10.0 * power


def scale_label(value: float) -> str:
    """A compact number: ``50``, ``2k``, ``0.5``."""
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def chart_lines(samples: Sequence[float], width: int, height: int, unit: str = "") -> list[str]:
    """The chart as ``height`` lines of ``width`` cells: the scale on the left, then bars.

    The top line is labelled with the scale's maximum and the unit, the bottom one with 0.
    """
    height = max(1, height)
    top = nice_ceiling(max((s for s in samples if math.isfinite(s)), default=0.0))
    labels = [f"{scale_label(top)}{unit}", "0"]
    label_width = max(len(label) for label in labels)
    plot_width = max(0, width - label_width - 1)
    shown = list(samples)[-plot_width:] if plot_width else []
    eighths = [_eighths(sample, top, height) for sample in shown]
    lines = []
    for row in range(height):
        level = height - 1 - row  # 0 is the bottom row
        if row == 0:
            axis = labels[0].rjust(label_width) + AXIS_TOP
        elif row == height - 1:
            axis = labels[1].rjust(label_width) + AXIS_TOP
        else:
            axis = " " * label_width + AXIS
        bars = "".join(BLOCKS[min(8, max(0, filled - level * 8))] for filled in eighths)
        lines.append((axis + bars.rjust(plot_width))[:width].ljust(width))
    return lines


def _eighths(sample: float, top: float, height: int) -> int:
    if not math.isfinite(sample) or sample <= 0:
        return 0
    return max(1, min(height * 8, round(sample / top * height * 8)))


class Chart(Widget):
    """A :func:`chart_lines` chart that fits whatever width the pane gives it."""

    DEFAULT_CSS = """
    Chart {
        height: 3;
    }
    """

    def __init__(self, unit: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.unit = unit
        self.samples: list[float] = []

    def show(self, samples: Sequence[float]) -> None:
        self.samples = list(samples)
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_region.size
        lines = chart_lines(self.samples, width, height, self.unit)
        return Text("\n".join(lines), no_wrap=True, overflow="crop")
