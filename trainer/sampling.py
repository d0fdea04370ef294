"""What ``generate`` calls at every decoding step: the per-row sampler and the progress reporter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria

StepCallback = Callable[[int, int], None]
"""Called after every decoding step of a ``generate`` call with (steps done, ``max_new_tokens``), so a
caller can report progress while a batch decodes (or stop it, by raising)."""


class StepReporter(StoppingCriteria):
    """Calls ``on_step`` after each decoding step; never stops a row itself.

    A stopping criterion because ``generate`` consults those once per step, after the new tokens are
    appended; whatever ``on_step`` raises (a shutdown, a cancelled job) ends the ``generate`` call.
    """

    def __init__(self, on_step: StepCallback, max_new_tokens: int) -> None:
        self.on_step = on_step
        self.max_new_tokens = max_new_tokens
        self.steps = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.Tensor:
        self.steps += 1
        self.on_step(self.steps, self.max_new_tokens)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # (R,)


class PerRowSampler(LogitsProcessor):
    """Draw each row's next token with temperature and top-p, from that row's own ``torch.Generator``.

    Given to a greedy ``generate`` as its last logits processor: it returns scores that are 0 for the
    drawn token and -inf elsewhere, so generate's argmax takes exactly the drawn token. Rows that already
    finished keep drawing (their tokens are replaced by padding), so each generator's stream depends on
    its own row only.

    Why not ``torch.multinomial`` and a full sort for top-p, as ``generate`` does: over a 49k vocabulary
    on CPU they cost more than the model's forward pass at batch 32 (~50 ms and ~60 ms per step for 32
    rows). The nucleus is found among the top ``candidates`` tokens (exact: if any row's nucleus is
    wider, every row falls back to a full sort; SmolLM2's at top_p=0.95 has a few hundred tokens) and
    one uniform number per row picks a token by inverse CDF.
    """

    def __init__(
        self,
        seeds: list[int],
        temperature: float,
        top_p: float,
        device: torch.device,
        candidates: int = 1024,
    ) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.temperature = temperature
        self.top_p = top_p
        self.candidates = candidates

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"{scores.shape[0]} rows but {len(self.generators)} seeds")
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)  # (R, V)
        token_ids, weights = self._nucleus(probs)  # (R, C), (R, C): C candidates, 0 weight outside
        cdf = weights.cumsum(dim=-1)  # (R, C)
        uniform = torch.stack([torch.rand((), generator=g, device=probs.device) for g in self.generators])
        position = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True)  # (R, 1)
        drawn = token_ids.gather(1, position.clamp(max=cdf.shape[1] - 1))  # (R, 1)
        return torch.full_like(scores, float("-inf")).scatter_(1, drawn, 0.0)  # (R, V)

    def _nucleus(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate token ids and their probabilities, zeroed outside the top-p nucleus.

        The nucleus is the most likely tokens whose mass reaches ``top_p`` (the first token always kept),
        as in ``TopPLogitsWarper``.
        """
        if self.top_p >= 1.0:  # no truncation: every token is a candidate, no sort needed
            ids = torch.arange(probs.shape[1], device=probs.device).expand_as(probs)  # (R, V)
            return ids, probs
        top_probs, top_ids = probs.topk(min(self.candidates, probs.shape[1]), dim=-1)  # (R, C) descending
        if (top_probs.sum(dim=-1) < self.top_p).any():  # some nucleus is wider than the candidates
            top_probs, top_ids = probs.sort(dim=-1, descending=True)  # (R, V)
        mass_before = top_probs.cumsum(dim=-1) - top_probs  # (R, C) mass of the more likely tokens
        return top_ids, top_probs * (mass_before < self.top_p)
