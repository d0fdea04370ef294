"""Request-scoped dependencies: the database session, the caller's identity, role checks and CSRF.

Every route declares who may call it through one of the `Annotated` aliases at the bottom, so a
reader sees the rule in the signature.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.models import Role, User, WebSession
from app.auth.security import tokens_equal
from app.db import session_scope
from app.errors import Forbidden, NotAuthenticated, PayloadTooLarge
from app.settings import Settings

SESSION_COOKIE = "preflab_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def db_admission(request: Request) -> AsyncIterator[None]:
    """Wait in the event loop for one of the database's slots (app/admission.py); released after the
    commit, since dependencies are torn down in reverse."""
    async with request.app.state.db_gate.admit():
        yield


def get_db(
    request: Request, _admitted: Annotated[None, Depends(db_admission, scope="function")]
) -> Iterator[Session]:
    """One transaction per request: commit when the route returns, roll back when it raises."""
    yield from session_scope(request.app.state.session_factory)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# scope="function": commit before the response is sent, so a failed commit is reported, not hidden.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]


@dataclass
class Caller:
    user: User
    web_session: WebSession | None  # set when the request was authenticated by the session cookie


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if header:
        raise NotAuthenticated("The Authorization header must be 'Bearer <token>'.", code="bad_token")
    return None


async def csrf_token_sent(request: Request) -> str | None:
    """The CSRF token a write carries: the X-CSRF-Token header, or the form's csrf_token field.

    Async because reading a form is; it touches no database, so it never blocks the event loop.
    """
    if request.method not in UNSAFE_METHODS:
        return None
    if token := request.headers.get(CSRF_HEADER):
        return token
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        # Parsing a form spools its files to disk: refuse an oversized upload before that happens.
        declared = request.headers.get("content-length", "")
        if (
            declared.isascii()
            and declared.isdigit()
            and int(declared) > request.app.state.settings.max_upload_bytes
        ):
            raise PayloadTooLarge(
                f"The upload is larger than the {request.app.state.settings.max_upload_mb:g} MB limit "
                "(PREFLAB_MAX_UPLOAD_MB); split it into several files.",
                details={"limit_bytes": request.app.state.settings.max_upload_bytes},
            )
        form = await request.form()  # Starlette caches it, so the route can still read the form
        value = form.get(CSRF_FORM_FIELD)
        return value if isinstance(value, str) else None
    return None


def get_optional_caller(
    request: Request, session: SessionDep, csrf_sent: Annotated[str | None, Depends(csrf_token_sent)]
) -> Caller | None:
    """Who is calling: a bearer token, or a session cookie (whose writes must carry the CSRF token).

    A plain `def`: FastAPI runs it in the thread pool, so its database queries never block the loop.
    """
    token = _bearer_token(request)
    if token is not None:
        user = auth_service.user_for_api_token(session, token)
        if user is None:
            raise NotAuthenticated("The API token is unknown or revoked.", code="bad_token")
        return _remembered(request, Caller(user=user, web_session=None))
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    web_session = auth_service.find_web_session(session, cookie)
    if web_session is None:
        return None
    if request.method in UNSAFE_METHODS and (
        not csrf_sent or not tokens_equal(csrf_sent, web_session.csrf_token)
    ):
        raise Forbidden(
            "The form is missing its CSRF token or it is stale: reload the page and retry.",
            code="csrf_failed",
        )
    return _remembered(request, Caller(user=web_session.user, web_session=web_session))


def _remembered(request: Request, caller: Caller) -> Caller:
    """Keep who called by id, so a refused form's page can be rendered for them after the rollback
    (app.forms): the rolled-back session's objects can no longer be read."""
    request.state.caller_ids = (caller.user.id, caller.web_session.id if caller.web_session else None)
    return caller


def reload_caller(session: Session, request: Request) -> Caller | None:
    """The caller of this request, read again in `session` (see `_remembered`)."""
    ids = getattr(request.state, "caller_ids", None)
    if ids is None:
        return None
    user_id, web_session_id = ids
    user = session.get(User, user_id)
    web_session = session.get(WebSession, web_session_id) if web_session_id is not None else None
    return Caller(user=user, web_session=web_session) if user is not None else None


def get_caller(caller: Annotated[Caller | None, Depends(get_optional_caller)]) -> Caller:
    if caller is None:
        raise NotAuthenticated("Log in, or send 'Authorization: Bearer <token>'.")
    return caller


def require_roles(*roles: Role) -> Callable[[Caller], User]:
    allowed = {role.value for role in roles}

    def check(caller: Annotated[Caller, Depends(get_caller)]) -> User:
        if caller.user.role not in allowed:
            raise Forbidden(
                f"This needs the {' or '.join(sorted(allowed))} role; you are a {caller.user.role}.",
                code="wrong_role",
            )
        return caller.user

    return check


OptionalCaller = Annotated[Caller | None, Depends(get_optional_caller)]
CallerDep = Annotated[Caller, Depends(get_caller)]
CurrentUser = Annotated[User, Depends(require_roles(*Role))]
AdminUser = Annotated[User, Depends(require_roles(Role.admin))]
ProjectReader = Annotated[User, Depends(require_roles(Role.admin, Role.researcher))]
LabelerUser = Annotated[User, Depends(require_roles(Role.labeler))]
WorkerUser = Annotated[User, Depends(require_roles(Role.worker))]
