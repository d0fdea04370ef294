"""Browser pages for projects: the project list, the project form, instruction versions, and choosing
the model a project generates with.

As thin as the JSON router: the same service functions do the work. This module turns form fields into
the API's schemas (`ProjectCreate`, `ProjectUpdate`) and errors back into the form, with the field named.
Forms post and redirect (303); the instructions preview also answers htmx with a fragment. The project
page itself, with every kind's card, is app.dashboard's.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from app.dependencies import AdminUser, Caller, CallerDep, ProjectReader, SessionDep, SettingsDep
from app.errors import InvalidInput, PrefLabError
from app.forms import FormErrors, FormRefused, form_errors
from app.ids import parse_id
from app.projects import service
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.projects.schemas import DEFAULT_FLAGS, QUALITY_FIELDS, ProjectCreate, ProjectFields, ProjectUpdate
from app.web import redirect, render

router = APIRouter(include_in_schema=False)

MAX_PREVIEW_CHARS = 100_000  # the schema's limit on instructions_md

# Form field -> the label the form shows, so an error names the field the way the admin sees it.
FIELD_LABELS = {
    "name": "Name",
    "instructions_md": "Instructions",
    "task": "Task",
    "completions_per_prompt": "Completions per prompt (K)",
    "rankings_per_prompt": "Rankings per prompt",
    "flags": "Flags",
    "model": "Generating model",
    "temperature": "Temperature",
    "retry_temperature": "Retry temperature",
    "top_p": "Top-p",
    "max_new_tokens": "Max new tokens",
    "gold_rate": "Gold task rate",
    "min_seconds": "Too fast below (seconds)",
    "max_fast_share": "Flag above this share too fast",
    "gold_min_agreement": "Flag below this gold agreement",
    "gold_min_tasks": "Gold tasks before judging",
}
QUALITY_DEFAULTS = {name: str(ProjectFields.model_fields[name].default) for name in QUALITY_FIELDS}


# --- the project list ----------------------------------------------------------------------------


@router.get("/projects")
def projects_page(request: Request, caller: CallerDep, _reader: ProjectReader, session: SessionDep):
    projects = service.list_projects(session)
    counts = service.project_counts(session, [project.id for project in projects])
    rows = [
        {
            "project": project,
            "counts": counts[project.id],
            "progress": service.ready_share(counts[project.id]),
        }
        for project in projects
    ]
    return render(request, "projects/list.html", caller, rows=rows)


# --- the project form ----------------------------------------------------------------------------


class ProjectForm(BaseModel):
    """The project form as typed: every field a string, so a rejected form comes back as the admin left it."""

    name: str = ""
    instructions_md: str = ""
    task: str = ""
    completions_per_prompt: str = ""
    rankings_per_prompt: str = ""
    flags: str = ""
    model: str = ""
    temperature: str = ""
    retry_temperature: str = ""
    top_p: str = ""
    max_new_tokens: str = ""
    gold_rate: str = ""
    min_seconds: str = ""
    max_fast_share: str = ""
    gold_min_agreement: str = ""
    gold_min_tasks: str = ""

    @classmethod
    def defaults(cls) -> "ProjectForm":
        return cls(
            task="rank",
            completions_per_prompt="4",
            rankings_per_prompt="1",
            flags=", ".join(DEFAULT_FLAGS),
            model="default",
            temperature="0.8",
            top_p="0.95",
            max_new_tokens="128",
            **QUALITY_DEFAULTS,
        )

    @classmethod
    def from_project(cls, project: Project) -> "ProjectForm":
        generation = project.generation
        return cls(
            name=project.name,
            instructions_md=service.current_instructions(project).body_md,
            task=project.task,
            completions_per_prompt=str(project.completions_per_prompt),
            rankings_per_prompt=str(project.rankings_per_prompt),
            flags=", ".join(project.flags),
            model=str(generation.get("model", "default")),
            temperature=str(generation.get("temperature", "")),
            retry_temperature=str(generation.get("retry_temperature") or ""),
            top_p=str(generation.get("top_p", "")),
            max_new_tokens=str(generation.get("max_new_tokens", "")),
            **{name: str(getattr(project, name)) for name in QUALITY_FIELDS},
        )

    def payload(self) -> dict[str, Any]:
        """The API's JSON body for these fields; pydantic does the type conversion and the checks."""
        model = self.model.strip()
        return {
            "name": self.name.strip(),
            # Browsers send textarea lines with CRLF; unchanged instructions must compare equal.
            "instructions_md": self.instructions_md.replace("\r\n", "\n"),
            "task": self.task.strip() or "rank",
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
            **{name: getattr(self, name).strip() or QUALITY_DEFAULTS[name] for name in QUALITY_FIELDS},
        }


ProjectFormDep = Annotated[ProjectForm, Form()]


def split_flags(text: str) -> list[str]:
    """'unsafe, nonsense' or one flag a line -> ['unsafe', 'nonsense']."""
    return [flag.strip() for flag in text.replace("\n", ",").split(",") if flag.strip()]


def _form_page(
    request: Request,
    caller: Caller,
    *,
    form: ProjectForm,
    project: Project | None = None,
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "projects/form.html",
        caller,
        form=form,
        project=project,
        errors=errors,
        labels=FIELD_LABELS,
        status_code=status_code,
    )


def _refused(
    error: ValidationError | PrefLabError, *, form: ProjectForm, project_id: int | None
) -> FormRefused:
    """The form again, as the admin left it, with the fields named (update_project may have changed some
    fields before it refused another: the rollback undoes them, and the project is read afresh)."""
    errors = form_errors(error, FIELD_LABELS)

    def context(session: Session) -> dict[str, Any]:
        project = service.get_project(session, project_id) if project_id is not None else None
        return {"form": form, "project": project, "errors": errors, "labels": FIELD_LABELS}

    return FormRefused(error, template="projects/form.html", context=context)


@router.get("/projects/new")
def new_project_page(request: Request, caller: CallerDep, _admin: AdminUser):
    return _form_page(request, caller, form=ProjectForm.defaults())


@router.post("/projects/new")
def create_project_form(
    request: Request,
    caller: CallerDep,
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    form: ProjectFormDep,
):
    try:
        data = ProjectCreate.model_validate(form.payload())
        project = service.create_project(
            session, data=data, author=admin, model_dirs=settings.allowed_model_dirs
        )
    except (ValidationError, PrefLabError) as error:
        raise _refused(error, form=form, project_id=None) from None
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
    settings: SettingsDep,
    form: ProjectFormDep,
):
    try:
        changes = ProjectUpdate.model_validate(form.payload())
        service.update_project(
            session, project=project, changes=changes, author=admin, model_dirs=settings.allowed_model_dirs
        )
    except (ValidationError, PrefLabError) as error:
        raise _refused(error, form=form, project_id=project.id) from None
    return redirect(f"/projects/{project.id}?notice=saved")


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
        authors=service.author_names(session, project.instruction_versions),
    )


@router.post("/projects/{project_id}/generation-model")
def use_for_generation(
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    model_id: Annotated[int, Form()],
):
    """Close the loop: the project's next completions come from this policy version (a refusal, such as
    an id that is not a policy, is the error page with its status, and changes nothing)."""
    try:
        changes = ProjectUpdate(generation={"model": model_id})
    except ValidationError as error:
        raise InvalidInput.from_pydantic(error) from None
    service.update_project(session, project=project, changes=changes, author=admin)
    return redirect(f"/projects/{project.id}")
