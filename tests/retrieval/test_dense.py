from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.dense import DenseIndex

DIM = 32


def unit(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute(
    ids: np.ndarray, vecs: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> list[tuple[int, float]]:
    scores = vecs @ q
    keep = np.ones(len(ids), bool) if allowed is None else np.isin(ids, allowed)
    order = np.argsort(-scores[keep], kind="stable")[:k]
    return [(int(i), float(s)) for i, s in zip(ids[keep][order], scores[keep][order], strict=True)]


def assert_same(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-5)


def test_flat_matches_brute_force() -> None:
    vecs, ids = unit(500, 0), np.arange(500, dtype=np.int64) * 1000 + 7  # sparse ids
    idx = DenseIndex(DIM)
    idx.add(ids[:300], vecs[:300])
    idx.add(list(ids[300:]), vecs[300:])  # a list of ints works too
    assert len(idx) == 500 and int(ids[3]) in idx
    for q in unit(20, 1):
        assert_same(idx.search(q, 10), brute(ids, vecs, q, 10))
    assert len(idx.search(unit(1, 2)[0], 10_000)) == 500  # k above the size returns everything, no -1 ids


def test_remove_and_interleaved_changes_match_brute_force() -> None:
    pool, rng = unit(900, 3), np.random.default_rng(4)
    idx, live = DenseIndex(DIM), {}
    next_id = 0
    for _ in range(15):
        n = int(rng.integers(1, 80))
        ids = np.arange(next_id, next_id + n, dtype=np.int64) * 3
        idx.add(ids, pool[next_id : next_id + n])
        live.update({int(i): pool[next_id + k] for k, i in enumerate(ids)})
        next_id += n
        gone = rng.choice(sorted(live), size=min(len(live), int(rng.integers(0, 30))), replace=False)
        assert idx.remove(np.append(gone, -99)) == len(gone)  # -99 was never there
        for g in gone.tolist():
            del live[g]
        assert len(idx) == len(live)
        keys = np.array(sorted(live), np.int64)
        mat = np.stack([live[k] for k in keys.tolist()])
        for q in unit(3, int(rng.integers(1000))):
            assert_same(idx.search(q, 8), brute(keys, mat, q, 8))
    assert idx.remove([]) == 0


def test_filter_applies_before_top_k() -> None:
    vecs, ids = unit(400, 5), np.arange(400, dtype=np.int64) + 10
    idx = DenseIndex(DIM)
    idx.add(ids, vecs)
    q = unit(1, 6)[0]
    full = brute(ids, vecs, q, 400)
    allowed = np.array([i for i, _ in full[-30:]] + [99_999])  # the 30 worst, and an id not in the index
    got = idx.search(q, 10, allowed=allowed)
    assert len(got) == 10 and {i for i, _ in got} <= set(allowed.tolist())
    assert_same(got, brute(ids, vecs, q, 10, allowed=allowed))
    assert idx.search(q, 10, allowed=np.array([], np.int64)) == []
    assert idx.search(q, 10, allowed=np.array([99_999])) == []


def test_save_load_round_trip(tmp_path: Path) -> None:
    vecs, ids = unit(200, 7), np.arange(200, dtype=np.int64) * 11
    idx = DenseIndex(DIM)
    idx.add(ids, vecs)
    idx.remove(ids[:10])
    path = tmp_path / "snap" / "L128.faiss"
    idx.save(path)
    idx.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["L128.faiss"]  # no temp file left
    loaded = DenseIndex.load(path)
    assert (loaded.dim, loaded.kind, len(loaded)) == (DIM, "flat", 190)
    for q in unit(5, 8):
        assert loaded.search(q, 7) == idx.search(q, 7)
    with pytest.raises(ValueError, match=str(ids[50])):  # the ids are known after loading
        loaded.add(ids[50:51], vecs[50:51])
    loaded.add(ids[:1], vecs[:1])  # a removed id may come back
    assert loaded.search(vecs[0], 1)[0][0] == ids[0]


def test_empty_index(tmp_path: Path) -> None:
    idx = DenseIndex(DIM)
    assert len(idx) == 0 and idx.search(unit(1, 9)[0], 5) == []
    idx.save(tmp_path / "e.faiss")
    assert len(DenseIndex.load(tmp_path / "e.faiss")) == 0
    with pytest.raises(FileNotFoundError, match="nope"):
        DenseIndex.load(tmp_path / "nope.faiss")


def test_ivf_exact_when_probing_every_list_and_persists(tmp_path: Path) -> None:
    vecs, ids = unit(2000, 10), np.arange(2000, dtype=np.int64) * 5
    idx = DenseIndex(DIM, kind="ivf", nlist=16, nprobe=16)
    idx.add(ids, vecs)
    assert idx.nlist == 16
    for q in unit(10, 11):
        assert_same(idx.search(q, 10), brute(ids, vecs, q, 10))
    idx.remove(ids[:100])
    idx.add(ids[:50], vecs[:50])  # later batches are added to the trained lists
    keep = np.concatenate([ids[:50], ids[100:]])
    mat = np.concatenate([vecs[:50], vecs[100:]])
    q = unit(1, 12)[0]
    assert_same(idx.search(q, 10), brute(keep, mat, q, 10))
    idx.save(tmp_path / "ivf.faiss")
    loaded = DenseIndex.load(tmp_path / "ivf.faiss")
    assert (loaded.kind, loaded.nlist, loaded.nprobe, len(loaded)) == ("ivf", 16, 16, 1950)
    assert loaded.search(q, 10) == idx.search(q, 10)


def test_ivf_filtered_search_still_returns_k() -> None:
    vecs, ids = unit(2000, 13), np.arange(2000, dtype=np.int64)
    idx = DenseIndex(DIM, kind="ivf", nlist=32, nprobe=1)
    idx.add(ids, vecs)
    q = unit(1, 14)[0]
    # Allow the vectors least like the query: they sit in lists the single probe does not reach.
    allowed = np.array([i for i, _ in brute(ids, vecs, q, 2000)[-12:]])
    got = idx.search(q, 5, allowed=allowed)
    assert_same(got, brute(ids, vecs, q, 5, allowed=allowed))


def test_ivf_saved_before_its_first_batch(tmp_path: Path) -> None:
    for nlist in (0, 8):
        DenseIndex(DIM, kind="ivf", nlist=nlist, nprobe=3).save(tmp_path / f"{nlist}.faiss")
        loaded = DenseIndex.load(tmp_path / f"{nlist}.faiss")
        assert (loaded.kind, loaded.nlist, loaded.nprobe, len(loaded)) == ("ivf", nlist, 3, 0)
        assert loaded.search(unit(1, 17)[0], 3) == []
        loaded.add(np.arange(800), unit(800, 18))  # trains now, choosing nlist if it was 0
        assert loaded.nlist == (nlist or 20) and len(loaded.search(unit(1, 19)[0], 3)) == 3


def test_auto_nlist_and_too_small_first_batch() -> None:
    idx = DenseIndex(DIM, kind="ivf")
    idx.add(np.arange(1600), unit(1600, 15))
    assert idx.nlist == 41  # 4 * sqrt(1600) = 160, capped at 1600 // 39 = 41 for FAISS's 39 points a list
    with pytest.raises(ValueError, match="nlist=64 needs at least 64 vectors.*got 10"):
        DenseIndex(DIM, kind="ivf", nlist=64).add(np.arange(10), unit(10, 16))


def test_unnormalised_vectors_score_by_raw_inner_product() -> None:
    idx = DenseIndex(4)
    idx.add([1, 2], np.array([[2, 0, 0, 0], [0, 3, 0, 0]], np.float32))
    assert idx.search(np.array([1, 1, 0, 0], np.float32), 2) == [(2, 3.0), (1, 2.0)]


@pytest.mark.parametrize(
    ("call", "exc", "msg"),
    [
        (lambda i: i.add([1], unit(1, 0, dim=8)), ValueError, r"\(n, 32\), got \(1, 8\)"),
        (lambda i: i.add([1], unit(1, 0).astype(np.float64)), TypeError, "float64"),
        (lambda i: i.add([1], [[0.0] * DIM]), TypeError, "list"),
        (lambda i: i.add([1, 2], unit(1, 0)), ValueError, "2 ids but 1 vectors"),
        (lambda i: i.add([7], unit(1, 0)), ValueError, r"\[7\]"),
        (lambda i: i.add([3, 3], unit(2, 0)), ValueError, r"\[3\]"),
        (lambda i: i.add([1], np.full((1, DIM), np.nan, np.float32)), ValueError, "NaN"),
        (lambda i: i.search(unit(1, 0, dim=8)[0], 3), ValueError, r"\(1, 8\)"),
        (lambda i: i.search(unit(2, 0), 3), ValueError, "one query vector, got 2"),
        (lambda i: i.search(unit(1, 0)[0], -2), ValueError, "-2"),
    ],
)
def test_bad_arguments_are_reported(
    call: Callable[[DenseIndex], object], exc: type[Exception], msg: str
) -> None:
    idx = DenseIndex(DIM)
    idx.add([7], unit(1, 1))
    with pytest.raises(exc, match=msg):
        call(idx)
    assert len(idx) == 1


def test_bad_parameters() -> None:
    cases: tuple[tuple[dict[str, Any], str], ...] = (
        ({"dim": 0}, "0"),
        ({"dim": 8, "kind": "hnsw"}, "'hnsw'"),
        ({"dim": 8, "nprobe": 0}, "0"),
    )
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            DenseIndex(**kwargs)
