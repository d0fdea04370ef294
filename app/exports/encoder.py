"""Turning query rows into export rows (app/exports/rows.py), caching what repeats: a prompt's messages
and a completion's text are JSON-encoded once and reused by every pair they appear in."""

from datetime import datetime
from typing import Any

import orjson

from app.exports import rows
from app.exports.schemas import ExportPlan
from app.projects.pseudonyms import labeler_pseudonym

CACHE_LIMIT = 20_000  # encoded prompts/completions kept; cleared beyond (ids come roughly in order)


class Encoder:
    """Turns query rows into export rows, caching what repeats (prompts, completions, labelers)."""

    def __init__(self, plan: ExportPlan):
        self.plan = plan
        self.excluded = frozenset(plan.filters.exclude_flags)
        self._prompt_json: dict[int, bytes] = {}
        self._prompt_messages: dict[int, list] = {}
        self._text_json: dict[int, bytes] = {}
        self._labeler: dict[int | None, str] = {}
        self._flags: dict[int, dict] = {}

    # filters that need the row
    def keep_pair(self, row: Any) -> bool:
        if self.plan.prompt_ids is not None and row.prompt_id not in self.plan.prompt_ids:
            return False
        return not (
            self.excluded
            and self.flagged(self.ranking_flags(row.ranking_id, row.flags), row.chosen_id, row.rejected_id)
        )

    def flagged(self, flags: dict | str | None, *completion_ids: int) -> bool:
        if not self.excluded or not flags:
            return False
        flags = orjson.loads(flags) if isinstance(flags, str) else flags
        return any(self.excluded.intersection(flags.get(str(cid), ())) for cid in completion_ids)

    def ranking_flags(self, ranking_id: int, raw: str | None) -> dict:
        """A ranking's flags, decoded once for all its pairs."""
        if ranking_id not in self._flags:
            self._bounded(self._flags)
            self._flags[ranking_id] = orjson.loads(raw) if raw else {}
        return self._flags[ranking_id]

    # pieces
    def labeler(self, labeler_id: int | None, source: str | None) -> str:
        if labeler_id is None:
            return source or "import"
        if labeler_id not in self._labeler:
            self._labeler[labeler_id] = labeler_pseudonym(self.plan.export_salt, labeler_id)
        return self._labeler[labeler_id]

    def messages(self, prompt_id: int, raw: str) -> list:
        if prompt_id not in self._prompt_messages:
            self._bounded(self._prompt_messages)
            self._prompt_messages[prompt_id] = orjson.loads(raw)
        return self._prompt_messages[prompt_id]

    def common(self, row: Any, ranking_id: int) -> dict[str, Any]:
        """The columns a pair and a ranking share, from a query row."""
        return {
            "prompt_id": row.prompt_id,
            "prompt": self.messages(row.prompt_id, row.messages),
            "ranking_id": ranking_id,
            "labeler": self.labeler(row.labeler_id, row.source),
            "instructions_version": row.instructions_version,
            "created_at": rows.timestamp(row.created_at),
        }

    def pair_row(self, row: Any) -> dict[str, Any]:
        flags = self.ranking_flags(row.ranking_id, row.flags)
        return rows.pair_row(
            {
                **self.common(row, row.ranking_id),
                "chosen": [{"role": "assistant", "content": row.chosen_text}],
                "rejected": [{"role": "assistant", "content": row.rejected_text}],
                "chosen_id": row.chosen_id,
                "rejected_id": row.rejected_id,
                "chosen_tier": row.chosen_tier,
                "rejected_tier": row.rejected_tier,
                "tie": False,
                "none_acceptable": bool(row.none_acceptable),
                "chosen_flags": flags.get(str(row.chosen_id), []),
                "rejected_flags": flags.get(str(row.rejected_id), []),
            }
        )

    def tie_row(self, row: Any, texts: dict[int, str], a: int, b: int) -> dict[str, Any]:
        """Two completions a ranking put in one tier (from the rankings query: tied pairs are not
        comparisons)."""
        tier = next(i for i, ids in enumerate(row.tiers) if a in ids)
        flags = row.flags or {}
        return rows.pair_row(
            {
                **self.common(row, row.id),
                "chosen": [{"role": "assistant", "content": texts[a]}],
                "rejected": [{"role": "assistant", "content": texts[b]}],
                "chosen_id": a,
                "rejected_id": b,
                "chosen_tier": tier,
                "rejected_tier": tier,
                "tie": True,
                "none_acceptable": bool(row.none_acceptable),
                "chosen_flags": flags.get(str(a), []),
                "rejected_flags": flags.get(str(b), []),
            }
        )

    def ranking_row(self, row: Any, texts: dict[int, str]) -> dict[str, Any]:
        order = row.shown_order or [cid for tier in row.tiers for cid in tier]
        flags = row.flags or {}
        return rows.ranking_row(
            {
                **self.common(row, row.id),
                "completions": [{"id": cid, "text": texts[cid]} for cid in order],
                "ranking": row.tiers,
                "flags": [
                    {"completion_id": cid, "flags": flags[str(cid)]} for cid in order if flags.get(str(cid))
                ],
                "none_acceptable": row.none_acceptable,
                "seconds_spent": row.seconds_spent,
            }
        )

    def keep_ranking(self, prompt_id: int, created_at: datetime) -> bool:
        """The filters decided per ranking on the fast path (the SQL window is by id, not by time)."""
        filters = self.plan.filters
        if filters.since is not None and created_at < filters.since:
            return False
        if filters.until is not None and created_at >= filters.until:
            return False
        return self.plan.prompt_ids is None or prompt_id in self.plan.prompt_ids

    def encoded_prompt(self, prompt_id: int, raw: str) -> bytes:
        if prompt_id not in self._prompt_json:
            self._bounded(self._prompt_json)
            self._prompt_json[prompt_id] = orjson.dumps(orjson.loads(raw))  # compact and canonical
        return self._prompt_json[prompt_id]

    def encoded_text(self, completion_id: int, text: str) -> bytes:
        if completion_id not in self._text_json:
            self._bounded(self._text_json)
            self._text_json[completion_id] = orjson.dumps(text)
        return self._text_json[completion_id]

    @staticmethod
    def _bounded(cache: dict) -> None:
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
