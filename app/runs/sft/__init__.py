"""SFT: the policy fine-tuned on a project's demonstrations (InstructGPT's step 1)."""

from app.forms import defaults_of, limits_of
from app.jobs.kinds import Kind, register
from app.runs.policy_card import policy_choices
from app.runs.sft import pages, router, service
from app.runs.sft.schemas import SFTTrainRequest
from app.web import templates

templates.env.globals["sft_defaults"] = defaults_of(SFTTrainRequest)
templates.env.globals["sft_limits"] = limits_of(SFTTrainRequest)

KIND = register(
    Kind(
        name=service.KIND,
        title="SFT",
        charts=[("Loss on the answers' tokens", ["loss/train", "loss/eval"])],
        api=router.router,
        pages=pages.router,
        on_complete=service.register_policy,
        card="runs/sft/_card.html",
        card_context=policy_choices,
        card_order=5,
    )
)
