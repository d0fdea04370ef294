from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """The API's list shape: `{"items": [...], "next_cursor": ...}`; pass `next_cursor` back as `cursor`."""

    items: list[T]
    next_cursor: str | None
