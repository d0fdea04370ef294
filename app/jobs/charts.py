"""Small line charts of a job's metrics, computed for an inline SVG (no JavaScript chart library)."""

from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP, PAD_RIGHT = 560, 200, 44, 24, 10, 10
COLOURS = ["#4f46e5", "#e4572e", "#17a398", "#f0a202"]


@dataclass
class Line:
    name: str
    colour: str
    points: str  # "x,y x,y ..." for <polyline>
    last: float


@dataclass
class Chart:
    title: str
    lines: list[Line]
    y_ticks: list[tuple[float, str]]  # (svg y, label)
    x_label: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = PAD_LEFT
    bottom: int = HEIGHT - PAD_BOTTOM


def metric_chart(title: str, events: list[Any], keys: list[str]) -> Chart | None:
    """One chart of `keys` against the event's `step` (or its order); None when no event has them. A key
    ending in `*` stands for every metric that starts with the rest (`reward/component/*`: one line per
    reward of a mix, whatever their names)."""
    keys = _expanded(keys, events)
    series = {
        key: [
            (_step(e, i), float(e.metrics[key]))
            for i, e in enumerate(events)
            if isinstance(e.metrics.get(key), int | float)
        ]
        for key in keys
    }
    series = {key: values for key, values in series.items() if values}
    if not series:
        return None
    xs = [x for values in series.values() for x, _ in values]
    ys = [y for values in series.values() for _, y in values]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(ys), max(ys)
    if y0 == y1:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def sx(x: float) -> float:
        return PAD_LEFT + (x - x0) / ((x1 - x0) or 1) * (WIDTH - PAD_LEFT - PAD_RIGHT)

    def sy(y: float) -> float:
        return PAD_TOP + (y1 - y) / (y1 - y0) * (HEIGHT - PAD_TOP - PAD_BOTTOM)

    lines = [
        Line(
            name=key,
            colour=COLOURS[i % len(COLOURS)],
            points=" ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values),
            last=values[-1][1],
        )
        for i, (key, values) in enumerate(series.items())
    ]
    ticks = [(sy(y0 + (y1 - y0) * t / 4), f"{y0 + (y1 - y0) * t / 4:.3g}") for t in range(5)]
    return Chart(title=title, lines=lines, y_ticks=ticks, x_label=f"step {x0:g} to {x1:g}")


def _expanded(keys: list[str], events: list[Any]) -> list[str]:
    expanded: list[str] = []
    for key in keys:
        if key.endswith("*"):
            prefix = key[:-1]
            expanded += sorted({name for e in events for name in e.metrics if name.startswith(prefix)})
        else:
            expanded.append(key)
    return expanded


def _step(event: Any, index: int) -> float:
    step = event.metrics.get("step")
    return float(step) if isinstance(step, int | float) else float(index)
