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
    reward, at_chance = _checked_reward(session, request.reward_model, "reward_model", force=request.force)
    primary = _reward_entry(reward)
    extras = []
    for index, extra in enumerate(request.extra_rewards):
        field = f"extra_rewards.{index}.model"
        if extra.model in {request.reward_model, *(e.model for e in request.extra_rewards[:index])}:
            raise InvalidInput(
                f"{field}: model {extra.model} is already one of this run's rewards.",
                details={"field": field},
            )
        version, _ = _checked_reward(session, extra.model, field, force=request.force)
        extras.append(_reward_entry(version) | {"weight": extra.weight})
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
        # where the reward model lives, and for an imported classifier which output is the reward (None:
        # its one logit) and that it reads the completion alone; then the rewards mixed in, if any
        "reward_model_artifact": primary["artifact"],
        "reward_name": primary["name"],
        "reward_label": primary["label"],
        "reward_input": primary["reads"],
        "extra_reward_entries": extras,
        **policy,
        "eval_prompt_ids": eval_ids,
        # why the reward model was not shown better than chance, when the run was forced (its run page says)
        "reward_model_at_chance": at_chance,
    }
    return jobs.enqueue(session, kind=KIND, project_id=project.id, config=config, created_by_id=created_by_id)


def _checked_reward(
    session: Session, model_id: int, field: str, *, force: bool
) -> tuple[ModelVersion, str | None]:
    """A registered reward model (422 otherwise) that is shown better than chance (409 unless forced),
    and why it is not (None when it is)."""
    reward = session.get(ModelVersion, model_id)
    if reward is None or reward.kind != ModelKind.reward.value:
        raise InvalidInput(
            f"Model {model_id} is not a registered reward model: train one on this project "
            "first (POST /projects/{id}/train/reward) or pick one from GET /models?kind=reward.",
            code="unknown_model",
            details={"field": field, "model_id": model_id},
        )
    at_chance = chance_verdict(reward.kind, reward.metrics, reward.origin)
    if at_chance and not force:
        raise Conflict(
            f"Reward model {reward.id} is not shown better than chance: {at_chance}. PPO against it would "
            "optimise noise. Label more comparisons and train a new reward model, or start anyway "
            '("force": true; on the page, "Start anyway").',
            code="reward_model_at_chance",
            details={"field": field, "model_id": reward.id, "reason": at_chance},
        )
    return reward, at_chance


def _reward_entry(reward: ModelVersion) -> dict[str, Any]:
    """Where a reward lives and how it reads: an imported classifier reads the completion alone, as such
    classifiers were trained to (a reward model trained here reads the chat)."""
    return {
        "artifact": reward.artifact,
        "name": reward.name or f"model {reward.id}",
        "label": reward.reward_label,
        "reads": "completion" if reward.origin == ModelOrigin.imported.value else "chat",
    }


def register_policy(session: Session, job: Job, artifact: str | None) -> None:
    registry.register_from_job(session, job=job, artifact=artifact, kind=ModelKind.policy)


def card_context(session: Session, project: Project) -> dict[str, Any]:
    """The PPO card offers the registered reward models and policy versions."""
    return {
        "reward_models": registry.list_models(session, kind=ModelKind.reward),
        "policy_models": registry.list_models(session, kind=ModelKind.policy),
    }
