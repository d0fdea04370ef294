"""Projects and their versioned labeling instructions."""

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.auth.models import User
from app.db import Base, JSONType, UTCDateTime, utcnow
from app.names import NAME_KEY_LENGTH, name_key

PROJECT_TASKS = ("rank", "demonstrate")


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (CheckConstraint(f"task IN {PROJECT_TASKS!r}", name="task_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    name_key: Mapped[str] = mapped_column(String(NAME_KEY_LENGTH), unique=True)  # app.names, set with name
    completions_per_prompt: Mapped[int] = mapped_column(Integer)  # K
    rankings_per_prompt: Mapped[int] = mapped_column(Integer)  # labelers per prompt
    # "rank": labelers rank the K completions; "demonstrate": they write the answer (app.labeling)
    task: Mapped[str] = mapped_column(String(16), default="rank", server_default="rank")
    flags: Mapped[list[str]] = mapped_column(JSONType)
    # {"model": "default" | path | model id, "temperature", "top_p", "max_new_tokens"}
    generation: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Labeler quality (app/agreement/labelers.py): the share of tasks that are gold tasks, and the rules
    # that flag a labeler: too many rankings faster than min_seconds, or gold agreement (Kendall tau-b
    # with the gold tiers) below gold_min_agreement once gold_min_tasks gold tasks are ranked.
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    min_seconds: Mapped[float] = mapped_column(Float, default=3.0, server_default="3")
    max_fast_share: Mapped[float] = mapped_column(Float, default=0.3, server_default="0.3")
    gold_min_agreement: Mapped[float] = mapped_column(Float, default=0.3, server_default="0.3")
    gold_min_tasks: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    # Keys the pseudonymous labeler ids of this project's exports (see app.projects.pseudonyms).
    export_salt: Mapped[str] = mapped_column(String(64), default=lambda: secrets.token_hex(16))

    instruction_versions: Mapped[list["InstructionVersion"]] = relationship(
        back_populates="project", order_by="InstructionVersion.version", cascade="all, delete-orphan"
    )

    @validates("name")
    def _keep_name_key(self, _key: str, name: str) -> str:
        self.name_key = name_key(name)
        return name


class InstructionVersion(Base):
    """Instructions are never edited in place: each change adds a version, and rankings cite theirs."""

    __tablename__ = "instruction_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "version", name="uq_instruction_versions_project_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    body_md: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="instruction_versions")
    author: Mapped[User | None] = relationship()


class ProjectMember(Base):
    """A labeler on a project's team. A project with members hands its tasks to them alone; a project
    with none is open to every labeler (app/projects/members.py)."""

    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
