"""Reading prompts and their completions. Uploads live in `importer.py`."""

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.errors import InvalidInput
from app.projects.models import Project
from app.prompts.models import Completion, Prompt
from app.prompts.schemas import CompletionOut, PromptOut, PromptStatus

MAX_PAGE = 500


def prompt_status(prompt: Prompt, project: Project) -> PromptStatus:
    """`pending`: fewer than K completions yet; `ready`: all K there, ready to rank."""
    return "ready" if len(prompt.completions) >= project.completions_per_prompt else "pending"


def list_prompts(
    session: Session, *, project: Project, status: PromptStatus | None, limit: int, cursor: str | None
) -> tuple[list[Prompt], str | None]:
    """A page of prompts in id order and the cursor of the next page (None at the end)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}.", details={"field": "limit"})
    after = _decode_cursor(cursor)
    query = (
        select(Prompt)
        .where(Prompt.project_id == project.id, Prompt.id > after)
        .options(selectinload(Prompt.completions))
        .order_by(Prompt.id)
        .limit(limit + 1)
    )
    if status is not None:
        counts = select(func.count(Completion.id)).where(Completion.prompt_id == Prompt.id).scalar_subquery()
        if status == "ready":
            query = query.where(counts >= project.completions_per_prompt)
        else:
            query = query.where(counts < project.completions_per_prompt)
    rows = list(session.scalars(query))
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _decode_cursor(cursor: str | None) -> int:
    if cursor in (None, ""):
        return 0
    if not cursor.isdigit():
        raise InvalidInput(
            "cursor must be the next_cursor value of a previous page.",
            code="bad_cursor",
            details={"field": "cursor"},
        )
    return int(cursor)


def prompt_out(prompt: Prompt, project: Project) -> PromptOut:
    return PromptOut(
        id=prompt.id,
        project_id=prompt.project_id,
        messages=prompt.messages,
        metadata=prompt.metadata_,
        source=prompt.source,
        status=prompt_status(prompt, project),
        completions=[CompletionOut.model_validate(c) for c in prompt.completions],
        created_at=prompt.created_at,
    )
