"""Browser pages for labelers: the home page (projects and the tasks left), the ranking screen and the
written answer of a `demonstrate` task; and the admin's review of those answers.

The task is one fragment (`label/_task_fragment.html`) inside the page. With htmx a ranking or a skip
posts and the next task is swapped in its place; without JavaScript the same form posts and redirects
(303) back to the page. The form has one encoding only: a `<select name="tier_{completion id}">` per
completion (equal numbers tie, smaller is better), which label.js keeps in step with the drag and
keyboard order. This module turns that form into the API's `RankingIn`, so the service's checks are the
API's checks, and turns refusals back into the task with the error shown.
"""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.auth.models import Role, User
from app.db import utcnow
from app.dependencies import AdminUser, Caller, CallerDep, LabelerUser, SessionDep, SettingsDep
from app.errors import InvalidInput, PrefLabError
from app.forms import FormRefused, as_domain_error
from app.ids import Id, parse_id
from app.labeling import answers, demonstrations, service
from app.labeling.dependencies import OwnAssignment
from app.labeling.models import Assignment
from app.labeling.schemas import DemonstrationIn, RankingIn, RewriteIn
from app.labeling.task_page import label_url, task_context
from app.projects import members
from app.projects import service as project_service
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.settings import Settings
from app.web import is_htmx, redirect, render

router = APIRouter(include_in_schema=False)

MAX_SECONDS = 86_400  # RankingIn's limit on seconds_spent
NOTICES = {"ranked": "Ranking saved.", "written": "Answer saved.", "skipped": "Task skipped."}
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
        if not members.is_open_to(session, project=project, labeler=labeler):
            continue  # another team's project
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
    scope = service.scope_for(session, labeler=labeler, project_id=project_id)
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
        _, comparisons, rewrite = answers.submit_ranking(session, assignment=assignment, body=body)
    except (ValidationError, PrefLabError) as error:
        raise _refused(
            request, error, labeler=labeler, assignment=assignment, scope=scope, form=form
        ) from None
    if not is_htmx(request):
        return redirect(label_url(scope, notice="ranked"))
    saved = f"Saved: {comparisons} comparison{'' if comparisons == 1 else 's'}" + (
        " and your rewrite." if rewrite else "."
    )
    return _next_task(request, caller, session, settings, labeler=labeler, scope=scope, saved=saved)


@router.post("/label/{assignment_id}/demonstration")
def submit_demonstration_form(
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
        body = DemonstrationIn(
            text=str(form.get("text") or ""),
            edited_from=_integer(str(form.get("edited_from") or "")),
            seconds_spent=_seconds_spent(form.get("seconds_spent"), assignment),
        )
        answers.submit_demonstration(session, assignment=assignment, body=body)
    except (ValidationError, PrefLabError) as error:
        raise _refused(
            request, error, labeler=labeler, assignment=assignment, scope=scope, form=form
        ) from None
    if not is_htmx(request):
        return redirect(label_url(scope, notice="written"))
    return _next_task(request, caller, session, settings, labeler=labeler, scope=scope, saved="Answer saved.")


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
        answers.skip(session, assignment=assignment)
    except PrefLabError as error:
        raise _refused(
            request, error, labeler=labeler, assignment=assignment, scope=scope, form=None
        ) from None
    if not is_htmx(request):
        return redirect(label_url(scope, notice="skipped"))
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
    ranking = [by_tier[tier] for tier in sorted(by_tier)]
    return RankingIn(
        ranking=ranking,
        flags=flags,
        none_acceptable=form.get("none_acceptable") in ("1", "on", "true"),
        seconds_spent=_seconds_spent(form.get("seconds_spent"), assignment),
        rewrite=_rewrite_from_form(form, ranking),
    )


def _rewrite_from_form(form: FormData, ranking: list[list[int]]) -> RewriteIn | None:
    """The optional rewrite: `rewrite_text`, improving `rewrite_from` (label.js sets it to the card it
    started from; without JS, the best-ranked completion)."""
    text = str(form.get("rewrite_text") or "")
    if not text.strip():
        return None
    start = _integer(str(form.get("rewrite_from") or ""))
    if start is None and ranking:
        start = ranking[0][0]
    return RewriteIn(text=text, edited_from=start if start is not None else 0)


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


# --- the admin's review of the answers written ------------------------------------------------------


@router.get("/projects/{project_id}/demonstrations")
def demonstrations_page(
    request: Request,
    caller: CallerDep,
    _admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    before: Id | None = None,
):
    """A project's demonstrations, newest first, each improved one as a word diff of its original."""
    rows, older = demonstrations.review_page(session, project=project, before=before)
    total = demonstrations.count_demonstrations(session, project.id)
    return render(
        request, "projects/demonstrations.html", caller, project=project, rows=rows, older=older, total=total
    )
