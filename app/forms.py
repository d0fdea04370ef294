"""Browser forms: the one path a refused form takes, and the helpers every form shares.

A page route never renders its own refusal. It raises `FormRefused`, naming the template to show again
and how to build its context; the request's transaction rolls back like that of any other error (the
session dependency), and the one handler in `app.main` renders the template from a fresh read, with the
person's input kept and the error's 4xx status. So a refused form writes nothing, and no page rolls back
by hand.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from app.errors import InvalidInput, PrefLabError

ContextBuilder = Callable[[Session], dict[str, Any]]


class FormRefused(PrefLabError):
    """A refused browser form: `error` says why; `template` is shown again with `context(session)`."""

    def __init__(self, error: PrefLabError | ValidationError, *, template: str, context: ContextBuilder):
        error = as_domain_error(error)
        super().__init__(error.message, code=error.code, details=error.details)
        self.status_code = error.status_code
        self.error = error
        self.template = template
        self.context = context


def as_domain_error(error: PrefLabError | ValidationError) -> PrefLabError:
    return InvalidInput.from_pydantic(error) if isinstance(error, ValidationError) else error


@dataclass
class FormErrors:
    """What a refused form shows: a sentence, and a message per field (by the field's form name)."""

    message: str
    fields: dict[str, str] = field(default_factory=dict)


def form_errors(error: ValidationError | PrefLabError, labels: Mapping[str, str] = {}) -> FormErrors:
    """Name the offending fields of a rejected form, by the labels the form shows (`labels`: field -> label).

    A nested field (`generation.temperature`, `filters.min_agreement`) is named by its last part, which
    is the form's field name.
    """
    if isinstance(error, ValidationError):
        items = [(_form_field(err["loc"]), _message(err)) for err in error.errors()]
    elif listed := error.details.get("errors"):  # a schema check in the service (from_pydantic)
        items = [(_form_field(str(e.get("field", "")).split(".")), str(e["message"])) for e in listed]
    else:  # a sentence already (a taken name, an unknown model), perhaps naming one field
        named = error.details.get("field")
        one = {_form_field(str(named).split(".")): error.message} if named else {}
        return FormErrors(message=error.message, fields=one)
    fields: dict[str, str] = {}
    for name, message in items:
        fields.setdefault(name, message)
    name, message = items[0]
    label = labels.get(name, name)
    return FormErrors(message=f"{label} ({name}): {message}" if name else message, fields=fields)


NESTED = ("generation", "filters")
"""Sub-objects of the API's bodies whose fields the forms show flat."""


def _form_field(loc: Any) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in NESTED and len(parts) > 1:
        return parts[1]
    return parts[0] if parts else ""


def _message(err: Any) -> str:
    if err["type"] == "string_pattern_mismatch" and err["loc"] and err["loc"][0] == "flags":
        return (
            f"'{err['input']}' is not a valid flag: use lowercase letters, digits and underscores, "
            "starting with a letter or digit (for example factually_wrong)"
        )
    return str(err["msg"]).removeprefix("Value error, ")


def filled(**fields: str) -> dict[str, str]:
    """The form fields a person filled in: an empty one takes the API's default (the request schema is
    its one source; the form shows it as the field's value)."""
    return {name: value.strip() for name, value in fields.items() if value.strip()}


def defaults_of(schema: type[BaseModel]) -> dict[str, object]:
    """A request schema's defaults, which its form shows as the fields' values."""
    return {name: info.default for name, info in schema.model_fields.items()}


def limits_of(schema: type[BaseModel]) -> dict[str, dict[str, object]]:
    """A request schema's numeric limits (``ge``/``gt``, ``le``/``lt``) as the ``min``/``max`` of its
    form's number fields, so the browser's own check says what the API would."""
    limits: dict[str, dict[str, object]] = {}
    for name, info in schema.model_fields.items():
        bounds: dict[str, object] = {}
        for rule in info.metadata:
            for attribute, bound in (("ge", "min"), ("gt", "min"), ("le", "max"), ("lt", "max")):
                if getattr(rule, attribute, None) is not None:
                    bounds[bound] = getattr(rule, attribute)
        limits[name] = bounds
    return limits


PageContext = Callable[..., dict[str, Any]]
_PAGES: dict[str, PageContext] = {}


def page(name: str) -> Callable[[PageContext], PageContext]:
    """Register how to build a page's context (`context(session, **ids)`), so that a form of a lower
    package can show that page again when refused without importing the package that composes it (the
    project page shows cards of every kind of run: app.dashboard registers "project")."""

    def register(build: PageContext) -> PageContext:
        _PAGES[name] = build
        return build

    return register


def page_context(name: str, session: Session, **ids: Any) -> dict[str, Any]:
    return _PAGES[name](session, **ids)


def ticked(values: list[str] | None, *, default: bool) -> bool:
    """A checkbox sent after a hidden "false" of the same name (templates/runs/_form_macros.html): ticked
    sends both, unticked the hidden one alone; a client that sends neither gets the default."""
    return "true" in values if values else default
