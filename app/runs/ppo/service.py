"""Queueing a PPO run, and registering the policy it produced. No HTTP types here."""

import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput
from app.jobs import service as jobs
from app.jobs.models import Job
from app.models_registry import service as registry
from app.models_registry.models import ModelKind, ModelOrigin, ModelVersion
from app.models_registry.quality import chance_verdict
from app.projects.models import Project
from app.projects.schemas import GenerationSettings
from app.prompts.models import Prompt
from app.runs.held_out import starting_policy
from app.runs.ppo.schemas import PPOTrainRequest

KIND = "ppo"


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
    at_chance = chance_verdict(reward.kind, reward.metrics, reward.origin)
    if at_chance and not request.force:
        raise Conflict(
            f"Reward model {reward.id} is not shown better than chance: {at_chance}. PPO against it would "
            "optimise noise. Label more comparisons and train a new reward model, or start anyway "
            '("force": true; on the page, "Start anyway").',
            code="reward_model_at_chance",
            details={"field": "reward_model", "model_id": reward.id, "reason": at_chance},
        )
    policy = starting_policy(session, request.policy, field="policy")
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
        # an imported classifier: which output is the reward (None: its one logit), and that it reads the
        # completion alone, as such classifiers were trained to (trained reward models read the chat)
        "reward_label": reward.reward_label,
        "reward_input": "completion" if reward.origin == ModelOrigin.imported.value else "chat",
        **policy,
        "eval_prompt_ids": eval_ids,
        # why the reward model was not shown better than chance, when the run was forced (its run page says)
        "reward_model_at_chance": at_chance,
    }
    return jobs.enqueue(session, kind=KIND, project_id=project.id, config=config, created_by_id=created_by_id)


def register_policy(session: Session, job: Job, artifact: str | None) -> None:
    registry.register_from_job(session, job=job, artifact=artifact, kind=ModelKind.policy)


def card_context(session: Session, project: Project) -> dict[str, Any]:
    """The PPO card offers the registered reward models and policy versions."""
    return {
        "reward_models": registry.list_models(session, kind=ModelKind.reward),
        "policy_models": registry.list_models(session, kind=ModelKind.policy),
    }
