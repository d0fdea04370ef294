"""Model versions: what a training job produced, where its weights are, and how well it did."""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, utcnow


class ModelKind(enum.StrEnum):
    policy = "policy"
    reward = "reward"


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (CheckConstraint("kind IN ('policy', 'reward')", name="kind_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # A path relative to the artifact store (PREFLAB_DATA_DIR/artifacts), in Hugging Face format.
    artifact: Mapped[str] = mapped_column(String(1000))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"), index=True)
    # What it was trained from: "default", a path, or "model:<id>" of another version.
    base_model: Mapped[str] = mapped_column(String(1000))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
