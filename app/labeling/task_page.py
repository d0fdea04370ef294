"""What the task fragment (`label/_task_fragment.html`) shows: the task, its prompt and completions as
safe text segments, the ranking cards in the order the labeler left them, and for a `demonstrate` task
the completions to start from and the answer typed so far."""

import string
from typing import Any

from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.auth.models import User
from app.ids import parse_id
from app.labeling import service
from app.labeling.models import Assignment
from app.projects.models import Project

FENCE = "```"


def label_url(scope: Project | None, *, notice: str | None = None) -> str:
    query = [f"project_id={scope.id}"] if scope else []
    if notice:
        query.append(f"notice={notice}")
    return "/label" + ("?" + "&".join(query) if query else "")


def task_context(
    session: Session,
    *,
    labeler: User,
    scope: Project | None,
    assignment: Assignment | None,
    form: FormData | None = None,
) -> dict[str, Any]:
    """Everything the task fragment shows: the task (or none), its project, and the labeler's progress."""
    progress = service.labeler_progress(session, labeler=labeler, project=scope)
    context: dict[str, Any] = {
        "scope": scope,
        "progress": progress,
        "task": None,
        "project": scope,
        "label_url": label_url(scope),
    }
    if assignment is None:
        context["to_go"] = progress.left_in_project
        return context
    project = session.get(Project, assignment.project_id)
    context.update(
        to_go=progress.left_in_project + 1,  # the prompts still available, and this one
        **task_parts(service.task_view(session, assignment), project=project, form=form),
        none_acceptable=bool(form and form.get("none_acceptable") in ("1", "on", "true")),
        # what the labeler typed before a refused post: the answer (demonstrate) or the rewrite (rank)
        answer=str(form.get("text") or "") if form else "",
        edited_from=_integer(str(form.get("edited_from") or "")) if form else None,
        rewrite_text=str(form.get("rewrite_text") or "") if form else "",
        rewrite_from=_integer(str(form.get("rewrite_from") or "")) if form else None,
    )
    return context


def task_parts(view: dict[str, Any], *, project: Project, form: FormData | None = None) -> dict[str, Any]:
    """The task, its messages as safe segments, its cards and flags: what a real task and an admin's
    preview (app/labeling/preview_pages.py) show alike."""
    return {
        "project": project,
        "task": view,
        "messages": [
            {"role": str(m.get("role", "user")), "segments": text_segments(str(m.get("content", "")))}
            for m in view["prompt"]["messages"]
        ],
        "cards": _cards(view["completions"], project=project, form=form),
        "flags": project.flags,
    }


def _cards(completions: list[dict], *, project: Project, form: FormData | None) -> list[dict[str, Any]]:
    """The completion cards in the order shown: a letter each (their names in announcements), the rank
    each select starts at, and the flags ticked. After a refused post, as the labeler left them."""
    k = len(completions)
    cards = []
    for position, completion in enumerate(completions):
        cid = completion["id"]
        tier = position + 1
        ticked: list[str] = []
        if form is not None:
            sent = _integer(str(form.get(f"tier_{cid}") or ""))
            tier = sent if sent is not None and 1 <= sent <= k else tier
            ticked = [flag for flag in form.getlist(f"flag_{cid}") if flag in project.flags]
        cards.append(
            {
                "id": cid,
                "letter": _letter(position),
                "tier": tier,
                "position": position,
                "flags": ticked,
                "segments": text_segments(completion["text"]),
                "text": completion["text"],
            }
        )
    cards.sort(key=lambda card: (card["tier"], card["position"]))
    return cards


def _integer(text: str) -> int | None:
    return parse_id(text.strip())


def _letter(position: int) -> str:
    letters = string.ascii_uppercase
    return letters[position] if position < len(letters) else str(position + 1)


def text_segments(text: str) -> list[tuple[str, str]]:
    """Split untrusted text at Markdown code fences: ("text", ...) and ("code", "```lang\\n...```") parts.

    Only the styling differs (code in a monospace block that scrolls sideways); every character but the
    line breaks around a block is shown, fences included, and the template escapes all of it: nothing
    here is ever HTML.
    """
    parts = text.split(FENCE)
    segments: list[tuple[str, str]] = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            # A code block is a block of its own: the line breaks around it are its margins.
            if index > 0:
                part = part.lstrip("\n")
            if index < len(parts) - 1:
                part = part.rstrip("\n")
            if part:
                segments.append(("text", part))
        else:
            closed = index < len(parts) - 1
            segments.append(("code", FENCE + part + (FENCE if closed else "")))
    return segments
