"""Fusing ranked lists [(id, score), ...] (each sorted best-first) into one.

Ties in the fused score are broken by the best (smallest) rank the id reached in any list, then by id, so the
output does not depend on dict or set order. An id repeated within one list counts at its first position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Ranked = Sequence[tuple[int, float]]


def rrf(
    lists: Sequence[Ranked], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score(d) = sum_i w_i / (k + rank_i(d)), ranks 1-based (Cormack et al. 2009).
    Scores inside the lists are ignored: only their order counts."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k!r}")
    w = _weights(weights, len(lists))
    fused: dict[int, float] = {}
    best: dict[int, int] = {}
    for li, ranked in enumerate(lists):
        for rank, doc_id in _first_ranks(ranked):
            fused[doc_id] = fused.get(doc_id, 0.0) + w[li] / (k + rank)
            best[doc_id] = min(best.get(doc_id, rank), rank)
    return _sorted(fused, best)


def weighted(
    lists: Sequence[Ranked], weights: Sequence[float], normalize: Literal["minmax", "zscore"] = "minmax"
) -> list[tuple[int, float]]:
    """Weighted sum of per-list normalised scores; an id missing from a list gets 0 from it.

    minmax maps a list to [0, 1] (all-equal scores, e.g. a single hit, map to 1: each is the list's best).
    zscore maps to (s - mean) / std (population std; all-equal scores map to 0, as nothing sets them apart).
    """
    if normalize not in ("minmax", "zscore"):
        raise ValueError(f"normalize must be 'minmax' or 'zscore', got {normalize!r}")
    w = _weights(weights, len(lists))
    fused: dict[int, float] = {}
    best: dict[int, int] = {}
    for li, ranked in enumerate(lists):
        firsts = _first_ranks(ranked)
        scores = {doc_id: float(ranked[rank - 1][1]) for rank, doc_id in firsts}
        for doc_id, s in _normalise(scores, normalize).items():
            fused[doc_id] = fused.get(doc_id, 0.0) + w[li] * s
        for rank, doc_id in firsts:
            best[doc_id] = min(best.get(doc_id, rank), rank)
    return _sorted(fused, best)


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValueError(f"got {len(weights)} weights for {n} lists: {list(weights)}")
    for x in weights:
        if not (math.isfinite(x) and x >= 0):
            raise ValueError(f"weights must be finite and >= 0, got {list(weights)}")
    return [float(x) for x in weights]


def _first_ranks(ranked: Ranked) -> list[tuple[int, int]]:
    """(1-based rank, id) of each id's first occurrence."""
    seen: set[int] = set()
    out = []
    for rank, (doc_id, _score) in enumerate(ranked, start=1):
        doc_id = int(doc_id)
        if doc_id not in seen:
            seen.add(doc_id)
            out.append((rank, doc_id))
    return out


def _normalise(scores: dict[int, float], how: str) -> dict[int, float]:
    if not scores:
        return {}
    vals = list(scores.values())
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"scores must be finite, got {vals[:10]}")
    if how == "minmax":
        lo, hi = min(vals), max(vals)
        if hi == lo:
            return dict.fromkeys(scores, 1.0)
        return {d: (s - lo) / (hi - lo) for d, s in scores.items()}
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    if std == 0.0:
        return dict.fromkeys(scores, 0.0)
    return {d: (s - mean) / std for d, s in scores.items()}


def _sorted(fused: dict[int, float], best: dict[int, int]) -> list[tuple[int, float]]:
    return sorted(fused.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))
