"""The DPO card's form: typed fields in, a `DPOTrainRequest` out, the run page after."""

from typing import Annotated

from fastapi import APIRouter, Form
from pydantic import ValidationError

from app.dependencies import AdminUser, SessionDep
from app.errors import PrefLabError
from app.forms import filled, ticked
from app.ids import parse_id
from app.projects.dependencies import ProjectDep
from app.runs import project_card
from app.runs.dpo import service
from app.runs.dpo.schemas import DPOTrainRequest
from app.web import redirect

router = APIRouter(include_in_schema=False)


@router.post("/projects/{project_id}/train/dpo")
def start_dpo_run(
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    policy: Annotated[str, Form()] = "",
    beta: Annotated[str, Form()] = "",
    loss_type: Annotated[str, Form()] = "",
    epochs: Annotated[str, Form()] = "",
    learning_rate: Annotated[str, Form()] = "",
    max_length: Annotated[str, Form()] = "",
    lora_r: Annotated[str, Form()] = "",
    exclude_flags: Annotated[list[str] | None, Form()] = None,
    exclude_none_acceptable: Annotated[list[str] | None, Form()] = None,
    exclude_labeler_status: Annotated[list[str] | None, Form()] = None,
    force: Annotated[bool, Form()] = False,
    min_agreement: Annotated[str, Form()] = "",
):
    typed_text = {
        "policy": policy,
        "beta": beta,
        "loss_type": loss_type,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "max_length": max_length,
        "lora_r": lora_r,
    }
    typed = typed_text | {"min_agreement": min_agreement, "exclude_flags": exclude_flags or []}
    typed["exclude_none_acceptable"] = exclude_none_acceptable or []
    typed["force"] = ["true"] * force
    typed["exclude_labeler_status"] = exclude_labeler_status or []
    try:
        fields = filled(**typed_text)
        if "policy" in fields:
            fields["policy"] = parse_id(fields["policy"]) or fields["policy"]
        body = DPOTrainRequest(
            **fields,
            filters={
                "exclude_flags": exclude_flags or [],
                "min_agreement": min_agreement or None,
                "exclude_none_acceptable": ticked(exclude_none_acceptable, default=True),
                "exclude_labeler_status": exclude_labeler_status or [],
            },
            force=force,
        )
        job = service.queue_dpo_training(session, project=project, request=body, created_by_id=admin.id)
    except (ValidationError, PrefLabError) as error:
        raise project_card.refused(error, project_id=project.id, card=service.KIND, typed=typed) from None
    return redirect(f"/jobs/{job.id}")
