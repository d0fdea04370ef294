"""Accounts, tokens, browser sessions and login rate limiting. No HTTP types here."""

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, joinedload

from app.auth.models import ApiToken, Role, User, WebSession
from app.auth.security import hash_password, hash_token, new_token, password_needs_rehash, verify_password
from app.auth.throttle import purge_stale
from app.db import utcnow
from app.errors import Conflict, NotAuthenticated, NotFound
from app.names import name_key


def create_user(session: Session, *, username: str, role: Role | str, password: str | None = None) -> User:
    if session.scalar(select(User.id).where(User.username_key == name_key(username))):
        raise Conflict(
            f"The username '{username}' is taken; choose another.",
            code="username_taken",
            details={"field": "username"},
        )
    user = User(
        username=username, role=Role(role).value, password_hash=hash_password(password) if password else None
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}.", code="user_not_found")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def issue_api_token(session: Session, *, user: User) -> str:
    """Create a token for `user` and return it; only its hash is kept, so this is the one chance to see it."""
    token = new_token()
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10]))
    session.flush()
    return token


def revoke_tokens(session: Session, *, user: User) -> None:
    session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def user_for_api_token(session: Session, token: str) -> User | None:
    row = session.scalar(
        select(ApiToken)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
        .options(joinedload(ApiToken.user))  # every API request needs both: one query, not two
    )
    if row is None or not row.user.is_active:
        return None
    now = utcnow()
    # Writing on every request would serialise readers on SQLite; a minute's precision is plenty.
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
    return row.user


# --- passwords and login -------------------------------------------------------------------------


def authenticate(session: Session, *, username: str, password: str) -> User:
    """Return the user for a correct username and password; raise otherwise. Rate limiting is
    app/auth/throttle.py's, counted before this is called."""
    user = session.scalar(select(User).where(User.username_key == name_key(username)))
    if user is None or not user.is_active or not verify_password(user.password_hash, password):
        raise NotAuthenticated("Wrong username or password.", code="bad_credentials")
    if user.password_hash and password_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def set_password(session: Session, *, user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    # A new password ends every browser session that the old one opened.
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))


# --- browser sessions ----------------------------------------------------------------------------


def start_web_session(session: Session, *, user: User, lifetime: timedelta) -> tuple[str, WebSession]:
    """Return the cookie value (shown to the browser only) and the stored session."""
    cookie = new_token("s")
    web_session = WebSession(
        user_id=user.id,
        token_hash=hash_token(cookie),
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + lifetime,
    )
    session.add(web_session)
    session.flush()
    return cookie, web_session


def find_web_session(session: Session, cookie: str) -> WebSession | None:
    web_session = session.scalar(select(WebSession).where(WebSession.token_hash == hash_token(cookie)))
    if web_session is None or web_session.expires_at <= utcnow() or not web_session.user.is_active:
        return None
    return web_session


def end_web_session(session: Session, cookie: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == hash_token(cookie)))


def purge_expired(session: Session, *, now: datetime | None = None) -> None:
    now = now or utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    purge_stale(session, now=now, window=timedelta(days=1))
