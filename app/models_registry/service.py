"""Model versions and the training jobs that make them. No HTTP types here."""

import random
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.exports.schemas import ExportFilters
from app.exports.service import plan_export
from app.ids import parse_id
from app.jobs import service as jobs
from app.jobs.models import Job, JobKind
from app.models_registry.models import ModelKind, ModelVersion
from app.models_registry.quality import chance_verdict
from app.models_registry.schemas import PPOTrainRequest, RewardTrainRequest
from app.projects.models import Project
from app.projects.schemas import GenerationSettings
from app.prompts.models import Prompt

KIND_OF_JOB = {JobKind.reward.value: ModelKind.reward, JobKind.ppo.value: ModelKind.policy}


def queue_reward_training(
    session: Session, *, project: Project, request: RewardTrainRequest, created_by_id: int | None
) -> Job:
    """Check the data filters against the project now (422), then queue the job."""
    filters = ExportFilters(kind="pairs", format="jsonl", **request.filters.model_dump())
    plan_export(session, project=project, filters=filters)
    _require_local_or_default(request.base_model)
    return jobs.enqueue(
        session,
        kind=JobKind.reward,
        project_id=project.id,
        config=request.model_dump(mode="json"),
        created_by_id=created_by_id,
    )


def queue_ppo_training(
    session: Session, *, project: Project, request: PPOTrainRequest, created_by_id: int | None
) -> Job:
    """Check the run against the registry and the project now (422), then queue the job.

    The job's config is a snapshot: the request, the project's sampling settings where the request
    leaves them out, where the reward model and the starting policy live in the artifact store, and the
    held-out prompts (a seeded sample of the project's labelable prompts, evaluated before and after and
    never trained on; an evaluation round of the new policy defaults to them).
    """
    if request.batch_size % request.minibatch_size:
        raise InvalidInput(
            f"minibatch_size ({request.minibatch_size}) must divide batch_size ({request.batch_size}).",
            details={"field": "minibatch_size"},
        )
    reward = session.get(ModelVersion, request.reward_model)
    if reward is None or reward.kind != ModelKind.reward.value:
        raise InvalidInput(
            f"Model {request.reward_model} is not a registered reward model: train one on this project "
            "first (POST /projects/{id}/train/reward) or pick one from GET /models?kind=reward.",
            code="unknown_model",
            details={"field": "reward_model", "model_id": request.reward_model},
        )
    if (reason := chance_verdict(reward.kind, reward.metrics)) and not request.force:
        raise Conflict(
            f"Reward model {reward.id} is not shown better than chance: {reason}. PPO against it would "
            "optimise noise. Label more comparisons and train a new reward model, or start anyway "
            '("force": true; on the page, "Start anyway").',
            code="reward_model_at_chance",
            details={"field": "reward_model", "model_id": reward.id, "reason": reason},
        )
    if isinstance(request.policy, str) and request.policy != "default":
        raise InvalidInput(
            "policy must be 'default' or the id of a registered policy version.",
            code="unknown_model",
            details={"field": "policy"},
        )
    policy = None if request.policy == "default" else policy_version(session, int(request.policy))
    prompt_ids = list(
        session.scalars(
            select(Prompt.id)
            .where(Prompt.project_id == project.id, Prompt.for_labeling())
            .order_by(Prompt.id)
        )
    )
    eval_ids = sorted(
        random.Random(request.seed).sample(prompt_ids, min(request.eval_prompts, len(prompt_ids) // 2))
    )
    if len(prompt_ids) - len(eval_ids) < 1:
        raise InvalidInput(
            "This project has no prompts to train on: upload prompts first.",
            code="no_prompts",
            details={"field": "project_id"},
        )
    sampling = GenerationSettings.model_validate(project.generation)
    config = request.model_dump(mode="json") | {
        "temperature": request.temperature or sampling.temperature,
        "top_p": request.top_p or sampling.top_p,
        "max_new_tokens": request.max_new_tokens or sampling.max_new_tokens,
        "reward_model_artifact": reward.artifact,
        "policy_artifact": policy.artifact if policy else None,
        "base_model": f"model:{policy.id}" if policy else "default",
        "eval_prompt_ids": eval_ids,
        # why the reward model was not shown better than chance, when the run was forced (its run page says)
        "reward_model_at_chance": chance_verdict(reward.kind, reward.metrics),
    }
    return jobs.enqueue(
        session, kind=JobKind.ppo, project_id=project.id, config=config, created_by_id=created_by_id
    )


def register_from_job(session: Session, *, job: Job, artifact: str | None) -> ModelVersion:
    """A finished training job's model becomes a version (and the job points at it)."""
    if not artifact:
        raise InvalidInput("A training job must report the artifact it wrote.", details={"field": "artifact"})
    path = PurePosixPath(artifact)
    if path.is_absolute() or ".." in path.parts:
        raise InvalidInput(
            "artifact must be a path inside the artifact store, e.g. reward/job-7.",
            details={"field": "artifact"},
        )
    version = ModelVersion(
        kind=KIND_OF_JOB[job.kind].value,
        artifact=str(path),
        job_id=job.id,
        project_id=job.project_id,
        base_model=str(job.config.get("base_model", "default")),
        metrics=dict(job.metrics),
    )
    session.add(version)
    session.flush()
    job.model_id = version.id
    return version


def policy_version(session: Session, model_id: int, *, field: str = "generation.model") -> ModelVersion:
    """A registered policy version (422 naming `field` if the id is unknown or names a reward model)."""
    version = session.get(ModelVersion, model_id)
    if version is None or version.kind != ModelKind.policy.value:
        what = "a reward model" if version is not None else "unknown"
        raise InvalidInput(
            f"Model {model_id} is {what}, not a policy version: use 'default', a local model directory, "
            "or the id of a policy produced by a PPO run (see GET /models?kind=policy).",
            code="unknown_model",
            details={"field": field, "model_id": model_id},
        )
    return version


def generation_model(
    session: Session, model: str | int, *, field: str = "generation.model"
) -> dict[str, str]:
    """What a generation job needs to know about a model to generate with (422 naming `field` if unknown).

    ``model``: "default", a local Hugging Face model directory, a policy version id, or "model:<id>".
    Returns ``{"model": spec}`` where spec is recorded with every completion ("default", the path, or
    "model:<id>"), plus ``"model_artifact"`` for a version (its path in the artifact store), so that the
    worker loads it from its own mount of the store.
    """
    if isinstance(model, str) and (version_id := parse_id(model.removeprefix("model:"))):
        model = version_id
    if isinstance(model, int):
        version = policy_version(session, model, field=field)
        return {"model": f"model:{version.id}", "model_artifact": version.artifact}
    if model != "default" and not (Path(model).expanduser() / "config.json").is_file():
        raise InvalidInput(
            f"'{model}' is not a Hugging Face model directory (no config.json there). Use 'default', "
            "a local model directory, or a model version id.",
            code="unknown_model",
            details={"field": field},
        )
    return {"model": model}


def list_models(
    session: Session, *, project_id: int | None = None, kind: ModelKind | None = None
) -> list[ModelVersion]:
    query = select(ModelVersion).order_by(ModelVersion.id.desc())
    if project_id is not None:
        query = query.where(ModelVersion.project_id == project_id)
    if kind is not None:
        query = query.where(ModelVersion.kind == kind.value)
    return list(session.scalars(query))


def get_model(session: Session, model_id: int) -> ModelVersion:
    version = session.get(ModelVersion, model_id)
    if version is None:
        raise NotFound(f"No model version with id {model_id}.", code="model_not_found")
    return version


def _require_local_or_default(base_model: str) -> None:
    from pathlib import Path

    if base_model != "default" and not (Path(base_model).expanduser() / "config.json").is_file():
        raise InvalidInput(
            f"'{base_model}' is not a Hugging Face model directory (no config.json there); "
            "use 'default' or a local model directory.",
            code="unknown_model",
            details={"field": "base_model"},
        )
