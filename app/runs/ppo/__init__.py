"""PPO: the policy fine-tuned against a reward model, with a KL penalty to a frozen reference."""

from app.forms import defaults_of, limits_of
from app.jobs.kinds import Kind, register
from app.runs.ppo import pages, router, service
from app.runs.ppo.schemas import PPOTrainRequest
from app.web import templates

templates.env.globals["ppo_defaults"] = defaults_of(PPOTrainRequest)
templates.env.globals["ppo_limits"] = limits_of(PPOTrainRequest)

KIND = register(
    Kind(
        name=service.KIND,
        title="PPO",
        charts=[
            ("Reward", ["reward/score"]),
            ("Each reward, standardised (a mix of rewards)", ["reward/component/*"]),
            ("KL to the reference", ["objective/kl"]),
            ("Entropy per token", ["objective/entropy_per_token"]),
            ("Held-out reward and KL", ["eval/reward", "eval/kl"]),
        ],
        api=router.router,
        pages=pages.router,
        on_complete=service.register_policy,
        card="runs/ppo/_card.html",
        card_context=service.card_context,
        card_order=20,
        run_notes="runs/ppo/_run_notes.html",
    )
)
