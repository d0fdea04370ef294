"""What a labeler sends back for a task: a ranking (expanded into comparisons, with an optional rewrite),
a written answer, or a skip; each checked against the assignment first. No HTTP types here."""

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import utcnow
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.ids import parse_id
from app.labeling import demonstrations
from app.labeling.expansion import check_tiers, expand_tiers
from app.labeling.models import Assignment, AssignmentStatus, Comparison, Demonstration, Ranking
from app.labeling.schemas import DemonstrationIn, RankingIn
from app.projects.models import Project
from app.prompts.models import Prompt


def get_assignment_for(session: Session, *, assignment_id: int, labeler: User) -> Assignment:
    assignment = session.get(Assignment, assignment_id)
    if assignment is None:
        raise NotFound(f"No assignment with id {assignment_id}.", code="assignment_not_found")
    if assignment.labeler_id != labeler.id:
        raise Forbidden("This assignment belongs to another labeler.", code="not_your_assignment")
    return assignment


def _require_live(assignment: Assignment) -> None:
    if assignment.status == AssignmentStatus.submitted.value:
        raise Conflict(
            "This assignment was already submitted; a ranking cannot be changed.", code="already_submitted"
        )
    if assignment.status == AssignmentStatus.skipped.value:
        raise Conflict("This assignment was skipped.", code="assignment_skipped")
    if assignment.status == AssignmentStatus.expired.value or assignment.expires_at <= utcnow():
        raise Conflict(
            "This assignment expired and went back to the pool; fetch the next task.",
            code="assignment_expired",
        )


def validate_ranking(body: RankingIn, *, shown: list[int], allowed_flags: list[str]) -> None:
    """Every shown completion exactly once, known ids only, known flags only (422 otherwise)."""
    if any(len(tier) == 0 for tier in body.ranking):
        raise InvalidInput(
            "ranking: a tier is empty; every tier needs at least one completion.",
            details={"field": "ranking"},
        )
    if check := check_tiers(body.ranking, shown):
        raise InvalidInput(
            "ranking: every completion of the assignment must appear exactly once; "
            + check.problems(unknown="ids not in this assignment", noun="ids")
            + ".",
            details={
                "field": "ranking",
                "repeated": check.repeated,
                "unknown": check.unknown,
                "missing": check.missing,
            },
        )
    for key, names in body.flags.items():
        if parse_id(key) not in set(shown):  # strict: "042" would dodge exclude_flags, which looks up "42"
            raise InvalidInput(
                f"flags: '{key}' is not a completion of this assignment.", details={"field": f"flags.{key}"}
            )
        bad = sorted(set(names) - set(allowed_flags))
        if bad:
            raise InvalidInput(
                f"flags: {bad} are not flags of this project (allowed: {allowed_flags}).",
                details={"field": f"flags.{key}", "unknown_flags": bad},
            )
        if len(set(names)) != len(names):
            raise InvalidInput(
                f"flags: completion {key} lists a flag twice.", details={"field": f"flags.{key}"}
            )


def submit_ranking(
    session: Session, *, assignment: Assignment, body: RankingIn
) -> tuple[Ranking, int, Demonstration | None]:
    """Store the ranking, its comparisons and its rewrite (if any) as one unit: a refused part stores
    nothing."""
    _require_live(assignment)
    project = session.get(Project, assignment.project_id)
    if project.task != "rank":
        raise Conflict(
            f"Project '{project.name}' collects written answers: answer with POST "
            f"/assignments/{assignment.id}/demonstration.",
            code="wrong_task",
            details={"task": project.task},
        )
    validate_ranking(body, shown=assignment.shown_order, allowed_flags=project.flags)
    rewrite = (
        demonstrations.check_rewrite(session, rewrite=body.rewrite, best_tier=body.ranking[0])
        if body.rewrite is not None
        else None
    )
    ranking = Ranking(
        assignment_id=assignment.id,
        project_id=assignment.project_id,
        prompt_id=assignment.prompt_id,
        labeler_id=assignment.labeler_id,
        tiers=body.ranking,
        flags={key: names for key, names in body.flags.items() if names},
        none_acceptable=body.none_acceptable,
        seconds_spent=body.seconds_spent,
        shown_order=assignment.shown_order,
        # scored against the gold tiers in app/agreement/labelers.py; stored like any other (the labeler
        # cannot tell), and left out of exports, training and agreement
        gold=session.scalar(select(Prompt.gold_tiers.is_not(None)).where(Prompt.id == assignment.prompt_id)),
        instructions_version_id=assignment.instructions_version_id,
    )
    try:
        with session.begin_nested():
            session.add(ranking)
            session.flush()
    except IntegrityError:  # a concurrent submission of the same assignment won
        raise Conflict("This assignment was already submitted.", code="already_submitted") from None
    pairs = expand_tiers(body.ranking)
    if pairs:
        session.execute(
            insert(Comparison),
            [
                {
                    "ranking_id": ranking.id,
                    "project_id": ranking.project_id,
                    "prompt_id": ranking.prompt_id,
                    "chosen_id": p.chosen_id,
                    "rejected_id": p.rejected_id,
                    "chosen_tier": p.chosen_tier,
                    "rejected_tier": p.rejected_tier,
                }
                for p in pairs
            ],
        )
    demonstration = None
    if rewrite is not None:
        demonstration = demonstrations.store_rewrite(
            session, ranking=ranking, assignment=assignment, rewrite=body.rewrite, checked=rewrite
        )
    _finish(session, assignment)
    return ranking, len(pairs), demonstration


def submit_demonstration(session: Session, *, assignment: Assignment, body: DemonstrationIn) -> Demonstration:
    _require_live(assignment)
    project = session.get(Project, assignment.project_id)
    demonstration = demonstrations.submit_demonstration(
        session, assignment=assignment, project=project, body=body
    )
    _finish(session, assignment)
    return demonstration


def _finish(session: Session, assignment: Assignment) -> None:
    assignment.status = AssignmentStatus.submitted.value
    assignment.finished_at = utcnow()
    session.flush()


def skip(session: Session, *, assignment: Assignment) -> None:
    if assignment.status == AssignmentStatus.submitted.value:
        raise Conflict(
            "This assignment was already submitted; it cannot be skipped.", code="already_submitted"
        )
    # Even an expired assignment can be skipped: the labeler has said they do not want this prompt.
    assignment.status = AssignmentStatus.skipped.value
    assignment.slot = None
    assignment.finished_at = utcnow()
    session.flush()
