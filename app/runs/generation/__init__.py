"""Generation: K completions per prompt from the project's model (the jobs card on the project page
queues it; evaluation rounds queue it with two models)."""

from app.jobs.kinds import Kind, register
from app.runs.generation import router, service

KIND = register(
    Kind(
        name=service.KIND,
        title="Generation",
        charts=[("Completions", ["generate/completions"])],
        api=router.router,
    )
)
