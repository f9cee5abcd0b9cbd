"""The index set: replaying the change log, snapshots, crash leftovers, and the switch to IVF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retrieval.collection import Collection
from retrieval.store import NewChunk, NewSection
from retrieval.types import Document

DIM = 8


def _doc(i: int) -> Document:
    return Document(doc_id=f"d{i}", collection="c", source_path=f"/x/{i}", title=f"t{i}", mime="text/plain",
                    content_hash=f"h{i}", effective_date=None, date_source="none", ingested_at="2024-01-01T00:00:00")


def _chunks(n: int, rng: np.random.Generator, word: str) -> list[NewChunk]:
    out = []
    for j in range(n):
        v = rng.normal(size=DIM).astype(np.float32)
        out.append(NewChunk(level=64, position=j, section_position=0, heading_path=(), kind="text",
                            text=f"{word} {j}", token_count=2, tokens=[word, f"w{j}"], embedding=v / np.linalg.norm(v)))
    return out


def _add(col: Collection, i: int, n: int, rng: np.random.Generator, word: str = "alpha") -> None:
    with col.store.transaction() as conn:
        col.store.add_document(conn, _doc(i), None, [NewSection(0, (), "s", 1)], _chunks(n, rng, word))


def _open(tmp: Path) -> Collection:
    return Collection(tmp, "c").open(embedder="fake", dim=DIM, chunking={"levels": [64]}, create=True)


def test_other_process_sees_commits_and_deletes_via_the_log(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    writer, reader = _open(tmp_path), _open(tmp_path)
    _add(writer, 1, 5, rng)
    assert writer.indexes and reader.indexes
    assert reader.indexes.refresh() == 5 and len(reader.indexes.sparse[64]) == 5
    with writer.store.transaction() as conn:
        writer.store.delete_document(conn, "d1")
    _add(writer, 2, 3, rng, "beta")
    reader.indexes.refresh()
    assert len(reader.indexes.dense[64]) == 3 and len(reader.indexes.sparse[64]) == 3
    assert reader.indexes.sparse[64].search(["alpha"], 10) == []
    assert len(reader.indexes.sparse[64].search(["beta"], 10)) == 3


def test_snapshot_then_replay_of_what_came_after(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    col = _open(tmp_path)
    _add(col, 1, 4, rng)
    assert col.indexes
    col.indexes.refresh()
    col.indexes.snapshot()
    _add(col, 2, 2, rng)  # committed after the snapshot: only in the log
    (tmp_path / "collections" / "c" / "indexes-999.tmp-1").mkdir()  # a crash leftover
    fresh = _open(tmp_path)
    assert fresh.indexes and len(fresh.indexes.dense[64]) == 6 and fresh.indexes.seq == fresh.store.last_seq()
    with fresh.write_lock():
        pass  # taking the writer lock clears crash leftovers
    assert not list((tmp_path / "collections" / "c").glob("*.tmp-*"))
    info = json.loads((tmp_path / "collections" / "c" / "indexes.json").read_text())
    assert info["seq"] == 4


def test_large_levels_switch_to_ivf_on_snapshot(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    col = _open(tmp_path)
    _add(col, 1, 400, rng)
    assert col.indexes
    col.indexes.ivf_threshold = 300
    col.indexes.refresh()
    probe = col.store.vectors_and_tokens([5])
    _, vec, _ = next(probe)
    col.indexes.snapshot()
    assert col.indexes.dense[64].kind == "ivf" and len(col.indexes.dense[64]) == 400
    assert col.indexes.dense[64].search(vec, 1)[0][0] == 5
    reopened = _open(tmp_path)
    assert reopened.indexes and reopened.indexes.dense[64].kind == "ivf"
