"""Every ORM model, imported in one place so Alembic and the drift test see the whole schema."""

from app.agreement.models import LabelerStatus
from app.auth.models import ApiToken, LoginThrottle, User, WebSession
from app.db import Base
from app.evaluations.models import EvaluationRound
from app.jobs.models import Job, JobEvent
from app.labeling.models import Assignment, Comparison, Ranking
from app.models_registry.models import ModelVersion
from app.projects.models import InstructionVersion, Project, ProjectMember
from app.prompts.models import Completion, Prompt

__all__ = [
    "ApiToken",
    "Assignment",
    "Base",
    "Comparison",
    "Completion",
    "EvaluationRound",
    "InstructionVersion",
    "Job",
    "JobEvent",
    "LabelerStatus",
    "LoginThrottle",
    "ModelVersion",
    "Project",
    "ProjectMember",
    "Prompt",
    "Ranking",
    "User",
    "WebSession",
]
