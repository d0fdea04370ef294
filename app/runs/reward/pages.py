"""The reward-model card's form: typed fields in, a `RewardTrainRequest` out, the run page after."""

from typing import Annotated

from fastapi import APIRouter, Form
from pydantic import ValidationError

from app.dependencies import AdminUser, SessionDep, SettingsDep
from app.errors import PrefLabError
from app.forms import filled, ticked
from app.projects.dependencies import ProjectDep
from app.runs import project_card
from app.runs.reward import service
from app.runs.reward.schemas import RewardTrainRequest
from app.web import redirect

router = APIRouter(include_in_schema=False)


@router.post("/projects/{project_id}/train/reward")
def start_reward_run(
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    base_model: Annotated[str, Form()] = "",
    epochs: Annotated[str, Form()] = "",
    learning_rate: Annotated[str, Form()] = "",
    max_length: Annotated[str, Form()] = "",
    exclude_flags: Annotated[list[str] | None, Form()] = None,
    exclude_none_acceptable: Annotated[list[str] | None, Form()] = None,
    exclude_labeler_status: Annotated[list[str] | None, Form()] = None,
    force: Annotated[bool, Form()] = False,
    min_agreement: Annotated[str, Form()] = "",
):
    typed = {"base_model": base_model, "epochs": epochs, "learning_rate": learning_rate}
    typed |= {"max_length": max_length, "min_agreement": min_agreement, "exclude_flags": exclude_flags or []}
    typed["exclude_none_acceptable"] = exclude_none_acceptable or []
    typed["force"] = ["true"] * force
    typed["exclude_labeler_status"] = exclude_labeler_status or []
    try:
        body = RewardTrainRequest(
            **filled(
                base_model=base_model, epochs=epochs, learning_rate=learning_rate, max_length=max_length
            ),
            filters={
                "exclude_flags": exclude_flags or [],
                "min_agreement": min_agreement or None,
                "exclude_none_acceptable": ticked(exclude_none_acceptable, default=True),
                "exclude_labeler_status": exclude_labeler_status or [],
            },
            force=force,
        )
        job = service.queue_reward_training(
            session,
            project=project,
            request=body,
            created_by_id=admin.id,
            model_dirs=settings.allowed_model_dirs,
        )
    except (ValidationError, PrefLabError) as error:
        raise project_card.refused(error, project_id=project.id, card=service.KIND, typed=typed) from None
    return redirect(f"/jobs/{job.id}")
