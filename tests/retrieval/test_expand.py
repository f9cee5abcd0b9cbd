"""Small-to-big on a real store: sections within budget, neighbours joined without repeating overlaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunking import ChunkingSettings
from ingest.pipeline import IngestOptions, Ingestor
from retrieval.collection import Collection
from retrieval.expand import expand, join_chunks
from retrieval.search import HybridRetriever

pytestmark = pytest.mark.slow


def test_small_to_big(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    chunking = ChunkingSettings(levels=(32, 64), overlap=0.25, max_section_tokens=256)
    corpus = tmp_path / "c"
    corpus.mkdir()
    short = "# Filters\n\nClean the filter every two weeks. Dry it in the shade.\n\n"
    long_body = " ".join(f"Step {i}: check the drain pan number {i} for algae and rinse it." for i in range(12))
    (corpus / "m.md").write_text(short + "# Drain pan\n\n" + long_body + "\n", encoding="utf-8")
    col = Collection(tmp_path / "d", "x").open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True
    )
    Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    r = HybridRetriever(col, embedder)

    hits = r.search("clean the filter two weeks", top_k=3)
    ps = expand(col.store, hits, budget_tokens=400, max_passage_tokens=64)
    first = ps[0]
    assert first.expanded == "section" and "Dry it in the shade" in first.text
    # No passage repeats a chunk of another, and the budget holds.
    seen: set[int] = set()
    for p in ps:
        assert not (seen & set(p.chunk_ids))
        seen |= set(p.chunk_ids)
    assert sum(p.token_count for p in ps) <= 400

    hits = r.search("drain pan number 6 algae", top_k=2)
    ps = expand(col.store, hits, budget_tokens=400, max_passage_tokens=64, neighbors=1)
    big = next(p for p in ps if "Step 6" in p.text)
    assert big.expanded == "neighbors" and len(big.chunk_ids) > 1
    for i in range(12):  # joined windows never say a step twice
        assert big.text.count(f"Step {i}:") <= 1

    chunks = col.store.doc_chunks(hits[0].chunk.doc_id, 32)
    run = [c for c in chunks if c.section_id == chunks[-1].section_id][:3]
    joined = join_chunks(run)
    assert joined.count("Step 0:") <= 1 and all(c.text[-10:] in joined for c in run)

    with pytest.raises(ValueError, match="budget_tokens"):
        expand(col.store, hits, budget_tokens=0)
