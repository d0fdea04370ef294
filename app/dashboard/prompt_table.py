"""The prompt table of the project page: its first prompts, with their status and counts."""

from typing import Any

from sqlalchemy.orm import Session

from app.projects.models import Project
from app.prompts import service as prompt_service
from app.prompts.models import Prompt

PROMPTS_SHOWN = 20  # the project page lists this many prompts


def prompt_table(session: Session, project: Project) -> dict[str, Any]:
    """The first prompts of the project, with their status, and whether there are more."""
    prompts, more = prompt_service.list_prompts(
        session, project=project, status=None, limit=PROMPTS_SHOWN, cursor=None
    )
    return {"prompts": _prompt_rows(session, prompts, project), "more_prompts": more is not None}


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
