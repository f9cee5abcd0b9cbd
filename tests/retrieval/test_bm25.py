import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

import retrieval.bm25 as bm25_mod
from retrieval.bm25 import BM25Index

# Real English words; sentences draw them with Zipf-like weights so that document frequencies range from a
# handful of documents to nearly all of them, as in real text.
_TEXT = """
water heat pump filter cycle error code reset power cable fan speed noise sensor valve pressure cold
warm room window remote timer mode dry cool display light switch unit outdoor indoor pipe leak drain
ice defrost motor board fuse voltage current battery signal wire install manual service warranty
repair replace clean dust smell sound vibration start stop restart delay minute hour day week month
season summer winter temperature humidity setting button screen menu option default factory model
serial number label price order delivery customer support phone email address account login password
update version firmware network wifi router app cloud data report alarm warning failure fault check
test measure level flow rate capacity energy efficiency rating standard label guide step
"""
WORDS = _TEXT.split()


def make_corpus(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 0.9 for i in range(len(WORDS))]
    docs = [rng.choices(WORDS, weights, k=rng.randint(1, 40)) for _ in range(n)]
    docs[3] = docs[17] = []  # empty documents count in N and in avgdl, as in rank_bm25 and Lucene
    return docs


class LuceneIdfOkapi(BM25Okapi):
    """rank_bm25's BM25Okapi computes tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)) per query-token
    occurrence, exactly as BM25Index does; only its IDF differs (log((N - df + 0.5) / (df + 0.5)) with an
    epsilon floor). Replacing the IDF with Lucene's makes the two formulas identical, so scores, not just
    rankings, must agree."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        for word, df in nd.items():
            self.idf[word] = math.log(1 + (self.corpus_size - df + 0.5) / (df + 0.5))


def ranked(ref_scores: np.ndarray, ids: list[int]) -> list[tuple[int, float]]:
    pairs = [(ids[i], float(s)) for i, s in enumerate(ref_scores) if s > 0]
    return sorted(pairs, key=lambda p: (-p[1], p[0]))


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.9, 0.4)])
def test_scores_match_rank_bm25_with_lucene_idf(k1: float, b: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bm25_mod, "_MIN_DELTA", 100)  # so that 400 docs span both segments
    docs = make_corpus(400, seed=1)
    ids = [1000 + 7 * i for i in range(len(docs))]  # sparse, not starting at 0
    ref = LuceneIdfOkapi(docs, k1=k1, b=b)
    idx = BM25Index(k1=k1, b=b)
    idx.add(ids[:340], docs[:340])  # bulk load into the main segment
    for s in range(340, 400, 10):
        idx.add(ids[s : s + 10], docs[s : s + 10])
    assert idx._delta_docs == 60
    rng = random.Random(2)
    for _ in range(60):
        query = rng.choices(WORDS, k=rng.randint(1, 8)) + ["zzz-not-indexed"]
        expected = ranked(ref.get_scores(query), ids)
        got = idx.search(query, top_k=len(docs))
        assert [d for d, _ in got] == [d for d, _ in expected] or _same_up_to_float_ties(got, expected)
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-5)
        top10 = idx.search(query, top_k=10)
        assert top10 == got[:10]


def _same_up_to_float_ties(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    # float32 scores may merge or split near-equal float64 ones; then only the tie order may differ.
    ref = dict(expected)
    return {d for d, _ in got} == set(ref) and all(
        abs(ref[d1] - ref[d2]) < 1e-5 * ref[d1]
        for (d1, _), (d2, _) in zip(got, expected, strict=True)
        if d1 != d2
    )


def test_repeated_query_terms_count_per_occurrence() -> None:
    idx = BM25Index()
    idx.add([1, 2, 3], [["pump", "noise"], ["pump"], ["fan"]])
    once, twice = dict(idx.search(["noise"], 3)), dict(idx.search(["noise", "noise"], 3))
    assert twice[1] == pytest.approx(2 * once[1])


def test_ties_are_broken_by_id_and_only_matching_docs_return() -> None:
    idx = BM25Index()
    idx.add([30, 10, 20, 40], [["cold", "room"], ["cold", "room"], ["cold", "room"], ["warm"]])
    got = idx.search(["cold"], top_k=10)
    assert [d for d, _ in got] == [10, 20, 30]
    assert got[0][1] == got[1][1] == got[2][1] > 0
    assert [d for d, _ in idx.search(["cold"], top_k=2)] == [10, 20]
    assert idx.search(["absent"], 5) == [] and idx.search([], 5) == [] and idx.search(["cold"], 0) == []


def test_interleaved_adds_and_removes_score_like_a_fresh_index(monkeypatch: pytest.MonkeyPatch) -> None:
    # A small delta threshold so that merges, compactions and bulk loads all happen in a few hundred docs.
    monkeypatch.setattr(bm25_mod, "_MIN_DELTA", 16)
    merges: list[int] = []
    real_merge = BM25Index._merge

    def counting_merge(self: BM25Index, *args: object) -> None:
        merges.append(self._n_dead)
        real_merge(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(BM25Index, "_merge", counting_merge)
    pool = make_corpus(900, seed=3)
    rng = random.Random(4)
    idx, live, next_id = BM25Index(), {}, 0
    for step in range(40):
        n = rng.choice([1, 3, 10, 40, 120])
        batch = {next_id + 5 * i: pool[(next_id + i) % len(pool)] for i in range(n)}
        next_id += 5 * n
        idx.add(list(batch), list(batch.values()))
        live.update(batch)
        gone = rng.sample(sorted(live), k=min(len(live), rng.choice([0, 2, 15, 60])))
        assert idx.remove(gone + [-1]) == len(gone)  # an unknown id is ignored
        for g in gone:
            del live[g]
        assert len(idx) == len(live)
        if step % 10 == 9:
            _assert_same_as_fresh(idx, live, rng)
    assert any(merges) and merges.count(0) >= 1  # merges with and without tombstones to drop
    idx.add([next_id], [pool[0]])  # and finally a state with both a delta and tombstones
    live[next_id] = pool[0]
    idx.remove([min(live)])
    del live[min(live)]
    assert idx._delta and idx._n_dead
    _assert_same_as_fresh(idx, live, rng)


def _assert_same_as_fresh(idx: BM25Index, live: dict[int, list[str]], rng: random.Random) -> None:
    fresh = BM25Index()
    fresh.add(sorted(live), [live[k] for k in sorted(live)])
    for _ in range(25):
        q = rng.choices(WORDS, k=rng.randint(1, 6))
        assert idx.search(q, 10_000) == fresh.search(q, 10_000)  # exactly, not approximately


def test_terms_of_removed_docs_are_dropped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bm25_mod, "_MIN_DELTA", 8)
    docs = [[f"serial{i}", "pump", "pump" if i % 2 else "fan"] for i in range(2000)]
    idx = BM25Index()
    idx.add(list(range(2000)), docs)
    idx.remove(list(range(1800)))  # compacts, and 1800 of 2002 terms are left without postings
    assert len(idx._vocab) == 202
    fresh = BM25Index()
    fresh.add(list(range(1800, 2000)), docs[1800:])
    for q in (["serial1999", "pump"], ["serial5"], ["fan", "serial1800"]):
        assert idx.search(q, 300) == fresh.search(q, 300)
    idx.save(tmp_path / "b")
    assert BM25Index.load(tmp_path / "b").search(["serial1999", "fan"], 5) == fresh.search(
        ["serial1999", "fan"], 5
    )


def test_readding_a_removed_id(monkeypatch: pytest.MonkeyPatch) -> None:
    idx = BM25Index()
    idx.add([1, 2], [["pump"], ["fan"]])
    idx.remove([1])
    idx.add([1], [["fan", "fan"]])
    assert 1 in idx and len(idx) == 2
    assert [d for d, _ in idx.search(["fan"], 5)] == [1, 2]
    assert idx.search(["pump"], 5) == []
    assert [d for d, _ in idx.search(["fan"], 5, allowed=np.array([1]))] == [1]


@pytest.mark.parametrize("spacing", [10, 10**9])  # ids dense enough for a direct table, and not
def test_allowed_filter_applies_before_top_k(spacing: int) -> None:
    docs = make_corpus(300, seed=5)
    ids = [spacing * i for i in range(len(docs))]
    idx = BM25Index()
    idx.add(ids, docs)
    idx.remove(ids[:5])
    query = ["pump", "filter", "noise"]
    full = idx.search(query, top_k=len(docs))
    # Allow only matching docs from the bottom half of the ranking: filtering after the cut would return none.
    tail = [d for d, _ in full[len(full) // 2 :]]
    assert len(tail) > 64
    others = [d for d in ids if d not in tail]
    for allowed in (tail[:8], tail + others[::3] + [-5, 10**15]):  # few ids: dict look-ups; many: the id map
        got = idx.search(query, top_k=5, allowed=np.array(allowed))
        assert got == [p for p in full if p[0] in set(allowed)][:5]
    assert idx._idmap is not None
    assert idx.search(query, 5, allowed=np.array([], np.int64)) == []
    assert idx.search(query, 5, allowed=np.array([123_456_789])) == []


def test_save_load_round_trip(tmp_path: Path) -> None:
    docs = make_corpus(200, seed=6) + [["空调", "故障", "e4"], ["空调", "噪音"]]
    ids = list(range(5, 5 + len(docs)))
    idx = BM25Index(k1=0.9, b=0.4)
    idx.add(ids, docs)
    idx.remove(ids[:20])  # pending tombstones and delta: save must capture them
    queries = [["pump", "noise"], ["空调", "e4"], ["warranty"]]
    before = [idx.search(q, 50) for q in queries]
    target = tmp_path / "L128.bm25"
    idx.save(target)
    idx.save(target)  # saving again replaces, leaving one arrays file
    assert len(list(target.glob("bm25-*.npz"))) == 1 and not list(target.glob("*.tmp"))
    loaded = BM25Index.load(target)
    assert (loaded.k1, loaded.b, len(loaded)) == (0.9, 0.4, len(idx))
    assert [loaded.search(q, 50) for q in queries] == before
    # The loaded index keeps working incrementally and still knows its ids.
    with pytest.raises(ValueError, match="25"):
        loaded.add([25], [["pump"]])
    loaded.add([10_000], [["空调", "空调"]])
    loaded.remove([ids[30]])
    idx.add([10_000], [["空调", "空调"]])
    idx.remove([ids[30]])
    assert [loaded.search(q, 50) for q in queries] == [idx.search(q, 50) for q in queries]


def test_save_load_empty_and_missing(tmp_path: Path) -> None:
    BM25Index().save(tmp_path / "empty")
    empty = BM25Index.load(tmp_path / "empty")
    assert len(empty) == 0 and empty.search(["x"], 3) == []
    empty.add([1], [["x"]])
    assert [d for d, _ in empty.search(["x"], 3)] == [1]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        BM25Index.load(tmp_path / "nowhere")


def test_bulk_add_matches_incremental_add() -> None:
    docs = make_corpus(3000, seed=7)  # one batch over the delta threshold takes the vectorised path
    bulk, inc = BM25Index(), BM25Index()
    bulk.add(list(range(3000)), docs)
    for s in range(0, 3000, 100):
        inc.add(list(range(s, s + 100)), docs[s : s + 100])
    assert not bulk._delta
    for q in (["pump"], ["error", "code", "reset"], ["guide", "step", "water", "water"]):
        assert bulk.search(q, 100) == inc.search(q, 100)


@pytest.mark.parametrize(
    ("call", "exc", "msg"),
    [
        (lambda i: i.add([1, 2], [["a"]]), ValueError, "2 ids but 1 docs"),
        (lambda i: i.add([1], ["pump noise"]), TypeError, "pump noise"),
        (lambda i: i.add([7], [["a"]]), ValueError, r"\[7\]"),
        (lambda i: i.add([8, 8], [["a"], ["b"]]), ValueError, r"\[8\]"),
        (lambda i: i.add([1.5], [["a"]]), TypeError, "float64"),
        (lambda i: i.search("pump", 3), TypeError, "pump"),
        (lambda i: i.search(["pump"], -1), ValueError, "-1"),
    ],
)
def test_bad_arguments_are_reported(
    call: Callable[[BM25Index], object], exc: type[Exception], msg: str
) -> None:
    idx = BM25Index()
    idx.add([7], [["pump"]])
    with pytest.raises(exc, match=msg):
        call(idx)
    assert len(idx) == 1


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="-1"):
        BM25Index(k1=-1)
    with pytest.raises(ValueError, match="1.5"):
        BM25Index(b=1.5)
