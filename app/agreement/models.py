"""A labeler's status in a project, as an admin set it (app/agreement/labelers.py computes the rest)."""

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow

LABELER_STATUSES = ("ok", "flagged", "excluded")


class LabelerStatus(Base):
    """An admin's override of the status the project's rules compute for a labeler."""

    __tablename__ = "labeler_statuses"
    __table_args__ = (CheckConstraint(f"status IN {LABELER_STATUSES!r}", name="status_known"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
