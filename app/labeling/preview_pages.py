"""An admin's preview of a project's labeling screen: the real screen with the project's real prompts,
completions and current instructions, read-only, creating no assignment (nothing is handed out, no slot
is taken, nothing can be submitted).

The prompts shown are the ones labelers can be handed (all K completions in for a ranking project; any
prompt for a written-answer project), one at a time with a link to the next; the completions appear in a
shuffled order seeded by the prompt, as a labeler would see them in some order of their own.
"""

import random
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.dependencies import AdminUser, CallerDep, SessionDep
from app.labeling.task_page import task_parts
from app.projects import service as project_service
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.prompts.models import Completion, Prompt
from app.web import render

router = APIRouter(include_in_schema=False)


@router.get("/projects/{project_id}/preview")
def preview_page(
    request: Request,
    caller: CallerDep,
    _admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    prompt_id: int | None = None,
):
    context: dict[str, Any] = {"scope": project, "project": project, "task": None, "preview": True}
    ids = previewable_prompt_ids(session, project)
    if ids:
        chosen = prompt_id if prompt_id in ids else ids[0]
        position = ids.index(chosen)
        context |= task_parts(preview_view(session, project, chosen), project=project)
        context["preview"] = {
            "position": position + 1,
            "count": len(ids),
            "next_url": f"/projects/{project.id}/preview?prompt_id={ids[(position + 1) % len(ids)]}",
        }
    context |= {"progress": None, "to_go": len(ids), "label_url": f"/projects/{project.id}/preview"}
    return render(request, "label/page.html", caller, **context)


def previewable_prompt_ids(session: Session, project: Project) -> list[int]:
    completions = select(func.count(Completion.id)).where(Completion.prompt_id == Prompt.id).scalar_subquery()
    query = select(Prompt.id).where(Prompt.project_id == project.id, Prompt.for_labeling())
    if project.task != "demonstrate":  # a ranking needs all K completions
        query = query.where(completions >= project.completions_per_prompt)
    return list(session.scalars(query.order_by(Prompt.id)))


def preview_view(session: Session, project: Project, prompt_id: int) -> dict[str, Any]:
    """What `service.task_view` gives a labeler, for a prompt nobody was handed."""
    prompt = session.get(Prompt, prompt_id)
    completions = list(
        session.execute(select(Completion.id, Completion.text).where(Completion.prompt_id == prompt_id)).all()
    )
    random.Random(prompt_id).shuffle(completions)
    instructions = project_service.current_instructions(project)
    return {
        "assignment_id": 0,  # no assignment: the forms are inert and the routes refuse an admin anyway
        "project_id": project.id,
        "task": project.task,
        "instructions_md": instructions.body_md,
        "instructions_version": instructions.version,
        "prompt": {"id": prompt.id, "messages": prompt.messages},
        "completions": [{"id": cid, "text": text} for cid, text in completions],
        "expires_at": None,
    }
