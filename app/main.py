"""The ASGI application: routers, static files, and one place that maps errors to responses."""

import logging
from contextlib import contextmanager
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.access_log import quiet_worker_polling
from app.admission import RETRY_AFTER_SECONDS, DatabaseGate
from app.agreement import labelers_pages
from app.agreement import labelers_router as labelers_api
from app.agreement import pages as agreement_pages
from app.agreement import router as agreement_api
from app.api_docs import API_PREFIX, OPENAPI_URL
from app.api_docs import router as api_docs
from app.auth import pages as auth_pages
from app.auth import router as auth_api
from app.auth import user_pages
from app.body_limits import BodyLimits
from app.dashboard import jobs_card, project_page, team_card, upload
from app.db import make_engine, make_session_factory, session_scope
from app.dependencies import reload_caller
from app.errors import Conflict, InvalidInput, NotAuthenticated, PrefLabError, ServiceUnavailable
from app.evaluations import pages as evaluation_pages
from app.evaluations import router as evaluation_api
from app.exports import pages as export_pages
from app.exports import router as export_api
from app.forms import FormRefused
from app.imports import router as import_api
from app.jobs import pages as job_pages
from app.jobs import router as job_api
from app.labeling import pages as labeling_pages
from app.labeling import preview_pages
from app.labeling import router as labeling_api
from app.models_registry import pages as models_pages
from app.models_registry import router as models_api
from app.projects import members_router as members_api
from app.projects import pages as project_pages
from app.projects import router as project_api
from app.prompts import router as prompt_api
from app.response_headers import ResponseHeaders
from app.runs import load_kinds
from app.settings import Settings, get_settings
from app.static_files import STATIC_PREFIX, assets
from app.storable import refuse_unstorable_input
from app.web import render

log = logging.getLogger("preflab")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    quiet_worker_polling()
    app = FastAPI(
        title="PrefLab",
        version="0.1.0",
        openapi_url=OPENAPI_URL,
        docs_url=None,  # app/api_docs.py serves both pages from vendored files (FastAPI's use a CDN)
        redoc_url=None,
        dependencies=[Depends(refuse_unstorable_input)],
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.resolved_database_url)
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.db_gate = DatabaseGate.for_dialect(app.state.engine.dialect.name)

    apis = [
        auth_api.router,
        project_api.router,
        members_api.router,
        prompt_api.router,
        labeling_api.router,
        job_api.router,
        export_api.router,
        import_api.router,
        agreement_api.router,
        labelers_api.router,
        models_api.router,
        evaluation_api.router,
    ]
    kinds = load_kinds()  # each kind of work brings its own routes (app/runs/<kind>/)
    apis += [kind.api for kind in kinds if kind.api is not None]
    for api in apis:
        app.include_router(api, prefix=API_PREFIX)
    pages_routers = [
        auth_pages.router,
        user_pages.router,
        project_pages.router,
        project_page.router,
        upload.router,
        jobs_card.router,
        team_card.router,
        job_pages.router,
        labeling_pages.router,
        preview_pages.router,
        agreement_pages.router,
        labelers_pages.router,
        export_pages.router,
        models_pages.router,
        evaluation_pages.router,
        *(kind.pages for kind in kinds if kind.pages is not None),
    ]
    for pages in pages_routers:
        app.include_router(pages)
    app.include_router(api_docs)
    app.mount(STATIC_PREFIX, assets, name="static")
    app.add_middleware(ResponseHeaders)
    app.add_middleware(
        BodyLimits, small_bytes=settings.max_json_bytes, upload_bytes=settings.max_upload_bytes
    )
    if settings.trusted_proxies.strip():
        # Outermost, so every layer (login limits included) sees the client behind the proxy. Only
        # this setting decides: `preflab serve` runs uvicorn without its own proxy handling, which
        # would otherwise believe X-Forwarded-For from any loopback client.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)

    _install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX + "/") or request.url.path == API_PREFIX


def _error_response(request: Request, error: PrefLabError) -> Response:
    if _wants_json(request):
        headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else {}
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
        return JSONResponse(error.as_body(), status_code=error.status_code, headers=headers)
    if isinstance(error, NotAuthenticated):
        from app.web import redirect

        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"/login?next={quote(target)}")
    response = render(request, "error.html", None, status_code=error.status_code, error=error)
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _render_refused_form(request: Request, refused: FormRefused) -> Response:
    """A refused form's page again (app.forms). The request's own transaction was rolled back when the
    route raised; this one reads the page afresh (and commits what reading does, such as expiry sweeps,
    as the page's GET would)."""
    with contextmanager(session_scope)(request.app.state.session_factory) as session:
        caller = reload_caller(session, request)
        context = refused.context(session)
        response = render(request, refused.template, caller, status_code=refused.status_code, **context)
    return response


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PrefLabError)
    async def domain_error(request: Request, exc: PrefLabError) -> Response:
        if isinstance(exc, FormRefused) and not _wants_json(request):
            async with request.app.state.db_gate.admit():
                return await run_in_threadpool(_render_refused_form, request, exc)
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = []
        for err in exc.errors():
            loc = [str(part) for part in err["loc"]]
            if loc and loc[0] in ("body", "query", "path", "header"):
                loc = loc[1:]
            errors.append({"field": ".".join(loc), "message": err["msg"].removeprefix("Value error, ")})
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        error = InvalidInput(
            message, code="validation_failed", details={"field": first["field"], "errors": errors}
        )
        return _error_response(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        error = PrefLabError(str(exc.detail), code=codes.get(exc.status_code, "http_error"))
        error.status_code = exc.status_code
        return _error_response(request, error)

    @app.exception_handler(StatementError)
    async def statement_refused(request: Request, exc: StatementError) -> Response:
        """A value refused on its way to the database (app.storable, via app.db), or one the database
        itself refused: the caller's data, so a 4xx that says what, never a 500."""
        if isinstance(exc.orig, PrefLabError):
            return _error_response(request, exc.orig)
        if isinstance(exc, IntegrityError):  # a concurrent request got there first (unique keys)
            error = Conflict(
                "This conflicts with data written by another request at the same moment; reload and retry.",
                code="conflict",
            )
            return _error_response(request, error)
        if isinstance(exc, DataError):
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "invalid value"
            return _error_response(
                request, InvalidInput(f"The database refused a value: {reason}.", code="unstorable_value")
            )
        log.error("database statement failed", exc_info=exc)
        error = PrefLabError("Internal error: the database statement failed.", code="internal_error")
        error.status_code = 500
        return _error_response(request, error)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def database_down(request: Request, exc: OperationalError | PoolTimeout) -> Response:
        log.error("database error: %s", exc)
        return _error_response(
            request,
            ServiceUnavailable(
                f"The database is unavailable or busy; retry in {RETRY_AFTER_SECONDS} s.",
                code="database_unavailable",
                retry_after=RETRY_AFTER_SECONDS,
            ),
        )
