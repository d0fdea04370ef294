"""Browser pages for projects: home, the project list, the project form, the project page, instruction
versions and prompt uploads.

As thin as the JSON router: the same service functions do the work. This module turns form fields into
the API's schemas (`ProjectCreate`, `ProjectUpdate`) and errors back into the form, with the field named.
Forms post and redirect (303); the upload and the instructions preview also answer htmx with fragments.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.models import Role, User
from app.dependencies import AdminUser, Caller, CallerDep, ProjectReader, SessionDep, SettingsDep
from app.errors import InvalidInput, NotFound, PrefLabError
from app.ids import Id, parse_id
from app.jobs import service as job_service
from app.jobs.models import Job, JobKind, JobStatus
from app.labeling import service as labeling_service
from app.labeling.models import Assignment, AssignmentStatus
from app.models_registry import service as registry
from app.models_registry.models import ModelKind
from app.projects import service
from app.projects.dependencies import ProjectDep
from app.projects.models import InstructionVersion, Project
from app.projects.schemas import DEFAULT_FLAGS, ProjectCounts, ProjectCreate, ProjectUpdate
from app.prompts import importer
from app.prompts import service as prompt_service
from app.prompts.models import Prompt
from app.uploads import multipart_file
from app.web import is_htmx, redirect, render

router = APIRouter(include_in_schema=False)

PROMPTS_SHOWN = 20  # the project page lists this many prompts
MAX_PREVIEW_CHARS = 100_000  # the schema's limit on instructions_md
NOTICES = {
    "created": "Project created.",
    "saved": "Changes saved.",
    "generation_queued": "Generation queued: a worker will fill every prompt that lacks completions.",
    "generation_active": "A generation job is already queued or running; no second one was queued.",
    "job_retried": "The job is queued again.",
    "job_cancelled": "The job was cancelled.",
}
JOBS_SHOWN = 10  # the generation card lists this many recent jobs
ACTIVE_JOBS = (JobStatus.queued.value, JobStatus.running.value)
# The metrics a job row shows first (when the worker reported them), with their labels.
JOB_METRICS = {
    "generate/completions": "completions",
    "generate/prompts": "prompts",
    "generate/tokens_per_second": "tokens/s",
    "generate/prompts_short": "prompts short of K",
}
MAX_JOB_METRICS = 6

# Form field -> the label the form shows, so an error names the field the way the admin sees it.
FIELD_LABELS = {
    "name": "Name",
    "instructions_md": "Instructions",
    "completions_per_prompt": "Completions per prompt (K)",
    "rankings_per_prompt": "Rankings per prompt",
    "flags": "Flags",
    "model": "Generating model",
    "temperature": "Temperature",
    "retry_temperature": "Retry temperature",
    "top_p": "Top-p",
    "max_new_tokens": "Max new tokens",
}


# --- home ----------------------------------------------------------------------------------------


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
    labeling_service.expire_stale(session)
    live = dict(
        session.execute(
            select(Assignment.project_id, func.count(Assignment.id))
            .where(Assignment.labeler_id == labeler.id, Assignment.status == AssignmentStatus.live.value)
            .group_by(Assignment.project_id)
        ).all()
    )
    rows = []
    for project in service.list_projects(session):
        progress = labeling_service.labeler_progress(session, labeler=labeler, project=project)
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


# --- the project list ----------------------------------------------------------------------------


@router.get("/projects")
def projects_page(request: Request, caller: CallerDep, _reader: ProjectReader, session: SessionDep):
    projects = service.list_projects(session)
    counts = service.project_counts(session, [project.id for project in projects])
    rows = [
        {"project": project, "counts": counts[project.id], "progress": _progress(counts[project.id])}
        for project in projects
    ]
    return render(request, "projects/list.html", caller, rows=rows)


# --- the project form ----------------------------------------------------------------------------


class ProjectForm(BaseModel):
    """The project form as typed: every field a string, so a rejected form comes back as the admin left it."""

    name: str = ""
    instructions_md: str = ""
    completions_per_prompt: str = ""
    rankings_per_prompt: str = ""
    flags: str = ""
    model: str = ""
    temperature: str = ""
    retry_temperature: str = ""
    top_p: str = ""
    max_new_tokens: str = ""

    @classmethod
    def defaults(cls) -> "ProjectForm":
        return cls(
            completions_per_prompt="4",
            rankings_per_prompt="1",
            flags=", ".join(DEFAULT_FLAGS),
            model="default",
            temperature="0.8",
            top_p="0.95",
            max_new_tokens="128",
        )

    @classmethod
    def from_project(cls, project: Project) -> "ProjectForm":
        generation = project.generation
        return cls(
            name=project.name,
            instructions_md=service.current_instructions(project).body_md,
            completions_per_prompt=str(project.completions_per_prompt),
            rankings_per_prompt=str(project.rankings_per_prompt),
            flags=", ".join(project.flags),
            model=str(generation.get("model", "default")),
            temperature=str(generation.get("temperature", "")),
            retry_temperature=str(generation.get("retry_temperature") or ""),
            top_p=str(generation.get("top_p", "")),
            max_new_tokens=str(generation.get("max_new_tokens", "")),
        )

    def payload(self) -> dict[str, Any]:
        """The API's JSON body for these fields; pydantic does the type conversion and the checks."""
        model = self.model.strip()
        return {
            "name": self.name.strip(),
            # Browsers send textarea lines with CRLF; unchanged instructions must compare equal.
            "instructions_md": self.instructions_md.replace("\r\n", "\n"),
            "completions_per_prompt": self.completions_per_prompt.strip(),
            "rankings_per_prompt": self.rankings_per_prompt.strip(),
            "flags": split_flags(self.flags),
            "generation": {
                "model": parse_id(model) or model,  # a model version id
                "temperature": self.temperature.strip(),
                "retry_temperature": self.retry_temperature.strip() or None,
                "top_p": self.top_p.strip(),
                "max_new_tokens": self.max_new_tokens.strip(),
            },
        }


ProjectFormDep = Annotated[ProjectForm, Form()]


def split_flags(text: str) -> list[str]:
    """'unsafe, nonsense' or one flag a line -> ['unsafe', 'nonsense']."""
    return [flag.strip() for flag in text.replace("\n", ",").split(",") if flag.strip()]


@dataclass
class FormErrors:
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    status_code: int = 422


def form_errors(error: ValidationError | PrefLabError) -> FormErrors:
    """Name the offending fields of a rejected form, by the labels the form shows."""
    if isinstance(error, ValidationError):
        items = [(_form_field(err["loc"]), _message(err)) for err in error.errors()]
        status_code = 422
    elif listed := error.details.get("errors"):  # a schema check in the service (from_pydantic)
        items = [(_form_field(str(e.get("field", "")).split(".")), str(e["message"])) for e in listed]
        status_code = error.status_code
    else:  # a sentence already (a taken name, an unknown model), perhaps naming one field
        named = error.details.get("field")
        one = {_form_field(str(named).split(".")): error.message} if named else {}
        return FormErrors(message=error.message, fields=one, status_code=error.status_code)
    fields: dict[str, str] = {}
    for name, message in items:
        fields.setdefault(name, message)
    name, message = items[0]
    return FormErrors(
        message=f"{FIELD_LABELS.get(name, name)} ({name}): {message}", fields=fields, status_code=status_code
    )


def _form_field(loc: Any) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] == "generation" and len(parts) > 1:
        return parts[1]
    return parts[0] if parts else ""


def _message(err: Any) -> str:
    if err["type"] == "string_pattern_mismatch" and err["loc"] and err["loc"][0] == "flags":
        return (
            f"'{err['input']}' is not a valid flag: use lowercase letters, digits and underscores, "
            "starting with a letter or digit (for example factually_wrong)"
        )
    return str(err["msg"]).removeprefix("Value error, ")


def _form_page(
    request: Request,
    caller: Caller,
    *,
    form: ProjectForm,
    project: Project | None = None,
    errors: FormErrors | None = None,
) -> Response:
    return render(
        request,
        "projects/form.html",
        caller,
        form=form,
        project=project,
        errors=errors,
        labels=FIELD_LABELS,
        status_code=errors.status_code if errors else 200,
    )


@router.get("/projects/new")
def new_project_page(request: Request, caller: CallerDep, _admin: AdminUser):
    return _form_page(request, caller, form=ProjectForm.defaults())


@router.post("/projects/new")
def create_project_form(
    request: Request, caller: CallerDep, admin: AdminUser, session: SessionDep, form: ProjectFormDep
):
    try:
        data = ProjectCreate.model_validate(form.payload())
        project = service.create_project(session, data=data, author=admin)
    except (ValidationError, PrefLabError) as error:
        session.rollback()  # a rejected form changes nothing
        return _form_page(request, caller, form=form, errors=form_errors(error))
    return redirect(f"/projects/{project.id}?notice=created")


@router.post("/projects/preview-instructions")
def preview_instructions(
    request: Request, caller: CallerDep, _admin: AdminUser, instructions_md: Annotated[str, Form()] = ""
):
    """The live preview beside the instructions textarea: the same sanitised Markdown as the project page."""
    return render(
        request,
        "projects/_instructions_preview_fragment.html",
        caller,
        instructions_md=instructions_md[:MAX_PREVIEW_CHARS],
    )


@router.get("/projects/{project_id}/edit")
def edit_project_page(request: Request, caller: CallerDep, _admin: AdminUser, project: ProjectDep):
    return _form_page(request, caller, form=ProjectForm.from_project(project), project=project)


@router.post("/projects/{project_id}/edit")
def update_project_form(
    request: Request,
    caller: CallerDep,
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    form: ProjectFormDep,
):
    try:
        changes = ProjectUpdate.model_validate(form.payload())
        service.update_project(session, project=project, changes=changes, author=admin)
    except (ValidationError, PrefLabError) as error:
        session.rollback()  # update_project may have changed some fields before it refused another
        return _form_page(request, caller, form=form, project=project, errors=form_errors(error))
    return redirect(f"/projects/{project.id}?notice=saved")


# --- the project page ----------------------------------------------------------------------------


@router.get("/projects/{project_id}")
def project_page(
    request: Request,
    caller: CallerDep,
    _reader: ProjectReader,
    project: ProjectDep,
    session: SessionDep,
    notice: str | None = None,
):
    return render(
        request,
        "projects/detail.html",
        caller,
        notice=NOTICES.get(notice or ""),
        **project_page_context(session, project),
    )


def project_page_context(session: Session, project: Project) -> dict[str, Any]:
    counts = service.project_counts(session, [project.id])[project.id]
    prompts, more = prompt_service.list_prompts(
        session, project=project, status=None, limit=PROMPTS_SHOWN, cursor=None
    )
    return {
        "project": project,
        "counts": counts,
        "progress": _progress(counts),
        "current": service.current_instructions(project),
        "versions": list(reversed(project.instruction_versions)),
        "authors": _author_names(session, project.instruction_versions),
        "prompts": _prompt_rows(session, prompts, project),
        "more_prompts": more is not None,
        "upload_result": None,
        # The PPO form offers the registered reward models and policy versions.
        "reward_models": registry.list_models(session, kind=ModelKind.reward),
        "policy_models": registry.list_models(session, kind=ModelKind.policy),
        **jobs_context(session, project, counts=counts),
    }


def _prompt_rows(session: Session, prompts: list[Prompt], project: Project) -> list[dict[str, Any]]:
    rankings = prompt_service.ranking_counts(session, [prompt.id for prompt in prompts]) if prompts else {}
    rows = []
    for prompt in prompts:
        users = [m["content"] for m in prompt.messages if m.get("role") == "user"]
        ranked = rankings.get(prompt.id, 0)
        rows.append(
            {
                "id": prompt.id,
                "text": users[0] if users else "",
                "turns": len(prompt.messages),
                "status": prompt_service.prompt_status(prompt, project, ranked),
                "completions": len(prompt.completions),
                "rankings": ranked,
            }
        )
    return rows


def _author_names(session: Session, versions: list[InstructionVersion]) -> dict[int, str]:
    ids = {v.author_id for v in versions if v.author_id is not None}
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {user_id: username for user_id, username in rows}


def _progress(counts: ProjectCounts) -> float:
    return counts.prompts_ready / counts.prompts if counts.prompts else 0.0


@router.get("/projects/{project_id}/instructions/{version}")
def instructions_version_page(
    request: Request,
    caller: CallerDep,
    _reader: ProjectReader,
    project: ProjectDep,
    version: int,
    session: SessionDep,
):
    shown = service.instruction_version(session, project=project, version=version)
    return render(
        request,
        "projects/instructions.html",
        caller,
        project=project,
        shown=shown,
        current=service.current_instructions(project),
        versions=list(reversed(project.instruction_versions)),
        authors=_author_names(session, project.instruction_versions),
    )


# --- prompt upload -------------------------------------------------------------------------------


@router.post("/projects/{project_id}/upload")
async def upload_prompts_form(
    request: Request,
    caller: CallerDep,
    _admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
):
    """The upload form: streamed and size-checked like the API's upload, all or nothing like it too."""
    filename = ""
    try:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise _no_file()
        try:
            upload = await multipart_file(request, settings.max_upload_bytes)
        except InvalidInput as error:  # a browser sends an empty string when no file was chosen
            raise _no_file() if error.code == "missing_file" else error from None
        filename = upload.filename or ""
        if not filename and not upload.size:
            raise _no_file()
        chosen = (await request.form()).get("format")  # parsed once above; Starlette caches it
        explicit = chosen if isinstance(chosen, str) and chosen not in ("", "auto") else None
        fmt = importer.detect_format(filename=filename, content_type=upload.content_type, explicit=explicit)
        report = await run_in_threadpool(
            importer.import_prompts,
            session,
            project=project,
            upload=upload.file,
            fmt=fmt,
            source=importer.upload_source(filename, without_file="upload"),
        )
    except PrefLabError as error:
        session.rollback()  # the importer validates before it inserts; this makes "nothing kept" explicit
        result: dict[str, Any] = {
            "ok": False,
            "filename": filename,
            "message": error.message,
            "errors": error.details.get("errors") or [],
            "problems": error.details.get("problems", 0),
        }
        status_code = error.status_code
    else:
        result = {
            "ok": True,
            "filename": filename,
            "imported": report.imported,
            "completions": report.completions,
            "format": report.format,
        }
        status_code = 201
    context = project_page_context(session, project)
    context["upload_result"] = result
    if is_htmx(request):
        return render(
            request,
            "projects/_upload_result_fragment.html",
            caller,
            status_code=status_code,
            refresh=result["ok"],
            **context,
        )
    return render(request, "projects/detail.html", caller, status_code=status_code, notice=None, **context)


def _no_file() -> InvalidInput:
    return InvalidInput(
        "Choose a file to upload first (.jsonl, .ndjson or .csv, optionally gzipped).",
        code="missing_file",
        details={"field": "file"},
    )


# --- generation jobs -----------------------------------------------------------------------------


def valid_project_job(project: ProjectDep, job_id: Id, session: SessionDep) -> Job:
    """The job in the path, which must be one of the project's in the path (404 otherwise)."""
    job = session.get(Job, job_id)
    if job is None or job.project_id != project.id:
        raise NotFound(f"Project {project.id} has no job with id {job_id}.", code="job_not_found")
    return job


ProjectJob = Annotated[Job, Depends(valid_project_job)]


def jobs_context(
    session: Session, project: Project, *, counts: ProjectCounts | None = None
) -> dict[str, Any]:
    """The generation card: recent jobs, whether one is active (then the card polls), what is missing."""
    counts = counts or service.project_counts(session, [project.id])[project.id]
    jobs = job_service.list_jobs(session, project_id=project.id, limit=JOBS_SHOWN)
    return {
        "jobs": [_job_row(job) for job in jobs],
        "jobs_active": any(job.status in ACTIVE_JOBS for job in jobs),
        "generating": any(job.status in ACTIVE_JOBS and job.kind == JobKind.generate.value for job in jobs),
        "prompts_missing": counts.prompts - counts.prompts_ready,
        "jobs_notice": None,
        "jobs_error": None,
    }


def _job_row(job: Job) -> dict[str, Any]:
    metrics = job.metrics or {}
    keys = [key for key in JOB_METRICS if key in metrics]
    keys += [key for key in sorted(metrics) if key not in JOB_METRICS and _shown_metric(metrics[key])]
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "active": job.status in ACTIVE_JOBS,
        "progress": min(max(job.progress or 0.0, 0.0), 1.0),
        "metrics": [
            (JOB_METRICS.get(key, key), _metric_value(metrics[key])) for key in keys[:MAX_JOB_METRICS]
        ],
        "error": job.error,
        "attempts": job.attempts,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "can_retry": job.status in (JobStatus.failed.value, JobStatus.cancelled.value),
        "can_cancel": job.status in ACTIVE_JOBS,
    }


def _shown_metric(value: Any) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool) and len(str(value)) <= 40


def _metric_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


@router.get("/projects/{project_id}/jobs")
def jobs_fragment(
    request: Request, caller: CallerDep, _admin: AdminUser, project: ProjectDep, session: SessionDep
):
    """The generation card; while a job is queued or running it polls this route every two seconds."""
    job_service.requeue_expired(session)  # a job whose worker went silent shows as queued again
    return _jobs_response(request, caller, session, project)


@router.post("/projects/{project_id}/generate")
def generate_form(
    request: Request, caller: CallerDep, admin: AdminUser, project: ProjectDep, session: SessionDep
):
    _, queued = job_service.queue_generation(session, project=project, created_by_id=admin.id)
    return _after_job_action(
        request, caller, session, project, notice="generation_queued" if queued else "generation_active"
    )


@router.post("/projects/{project_id}/jobs/{job_id}/retry")
def retry_job_form(
    request: Request,
    caller: CallerDep,
    _admin: AdminUser,
    project: ProjectDep,
    job: ProjectJob,
    session: SessionDep,
):
    return _job_action(request, caller, session, project, job_service.retry, job, notice="job_retried")


@router.post("/projects/{project_id}/jobs/{job_id}/cancel")
def cancel_job_form(
    request: Request,
    caller: CallerDep,
    _admin: AdminUser,
    project: ProjectDep,
    job: ProjectJob,
    session: SessionDep,
):
    return _job_action(request, caller, session, project, job_service.cancel, job, notice="job_cancelled")


def _job_action(
    request: Request,
    caller: Caller,
    session: Session,
    project: Project,
    action: Callable[..., Job],
    job: Job,
    *,
    notice: str,
):
    """Retry or cancel: the service call, then the jobs card (or the refusal, with nothing changed)."""
    try:
        action(session, job=job)
    except PrefLabError as error:
        session.rollback()
        return _jobs_response(request, caller, session, project, error=error)
    return _after_job_action(request, caller, session, project, notice=notice)


def _after_job_action(request: Request, caller: Caller, session: Session, project: Project, *, notice: str):
    if is_htmx(request):
        return _jobs_response(request, caller, session, project, notice=NOTICES[notice])
    return redirect(f"/projects/{project.id}?notice={notice}#project-jobs")


def _jobs_response(
    request: Request,
    caller: Caller,
    session: Session,
    project: Project,
    *,
    notice: str | None = None,
    error: PrefLabError | None = None,
) -> Response:
    """The card alone for htmx and for GET (with the counts, and once no job is active the prompt table,
    swapped in out of band); after a refused form without htmx, the whole project page."""
    status_code = error.status_code if error else 200
    if error is not None and not is_htmx(request) and request.method == "POST":
        context = project_page_context(session, project)
        context["jobs_error"] = error.message
        return render(
            request, "projects/detail.html", caller, status_code=status_code, notice=None, **context
        )
    context = jobs_context(session, project)
    context.update(jobs_notice=notice, jobs_error=error.message if error else None)
    refresh_prompts = not context["jobs_active"]
    if is_htmx(request):
        counts = service.project_counts(session, [project.id])[project.id]
        context.update(project=project, counts=counts, progress=_progress(counts), oob_counts=True)
        if refresh_prompts:
            prompts, more = prompt_service.list_prompts(
                session, project=project, status=None, limit=PROMPTS_SHOWN, cursor=None
            )
            context.update(
                prompts=_prompt_rows(session, prompts, project),
                more_prompts=more is not None,
                oob_prompts=True,
            )
    context["project"] = project
    return render(request, "projects/_jobs_fragment.html", caller, status_code=status_code, **context)
