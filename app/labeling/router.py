"""JSON API: the labeler's next task, rankings, skips."""

from datetime import timedelta

from fastapi import APIRouter, Response, status

from app.dependencies import LabelerUser, SessionDep, SettingsDep
from app.ids import Id
from app.labeling import answers, service
from app.labeling.dependencies import OwnAssignment
from app.labeling.schemas import (
    DemonstrationCreated,
    DemonstrationIn,
    LabelerProgress,
    RankingCreated,
    RankingIn,
    Task,
)

router = APIRouter(tags=["labeling"])


@router.get("/tasks/next", response_model=Task, responses={204: {"description": "Nothing left for you"}})
def next_task(labeler: LabelerUser, session: SessionDep, settings: SettingsDep, project_id: Id | None = None):
    project = service.scope_for(session, labeler=labeler, project_id=project_id)
    assignment = service.next_task(
        session, labeler=labeler, project=project, ttl=timedelta(minutes=settings.assignment_minutes)
    )
    if assignment is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return service.task_view(session, assignment)


@router.get("/tasks/progress", response_model=LabelerProgress)
def my_progress(labeler: LabelerUser, session: SessionDep, project_id: Id | None = None):
    project = service.scope_for(session, labeler=labeler, project_id=project_id)
    return service.labeler_progress(session, labeler=labeler, project=project)


@router.post(
    "/assignments/{assignment_id}/ranking", status_code=status.HTTP_201_CREATED, response_model=RankingCreated
)
def submit_ranking(assignment: OwnAssignment, body: RankingIn, session: SessionDep):
    ranking, comparisons, rewrite = answers.submit_ranking(session, assignment=assignment, body=body)
    return RankingCreated(
        ranking_id=ranking.id, comparisons=comparisons, demonstration_id=rewrite.id if rewrite else None
    )


@router.post(
    "/assignments/{assignment_id}/demonstration",
    status_code=status.HTTP_201_CREATED,
    response_model=DemonstrationCreated,
)
def submit_demonstration(assignment: OwnAssignment, body: DemonstrationIn, session: SessionDep):
    """The answer to a `demonstrate` task: written, or edited from one of the task's completions."""
    demonstration = answers.submit_demonstration(session, assignment=assignment, body=body)
    return DemonstrationCreated(demonstration_id=demonstration.id)


@router.post("/assignments/{assignment_id}/skip", status_code=status.HTTP_204_NO_CONTENT)
def skip(assignment: OwnAssignment, session: SessionDep):
    answers.skip(session, assignment=assignment)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
