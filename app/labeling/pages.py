"""Browser pages for labelers: the home page (projects and the tasks left) and the ranking screen.

The task is one fragment (`label/_task_fragment.html`) inside the page. With htmx a ranking or a skip
posts and the next task is swapped in its place; without JavaScript the same form posts and redirects
(303) back to the page. The form has one encoding only: a `<select name="tier_{completion id}">` per
completion (equal numbers tie, smaller is better), which label.js keeps in step with the drag and
keyboard order. This module turns that form into the API's `RankingIn`, so the service's checks are the
API's checks, and turns refusals back into the task with the error shown.
"""

import string
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.auth.models import Role, User
from app.db import utcnow
from app.dependencies import Caller, CallerDep, LabelerUser, SessionDep, SettingsDep
from app.errors import InvalidInput, PrefLabError
from app.forms import FormRefused, as_domain_error
from app.ids import Id, parse_id
from app.labeling import service
from app.labeling.dependencies import OwnAssignment
from app.labeling.models import Assignment
from app.labeling.schemas import RankingIn
from app.projects import service as project_service
from app.projects.models import Project
from app.settings import Settings
from app.web import is_htmx, redirect, render

router = APIRouter(include_in_schema=False)

FENCE = "```"
MAX_SECONDS = 86_400  # RankingIn's limit on seconds_spent
NOTICES = {"ranked": "Ranking saved.", "skipped": "Task skipped."}
# Refusals after which this task can no longer be ranked: show a message and the way to the next task.
TASK_GONE = {"assignment_expired", "already_submitted", "assignment_skipped"}


async def posted_form(request: Request) -> FormData:
    """The posted form (Starlette caches it: the CSRF check has parsed it already). Async, no database."""
    return await request.form()


PostedForm = Annotated[FormData, Depends(posted_form)]


# --- home: the projects and the tasks left ---------------------------------------------------------


@router.get("/")
def home(request: Request, caller: CallerDep, session: SessionDep):
    if caller.user.role in (Role.admin, Role.researcher):
        return redirect("/projects")
    # Labelers see the projects' names and how many tasks are left for them; settings and counts are
    # for admins and researchers.
    return render(request, "home.html", caller, projects=_labeler_projects(session, caller.user))


def _labeler_projects(session: Session, labeler: User) -> list[dict[str, Any]]:
    if labeler.role != Role.labeler:
        return []
    service.expire_stale(session)
    live = service.live_assignments_by_project(session, labeler=labeler)
    rows = []
    for project in project_service.list_projects(session):
        progress = service.labeler_progress(session, labeler=labeler, project=project)
        rows.append(
            {
                "id": project.id,
                "name": project.name,
                "left": progress.left_in_project + live.get(project.id, 0),  # a task begun counts
                "ranked_today": progress.ranked_today,
                "ranked_total": progress.ranked_total,
                "in_progress": live.get(project.id, 0) > 0,
            }
        )
    return rows


# --- the page ------------------------------------------------------------------------------------


@router.get("/label")
def label_page(
    request: Request,
    caller: CallerDep,
    labeler: LabelerUser,
    session: SessionDep,
    settings: SettingsDep,
    project_id: Id | None = None,
    notice: str | None = None,
):
    """The labeler's current task (or a new one); the fragment alone for htmx ("fetch the next task")."""
    scope = project_service.get_project(session, project_id) if project_id is not None else None
    return _next_task(request, caller, session, settings, labeler=labeler, scope=scope, notice=notice)


@router.post("/label/{assignment_id}/ranking")
def submit_ranking_form(
    request: Request,
    caller: CallerDep,
    labeler: LabelerUser,
    assignment: OwnAssignment,
    session: SessionDep,
    settings: SettingsDep,
    form: PostedForm,
):
    scope = _scope_from_form(session, form)
    try:
        body = ranking_from_form(form, assignment=assignment)
        _, comparisons = service.submit_ranking(session, assignment=assignment, body=body)
    except (ValidationError, PrefLabError) as error:
        raise _refused(
            request, error, labeler=labeler, assignment=assignment, scope=scope, form=form
        ) from None
    if not is_htmx(request):
        return redirect(_label_url(scope, notice="ranked"))
    saved = f"Saved: {comparisons} comparison{'' if comparisons == 1 else 's'}."
    return _next_task(request, caller, session, settings, labeler=labeler, scope=scope, saved=saved)


@router.post("/label/{assignment_id}/skip")
def skip_form(
    request: Request,
    caller: CallerDep,
    labeler: LabelerUser,
    assignment: OwnAssignment,
    session: SessionDep,
    settings: SettingsDep,
    form: PostedForm,
):
    scope = _scope_from_form(session, form)
    try:
        service.skip(session, assignment=assignment)
    except PrefLabError as error:
        raise _refused(
            request, error, labeler=labeler, assignment=assignment, scope=scope, form=None
        ) from None
    if not is_htmx(request):
        return redirect(_label_url(scope, notice="skipped"))
    return _next_task(request, caller, session, settings, labeler=labeler, scope=scope, saved="Skipped.")


# --- the form, as the API's schema ---------------------------------------------------------------


def ranking_from_form(form: FormData, *, assignment: Assignment) -> RankingIn:
    """`tier_<id>=<n>` fields (equal n tie; smaller n is better), `flag_<id>=<flag>` checkboxes,
    `none_acceptable`, `seconds_spent` -> RankingIn. What the fields name is the service's to check:
    a missing, unknown or repeated completion is refused there, exactly as through the API."""
    by_tier: dict[int, list[int]] = {}
    flags: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str):
            continue
        if key.startswith("tier_"):
            completion, tier = _integer(key.removeprefix("tier_")), _integer(value)
            if completion is None or tier is None or tier < 1:
                raise InvalidInput(
                    f"{key}: choose a rank number (1 is best) for every completion.", details={"field": key}
                )
            by_tier.setdefault(tier, []).append(completion)
        elif key.startswith("flag_"):
            flags.setdefault(key.removeprefix("flag_"), []).append(value)
    return RankingIn(
        ranking=[by_tier[tier] for tier in sorted(by_tier)],
        flags=flags,
        none_acceptable=form.get("none_acceptable") in ("1", "on", "true"),
        seconds_spent=_seconds_spent(form.get("seconds_spent"), assignment),
    )


def _integer(text: str) -> int | None:
    return parse_id(text.strip())


def _seconds_spent(sent: Any, assignment: Assignment) -> float:
    """What label.js measured from the moment the task was shown; without JS, time since it was handed out."""
    try:
        seconds = float(sent)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        seconds = (utcnow() - assignment.created_at).total_seconds()
    return round(min(max(seconds, 0.0), MAX_SECONDS), 1)


def _scope_from_form(session: Session, form: FormData) -> Project | None:
    """The project the labeler chose on /label (a hidden field); none means any project."""
    project_id = _integer(str(form.get("project_id") or ""))
    return session.get(Project, project_id) if project_id is not None else None


def _label_url(scope: Project | None, *, notice: str | None = None) -> str:
    query = [f"project_id={scope.id}"] if scope else []
    if notice:
        query.append(f"notice={notice}")
    return "/label" + ("?" + "&".join(query) if query else "")


# --- rendering -----------------------------------------------------------------------------------


def _next_task(
    request: Request,
    caller: Caller,
    session: Session,
    settings: Settings,
    *,
    labeler: User,
    scope: Project | None,
    notice: str | None = None,
    saved: str | None = None,
) -> Response:
    assignment = service.next_task(
        session, labeler=labeler, project=scope, ttl=timedelta(minutes=settings.assignment_minutes)
    )
    context = task_context(session, labeler=labeler, scope=scope, assignment=assignment)
    return _respond(request, caller, context, notice=NOTICES.get(notice or ""), saved=saved)


def _refused(
    request: Request,
    error: ValidationError | PrefLabError,
    *,
    labeler: User,
    assignment: Assignment,
    scope: Project | None,
    form: FormData | None,
) -> FormRefused:
    """The task again with the error shown (422), or, if it can no longer be ranked (409), the message
    and a button to the next task. A refused ranking writes nothing, whatever the service had flushed."""
    error = as_domain_error(error)
    gone = error.code in TASK_GONE
    ids = (labeler.id, assignment.id, scope.id if scope else None)

    def context(session: Session) -> dict[str, Any]:
        labeler_id, assignment_id, scope_id = ids
        scope_now = session.get(Project, scope_id) if scope_id is not None else None
        task = None if gone else session.get(Assignment, assignment_id)
        context = task_context(
            session, labeler=session.get(User, labeler_id), scope=scope_now, assignment=task, form=form
        )
        return context | {"error": error, "gone": gone, "saved": None, "notice": None}

    template = "label/_task_fragment.html" if is_htmx(request) else "label/page.html"
    return FormRefused(error, template=template, context=context)


def _respond(
    request: Request,
    caller: Caller,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    notice: str | None = None,
    saved: str | None = None,
) -> Response:
    context.setdefault("error", None)
    context.setdefault("gone", False)
    context["saved"] = saved
    template = "label/_task_fragment.html" if is_htmx(request) else "label/page.html"
    return render(request, template, caller, status_code=status_code, notice=notice, **context)


def task_context(
    session: Session,
    *,
    labeler: User,
    scope: Project | None,
    assignment: Assignment | None,
    form: FormData | None = None,
) -> dict[str, Any]:
    """Everything the task fragment shows: the task (or none), its project, and the labeler's progress."""
    progress = service.labeler_progress(session, labeler=labeler, project=scope)
    context: dict[str, Any] = {
        "scope": scope,
        "progress": progress,
        "task": None,
        "project": scope,
        "label_url": _label_url(scope),
    }
    if assignment is None:
        context["to_go"] = progress.left_in_project
        return context
    view = service.task_view(session, assignment)
    project = session.get(Project, assignment.project_id)
    context.update(
        project=project,
        to_go=progress.left_in_project + 1,  # the prompts still available, and this one
        task=view,
        messages=[
            {"role": str(m.get("role", "user")), "segments": text_segments(str(m.get("content", "")))}
            for m in view["prompt"]["messages"]
        ],
        cards=_cards(view["completions"], project=project, form=form),
        flags=project.flags,
        none_acceptable=bool(form and form.get("none_acceptable") in ("1", "on", "true")),
    )
    return context


def _cards(completions: list[dict], *, project: Project, form: FormData | None) -> list[dict[str, Any]]:
    """The completion cards in the order shown: a letter each (their names in announcements), the rank
    each select starts at, and the flags ticked. After a refused post, as the labeler left them."""
    k = len(completions)
    cards = []
    for position, completion in enumerate(completions):
        cid = completion["id"]
        tier = position + 1
        ticked: list[str] = []
        if form is not None:
            sent = _integer(str(form.get(f"tier_{cid}") or ""))
            tier = sent if sent is not None and 1 <= sent <= k else tier
            ticked = [flag for flag in form.getlist(f"flag_{cid}") if flag in project.flags]
        cards.append(
            {
                "id": cid,
                "letter": _letter(position),
                "tier": tier,
                "position": position,
                "flags": ticked,
                "segments": text_segments(completion["text"]),
            }
        )
    cards.sort(key=lambda card: (card["tier"], card["position"]))
    return cards


def _letter(position: int) -> str:
    letters = string.ascii_uppercase
    return letters[position] if position < len(letters) else str(position + 1)


def text_segments(text: str) -> list[tuple[str, str]]:
    """Split untrusted text at Markdown code fences: ("text", ...) and ("code", "```lang\\n...```") parts.

    Only the styling differs (code in a monospace block that scrolls sideways); every character but the
    line breaks around a block is shown, fences included, and the template escapes all of it: nothing
    here is ever HTML.
    """
    parts = text.split(FENCE)
    segments: list[tuple[str, str]] = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            # A code block is a block of its own: the line breaks around it are its margins.
            if index > 0:
                part = part.lstrip("\n")
            if index < len(parts) - 1:
                part = part.rstrip("\n")
            if part:
                segments.append(("text", part))
        else:
            closed = index < len(parts) - 1
            segments.append(("code", FENCE + part + (FENCE if closed else "")))
    return segments
