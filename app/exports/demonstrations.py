"""The `demonstrations` export: each answer a labeler wrote, as the prompt's messages plus the answer as
the last assistant message (TRL's conversational SFT format: `SFTTrainer` reads a `messages` column)."""

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Select, Text, cast, func, select

from app.exports import rows
from app.exports.encoder import Encoder
from app.exports.schemas import ExportPlan
from app.labeling.models import Demonstration
from app.projects.models import InstructionVersion
from app.prompts.models import Prompt

FETCH_ROWS = 2000


def _conditions(plan: ExportPlan) -> list:
    conditions = [Demonstration.project_id == plan.project_id]
    if plan.filters.since is not None:
        conditions.append(Demonstration.created_at >= plan.filters.since)
    if plan.filters.until is not None:
        conditions.append(Demonstration.created_at < plan.filters.until)
    if plan.labeler_ids is not None:
        conditions.append(Demonstration.labeler_id.in_(plan.labeler_ids))
    if plan.excluded_labeler_ids:
        conditions.append(Demonstration.labeler_id.not_in(sorted(plan.excluded_labeler_ids)))
    return conditions


def count(connection: Connection, plan: ExportPlan) -> int:
    return connection.scalar(select(func.count(Demonstration.id)).where(*_conditions(plan))) or 0


def _query(plan: ExportPlan) -> Select:
    return (
        select(
            Demonstration.id,
            Demonstration.prompt_id,
            cast(Prompt.messages, Text).label("messages"),
            Demonstration.text,
            Demonstration.edited_from_id,
            Demonstration.source,
            Demonstration.seconds_spent,
            Demonstration.labeler_id,
            Demonstration.created_at,
            InstructionVersion.version.label("instructions_version"),
        )
        .join(Prompt, Prompt.id == Demonstration.prompt_id)
        .outerjoin(InstructionVersion, InstructionVersion.id == Demonstration.instructions_version_id)
        .where(*_conditions(plan))
        .order_by(Demonstration.id)
    )


def iter_rows(connection: Connection, plan: ExportPlan) -> Iterator[dict[str, Any]]:
    encoder = Encoder(plan)
    result = connection.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(_query(plan))
    for row in result:
        yield rows.demonstration_row(
            {
                "prompt_id": row.prompt_id,
                "messages": [
                    *encoder.messages(row.prompt_id, row.messages),
                    {"role": "assistant", "content": row.text},
                ],
                "edited_from": row.edited_from_id,
                "source": row.source,
                "demonstration_id": row.id,
                "seconds_spent": row.seconds_spent,
                "labeler": encoder.labeler(row.labeler_id, None),
                "instructions_version": row.instructions_version,
                "created_at": rows.timestamp(row.created_at),
            }
        )
