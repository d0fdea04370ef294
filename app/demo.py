"""The demo that `make run` seeds: an admin, a labeler, and a small project with instructions and prompts."""

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.models import Role, User
from app.projects import service as project_service
from app.projects.models import Project
from app.projects.schemas import GenerationSettings, ProjectCreate
from app.prompts.models import Prompt

DEMO_PROJECT = "demo-helpfulness"
DEMO_INSTRUCTIONS = """# Rank the answers by helpfulness

Read the prompt, then put the completions in order, **best first**.

1. A helpful answer does what was asked, correctly and completely.
2. Prefer honest uncertainty to confident mistakes.
3. Shorter is better when two answers are otherwise equal.

Tie two answers only when you truly cannot prefer one. Flag anything unsafe, wrong or nonsensical.
If none of the answers is acceptable, say so: that is useful data too.
"""
DEMO_PROMPTS = [
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about debugging code late at night.",
    "What are three good habits for writing readable Python?",
    "How do I boil an egg so the yolk stays soft?",
    "Summarise the plot of Romeo and Juliet for a ten-year-old.",
    "Give me a short, friendly reminder message for a team meeting tomorrow at 10am.",
]
DEMO_SYSTEM = "You are a helpful, concise assistant."


@dataclass
class DemoAccount:
    username: str
    password: str | None  # None when the account already existed (its password is unchanged)
    role: str


def seed_demo(session: Session) -> tuple[list[DemoAccount], Project | None]:
    """Idempotent: running it twice leaves one demo project and the same accounts.

    Returns the accounts and the demo project when this call created it (so the caller can queue the
    generation of its completions), else None."""
    accounts = [_ensure_user(session, "admin", Role.admin), _ensure_user(session, "labeler", Role.labeler)]
    admin = session.scalar(select(User).where(User.username == "admin"))
    project = None
    if session.scalar(select(Project).where(Project.name == DEMO_PROJECT)) is None:
        project = project_service.create_project(
            session,
            data=ProjectCreate(
                name=DEMO_PROJECT,
                instructions_md=DEMO_INSTRUCTIONS,
                completions_per_prompt=4,
                rankings_per_prompt=1,
                # Short answers keep the first generation quick on a laptop CPU.
                generation=GenerationSettings(temperature=0.9, top_p=0.95, max_new_tokens=96),
            ),
            author=admin,
        )
        for text in DEMO_PROMPTS:
            session.add(
                Prompt(
                    project_id=project.id,
                    source="demo",
                    messages=[{"role": "system", "content": DEMO_SYSTEM}, {"role": "user", "content": text}],
                )
            )
        session.flush()
    return accounts, project


def _ensure_user(session: Session, username: str, role: Role) -> DemoAccount:
    if session.scalar(select(User).where(User.username == username)) is not None:
        return DemoAccount(username, None, role.value)
    password = secrets.token_urlsafe(12)
    auth_service.create_user(session, username=username, role=role, password=password)
    return DemoAccount(username, password, role.value)
