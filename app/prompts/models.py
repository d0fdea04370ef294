"""Prompts (chat messages) and the completions labelers rank."""

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONType, NullableJSON, UTCDateTime, utcnow

# Prompts that arrived with imported preference data (see app.imports) carry this source prefix. They
# are there to be exported and trained on: never handed to labelers, never filled by generation.
IMPORT_SOURCE_PREFIX = "import:"


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (Index("ix_prompts_project_id_id", "project_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # Always the chat form: [{"role": "system"|"user"|"assistant", "content": "..."}]
    messages: Mapped[list[dict[str, str]]] = mapped_column(JSONType)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    # Where the prompt came from: "upload:<file name>", "demo", "api"...
    source: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A gold task's known answer: tiers of completion ids, best first (None: an ordinary prompt). Gold
    # prompts are handed out at the project's gold_rate, scored, never exported or trained on.
    gold_tiers: Mapped[list[list[int]] | None] = mapped_column(NullableJSON, nullable=True)

    completions: Mapped[list["Completion"]] = relationship(
        back_populates="prompt", order_by="Completion.id", cascade="all, delete-orphan"
    )

    @property
    def imported(self) -> bool:
        return self.source.startswith(IMPORT_SOURCE_PREFIX)

    @classmethod
    def for_labeling(cls) -> ColumnElement[bool]:
        """SQL: prompts that labelers rank and generation fills (not imported preference data)."""
        return ~cls.source.startswith(IMPORT_SOURCE_PREFIX)


class Completion(Base):
    __tablename__ = "completions"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    # "imported" (brought with the prompt) or "generated".
    origin: Mapped[str] = mapped_column(String(16))
    # The generating model as configured ("default", a path, "model:<id>"); null when imported.
    model: Mapped[str | None] = mapped_column(String(500))
    # Sampling settings and seed, so any completion can be reproduced.
    generation_settings: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    seed: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    prompt: Mapped[Prompt] = relationship(back_populates="completions")
