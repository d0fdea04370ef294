"""JSON API: projects and their instruction versions."""

from fastapi import APIRouter, status
from sqlalchemy.orm import Session

from app.dependencies import AdminUser, ProjectReader, SessionDep, SettingsDep
from app.pagination import Page
from app.projects import service
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.projects.schemas import (
    QUALITY_FIELDS,
    InstructionVersionOut,
    ProjectCounts,
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
)

router = APIRouter(tags=["projects"])


def project_out(session: Session, project: Project) -> ProjectOut:
    counts = service.project_counts(session, [project.id])[project.id]
    return _to_out(project, counts)


def _to_out(project: Project, counts: ProjectCounts) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        name=project.name,
        instructions_md=service.current_instructions(project).body_md,
        instructions_version=service.current_instructions(project).version,
        task=project.task,
        completions_per_prompt=project.completions_per_prompt,
        rankings_per_prompt=project.rankings_per_prompt,
        flags=project.flags,
        generation=project.generation,
        **{key: getattr(project, key) for key in QUALITY_FIELDS},
        counts=counts,
        progress=service.ready_share(counts),
        created_at=project.created_at,
    )


@router.post("/projects", status_code=status.HTTP_201_CREATED, response_model=ProjectOut)
def create_project(admin: AdminUser, body: ProjectCreate, session: SessionDep, settings: SettingsDep):
    project = service.create_project(session, data=body, author=admin, model_dirs=settings.allowed_model_dirs)
    return project_out(session, project)


@router.get("/projects", response_model=Page[ProjectOut])
def list_projects(_reader: ProjectReader, session: SessionDep):
    projects = service.list_projects(session)
    counts = service.project_counts(session, [p.id for p in projects])
    return Page(items=[_to_out(p, counts[p.id]) for p in projects], next_cursor=None)


@router.get("/projects/{project_id}", response_model=ProjectOut)
def get_project(_reader: ProjectReader, project: ProjectDep, session: SessionDep):
    return project_out(session, project)


@router.patch("/projects/{project_id}", response_model=ProjectOut)
def update_project(
    admin: AdminUser, project: ProjectDep, body: ProjectUpdate, session: SessionDep, settings: SettingsDep
):
    project = service.update_project(
        session, project=project, changes=body, author=admin, model_dirs=settings.allowed_model_dirs
    )
    return project_out(session, project)


@router.get("/projects/{project_id}/instructions", response_model=Page[InstructionVersionOut])
def list_instruction_versions(_reader: ProjectReader, project: ProjectDep):
    versions = [InstructionVersionOut.model_validate(v) for v in reversed(project.instruction_versions)]
    return Page(items=versions, next_cursor=None)
