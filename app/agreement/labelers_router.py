"""JSON API: a project's labelers with their quality figures and status; an admin's status; gold from a
ranking (app/agreement/labelers.py, app/agreement/gold.py)."""

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.agreement import gold, labelers
from app.agreement.models import LABELER_STATUSES
from app.dependencies import AdminUser, ProjectReader, SessionDep
from app.ids import Id
from app.pagination import Page
from app.projects.dependencies import ProjectDep

router = APIRouter(tags=["labelers"])


class LabelerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user_id: int
    username: str
    pseudonym: str = Field(description="The labeler's id in this project's exports (the `labelers` filter)")
    rankings: int = Field(description="Rankings of ordinary tasks (gold tasks not counted)")
    median_seconds: float | None
    fast_share: float | None = Field(description="Share of rankings faster than the project's min_seconds")
    gold_rankings: int
    gold_agreement: float | None = Field(description="Mean Kendall tau-b with the gold tiers")
    agreement: float | None = Field(description="Leave-one-out agreement with the other labelers")
    computed_status: str = Field(description="What the project's rules say")
    status: str = Field(description="The admin's status if set, else the computed one")
    status_set_by_admin: bool
    reasons: list[str] = Field(description="Why the rules flag this labeler")


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(description=f"One of {', '.join(LABELER_STATUSES)}; null: the rules decide")


class GoldOut(BaseModel):
    prompt_id: int
    gold_tiers: list[list[int]]
    rankings_now_gold: int = Field(description="The prompt's rankings, now scored and no longer data")


@router.get("/projects/{project_id}/labelers", response_model=Page[LabelerOut])
def list_labelers(_reader: ProjectReader, project: ProjectDep, session: SessionDep):
    return Page(items=labelers.project_labelers(session, project=project), next_cursor=None)


@router.patch("/projects/{project_id}/labelers/{user_id}", response_model=LabelerOut | None)
def set_status(_admin: AdminUser, project: ProjectDep, user_id: Id, body: StatusIn, session: SessionDep):
    """Override the computed status (null: back to the rules). Answers the labeler's row (null if they
    have not ranked in the project yet)."""
    labelers.set_status(session, project=project, user_id=user_id, status=body.status)
    rows = labelers.project_labelers(session, project=project)
    return next((row for row in rows if row.user_id == user_id), None)


@router.post("/rankings/{ranking_id}/gold", response_model=GoldOut)
def make_gold(_admin: AdminUser, ranking_id: Id, session: SessionDep):
    """Make this ranking's order the gold answer of its prompt (docs/quality.md)."""
    return gold.make_gold(session, ranking_id=ranking_id)
