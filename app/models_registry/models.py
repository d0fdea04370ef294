"""Model versions: what a training job produced, where its weights are, and how well it did."""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, utcnow


class ModelKind(enum.StrEnum):
    policy = "policy"
    reward = "reward"


class ModelOrigin(enum.StrEnum):
    trained = "trained"  # by a training job of this server, in its artifact store
    imported = "imported"  # registered from a directory an admin allowed (PREFLAB_MODEL_DIRS)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint("kind IN ('policy', 'reward')", name="kind_known"),
        CheckConstraint("origin IN ('trained', 'imported')", name="origin_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # Trained: a path relative to the artifact store (PREFLAB_DATA_DIR/artifacts); imported: the absolute
    # path of the directory the admin registered. Hugging Face format either way.
    artifact: Mapped[str] = mapped_column(String(1000))
    name: Mapped[str | None] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(
        String(16), default=ModelOrigin.trained.value, server_default="trained"
    )
    # An imported classifier with several outputs: the index of the label whose logit (less the
    # log-sum-exp of the others) is the reward. None: one output, the logit itself.
    reward_label: Mapped[int | None] = mapped_column(Integer)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"), index=True)
    # What it was trained from: "default", a path, or "model:<id>" of another version.
    base_model: Mapped[str] = mapped_column(String(1000))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
