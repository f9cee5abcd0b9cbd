"""Bad input at the batch level: every bad path is reported with a reason and nothing else in the batch is lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.pipeline import FileResult, IngestOptions, Ingestor
from ingest.walk import walk_paths
from retrieval.collection import Collection

pytestmark = pytest.mark.slow


def _ingestor(tmp: Path, embedder, chunking, **opts) -> Ingestor:  # type: ignore[no-untyped-def]
    col = Collection(tmp / "data", "bad").open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True
    )
    return Ingestor(col, embedder, chunking, IngestOptions(workers=0, **opts))


def test_symlink_loops_and_deep_nesting_are_walked_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    deep = root
    for i in range(60):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("at the bottom")
    (root / "d0" / "loop").symlink_to(root)  # a loop back to the top
    (root / "self").symlink_to(".")
    (root / "dangling.txt").symlink_to(root / "missing.txt")
    found = list(walk_paths([root]))
    files = [p for p, err in found if err is None]
    assert [p.name for p in files] == ["bottom.txt"]
    assert [err for p, err in found if p.name == "dangling.txt"] == ["broken symbolic link"]


def test_file_over_limit_is_refused_without_reading(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "c"
    corpus.mkdir()
    with open(corpus / "huge.txt", "wb") as f:
        f.truncate(200 * 2**20)  # a sparse 200 MB file: costs no disk, and must never be read
    (corpus / "ok.txt").write_text("The filter is washable.")
    rep = _ingestor(tmp_path, embedder, chunking).ingest_paths([corpus])
    by = {Path(r.path).name: r for r in rep.results}
    assert by["huge.txt"].status == "failed" and "200.0 MiB" in by["huge.txt"].reason
    assert by["ok.txt"].status == "added"


def test_file_deleted_between_listing_and_reading(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a_empty.txt").write_bytes(b"")
    (corpus / "m_keep.txt").write_text("Keep the drain hose sloping downwards.")
    (corpus / "z_vanishes.txt").write_text("soon gone")

    def delete_later_file(r: FileResult) -> None:  # runs after the folder was listed, before z is read
        if r.path.endswith("a_empty.txt"):
            (corpus / "z_vanishes.txt").unlink()

    rep = _ingestor(tmp_path, embedder, chunking).ingest_paths([corpus], progress=delete_later_file)
    by = {Path(r.path).name: r for r in rep.results}
    assert by["z_vanishes.txt"].status == "failed" and "vanished" in by["z_vanishes.txt"].reason
    assert by["a_empty.txt"].status == "failed" and "empty" in by["a_empty.txt"].reason
    assert by["m_keep.txt"].status == "added"


def test_non_utf8_file_name(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "c"
    corpus.mkdir()
    raw = os.path.join(os.fsencode(corpus), b"caf\xe9-\xff.txt")
    with open(raw, "wb") as f:
        f.write(b"Descaling the heat exchanger takes twenty minutes.")
    ing = _ingestor(tmp_path, embedder, chunking)
    rep = ing.ingest_paths([corpus])
    assert [r.status for r in rep.results] == ["added"]
    assert rep.results[0].path.endswith("caf\\xe9-\\xff.txt")
    # The escaped key is stable: a second run sees the file as unchanged.
    assert [r.status for r in ing.ingest_paths([corpus]).results] == ["unchanged"]


def test_missing_path_and_bad_sidecar(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha text about the compressor.")
    (corpus / "a.txt.meta.json").write_text("{broken")
    (corpus / "b.txt").write_text("Beta text about the evaporator.")
    (corpus / "b.txt.meta.json").write_text('{"authority": 3, "effective_date": "2022-05-01", "team": "ops"}')
    ing = _ingestor(tmp_path, embedder, chunking)
    rep = ing.ingest_paths([corpus, tmp_path / "does-not-exist"])
    by = {Path(r.path).name: r for r in rep.results}
    assert by["a.txt"].status == "failed" and "sidecar" in by["a.txt"].reason
    assert by["does-not-exist"].status == "failed"
    doc = ing.collection.store.documents()[0]
    assert (doc.authority, doc.effective_date, doc.date_source, doc.metadata["team"]) == (
        3.0, "2022-05-01", "explicit", "ops"
    )
