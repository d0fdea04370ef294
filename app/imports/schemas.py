from pydantic import BaseModel, Field

from app.imports.formats import ImportFormat


class SkippedLine(BaseModel):
    line: int
    message: str


class ImportResult(BaseModel):
    imported: int = Field(description="Rankings added (a pair is a ranking of two)")
    prompts: int = Field(description="Prompts added (rows of one import with the same prompt share one)")
    completions: int = Field(description="Completions added")
    comparisons: int = Field(description="Pairwise comparisons the rankings expanded into")
    duplicates: int = Field(description="Rows skipped: already in the project, or repeated in the upload")
    skipped: int = Field(0, description="Invalid lines skipped (only with skip_invalid)")
    skipped_lines: list[SkippedLine] = Field(
        default_factory=list, description="The first 20 skipped lines and why"
    )
    format: ImportFormat
    source: str
