"""An evaluation round: a small child project (K = 2) whose prompts each get one completion from a
candidate policy and one from a baseline, linked to the project it evaluates."""

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class EvaluationRound(Base):
    __tablename__ = "evaluation_rounds"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_evaluation_rounds_project_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The project evaluated (its prompts and instructions were copied) and the round's own project.
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    round_project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), unique=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the evaluated project
    # Model specs as completions record them: "default", a local path, or "model:<id>".
    candidate: Mapped[str] = mapped_column(String(1000))
    baseline: Mapped[str] = mapped_column(String(1000))
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    prompts: Mapped[int] = mapped_column(Integer)  # how many prompts were copied
    # "held_out": the candidate's PPO run's held-out prompts; "sample": a seeded sample of the project's.
    prompt_source: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL")
    )  # latest generation
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
