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


class TokenOut(BaseModel):
    token: str
