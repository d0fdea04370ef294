"""Reading prompts and their completions. Uploads live in `importer.py`."""

import random

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, selectinload

from app.errors import InvalidInput
from app.ids import parse_id
from app.labeling.models import Ranking
from app.projects.models import Project
from app.prompts.models import Completion, Prompt
from app.prompts.schemas import CompletionOut, GeneratedForPrompt, GeneratedResult, PromptOut, PromptStatus

MAX_PAGE = 500
_shuffler = random.SystemRandom()


def prompt_status(prompt: Prompt, project: Project, rankings: int) -> PromptStatus:
    if prompt.imported:
        return "imported"
    if len(prompt.completions) < project.completions_per_prompt:
        return "pending"
    return "complete" if rankings >= project.rankings_per_prompt else "ready"


def ranking_counts(session: Session, prompt_ids: list[int]) -> dict[int, int]:
    rows = session.execute(
        select(Ranking.prompt_id, func.count(Ranking.id))
        .where(Ranking.prompt_id.in_(prompt_ids))
        .group_by(Ranking.prompt_id)
    )
    return dict(rows.all())


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
        query = query.where(_status_condition(status, project))
    rows = list(session.scalars(query))
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _status_condition(status: PromptStatus, project: Project) -> ColumnElement[bool]:
    """The SQL for `prompt_status`, so lists can filter by status."""
    if status == "imported":
        return ~Prompt.for_labeling()
    completions = select(func.count(Completion.id)).where(Completion.prompt_id == Prompt.id).scalar_subquery()
    rankings = select(func.count(Ranking.id)).where(Ranking.prompt_id == Prompt.id).scalar_subquery()
    k, n = project.completions_per_prompt, project.rankings_per_prompt
    return (
        Prompt.for_labeling()
        & {
            "pending": completions < k,
            "ready": (completions >= k) & (rankings < n),
            "complete": (completions >= k) & (rankings >= n),
        }[status]
    )


def _decode_cursor(cursor: str | None) -> int:
    if cursor in (None, ""):
        return 0
    position = parse_id(cursor)
    if position is None:
        raise InvalidInput(
            "cursor must be the next_cursor value of a previous page.",
            code="bad_cursor",
            details={"field": "cursor"},
        )
    return position


def prompt_out(prompt: Prompt, project: Project, rankings: int) -> PromptOut:
    return PromptOut(
        id=prompt.id,
        project_id=prompt.project_id,
        messages=prompt.messages,
        metadata=prompt.metadata_,
        source=prompt.source,
        status=prompt_status(prompt, project, rankings),
        rankings=rankings,
        completions=[CompletionOut.model_validate(c) for c in prompt.completions],
        created_at=prompt.created_at,
    )


def count_pending(session: Session, *, project: Project) -> int:
    counts = select(func.count(Completion.id)).where(Completion.prompt_id == Prompt.id).scalar_subquery()
    return (
        session.scalar(
            select(func.count(Prompt.id)).where(
                Prompt.project_id == project.id,
                Prompt.for_labeling(),
                counts < project.completions_per_prompt,
            )
        )
        or 0
    )


def add_generated_completions(
    session: Session,
    *,
    project: Project,
    items: list[GeneratedForPrompt],
    model: str,
    settings: dict,
    models: list[str] | None = None,
) -> GeneratedResult:
    """Store a worker's completions, never more than K per prompt and never two equal texts.

    `models`: a job that generates with several models (an evaluation round) names them; each completion
    must then say which of them wrote it, a prompt gets at most one completion per model, and a prompt's
    completions are stored in random order, so their ids do not tell which model wrote which.
    """
    prompt_ids = [item.prompt_id for item in items]
    prompts = {
        p.id: p
        for p in session.scalars(
            select(Prompt).where(Prompt.id.in_(prompt_ids)).options(selectinload(Prompt.completions))
        )
    }
    foreign = sorted(pid for pid in prompt_ids if pid not in prompts or prompts[pid].project_id != project.id)
    if foreign:
        raise InvalidInput(
            f"Prompts {foreign} are not prompts of project {project.id}.",
            details={"field": "items", "prompt_ids": foreign},
        )
    _require_job_models(items, model=model, models=models)
    added = duplicates = surplus = 0
    for item in items:
        prompt = prompts[item.prompt_id]
        seen = {c.text.strip() for c in prompt.completions}
        room = project.completions_per_prompt - len(prompt.completions)
        written = {c.model for c in prompt.completions}
        completions = list(item.completions)
        if models:
            _shuffler.shuffle(completions)
        for generated in completions:
            if generated.text.strip() in seen:
                duplicates += 1
            elif room <= 0 or (models and generated.model in written):
                surplus += 1
            else:
                session.add(
                    Completion(
                        prompt_id=prompt.id,
                        text=generated.text,
                        origin="generated",
                        model=generated.model or model,
                        generation_settings={**settings, "finished": generated.finished},
                        seed=generated.seed,
                    )
                )
                seen.add(generated.text.strip())
                written.add(generated.model)
                room -= 1
                added += 1
    session.flush()
    return GeneratedResult(
        added=added,
        duplicates=duplicates,
        surplus=surplus,
        prompts_remaining=count_pending(session, project=project),
    )


def _require_job_models(items: list[GeneratedForPrompt], *, model: str, models: list[str] | None) -> None:
    """A completion's `model` must be one of the job's models; a several-model job must name it."""
    allowed = set(models) if models else {model}
    for item in items:
        for generated in item.completions:
            if generated.model is None and models:
                problem = f"this job generates with {sorted(allowed)}: each completion must name its model"
            elif generated.model is not None and generated.model not in allowed:
                problem = f"'{generated.model}' is not a model of this job ({sorted(allowed)})"
            else:
                continue
            raise InvalidInput(
                f"items: prompt {item.prompt_id}: {problem}.",
                code="unknown_completion_model",
                details={"field": "items.completions.model", "prompt_id": item.prompt_id},
            )
