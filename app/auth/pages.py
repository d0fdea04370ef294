"""Browser pages: login, logout, and the admin's user list.

Login CSRF uses a double-submit cookie (there is no session yet); after login every form carries the
session's CSRF token, checked in `app.dependencies`.
"""

import secrets
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.auth import service, throttle
from app.auth.security import tokens_equal
from app.dependencies import (
    SESSION_COOKIE,
    CallerDep,
    OptionalCaller,
    SessionDep,
    SettingsDep,
)
from app.errors import Forbidden, NotAuthenticated, TooManyRequests
from app.settings import Settings
from app.web import redirect, render

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_COOKIE = "preflab_login_csrf"


def _safe_next(target: str | None) -> str:
    """Only same-site paths: `next=https://evil.example` must not turn login into an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/"
    return target


def _client_address(request: Request) -> str:
    """The connecting address; `X-Forwarded-For` counts only from PREFLAB_TRUSTED_PROXIES (app/main.py)."""
    return request.client.host if request.client else "unknown"


def _login_page(
    request: Request,
    *,
    next_url: str,
    settings: Settings,
    error: str | None = None,
    username: str = "",
    status_code: int = 200,
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        status_code=status_code,
        login_csrf=token,
        next_url=next_url,
        error=error,
        username=username,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        max_age=3600,
        path="/login",
    )
    return response


@router.get("/login")
def login_form(request: Request, caller: OptionalCaller, settings: SettingsDep, next: str | None = None):
    if caller is not None:
        return redirect(_safe_next(next))
    return _login_page(request, next_url=_safe_next(next), settings=settings)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
):
    next_url = _safe_next(next)
    cookie_token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not csrf_token or not cookie_token or not tokens_equal(csrf_token, cookie_token):
        raise Forbidden(
            "The login form expired or was not sent from this site; reload it and try again.",
            code="csrf_failed",
        )
    address = _client_address(request)
    try:
        throttle.count_login_attempt(
            session, username=username, address=address, limits=throttle.LoginLimits.from_settings(settings)
        )
        user = service.authenticate(session, username=username, password=password)
    except (NotAuthenticated, TooManyRequests) as error:
        return _login_page(
            request,
            next_url=next_url,
            settings=settings,
            error=error.message,
            username=username,
            status_code=error.status_code,
        )
    throttle.forget_login_attempt(session, username=username, address=address)
    cookie, _ = service.start_web_session(
        session, user=user, lifetime=timedelta(hours=settings.session_hours)
    )
    service.purge_expired(session)
    response = redirect(next_url)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        max_age=settings.session_hours * 3600,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, _caller: CallerDep, session: SessionDep):
    # CallerDep has already checked the CSRF token, so a third-party page cannot log anyone out.
    service.end_web_session(session, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE)
    return response
