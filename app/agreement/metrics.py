"""Agreement between rankings of one prompt, and the consensus ranking they imply. Pure maths, no database.

A ranking is a list of tiers of completion ids, best first, ids in one tier tied: `[[42], [41, 44], [43]]`.

- `kendall_tau_b`: how well two rankings agree, from -1 (reversed) through 0 (unrelated) to 1 (the same),
  counting ties properly (tau-b), over the completions both rankings contain.
- `prompt_agreement`: the mean tau-b over every pair of a prompt's rankings.
- `consensus`: Bradley-Terry scores fitted to every strictly ordered pair of the prompt's rankings, and the
  ranking those scores imply.
- `labeler_agreement_with_others`: each labeler against the consensus of everyone else (leave-one-out).

The maths comes from maintained libraries: `scipy.stats.kendalltau` and `choix.ilsr_pairwise_dense`. Both are
slow per call (hundreds of microseconds to a millisecond) next to the work a project needs (four fits and
six taus per prompt, tens of thousands of prompts), so each is called through a cache keyed by the
rankings' *shapes*: completion ids renamed 0..n-1 in id order. Prompts whose rankings have the same
shapes share one computation, and human rankings of K completions come in few shapes.
`analyse_prompt` gives all of one prompt's numbers at once, for the service.
"""

from collections.abc import Hashable, Mapping, Sequence
from functools import lru_cache
from itertools import combinations
from statistics import fmean
from typing import NamedTuple, TypeVar

import choix
import numpy as np
from scipy.stats import kendalltau

Tiers = Sequence[Sequence[int]]
"""A ranking: tiers of completion ids, best first, ties inside a tier."""
Shape = tuple[tuple[int, ...], ...]
"""A ranking with its completion ids renamed 0..n-1 in id order: what the caches key on."""

RaterKey = TypeVar("RaterKey", bound=Hashable)

ALPHA = 0.01
"""Regulariser of the Bradley-Terry fit (choix's `alpha`): a small rate added between every pair of
completions in the Luce spectral ranking chain, as if each pair had also been compared a tiny fraction of a
time each way. It keeps scores finite when a completion wins every comparison it is in, and makes the fit
defined with very few comparisons (or none: then every score is 0)."""

TIE_TOLERANCE = 1e-6
"""Consensus scores closer than this to the best score of their tier are tied with it."""

HISTOGRAM_BINS = 10
"""Bins over [-1, 1] for distributions of tau-b: each 0.2 wide."""

_CACHE_SIZE = 1 << 14  # entries per cache: a few MB for K = 4, tens of MB at most for K = 9


class Consensus(NamedTuple):
    """Bradley-Terry scores (log-strengths, mean 0; higher is better) and the ranking they imply."""

    scores: dict[int, float]
    tiers: list[list[int]]


class HistogramBin(NamedTuple):
    lower: float
    upper: float
    count: int


def tier_numbers(tiers: Tiers) -> dict[int, int]:
    """`[[42], [41, 44], [43]]` -> `{42: 0, 41: 1, 44: 1, 43: 2}`: each completion's tier, 0 the best."""
    return {cid: number for number, ids in enumerate(tiers) for cid in ids}


# --- Kendall tau-b ---------------------------------------------------------------------------------


def kendall_tau_b(tiers_a: Tiers, tiers_b: Tiers) -> float | None:
    """Kendall's tau-b between two rankings, over the completions both contain.

    tau_b = (concordant - discordant) / sqrt((n0 - ties_a) * (n0 - ties_b)), where n0 is the number of
    pairs of common completions and ties_a (ties_b) the pairs tied in ranking a (b). A pair tied in
    either ranking is neither concordant nor discordant.

    None when it is undefined: fewer than two common completions, or every common completion tied in
    one of the rankings (the denominator is 0).
    """
    a, b = tier_numbers(tiers_a), tier_numbers(tiers_b)
    common = sorted(a.keys() & b.keys())
    if len(common) < 2:
        return None
    return _tau_b(_dense([a[cid] for cid in common]), _dense([b[cid] for cid in common]))


def _dense(values: list[int]) -> tuple[int, ...]:
    """Renumber tiers 0, 1, 2... keeping their order (tau-b depends on the order only): a better cache key."""
    rank = {value: i for i, value in enumerate(sorted(set(values)))}
    return tuple(rank[value] for value in values)


@lru_cache(maxsize=_CACHE_SIZE)
def _tau_b(x: tuple[int, ...], y: tuple[int, ...]) -> float | None:
    if len(set(x)) < 2 or len(set(y)) < 2:  # one ranking ties everything: 0/0
        return None
    tau = kendalltau(x, y, variant="b").statistic
    return None if np.isnan(tau) else float(tau)


def prompt_agreement(rankings: Sequence[Tiers]) -> float | None:
    """The mean tau-b over every pair of rankings of one prompt.

    Pairs whose tau-b is undefined are left out; None if there are fewer than two rankings or no pair
    is defined.
    """
    if len(rankings) < 2:
        return None
    _, shapes = _shapes(rankings)
    return _agreement(tuple(sorted(shapes)))


@lru_cache(maxsize=_CACHE_SIZE)
def _agreement(shapes: tuple[Shape, ...]) -> float | None:
    taus = [tau for a, b in combinations(shapes, 2) if (tau := kendall_tau_b(a, b)) is not None]
    return fmean(taus) if taus else None


# --- Bradley-Terry consensus -----------------------------------------------------------------------


def consensus(
    rankings: Sequence[Tiers], *, alpha: float = ALPHA, tolerance: float = TIE_TOLERANCE
) -> Consensus:
    """Bradley-Terry scores of every completion in `rankings`, fitted with `choix.ilsr_pairwise_dense` to all
    their strictly ordered pairs (tied pairs carry no preference), and the consensus ranking: completions
    by score, best first, scores within `tolerance` of their tier's best tied.

    `(scores, tiers) = consensus(rankings)`; `({}, [])` when there are no completions.
    """
    items, shapes = _shapes(rankings)
    if not items:
        return Consensus({}, [])
    strengths = _bradley_terry(len(items), tuple(sorted(shapes)), alpha)
    scores = dict(zip(items, strengths, strict=True))
    return Consensus(scores, tiers_from_scores(scores, tolerance=tolerance))


@lru_cache(maxsize=_CACHE_SIZE)
def _bradley_terry(n_items: int, shapes: tuple[Shape, ...], alpha: float) -> tuple[float, ...]:
    """Scores of items 0..n_items-1 from rankings of them."""
    if n_items == 1:
        return (0.0,)
    wins = comparison_matrix(n_items, shapes)
    try:
        params = choix.ilsr_pairwise_dense(wins, alpha=alpha, max_iter=500)
    except RuntimeError:  # not converged: one spectral step is still a consistent estimate
        params = choix.lsr_pairwise_dense(wins, alpha=alpha)
    params = params - params.mean()
    return tuple(float(p) for p in params)


def comparison_matrix(n_items: int, rankings: Sequence[Tiers]) -> np.ndarray:
    """`wins[i, j]`: how many of `rankings` put item i in a better tier than item j (items 0..n_items-1;
    an item a ranking leaves out is in no pair of it). The strictly ordered pairs that
    `app.labeling.expansion.expand_tiers` writes as comparisons, counted."""
    wins = np.zeros((n_items, n_items))
    for tiers in rankings:
        tier = np.full(n_items, np.inf)
        for number, ids in enumerate(tiers):
            tier[list(ids)] = number
        present = np.isfinite(tier)
        wins += (tier[:, None] < tier[None, :]) & present[:, None] & present[None, :]
    return wins


def tiers_from_scores(scores: Mapping[int, float], *, tolerance: float = TIE_TOLERANCE) -> list[list[int]]:
    """Completions by score, best first (equal scores in id order); a score within `tolerance` of its
    tier's best joins that tier."""
    tiers: list[list[int]] = []
    top = 0.0
    for cid in sorted(scores, key=lambda c: (-scores[c], c)):
        if tiers and top - scores[cid] <= tolerance:
            tiers[-1].append(cid)
        else:
            tiers.append([cid])
            top = scores[cid]
    return [sorted(ids) for ids in tiers]


# --- labelers against the others -------------------------------------------------------------------


def labeler_agreement_with_others(
    rankings_by_labeler: Mapping[RaterKey, Tiers],
) -> dict[RaterKey, float | None]:
    """For each labeler of one prompt, tau-b between their ranking and the consensus of the *other*
    labelers' rankings (leave-one-out), so a labeler is never compared with a consensus they shaped.

    None for a labeler alone on the prompt, or when tau-b is undefined (for instance the others cancel
    out exactly and their consensus ties everything).
    """
    keys = list(rankings_by_labeler)
    _, shapes = _shapes([rankings_by_labeler[key] for key in keys])
    return dict(zip(keys, _with_others(shapes), strict=True))


def _with_others(shapes: list[Shape]) -> list[float | None]:
    order = sorted(range(len(shapes)), key=shapes.__getitem__)  # the cache sees the rankings sorted
    taus = _with_others_sorted(tuple(shapes[i] for i in order))
    result: list[float | None] = [None] * len(shapes)
    for position, i in enumerate(order):
        result[i] = taus[position]
    return result


@lru_cache(maxsize=_CACHE_SIZE)
def _with_others_sorted(shapes: tuple[Shape, ...]) -> tuple[float | None, ...]:
    taus: list[float | None] = []
    for i, shape in enumerate(shapes):
        others = shapes[:i] + shapes[i + 1 :]
        if not others:
            taus.append(None)
        elif len(others) == 1:
            # The Bradley-Terry consensus of one ranking is that ranking (a completion that beats
            # another, and everything it beats, scores higher; tied ones score the same): skip the fit.
            taus.append(kendall_tau_b(shape, others[0]))
        else:
            taus.append(kendall_tau_b(shape, consensus(others).tiers))
    return tuple(taus)


# --- everything about one prompt at once -----------------------------------------------------------


class PromptAnalysis(NamedTuple):
    agreement: float | None
    """`prompt_agreement(rankings)`"""
    consensus: Consensus
    """`consensus(rankings)`"""
    with_others: list[float | None]
    """`labeler_agreement_with_others` of each ranking, in the order of `rankings`"""


def analyse_prompt(rankings: Sequence[Tiers]) -> PromptAnalysis:
    """The agreement, the consensus and each ranking's leave-one-out tau-b of one prompt's rankings;
    the same numbers as the three functions give, with the rankings renamed to their shape only once."""
    items, shapes = _shapes(rankings)
    in_order = tuple(sorted(shapes))
    strengths = _bradley_terry(len(items), in_order, ALPHA) if items else ()
    scores = dict(zip(items, strengths, strict=True))
    return PromptAnalysis(
        agreement=_agreement(in_order) if len(shapes) > 1 else None,
        consensus=Consensus(scores, tiers_from_scores(scores)),
        with_others=_with_others(shapes),
    )


def _shapes(rankings: Sequence[Tiers]) -> tuple[list[int], list[Shape]]:
    """The completions of `rankings` in id order, and each ranking with its ids renamed to their place in
    that order (empty tiers dropped): the form the caches key on."""
    items = sorted({cid for tiers in rankings for ids in tiers for cid in ids})
    place = {cid: i for i, cid in enumerate(items)}.__getitem__
    return items, [tuple(tuple(sorted(map(place, ids))) for ids in tiers if ids) for tiers in rankings]


# --- distributions ---------------------------------------------------------------------------------


def histogram(values: Sequence[float], *, bins: int = HISTOGRAM_BINS) -> list[HistogramBin]:
    """How many tau-b values fall in each of `bins` equal bins over [-1, 1] (the last one includes 1)."""
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins, range=(-1.0, 1.0))
    return [
        HistogramBin(round(float(edges[i]), 6), round(float(edges[i + 1]), 6), int(counts[i]))
        for i in range(bins)
    ]
