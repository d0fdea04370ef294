"""A refused card on the project page: the page again, the card showing what the admin typed and why
it was refused (app.forms). Shared by the kinds whose forms are cards there."""

from typing import Any

from pydantic import ValidationError

from app.errors import PrefLabError
from app.forms import FormRefused, form_errors, page_context


def refused(
    error: ValidationError | PrefLabError, *, project_id: int, card: str, typed: dict[str, Any]
) -> FormRefused:
    """`card`: the kind whose card was refused; `typed`: its fields as the admin left them."""
    errors = form_errors(error)

    def context(session) -> dict[str, Any]:
        return page_context("project", session, project_id=project_id) | {
            "refused_card": card,
            "typed": typed,
            "card_errors": errors,
        }

    return FormRefused(error, template="projects/detail.html", context=context)
