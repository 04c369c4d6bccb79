"""Bar charts drawn on the server as SVG shapes: no script runs in the browser, and the console's
Content-Security-Policy (no inline styles or scripts) holds. The template draws what `bar_chart` measures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 720, 200
LEFT, BOTTOM, TOP = 40, 24, 8  # room for the value axis, the labels and the top tick


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    part: str     # the series' CSS class
    title: str    # shown on hover and read by screen readers
    href: str     # the conversations behind it ("" for none)


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    labels: tuple[Label, ...]   # under the bars
    ticks: tuple[Label, ...]    # on the value axis
    gridlines: tuple[float, ...]  # y of each tick's line


@dataclass(frozen=True)
class Column:
    """One column of stacked parts, bottom first: (CSS class, value, title, link)."""

    label: str
    parts: Sequence[tuple[str, int, str, str]]


def scale(value: int, most_ticks: int = 4) -> tuple[int, int]:
    """The value axis for counts up to `value`: a step of 1, 2 or 5 times a power of ten, and the top, a
    whole number of steps (at most `most_ticks`) at or above `value`."""
    value, power = max(value, 1), 1
    while True:
        for step in (power, 2 * power, 5 * power):
            if math.ceil(value / step) <= most_ticks:
                return step, math.ceil(value / step) * step
        power *= 10


def bar_chart(columns: Sequence[Column], label_every: int = 1, width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """Columns of stacked bars on a shared scale from zero, with up to five ticks on the value axis."""
    step, top = scale(max((sum(p[1] for p in c.parts) for c in columns), default=0))
    steps = top // step
    plot_height = height - BOTTOM - TOP
    slot = (width - LEFT) / max(len(columns), 1)
    gap = min(slot * 0.2, 6)
    bars, labels = [], []
    for i, column in enumerate(columns):
        x = LEFT + i * slot + gap / 2
        base = float(height - BOTTOM)
        for part, value, title, href in column.parts:
            if value <= 0:
                continue
            h = plot_height * value / top
            base -= h
            bars.append(Bar(round(x, 1), round(base, 1), round(slot - gap, 1), round(h, 1), part, title, href))
        if i % label_every == 0:
            labels.append(Label(round(x + (slot - gap) / 2, 1), height - 8, column.label))
    ticks = tuple(Label(LEFT - 6, round(height - BOTTOM - plot_height * k / steps + 4, 1), f"{step * k:,}")
                  for k in range(steps + 1))
    gridlines = tuple(round(height - BOTTOM - plot_height * k / steps, 1) for k in range(steps + 1))
    return Chart(width, height, tuple(bars), tuple(labels), ticks, gridlines)
