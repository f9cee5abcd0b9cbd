"""An existing collection keeps the chunking its manifest pins (levels, overlap), whatever the settings say now:
the default moved from three levels to one, and collections built before must still take new documents."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ingest import cli
from ingest.chunking import ChunkingSettings
from ingest.jobs import JobQueue
from ingest.worker import Worker, WorkerConfig
from retrieval.collection import Collection

OLD = ChunkingSettings(levels=(64, 128, 256), overlap=0.15)  # several levels, as collections were built before


def _ingest(data: Path, path: Path, chunking: ChunkingSettings) -> int:
    args = argparse.Namespace(paths=[path], collection="kb", date=None, authority=None, meta=[], workers=0,
                              no_ocr=True, json=True, async_=False)
    return cli.run(args, data_dir=data, collection="kb", embedder_spec="minilm-int8", chunking=chunking,
                   max_bytes=2**20, workers=0, near_dup_threshold=0.85)


def test_a_collection_built_with_other_levels_keeps_them(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    first, second = tmp_path / "filters.md", tmp_path / "fans.md"
    first.write_text("# Filters\n\n" + "Clean the air filter every two weeks with warm water. " * 40, encoding="utf-8")
    second.write_text("# Fans\n\n" + "The outdoor fan stops when the defrost cycle runs. " * 40, encoding="utf-8")
    assert _ingest(data, first, OLD) == 0
    capsys.readouterr()
    assert cli.resolve_chunking(data, "kb", ChunkingSettings()) == OLD
    assert cli.resolve_chunking(data, "new", ChunkingSettings()) == ChunkingSettings()

    assert _ingest(data, second, ChunkingSettings()) == 0  # today's default: one level
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["added"] == 1, report

    col = Collection(data, "kb").open()
    try:
        assert col.manifest is not None and col.manifest.chunking == OLD.to_manifest()
        doc = next(d for d in col.store.documents() if d.source_path.endswith("fans.md"))
        assert all(col.store.doc_chunks(doc.doc_id, level) for level in OLD.levels)  # every pinned level
    finally:
        col.close()


def test_a_worker_job_into_a_collection_built_with_other_levels_keeps_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, second = tmp_path / "a" / "filters.md", tmp_path / "b" / "fans.md"
    for path, text in ((first, "Clean the air filter every two weeks. "), (second, "The fan stops to defrost. ")):
        path.parent.mkdir()
        path.write_text(f"# {path.stem}\n\n" + text * 60, encoding="utf-8")
    assert _ingest(data, first, OLD) == 0
    queue = JobQueue.for_data_dir(data).open()
    job_id = queue.enqueue("kb", [str(second.parent)])
    worker = Worker(queue, WorkerConfig(data_dir=data, embedder_spec="minilm-int8", chunking=ChunkingSettings()))
    worker.run(exit_when_idle=True)
    job = queue.get(job_id)
    assert job is not None and job.status == "done", job
    col = Collection(data, "kb").open()
    try:
        doc = next(d for d in col.store.documents() if d.source_path.endswith("fans.md"))
        assert all(col.store.doc_chunks(doc.doc_id, level) for level in OLD.levels)
    finally:
        col.close()


def test_a_collection_cut_by_another_algorithm_is_not_resolved(tmp_path: Path) -> None:
    data = tmp_path / "data"
    other = {**OLD.to_manifest(), "algorithm": "some-other-chunker"}
    Collection(data, "kb").open(embedder="minilm-int8", dim=384, chunking=other, create=True).close()
    # Its chunks cannot be cut alike: the settings are returned, and opening with them is refused as before.
    assert cli.resolve_chunking(data, "kb", ChunkingSettings()) == ChunkingSettings()
