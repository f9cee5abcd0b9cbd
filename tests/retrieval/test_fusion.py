import math
from collections.abc import Callable

import numpy as np
import pytest

from retrieval.fusion import rrf, weighted

A = [(1, 9.0), (2, 8.0), (3, 7.0)]
B = [(3, 0.9), (1, 0.8), (4, 0.7)]


def test_rrf_hand_computed() -> None:
    got = rrf([A, B], k=60)
    assert [d for d, _ in got] == [1, 3, 2, 4]
    expected = {1: 1 / 61 + 1 / 62, 3: 1 / 63 + 1 / 61, 2: 1 / 62, 4: 1 / 63}
    for d, s in got:
        assert s == pytest.approx(expected[d], rel=1e-12)


def test_rrf_weights() -> None:
    got = dict(rrf([A, B], k=60, weights=[2.0, 1.0]))
    assert got == pytest.approx({1: 2 / 61 + 1 / 62, 3: 2 / 63 + 1 / 61, 2: 2 / 62, 4: 1 / 63}, rel=1e-12)


def test_rrf_uses_ranks_not_scores() -> None:
    rescaled = [[(d, s * 1000 - 5) for d, s in A], [(d, -s) for d, s in B]]
    assert rrf(rescaled) == rrf([A, B])


def test_rrf_ties_break_by_best_rank_then_id() -> None:
    # k=0: doc 1 at rank 2 of a weight-2 list scores 2/2 = 1; doc 2 at rank 1 of a weight-1 list scores 1/1.
    got = rrf([[(9, 5.0), (1, 4.0)], [(2, 3.0)]], k=0, weights=[2.0, 1.0])
    assert got == [(9, 2.0), (2, 1.0), (1, 1.0)]
    # Same score and same best rank: the smaller id first, whatever the list order.
    swapped = rrf([[(5, 1.0), (6, 0.5)], [(6, 1.0), (5, 0.5)]])
    assert rrf([[(6, 1.0), (5, 0.5)], [(5, 1.0), (6, 0.5)]]) == swapped
    assert [d for d, _ in rrf([[(6, 1.0), (5, 0.5)], [(5, 1.0), (6, 0.5)]])] == [5, 6]


def test_rrf_repeated_id_counts_at_its_first_rank() -> None:
    assert rrf([[(1, 3.0), (2, 2.0), (1, 1.0)]], k=0) == [(1, 1.0), (2, 0.5)]


def test_weighted_minmax_hand_computed() -> None:
    a = [(1, 10.0), (2, 6.0), (3, 2.0)]  # -> 1, 0.5, 0
    b = [(3, 0.9), (4, 0.5), (1, 0.1)]  # -> 1, 0.5, 0
    got = weighted([a, b], [0.7, 0.3])
    assert [d for d, _ in got] == [1, 2, 3, 4]
    assert dict(got) == pytest.approx({1: 0.7, 2: 0.35, 3: 0.3, 4: 0.15}, abs=1e-12)


def test_weighted_zscore_hand_computed_with_exact_tie() -> None:
    a = [(1, 10.0), (2, 6.0), (3, 2.0)]  # mean 6, population std sqrt(32/3): z = sqrt(1.5), 0, -sqrt(1.5)
    b = [(3, 3.0), (4, 2.0), (1, 1.0)]  # mean 2, population std sqrt(2/3): z = sqrt(1.5), 0, -sqrt(1.5)
    got = weighted([a, b], [1.0, 0.5], normalize="zscore")
    z = math.sqrt(1.5)
    # 2 and 4 both score exactly 0 with best rank 2: the id decides.
    assert [d for d, _ in got] == [1, 2, 4, 3]
    assert dict(got) == pytest.approx({1: 0.5 * z, 2: 0.0, 4: 0.0, 3: -0.5 * z}, abs=1e-12)


def test_weighted_degenerate_lists() -> None:
    assert weighted([[(7, 3.0)]], [1.0]) == [(7, 1.0)]  # minmax: a single hit is its list's best
    assert weighted([[(7, 3.0), (8, 3.0)]], [2.0]) == [(7, 2.0), (8, 2.0)]
    assert weighted([[(7, 3.0)]], [1.0], normalize="zscore") == [(7, 0.0)]
    assert weighted([[], [(1, 0.5)]], [1.0, 1.0]) == [(1, 1.0)]
    assert weighted([], []) == []
    assert rrf([]) == [] and rrf([[], []]) == []


def test_missing_ids_contribute_nothing() -> None:
    got = dict(weighted([[(1, 2.0), (2, 1.0)], [(3, 5.0), (1, 4.0)]], [1.0, 3.0]))
    assert got == pytest.approx({1: 1.0, 2: 0.0, 3: 3.0})


def test_numpy_ids_come_back_as_int() -> None:
    got = rrf([[(np.int64(4), np.float32(0.5))]])  # type: ignore[list-item]
    assert got == [(4, 1 / 61)] and type(got[0][0]) is int


@pytest.mark.parametrize(
    ("call", "msg"),
    [
        (lambda: rrf([A, B], weights=[1.0]), "1 weights for 2 lists"),
        (lambda: rrf([A], weights=[-1.0]), "-1.0"),
        (lambda: rrf([A], k=-1), "-1"),
        (lambda: weighted([A], [float("nan")]), "nan"),
        (lambda: weighted([A], [1.0], normalize="rank"), "'rank'"),  # type: ignore[arg-type]
        (lambda: weighted([[(1, float("inf"))]], [1.0]), "inf"),
    ],
)
def test_bad_arguments_are_reported(call: Callable[[], object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace(".", r"\.")):
        call()
