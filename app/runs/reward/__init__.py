"""Reward models: a Bradley-Terry sequence classifier fitted on a project's comparisons."""

from app.exports.schemas import TrainingFilters
from app.forms import defaults_of, limits_of
from app.jobs.kinds import Kind, register
from app.runs.reward import pages, router, service
from app.runs.reward.schemas import RewardTrainRequest
from app.web import templates

templates.env.globals["reward_defaults"] = defaults_of(RewardTrainRequest)
templates.env.globals["reward_limits"] = limits_of(RewardTrainRequest) | limits_of(TrainingFilters)

KIND = register(
    Kind(
        name=service.KIND,
        title="Reward model",
        charts=[("Loss", ["loss/train", "loss/eval"]), ("Accuracy", ["accuracy/train", "accuracy/eval"])],
        api=router.router,
        pages=pages.router,
        on_complete=service.register_reward_model,
        card="runs/reward/_card.html",
        card_order=10,
    )
)
