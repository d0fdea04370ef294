"""Login rate limiting that holds under concurrency and that a stranger cannot turn into a lockout.

Two counters per attempt, each a row incremented in one statement (an upsert that returns the new
count) and committed *before* the password is checked, so 100 concurrent guesses each see the ones
before them and only the first few are checked at all:

- per username *from one address*: a stranger who types wrong passwords for `admin` locks out only
  themselves, never `admin` typing the right password from elsewhere;
- per address: one address trying many usernames.

A successful login clears its pair's counter and takes its own attempt back off the address's. Each
counter's window starts at its first attempt and resets once it has passed.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.auth.models import LoginThrottle
from app.db import utcnow
from app.errors import TooManyRequests
from app.names import name_key
from app.settings import Settings

INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@dataclass(frozen=True)
class LoginLimits:
    per_user_and_address: int
    per_address: int
    window: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "LoginLimits":
        return cls(
            per_user_and_address=settings.login_max_failures_per_user,
            per_address=settings.login_max_failures_per_address,
            window=timedelta(minutes=settings.login_window_minutes),
        )


def _key(kind: str, *parts: str) -> str:
    # Hashed: usernames and addresses of any length (and spelling) fit the column.
    return f"{kind}:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:64]


def _pair_key(username: str, address: str) -> str:
    return _key("user@address", name_key(username), address)


def _address_key(address: str) -> str:
    return _key("address", address)


def _count_attempt(session: Session, key: str, now: datetime, window: timedelta) -> int:
    """Add one attempt to `key`'s counter and return the new count, in one atomic statement."""
    insert = INSERTS[session.get_bind().dialect.name](LoginThrottle)
    expired = LoginThrottle.window_started_at <= now - window
    statement = (
        insert.values(key=key, attempts=1, window_started_at=now)
        .on_conflict_do_update(
            index_elements=[LoginThrottle.key],
            set_={
                "attempts": case((expired, 1), else_=LoginThrottle.attempts + 1),
                "window_started_at": case((expired, now), else_=LoginThrottle.window_started_at),
            },
        )
        .returning(LoginThrottle.attempts)
    )
    return session.execute(statement).scalar_one()


def count_login_attempt(session: Session, *, username: str, address: str, limits: LoginLimits) -> None:
    """Count this attempt, commit it, and refuse it (429) when a limit is already used up.

    Refused attempts are not checked against the password, right or wrong: a limit that let the right
    password through would tell a guesser when they had found it.
    """
    now = utcnow()
    for_pair = _count_attempt(session, _pair_key(username, address), now, limits.window)
    for_address = _count_attempt(session, _address_key(address), now, limits.window)
    session.commit()  # visible to concurrent attempts before this one's password is checked
    if for_pair > limits.per_user_and_address or for_address > limits.per_address:
        minutes = int(limits.window.total_seconds() // 60)
        raise TooManyRequests(
            f"Too many failed logins from this address. Wait {minutes} minutes and try again, or ask an "
            "admin to reset your password.",
            code="login_rate_limited",
        )


def forget_login_attempt(session: Session, *, username: str, address: str) -> None:
    """After a successful login: its pair starts afresh, and the address gets its attempt back."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == _pair_key(username, address)))
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == _address_key(address), LoginThrottle.attempts > 0)
        .values(attempts=LoginThrottle.attempts - 1)
    )


def purge_stale(session: Session, *, now: datetime, window: timedelta) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.window_started_at <= now - window))
