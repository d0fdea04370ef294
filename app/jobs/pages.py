"""The run page: a job's status, its curves (the charts its kind registered), logs and samples."""

from fastapi import APIRouter, Request

from app.dependencies import CallerDep, ProjectReader, SessionDep
from app.jobs import kinds, service
from app.jobs.charts import metric_chart
from app.jobs.dependencies import JobDep
from app.jobs.models import FINISHED
from app.models_registry import service as registry
from app.projects import service as projects
from app.web import is_htmx, render

router = APIRouter(include_in_schema=False)


@router.get("/jobs/{job_id}")
def run_page(request: Request, caller: CallerDep, _reader: ProjectReader, job: JobDep, session: SessionDep):
    service.requeue_expired(session)
    session.refresh(job)
    events = service.events(session, job=job)
    charts = [
        chart
        for title, keys in kinds.charts_of(job.kind)
        if (chart := metric_chart(title, events, list(keys))) is not None
    ]
    logs = [e for e in events if e.log][-20:]
    # A PPO run reports a few sample completions every N steps; the page shows the latest report.
    samples = next((e.metrics for e in reversed(events) if isinstance(e.metrics.get("samples"), list)), None)
    model = registry.get_model(session, job.model_id) if job.model_id else None
    project = projects.get_project(session, job.project_id) if job.project_id else None
    kind = kinds.get(job.kind)
    template = "runs/_run_fragment.html" if is_htmx(request) else "runs/page.html"
    return render(
        request,
        template,
        caller,
        job=job,
        charts=charts,
        logs=logs,
        samples=samples,
        model=model,
        project=project,
        active=job.status not in FINISHED,
        kind_title=kind.title if kind else job.kind,
        run_notes=kind.run_notes if kind else None,
    )
