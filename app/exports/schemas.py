from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Bump when a field of an export row changes meaning or disappears (adding fields keeps the version).
# 2: a rankings row's `flags` is a list of {completion_id, flags} (was an object keyed by id in JSONL and
# a JSON string in Parquet), so that both formats share one type.
SCHEMA_VERSION = 2

ExportKind = Literal["pairs", "rankings", "demonstrations"]
LabelerStatusName = Literal["ok", "flagged", "excluded"]  # app/agreement/models.py
ExportFormat = Literal["jsonl", "parquet"]


class ExportFilters(BaseModel):
    """The query parameters of `GET /projects/{id}/export` (and of `preflab export`)."""

    model_config = ConfigDict(extra="forbid")

    kind: ExportKind = "pairs"
    format: ExportFormat = "jsonl"
    since: datetime | None = Field(
        None, description="Rankings (or demonstrations) created at or after this time (ISO-8601)"
    )
    until: datetime | None = Field(None, description="Rankings (or demonstrations) created before this time")
    min_agreement: float | None = Field(
        None, ge=-1, le=1, description="Prompts whose rankings agree this much"
    )
    exclude_flags: list[str] = Field(
        default_factory=list, description="Drop pairs with a completion so flagged"
    )
    labelers: list[str] = Field(default_factory=list, description="Only these pseudonymous labeler ids")
    include_ties: bool = Field(False, description="Add tied pairs, marked with tie: true")
    exclude_labeler_status: list[LabelerStatusName] = Field(
        default_factory=list,
        description="Leave out the work of labelers with these statuses (GET /projects/{id}/labelers)",
    )
    exclude_none_acceptable: bool = Field(
        False, description='Drop the rankings whose labeler marked "none of these is acceptable"'
    )

    @field_validator("exclude_flags", "labelers", "exclude_labeler_status", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """`exclude_flags=unsafe,nonsense` in a query string, or a list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
            return [part.strip() for part in value[0].split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _filters_of_the_kind(self) -> "ExportFilters":
        """Demonstrations have no flags, agreement or ties: a filter on them would silently do nothing."""
        if self.kind == "demonstrations":
            used = [
                name
                for name, value in (
                    ("min_agreement", self.min_agreement),
                    ("exclude_flags", self.exclude_flags),
                    ("include_ties", self.include_ties),
                    ("exclude_none_acceptable", self.exclude_none_acceptable),
                )
                if value not in (None, [], False)
            ]
            if used:
                raise ValueError(f"{', '.join(used)} filter rankings and pairs, not demonstrations")
        return self

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            from datetime import UTC

            return value.replace(tzinfo=UTC)
        return value

    def as_metadata(self) -> dict:
        return self.model_dump(mode="json", exclude={"format"})


class TrainingFilters(BaseModel):
    """Which comparisons to train on: the export's filters (see docs/exports.md)."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    min_agreement: float | None = Field(None, ge=-1, le=1)
    exclude_flags: list[str] = Field(default_factory=list)
    labelers: list[str] = Field(default_factory=list)
    exclude_labeler_status: list[LabelerStatusName] = Field(
        default_factory=list, description="Leave out the rankings of labelers with these statuses"
    )
    exclude_none_acceptable: bool = Field(
        True,
        description='Leave out rankings marked "none acceptable" (on by default: the order among answers a '
        "labeler found all bad is weak evidence, and DPO would raise a bad answer's probability)",
    )


@dataclass(frozen=True)
class ExportPlan:
    """A validated export: the project, its filters, and what the filters resolved to."""

    project_id: int
    export_salt: str
    filters: ExportFilters
    labeler_ids: frozenset[int] | None  # None: everyone
    prompt_ids: frozenset[int] | None  # None: every prompt (min_agreement unset)
    excluded_labeler_ids: frozenset[int] = frozenset()  # exclude_labeler_status resolved
