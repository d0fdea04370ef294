"""The export page: the API's filters as a form, a live count of what they select, a download link.

The download itself is the JSON API's streamed endpoint (a GET, so the session cookie authorises it);
the browser's own download bar shows its progress.
"""

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from pydantic import ValidationError

from app.dependencies import CallerDep, ProjectReader, SessionDep
from app.errors import InvalidInput, PrefLabError
from app.exports import service
from app.exports.schemas import ExportFilters
from app.projects.dependencies import ProjectDep
from app.web import is_htmx, render

router = APIRouter(include_in_schema=False)
FORM_FIELDS = (
    "kind",
    "format",
    "since",
    "until",
    "min_agreement",
    "exclude_flags",
    "labelers",
    "include_ties",
    "exclude_none_acceptable",
    "exclude_labeler_status",
)
LISTS = ("exclude_flags", "exclude_labeler_status")
CHECKBOXES = ("include_ties", "exclude_none_acceptable")


def _filters_from_query(request: Request) -> tuple[dict, ExportFilters | None, str | None]:
    """The form's values as typed, the validated filters (or None), and an error message."""
    query = request.query_params
    form = {name: query.get(name, "") for name in FORM_FIELDS if name not in LISTS}
    form |= {name: query.getlist(name) for name in LISTS}
    values = {key: value for key, value in form.items() if value not in ("", [])}
    for box in CHECKBOXES:
        values[box] = form.get(box) in ("true", "on", "1")
    try:
        return form, ExportFilters(**values), None
    except ValidationError as exc:
        return form, None, InvalidInput.from_pydantic(exc).message


@router.get("/projects/{project_id}/export")
def export_page(
    request: Request, caller: CallerDep, _reader: ProjectReader, project: ProjectDep, session: SessionDep
):
    form, filters, error = _filters_from_query(request)
    rows = download = None
    if filters is not None:
        try:
            plan = service.plan_export(session, project=project, filters=filters)
            rows = service.count_rows(session.connection(), plan)
            query = {k: v for k, v in filters.model_dump(mode="json", exclude_defaults=True).items()}
            query.update(kind=filters.kind, format=filters.format)
            for key in ("exclude_flags", "labelers", "exclude_labeler_status"):
                if key in query:
                    query[key] = ",".join(query[key])
            download = f"/api/v1/projects/{project.id}/export?{urlencode(query)}"
        except PrefLabError as exc:
            error = exc.message
    template = "exports/_summary_fragment.html" if is_htmx(request) else "exports/page.html"
    return render(
        request,
        template,
        caller,
        project=project,
        form=form,
        rows=rows,
        download=download,
        error=error,
        kind=filters.kind if filters else form.get("kind") or "pairs",
    )
