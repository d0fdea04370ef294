"""What an admin does to an existing account: change its role, disable or enable it, reset its password,
list and revoke its API tokens. No HTTP types here.

A disabled account stops at once: its tokens and browser sessions are refused on the next request
(`service.user_for_api_token` and `service.find_web_session` check `is_active`), and its sessions are
deleted, so enabling it again never revives a browser left logged in. Its tokens are kept (not revoked):
enabling it again gives a worker its access back without a new secret. An admin can neither disable nor
demote their own account, and the last active admin cannot be disabled or demoted by anyone: the server
would be left with nobody to run it.
"""

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.auth.models import ApiToken, Role, User, WebSession
from app.auth.service import set_password
from app.db import utcnow
from app.errors import Conflict, NotFound


def update_user(
    session: Session,
    *,
    user: User,
    acting: User,
    role: Role | None = None,
    disabled: bool | None = None,
    password: str | None = None,
) -> User:
    """Apply the given changes, all or none (409 when one would lock the admins out)."""
    loses_admin = user.role == Role.admin.value and (
        (role is not None and role != Role.admin) or (disabled is True and user.is_active)
    )
    if loses_admin and user.id == acting.id:
        raise Conflict(
            "You cannot disable your own account or take away your own admin role; ask another admin.",
            code="own_account",
            details={"field": "disabled" if disabled else "role"},
        )
    if loses_admin and _active_admins(session) <= 1:
        raise Conflict(
            f"'{user.username}' is the last active admin: make another user admin first.",
            code="last_admin",
            details={"field": "disabled" if disabled else "role"},
        )
    if role is not None:
        user.role = role.value
    if disabled is not None:
        user.is_active = not disabled
        if disabled:
            session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    if password is not None:
        set_password(session, user=user, password=password)  # ends the user's browser sessions too
    session.flush()
    return user


def list_tokens(session: Session, *, user: User) -> list[ApiToken]:
    """The user's tokens, newest first: prefix, created, last used, revoked (never the secret)."""
    return list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc()))
    )


def revoke_token(session: Session, *, user: User, token_id: int) -> ApiToken:
    """Revoke one of the user's tokens (404 for another user's, so ids cannot be probed across users)."""
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound(f"User {user.id} has no token {token_id}.", code="token_not_found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
    return token


def _active_admins(session: Session) -> int:
    return session.scalar(
        select(func.count(User.id)).where(User.role == Role.admin.value, User.is_active.is_(True))
    )
