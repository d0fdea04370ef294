"""Demonstrations: answers labelers write in a `demonstrate` project, or improve from the best completion
while ranking. They are what SFT trains on (InstructGPT's step 1). No HTTP types here."""

import difflib
import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import User
from app.errors import Conflict, InvalidInput
from app.labeling.models import Assignment, Demonstration, DemonstrationSource, Ranking
from app.labeling.schemas import DemonstrationIn, RewriteIn
from app.projects.models import InstructionVersion, Project
from app.prompts.models import Completion, Prompt


def clean_text(text: str, *, field: str) -> str:
    """Browsers send textarea lines with CRLF; an answer's outer blank lines are never meant."""
    cleaned = text.replace("\r\n", "\n").strip()
    if not cleaned:
        raise InvalidInput(
            f"{field}: the answer is empty; write the answer, or skip the task.", details={"field": field}
        )
    return cleaned


def _original_text(
    session: Session, completion_id: int | None, *, shown: list[int], field: str
) -> str | None:
    if completion_id is None:
        return None
    if completion_id not in shown:
        raise InvalidInput(
            f"{field}: completion {completion_id} is not one of this task's completions ({shown}).",
            details={"field": field},
        )
    return session.scalar(select(Completion.text).where(Completion.id == completion_id))


def submit_demonstration(
    session: Session, *, assignment: Assignment, project: Project, body: DemonstrationIn
) -> Demonstration:
    """The answer to a `demonstrate` task (the caller has checked that the assignment is live)."""
    if project.task != "demonstrate":
        raise Conflict(
            f"Project '{project.name}' ranks completions: answer with POST "
            f"/assignments/{assignment.id}/ranking (a ranking may carry a rewrite of the best one).",
            code="wrong_task",
            details={"task": project.task},
        )
    text = clean_text(body.text, field="text")
    original = _original_text(session, body.edited_from, shown=assignment.shown_order, field="edited_from")
    demonstration = _store(
        session,
        assignment=assignment,
        source=DemonstrationSource.demonstrate,
        text=text,
        edited_from=body.edited_from,
        original=original,
        seconds_spent=body.seconds_spent,
    )
    return demonstration


def check_rewrite(session: Session, *, rewrite: RewriteIn, best_tier: list[int]) -> tuple[str, str]:
    """A ranking's rewrite, checked before anything is stored: (text, the original's text)."""
    text = clean_text(rewrite.text, field="rewrite.text")
    if rewrite.edited_from not in best_tier:
        raise InvalidInput(
            f"rewrite.edited_from: completion {rewrite.edited_from} is not in the ranking's best tier "
            f"({best_tier}); a rewrite improves the best completion.",
            details={"field": "rewrite.edited_from"},
        )
    original = _original_text(session, rewrite.edited_from, shown=best_tier, field="rewrite.edited_from")
    if original is not None and original.strip() == text:
        raise InvalidInput(
            "rewrite.text: the rewrite is the completion unchanged; edit it, or leave the rewrite out.",
            code="rewrite_unchanged",
            details={"field": "rewrite.text"},
        )
    return text, original


def store_rewrite(
    session: Session,
    *,
    ranking: Ranking,
    assignment: Assignment,
    rewrite: RewriteIn,
    checked: tuple[str, str],
) -> Demonstration:
    text, original = checked
    return _store(
        session,
        assignment=assignment,
        source=DemonstrationSource.rewrite,
        text=text,
        edited_from=rewrite.edited_from,
        original=original,
        seconds_spent=ranking.seconds_spent,
    )


def _store(
    session: Session,
    *,
    assignment: Assignment,
    source: DemonstrationSource,
    text: str,
    edited_from: int | None,
    original: str | None,
    seconds_spent: float | None,
) -> Demonstration:
    demonstration = Demonstration(
        assignment_id=assignment.id,
        project_id=assignment.project_id,
        prompt_id=assignment.prompt_id,
        labeler_id=assignment.labeler_id,
        source=source.value,
        text=text,
        edited_from_id=edited_from,
        original_text=original,
        seconds_spent=seconds_spent,
        instructions_version_id=assignment.instructions_version_id,
    )
    try:
        with session.begin_nested():
            session.add(demonstration)
            session.flush()
    except IntegrityError:  # a concurrent submission of the same assignment won
        raise Conflict("This assignment was already submitted.", code="already_submitted") from None
    return demonstration


def count_demonstrations(session: Session, project_id: int) -> int:
    return (
        session.scalar(select(func.count(Demonstration.id)).where(Demonstration.project_id == project_id))
        or 0
    )


# --- what admins see ------------------------------------------------------------------------------

REVIEW_PAGE = 50


@dataclass(frozen=True)
class ReviewRow:
    demonstration: Demonstration
    prompt: list[dict]
    labeler: str | None
    instructions_version: int | None
    diff: list["DiffPiece"] | None  # None: written from scratch


def review_page(
    session: Session, *, project: Project, before: int | None, limit: int = REVIEW_PAGE
) -> tuple[list[ReviewRow], int | None]:
    """Newest first, `limit` at a time: the rows and the id to pass as `before` for older ones."""
    query = (
        select(Demonstration, Prompt.messages, User.username, InstructionVersion.version)
        .join(Prompt, Prompt.id == Demonstration.prompt_id)
        .outerjoin(User, User.id == Demonstration.labeler_id)
        .outerjoin(InstructionVersion, InstructionVersion.id == Demonstration.instructions_version_id)
        .where(Demonstration.project_id == project.id)
        .order_by(Demonstration.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(Demonstration.id < before)
    rows = session.execute(query).all()
    page = [
        ReviewRow(
            demonstration=demo,
            prompt=messages,
            labeler=username,
            instructions_version=version,
            diff=word_diff(demo.original_text, demo.text) if demo.original_text is not None else None,
        )
        for demo, messages, username, version in rows[:limit]
    ]
    older = page[-1].demonstration.id if len(rows) > limit else None
    return page, older


_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


@dataclass(frozen=True)
class DiffPiece:
    """A run of text in a demonstration's diff against its original: kept, inserted or deleted."""

    op: str  # "equal" | "insert" | "delete"
    text: str


def word_diff(original: str, edited: str) -> list[DiffPiece]:
    """The edit as runs of words (and the whitespace between them), for the admin's page. Plain text:
    the template escapes it, so a completion's markup is shown, never run."""
    before, after = _TOKENS.findall(original), _TOKENS.findall(edited)
    pieces: list[DiffPiece] = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            pieces.append(DiffPiece("equal", "".join(before[a0:a1])))
            continue
        if a1 > a0:
            pieces.append(DiffPiece("delete", "".join(before[a0:a1])))
        if b1 > b0:
            pieces.append(DiffPiece("insert", "".join(after[b0:b1])))
    return pieces
