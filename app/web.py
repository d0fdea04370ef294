"""Server-rendered pages: the Jinja2 environment and helpers shared by every domain's `pages.py`.

Convention (Hypermedia Systems): every swappable piece is a `_fragment.html` that its page includes;
a route returns just the fragment for an htmx request (`HX-Request` header) and the page otherwise.
Forms post, then redirect (303) to a GET, so every page also works without JavaScript.
"""

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from app.dependencies import Caller
from app.markdown import render_markdown
from app.settings import PROJECT_ROOT
from app.static_files import static_url

templates = Jinja2Templates(directory=str(PROJECT_ROOT / "templates"))
templates.env.filters["markdown"] = render_markdown
templates.env.globals["app_name"] = "PrefLab"
templates.env.globals["static_url"] = static_url  # content-versioned, so browsers may cache for a year


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request, template: str, caller: Caller | None = None, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render a page (or fragment) with the signed-in user and their CSRF token in the context."""
    context.setdefault("user", caller.user if caller else None)
    context.setdefault("csrf_token", caller.web_session.csrf_token if caller and caller.web_session else "")
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    """Post/redirect/get; htmx follows a 303 like a browser does."""
    return RedirectResponse(url, status_code=303)
