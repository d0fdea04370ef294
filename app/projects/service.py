"""Projects: create, read, update, and the counts their pages show. No HTTP types here."""

from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Subquery, case, func, select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.errors import Conflict, InvalidInput, NotFound
from app.labeling.models import Assignment
from app.models_registry.service import generation_model
from app.names import name_key
from app.projects.models import InstructionVersion, Project
from app.projects.schemas import (
    QUALITY_FIELDS,
    GenerationSettings,
    ProjectCounts,
    ProjectCreate,
    ProjectUpdate,
)
from app.prompts.models import Completion, Prompt


def create_project(
    session: Session, *, data: ProjectCreate, author: User | None, model_dirs: Sequence[Path] = ()
) -> Project:
    _require_free_name(session, data.name)
    _require_known_model(session, data.generation.model, model_dirs)
    project = Project(
        name=data.name,
        task=data.task,
        completions_per_prompt=data.completions_per_prompt,
        rankings_per_prompt=data.rankings_per_prompt,
        flags=list(data.flags),
        generation=data.generation.model_dump(),
        created_by_id=author.id if author else None,
        **{key: getattr(data, key) for key in QUALITY_FIELDS},
    )
    session.add(project)
    session.flush()
    _add_instruction_version(session, project=project, body_md=data.instructions_md, author=author)
    return project


def get_project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"No project with id {project_id}.", code="project_not_found")
    return project


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id.desc())))


def update_project(
    session: Session,
    *,
    project: Project,
    changes: ProjectUpdate,
    author: User | None,
    model_dirs: Sequence[Path] = (),
) -> Project:
    fields = changes.model_dump(exclude_unset=True)
    if fields.get("name") is not None and fields["name"].strip() != project.name:
        _require_free_name(session, fields["name"].strip(), other_than=project.id)
        project.name = fields["name"].strip()
    if fields.get("task") is not None and fields["task"] != project.task:
        _require_no_assignments(session, project)
        project.task = fields["task"]
    for key in ("completions_per_prompt", "rankings_per_prompt", *QUALITY_FIELDS):
        if fields.get(key) is not None:
            setattr(project, key, fields[key])
    if fields.get("flags") is not None:
        project.flags = list(fields["flags"])
    if fields.get("generation") is not None:
        project.generation = _merged_generation(session, project.generation, fields["generation"], model_dirs)
    new_body = fields.get("instructions_md")
    if new_body is not None and new_body != current_instructions(project).body_md:
        _add_instruction_version(session, project=project, body_md=new_body, author=author)
    session.flush()
    return project


def current_instructions(project: Project) -> InstructionVersion:
    return project.instruction_versions[-1]


def instruction_version(session: Session, *, project: Project, version: int) -> InstructionVersion:
    row = session.scalar(
        select(InstructionVersion).where(
            InstructionVersion.project_id == project.id, InstructionVersion.version == version
        )
    )
    if row is None:
        raise NotFound(
            f"Project {project.id} has no instructions version {version}.",
            code="instructions_version_not_found",
        )
    return row


def project_counts(session: Session, project_ids: list[int]) -> dict[int, ProjectCounts]:
    """Counts for several projects in three grouped queries (the project list shows them all)."""
    counts = {pid: {"prompts": 0, "completions": 0, "prompts_ready": 0} for pid in project_ids}
    if not project_ids:
        return {}
    per_prompt = (
        select(
            Prompt.id.label("prompt_id"),
            Prompt.project_id,
            Prompt.for_labeling().label("for_labeling"),
            func.count(Completion.id).label("n"),
        )
        .outerjoin(Completion, Completion.prompt_id == Prompt.id)
        .where(Prompt.project_id.in_(project_ids))
        .group_by(Prompt.id, Prompt.project_id, Prompt.source)
        .subquery()
    )
    rows = session.execute(
        select(
            per_prompt.c.project_id,
            func.count(),
            func.coalesce(func.sum(per_prompt.c.n), 0),
            func.sum(_ready_case(per_prompt)),
        )
        .join(Project, Project.id == per_prompt.c.project_id)
        .group_by(per_prompt.c.project_id)
    )
    for project_id, prompts, completions, ready in rows:
        counts[project_id] = {
            "prompts": prompts,
            "completions": int(completions),
            "prompts_ready": int(ready or 0),
        }
    return {pid: ProjectCounts(**c) for pid, c in counts.items()}


def _ready_case(per_prompt: Subquery) -> ColumnElement[int]:
    """Prompts ready for labelers: with all K completions to rank, or any prompt of a `demonstrate`
    project (its completions are only a start). Imported preference data is never labeled."""
    complete = (per_prompt.c.n >= Project.completions_per_prompt) | (Project.task == "demonstrate")
    return case((per_prompt.c.for_labeling & complete, 1), else_=0)


def _add_instruction_version(
    session: Session, *, project: Project, body_md: str, author: User | None
) -> InstructionVersion:
    number = (project.instruction_versions[-1].version + 1) if project.instruction_versions else 1
    version = InstructionVersion(
        project=project, version=number, body_md=body_md, author_id=author.id if author else None
    )
    session.add(version)
    session.flush()
    return version


def _require_free_name(session: Session, name: str, other_than: int | None = None) -> None:
    """Names are unique up to case and Unicode form (app.names); a race past this check is a 409 too."""
    if session.scalar(select(Project.id).where(Project.name_key == name_key(name), Project.id != other_than)):
        raise Conflict(
            f"A project named '{name}' already exists; choose another name.",
            code="project_name_taken",
            details={"field": "name"},
        )


def _require_no_assignments(session: Session, project: Project) -> None:
    """A project's task changes only before any labeler was handed one: a live task would otherwise be
    answered the wrong way, and its data would mix rankings with demonstrations."""
    if session.scalar(select(Assignment.id).where(Assignment.project_id == project.id).limit(1)):
        raise Conflict(
            f"Project '{project.name}' has already handed out {project.task} tasks, so its task cannot "
            "change; create a new project for the other task.",
            code="task_locked",
            details={"field": "task"},
        )


def _merged_generation(session: Session, current: dict, changes: dict, model_dirs: Sequence[Path]) -> dict:
    try:
        merged = GenerationSettings.model_validate({**current, **changes})
    except ValidationError as exc:
        raise InvalidInput.from_pydantic(exc, prefix="generation") from exc
    _require_known_model(session, merged.model, model_dirs)
    return merged.model_dump()


def _require_known_model(session: Session, model: str | int, model_dirs: Sequence[Path]) -> None:
    """`"default"`, a local Hugging Face model directory, or a registered policy version id."""
    generation_model(session, model, model_dirs=model_dirs)


def ready_share(counts: ProjectCounts) -> float:
    """The share of prompts that have all K completions (0..1)."""
    return counts.prompts_ready / counts.prompts if counts.prompts else 0.0


def author_names(session: Session, versions: list[InstructionVersion]) -> dict[int, str]:
    """Who wrote each instruction version, by user id."""
    ids = {v.author_id for v in versions if v.author_id is not None}
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {user_id: username for user_id, username in rows}
