"""Browser pages for admins: the users list, and each user's page (role, disable/enable, password reset,
API tokens: list, revoke, mint).

A new token is minted by a POST that redirects (303) to the user's page, which shows the secret once:
the secret travels in a short-lived cookie signed with the server's secret key (HttpOnly, SameSite=Strict,
scoped to that page's path) and deleted by the page that shows it, so a refresh neither shows it again
nor mints another token. The server never stores it in clear.
"""

import hashlib
import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.auth import lifecycle, service
from app.auth.models import Role, User
from app.auth.schemas import UserCreate, UserUpdate
from app.dependencies import AdminUser, Caller, CallerDep, SessionDep, SettingsDep
from app.errors import InvalidInput, PrefLabError
from app.ids import Id
from app.settings import Settings
from app.web import redirect, render

router = APIRouter(include_in_schema=False)
NEW_TOKEN_COOKIE = "preflab_new_token"


@router.get("/users")
def users_page(request: Request, caller: CallerDep, _admin: AdminUser, session: SessionDep):
    return _users_page(request, caller, session)


@router.post("/users")
def create_user_form(
    request: Request,
    caller: CallerDep,
    _admin: AdminUser,
    session: SessionDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "labeler",
):
    try:
        data = UserCreate(username=username, password=password or None, role=role)
        service.create_user(session, username=data.username, role=data.role, password=data.password)
    except PrefLabError as error:
        return _users_page(request, caller, session, form_error=error.message, status_code=error.status_code)
    except ValueError as error:  # pydantic ValidationError
        message = InvalidInput.from_pydantic(error).message
        return _users_page(request, caller, session, form_error=message, status_code=422)
    return redirect("/users")


@router.get("/users/{user_id}")
def user_page(
    request: Request,
    caller: CallerDep,
    _admin: AdminUser,
    user_id: Id,
    session: SessionDep,
    settings: SettingsDep,
):
    user = service.get_user(session, user_id)
    new_token = _read_new_token(request, settings, user)
    response = _user_page(request, caller, session, user, new_token=new_token)
    if request.cookies.get(NEW_TOKEN_COOKIE):
        response.delete_cookie(NEW_TOKEN_COOKIE, path=_user_path(user))
    if new_token:
        response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/users/{user_id}")
def update_user_form(
    request: Request,
    caller: CallerDep,
    admin: AdminUser,
    user_id: Id,
    session: SessionDep,
    role: Annotated[str | None, Form()] = None,
    disabled: Annotated[str | None, Form()] = None,
    password: Annotated[str | None, Form()] = None,
):
    """One form per change on the page (role, status, password); each sends only its own field."""
    user = service.get_user(session, user_id)
    changes = {"role": role, "disabled": disabled, "password": password}
    try:
        update = UserUpdate(**{key: value for key, value in changes.items() if value is not None})
        lifecycle.update_user(session, user=user, acting=admin, **update.model_dump(exclude_unset=True))
    except PrefLabError as error:
        session.rollback()
        return _user_page(
            request, caller, session, user, form_error=error.message, status_code=error.status_code
        )
    except ValueError as error:  # pydantic ValidationError
        session.rollback()
        message = InvalidInput.from_pydantic(error).message
        return _user_page(request, caller, session, user, form_error=message, status_code=422)
    return redirect(_user_path(user))


@router.post("/users/{user_id}/tokens")
def create_token_form(
    _caller: CallerDep, _admin: AdminUser, user_id: Id, session: SessionDep, settings: SettingsDep
):
    user = service.get_user(session, user_id)
    token = service.issue_api_token(session, user=user)
    response = redirect(_user_path(user))
    response.set_cookie(
        NEW_TOKEN_COOKIE,
        f"{user.id}.{token}.{_signature(settings, user.id, token)}",
        max_age=300,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        path=_user_path(user),
    )
    return response


@router.post("/users/{user_id}/tokens/{token_id}/revoke")
def revoke_token_form(_caller: CallerDep, _admin: AdminUser, user_id: Id, token_id: Id, session: SessionDep):
    user = service.get_user(session, user_id)
    lifecycle.revoke_token(session, user=user, token_id=token_id)
    return redirect(_user_path(user))


def _user_path(user: User) -> str:
    return f"/users/{user.id}"


def _signature(settings: Settings, user_id: int, token: str) -> str:
    message = f"new-token:{user_id}:{token}".encode()
    return hmac.new(settings.secret_key.encode(), message, hashlib.sha256).hexdigest()


def _read_new_token(request: Request, settings: Settings, user: User) -> str | None:
    """The token minted just before the redirect, if the cookie is this server's and for this user."""
    user_id, _, rest = request.cookies.get(NEW_TOKEN_COOKIE, "").partition(".")
    token, _, signature = rest.rpartition(".")
    if user_id != str(user.id) or not token:
        return None
    return token if hmac.compare_digest(signature, _signature(settings, user.id, token)) else None


def _users_page(
    request: Request,
    caller: Caller,
    session: Session,
    *,
    form_error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "users/list.html",
        caller,
        users=service.list_users(session),
        roles=list(Role),
        form_error=form_error,
        status_code=status_code,
    )


def _user_page(
    request: Request,
    caller: Caller,
    session: Session,
    user: User,
    *,
    new_token: str | None = None,
    form_error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "users/detail.html",
        caller,
        account=user,
        tokens=lifecycle.list_tokens(session, user=user),
        roles=list(Role),
        new_token=new_token,
        form_error=form_error,
        status_code=status_code,
    )
