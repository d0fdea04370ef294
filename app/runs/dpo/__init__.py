"""DPO: the policy trained straight on a project's comparisons, against a frozen reference."""

from app.exports.schemas import TrainingFilters
from app.forms import defaults_of, limits_of
from app.jobs.kinds import Kind, register
from app.runs.dpo import pages, router, service
from app.runs.dpo.schemas import DPOTrainRequest
from app.runs.policy_card import policy_choices
from app.web import templates

templates.env.globals["dpo_defaults"] = defaults_of(DPOTrainRequest)
templates.env.globals["dpo_limits"] = limits_of(DPOTrainRequest) | limits_of(TrainingFilters)

KIND = register(
    Kind(
        name=service.KIND,
        title="DPO",
        charts=[
            ("Loss", ["loss/train", "loss/eval"]),
            ("Preference accuracy", ["rewards/accuracy", "accuracy/eval"]),
            ("Implicit reward margin", ["rewards/margins", "margins/eval"]),
            ("Implicit rewards", ["rewards/chosen", "rewards/rejected"]),
            ("Answer log-probs", ["logps/chosen", "logps/rejected"]),
        ],
        api=router.router,
        pages=pages.router,
        on_complete=service.register_policy,
        card="runs/dpo/_card.html",
        card_context=policy_choices,
        card_order=15,
    )
)
