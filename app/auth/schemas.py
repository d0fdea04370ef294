from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.auth.models import Role

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN, description="2-64 letters, digits, '_', '.', '-'")
    password: str | None = Field(None, min_length=8, max_length=1024)
    role: Role


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: Role


class UserDetail(UserOut):
    is_active: bool
    created_at: datetime


class UserUpdate(BaseModel):
    """`PATCH /users/{id}`: any of role, disabled, password; what is left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    disabled: bool | None = Field(None, description="true: the account's tokens and sessions stop at once")
    password: str | None = Field(None, min_length=8, max_length=1024, description="a new password (reset)")


class TokenInfo(BaseModel):
    """An API token as listed: never its secret, only the first characters to recognise it by."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenOut(BaseModel):
    token: str
