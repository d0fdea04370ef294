"""Assignments, rankings and the pairwise comparisons a ranking expands into.

Two unique constraints enforce the assignment rules on every backend, whatever the concurrency:
- (prompt_id, labeler_id): a labeler never gets the same prompt twice;
- (prompt_id, slot): a prompt has at most `rankings_per_prompt` live-or-ranked assignments, because each
  holds one of the slots 0..N-1 (skipped and expired assignments give theirs back by setting it NULL,
  and NULLs never collide).
"""

import enum
from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONType, UTCDateTime, utcnow


class AssignmentStatus(enum.StrEnum):
    live = "live"
    submitted = "submitted"
    skipped = "skipped"
    expired = "expired"


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("prompt_id", "labeler_id", name="uq_assignments_prompt_labeler"),
        UniqueConstraint("prompt_id", "slot", name="uq_assignments_prompt_slot"),
        Index("ix_assignments_labeler_id_status", "labeler_id", "status"),
        Index("ix_assignments_status_expires_at", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    labeler_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    slot: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=AssignmentStatus.live.value)
    # The completion ids in the order this labeler was shown them (shuffled per assignment).
    shown_order: Mapped[list[int]] = mapped_column(JSONType)
    instructions_version_id: Mapped[int] = mapped_column(ForeignKey("instruction_versions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Ranking(Base):
    __tablename__ = "rankings"
    __table_args__ = (
        Index("ix_rankings_project_id_id", "project_id", "id"),
        # Imported rankings carry a hash of their content, so importing a file twice adds nothing.
        UniqueConstraint("project_id", "content_hash", name="uq_rankings_project_content_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Null for rankings imported from existing preference data (they have a source instead).
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="SET NULL"), unique=True
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    labeler_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    source: Mapped[str | None] = mapped_column(String(255))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    # Tiers of completion ids, best first; ids in one tier are tied: [[42], [41, 44], [43]]
    tiers: Mapped[list[list[int]]] = mapped_column(JSONType)
    flags: Mapped[dict[str, list[str]]] = mapped_column(JSONType, default=dict)  # {"43": ["unsafe"]}
    none_acceptable: Mapped[bool] = mapped_column(Boolean, default=False)
    # A ranking of a gold prompt: scored against the gold tiers, never exported or trained on.
    gold: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    seconds_spent: Mapped[float | None] = mapped_column(Float)
    shown_order: Mapped[list[int] | None] = mapped_column(JSONType)
    instructions_version_id: Mapped[int | None] = mapped_column(ForeignKey("instruction_versions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    comparisons: Mapped[list["Comparison"]] = relationship(
        back_populates="ranking", cascade="all, delete-orphan"
    )


class Comparison(Base):
    """One strictly ordered pair of a ranking: `chosen` was ranked above `rejected`."""

    __tablename__ = "comparisons"
    __table_args__ = (Index("ix_comparisons_project_id_id", "project_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    chosen_id: Mapped[int] = mapped_column(ForeignKey("completions.id", ondelete="CASCADE"))
    rejected_id: Mapped[int] = mapped_column(ForeignKey("completions.id", ondelete="CASCADE"))
    chosen_tier: Mapped[int] = mapped_column(Integer)
    rejected_tier: Mapped[int] = mapped_column(Integer)

    ranking: Mapped[Ranking] = relationship(back_populates="comparisons")


class DemonstrationSource(enum.StrEnum):
    demonstrate = "demonstrate"  # written in a `demonstrate` project's task
    rewrite = "rewrite"  # a ranking's improved version of its best completion


class Demonstration(Base):
    """An answer a labeler wrote (or improved from a completion): the data SFT trains on."""

    __tablename__ = "demonstrations"
    __table_args__ = (Index("ix_demonstrations_project_id_id", "project_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # One demonstration per assignment at most: the task's answer, or the rewrite sent with a ranking.
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="SET NULL"), unique=True
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    labeler_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    # The completion the labeler started from (null: written from scratch); its text is kept beside it,
    # so the admin's diff survives the completion.
    edited_from_id: Mapped[int | None] = mapped_column(ForeignKey("completions.id", ondelete="SET NULL"))
    original_text: Mapped[str | None] = mapped_column(Text)
    seconds_spent: Mapped[float | None] = mapped_column(Float)
    instructions_version_id: Mapped[int | None] = mapped_column(ForeignKey("instruction_versions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
