"""Gold tasks from an existing ranking: "make this gold".

The ranking's tiers become its prompt's gold tiers. From then on the prompt is a gold task: handed out at
the project's gold_rate to labelers who have not had it, scored against the gold tiers, and its
rankings (this one and any other) are marked gold, so that they leave exports, training and agreement.
Nothing is deleted: the rankings stay, as scored gold rankings.
"""

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.labeling.models import Ranking
from app.prompts.models import Prompt


def make_gold(session: Session, *, ranking_id: int) -> dict:
    ranking = session.get(Ranking, ranking_id)
    if ranking is None:
        raise NotFound(f"No ranking with id {ranking_id}.", code="ranking_not_found")
    prompt = session.get(Prompt, ranking.prompt_id)
    if prompt.gold_tiers is not None and prompt.gold_tiers != ranking.tiers:
        raise Conflict(
            f"Prompt {prompt.id} is a gold task already, with another order; its gold stays as it is.",
            code="already_gold",
            details={"prompt_id": prompt.id},
        )
    prompt.gold_tiers = [list(tier) for tier in ranking.tiers]
    marked = session.execute(update(Ranking).where(Ranking.prompt_id == prompt.id).values(gold=True))
    session.flush()
    return {"prompt_id": prompt.id, "gold_tiers": prompt.gold_tiers, "rankings_now_gold": marked.rowcount}
