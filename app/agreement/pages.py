"""The agreement page of a project: progress, the distribution of per-prompt agreement, the labelers.

As thin as the JSON router: `service.project_agreement` does the work; this module only lays the numbers
out for the template (the geometry of the inline SVG charts is computed here, so the template only draws).
The labeler table is a fragment: its column headers are links (`?sort=`) that htmx swaps in place.
"""

import math
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.routing import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.agreement import service
from app.agreement.schemas import HistogramBin, LabelerAgreement, ProjectAgreement
from app.dependencies import CallerDep, ProjectReader, SessionDep
from app.projects.dependencies import ProjectDep
from app.prompts.models import Prompt
from app.web import is_htmx, render

router = APIRouter(include_in_schema=False)

LOW_AGREEMENT = 0.2
"""A labeler (or prompt) below this tau-b gets a warning; below 0 they disagree more than they agree."""
MINUS = "\u2212"  # the typographic minus sign (U+2212): as wide as "+", so values line up
CONTESTED_SHOWN = 10  # the page lists this many prompts with the least agreement

Sort = Literal["agreement", "rankings", "time", "name"]
SORTS: dict[str, str] = {
    "agreement": "Agreement, lowest first",
    "rankings": "Rankings, most first",
    "time": "Median time, fastest first",
    "name": "Name",
}

# The histogram's drawing area, in SVG user units (the SVG scales to its box).
CHART_WIDTH, CHART_HEIGHT = 640, 220
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 44, 622, 18, 186


@router.get("/projects/{project_id}/agreement")
def agreement_page(
    request: Request,
    caller: CallerDep,
    _reader: ProjectReader,
    project: ProjectDep,
    session: SessionDep,
    sort: str = "agreement",
):
    report = service.project_agreement(session, project=project)
    chosen: Sort = sort if sort in SORTS else "agreement"  # type: ignore[assignment]
    labelers = labeler_rows(report.labelers, sort=chosen)
    if is_htmx(request):
        return render(
            request,
            "agreement/_labelers_fragment.html",
            caller,
            project=project,
            labelers=labelers,
            sort=chosen,
            sorts=SORTS,
            low=LOW_AGREEMENT,
        )
    return render(
        request,
        "agreement/page.html",
        caller,
        project=project,
        report=report,
        labelers=labelers,
        sort=chosen,
        sorts=SORTS,
        chart=histogram_chart(report.histogram),
        contested=contested_prompts(session, report),
        low=LOW_AGREEMENT,
        mean={"text": signed(report.mean_agreement), "level": level(report.mean_agreement)},
        share=_shares(report),
    )


# --- labelers ------------------------------------------------------------------------------------


@dataclass
class LabelerRow:
    labeler: LabelerAgreement
    agreement_text: str
    level: str  # "ok" | "low" | "disagrees" | "none": the badge and the colour of the bar
    bar: "Bar | None"
    spark: list["Rect"]
    time_text: str


@dataclass
class Bar:
    """A bar from the middle of a 100-unit-wide box: right for positive tau-b, left for negative."""

    x: float
    width: float


@dataclass
class Rect:
    x: float
    y: float
    width: float
    height: float
    title: str
    level: str = "ok"


def labeler_rows(labelers: list[LabelerAgreement], *, sort: Sort) -> list[LabelerRow]:
    rows = [
        LabelerRow(
            labeler=labeler,
            agreement_text=signed(labeler.agreement),
            level=level(labeler.agreement),
            bar=diverging_bar(labeler.agreement),
            spark=sparkline(labeler.histogram),
            time_text=duration(labeler.median_seconds),
        )
        for labeler in labelers
    ]
    keys = {
        "agreement": lambda r: (r.labeler.agreement is None, r.labeler.agreement or 0.0, r.labeler.username),
        "rankings": lambda r: (-r.labeler.rankings, r.labeler.username),
        "time": lambda r: (
            r.labeler.median_seconds is None,
            r.labeler.median_seconds or 0.0,
            r.labeler.username,
        ),
        "name": lambda r: r.labeler.username.lower(),
    }
    return sorted(rows, key=keys[sort])


def level(value: float | None) -> str:
    if value is None:
        return "none"
    if value < 0:
        return "disagrees"
    return "low" if value < LOW_AGREEMENT else "ok"


def signed(value: float | None) -> str:
    """0.8234 -> '+0.82', -0.5 -> '-0.50' (with MINUS for the hyphen), None -> '—'."""
    if value is None:
        return "—"
    text = f"{value:+.2f}"
    return "±0.00" if text in ("+0.00", "-0.00") else text.replace("-", MINUS)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def diverging_bar(value: float | None) -> Bar | None:
    if value is None:
        return None
    half = 50 * max(-1.0, min(1.0, value))
    return Bar(x=round(50 + min(half, 0.0), 2), width=round(max(abs(half), 0.8), 2))


def sparkline(bins: list[HistogramBin]) -> list[Rect]:
    """Ten bars in a 50x16 box: the labeler's per-prompt agreement, left -1, right +1."""
    top = max((b.count for b in bins), default=0)
    if top == 0:
        return []
    rects = []
    for i, b in enumerate(bins):
        height = 15 * b.count / top if b.count else 0.0
        rects.append(
            Rect(
                x=i * 5 + 0.5,
                y=round(16 - height, 2),
                width=4,
                height=round(height, 2),
                title=f"{_edge(b.lower)} to {_edge(b.upper)}: {b.count}",
                level=level((b.lower + b.upper) / 2),
            )
        )
    return rects


# --- the histogram of per-prompt agreement -------------------------------------------------------


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Rect]
    labels: list[tuple[float, float, str]]  # (x, y, count) above each bar
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    plot: tuple[int, int, int, int]  # left, right, top, bottom
    zero_x: float
    low_x: float
    total: int


def histogram_chart(bins: list[HistogramBin]) -> Chart | None:
    """Bars of the per-prompt agreement histogram, with axes; None when no prompt has an agreement."""
    total = sum(b.count for b in bins)
    if not total:
        return None
    top = max(b.count for b in bins)
    step = _nice_step(top)
    y_max = step * math.ceil(top / step)
    plot_w, plot_h = PLOT_RIGHT - PLOT_LEFT, PLOT_BOTTOM - PLOT_TOP

    def x_of(value: float) -> float:
        return round(PLOT_LEFT + (value + 1) / 2 * plot_w, 2)

    def y_of(count: float) -> float:
        return round(PLOT_BOTTOM - count / y_max * plot_h, 2)

    bars, labels = [], []
    for b in bins:
        left, right = x_of(b.lower), x_of(b.upper)
        y = y_of(b.count)
        prompts = "prompt" if b.count == 1 else "prompts"
        bars.append(
            Rect(
                x=left + 3,
                y=y,
                width=round(right - left - 6, 2),
                height=round(PLOT_BOTTOM - y, 2),
                title=f"Agreement {_edge(b.lower)} to {_edge(b.upper)}: {b.count} {prompts}",
                level=level((b.lower + b.upper) / 2),
            )
        )
        if b.count:
            labels.append(((left + right) / 2, y - 5, str(b.count)))
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        bars=bars,
        labels=labels,
        x_ticks=[(x_of(v), f"{v:+g}".replace("-", MINUS) if v else "0") for v in (-1.0, -0.5, 0.0, 0.5, 1.0)],
        y_ticks=[(y_of(c), str(c)) for c in range(0, y_max + 1, step)],
        plot=(PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM),
        zero_x=x_of(0.0),
        low_x=x_of(LOW_AGREEMENT),
        total=total,
    )


def _nice_step(top: int) -> int:
    """A step of 1, 2 or 5 times a power of ten giving at most five grid lines up to `top`."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if math.ceil(top / step) <= 4:
                return step
        magnitude *= 10


def _edge(value: float) -> str:
    return signed(value) if value else "0"


# --- the prompts with the least agreement --------------------------------------------------------


def contested_prompts(session: Session, report: ProjectAgreement) -> list[dict[str, Any]]:
    prompts = sorted(
        (p for p in report.prompts if p.agreement is not None), key=lambda p: (p.agreement, p.prompt_id)
    )[:CONTESTED_SHOWN]
    if not prompts:
        return []
    messages = dict(
        session.execute(
            select(Prompt.id, Prompt.messages).where(Prompt.id.in_([p.prompt_id for p in prompts]))
        ).all()
    )
    rows = []
    for p in prompts:
        users = [m.get("content", "") for m in messages.get(p.prompt_id, []) if m.get("role") == "user"]
        rows.append(
            {
                "id": p.prompt_id,
                "text": users[0] if users else "",
                "rankings": p.rankings,
                "agreement": signed(p.agreement),
                "level": level(p.agreement),
                "bar": diverging_bar(p.agreement),
            }
        )
    return rows


def _shares(report: ProjectAgreement) -> dict[str, float]:
    total = report.progress.prompts
    return {
        "ranked": report.progress.ranked / total if total else 0.0,
        "complete": report.progress.complete / total if total else 0.0,
    }
