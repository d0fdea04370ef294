"""The PPO card's form: typed fields in, a `PPOTrainRequest` out, the run page after."""

from typing import Annotated

from fastapi import APIRouter, Form
from pydantic import ValidationError

from app.dependencies import AdminUser, SessionDep
from app.errors import PrefLabError
from app.forms import filled
from app.ids import parse_id
from app.projects.dependencies import ProjectDep
from app.runs import project_card
from app.runs.ppo import service
from app.runs.ppo.schemas import PPOTrainRequest
from app.web import redirect

router = APIRouter(include_in_schema=False)


@router.post("/projects/{project_id}/train/ppo")
def start_ppo_run(
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    reward_model: Annotated[str, Form()] = "",
    policy: Annotated[str, Form()] = "",
    steps: Annotated[str, Form()] = "",
    batch_size: Annotated[str, Form()] = "",
    minibatch_size: Annotated[str, Form()] = "",
    max_new_tokens: Annotated[str, Form()] = "",
    learning_rate: Annotated[str, Form()] = "",
    kl_coef: Annotated[str, Form()] = "",
    target_kl: Annotated[str, Form()] = "",
    kl_horizon: Annotated[str, Form()] = "",
    lora_r: Annotated[str, Form()] = "",
    extra_reward: Annotated[str, Form()] = "",
    extra_weight: Annotated[str, Form()] = "",
    fixed_kl: Annotated[bool, Form()] = False,
    force: Annotated[bool, Form()] = False,
):
    typed_text = {
        "policy": policy,
        "steps": steps,
        "batch_size": batch_size,
        "minibatch_size": minibatch_size,
        "max_new_tokens": max_new_tokens,  # empty: the project's
        "learning_rate": learning_rate,
        "kl_coef": kl_coef,
        "target_kl": target_kl,
        "kl_horizon": kl_horizon,  # empty: follows the run's length
        "lora_r": lora_r,
    }
    typed = typed_text | {
        "reward_model": reward_model,
        "extra_reward": extra_reward,
        "extra_weight": extra_weight,
        "fixed_kl": ["true"] * fixed_kl,
        "force": ["true"] * force,
    }
    try:
        fields = filled(**typed_text)
        if "policy" in fields:
            fields["policy"] = parse_id(fields["policy"]) or fields["policy"]
        if fixed_kl:
            fields["target_kl"] = None  # a fixed beta: kl_coef throughout
        if extra_reward.strip():  # one mixed-in reward from the card (the API takes up to four)
            fields["extra_rewards"] = [{"model": extra_reward.strip(), "weight": extra_weight.strip() or 1.0}]
        body = PPOTrainRequest(reward_model=reward_model or None, **fields, force=force)
        job = service.queue_ppo_training(session, project=project, request=body, created_by_id=admin.id)
    except (ValidationError, PrefLabError) as error:
        raise project_card.refused(error, project_id=project.id, card=service.KIND, typed=typed) from None
    return redirect(f"/jobs/{job.id}")
