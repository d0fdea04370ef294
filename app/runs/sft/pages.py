"""The SFT card's form: typed fields in, an `SFTTrainRequest` out, the run page after."""

from typing import Annotated

from fastapi import APIRouter, Form
from pydantic import ValidationError

from app.dependencies import AdminUser, SessionDep
from app.errors import PrefLabError
from app.forms import filled
from app.ids import parse_id
from app.projects.dependencies import ProjectDep
from app.runs import project_card
from app.runs.sft import service
from app.runs.sft.schemas import SFTTrainRequest
from app.web import redirect

router = APIRouter(include_in_schema=False)


@router.post("/projects/{project_id}/train/sft")
def start_sft_run(
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    base_model: Annotated[str, Form()] = "",
    epochs: Annotated[str, Form()] = "",
    learning_rate: Annotated[str, Form()] = "",
    max_length: Annotated[str, Form()] = "",
    lora_r: Annotated[str, Form()] = "",
):
    typed = {
        "base_model": base_model,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "max_length": max_length,
        "lora_r": lora_r,
    }
    try:
        fields = filled(**typed)
        if "base_model" in fields:
            fields["base_model"] = parse_id(fields["base_model"]) or fields["base_model"]
        body = SFTTrainRequest(**fields)
        job = service.queue_sft_training(session, project=project, request=body, created_by_id=admin.id)
    except (ValidationError, PrefLabError) as error:
        raise project_card.refused(error, project_id=project.id, card=service.KIND, typed=typed) from None
    return redirect(f"/jobs/{job.id}")
