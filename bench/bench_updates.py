"""Update visibility: documents added or removed while queries run are visible / gone on the next query after commit.

Works on a copy of bench_search_speed's 100k-chunk collection. A reader (its own Collection object and HybridRetriever,
as a server process has) queries in a loop for a document that does not exist yet; the writer (another Collection
object on the same folder, as `ragqa ingest` has) embeds and commits it through Store.add_document, later deletes it
with Store.delete_document. Every reader query records when it ran and whether the document was in its top 10.
Then the cost of adding 1,000 chunks (perturbed SciFact chunks, vectors given): the writer's commit, the reader's
index refresh (replaying the change log into FAISS IVF and BM25, no rebuild), the first query after it, and the
writer's snapshot (which the ingest pipeline writes at the end of every run); and one document through the whole
pipeline (Ingestor.ingest_records: embed, commit, refresh, snapshot).

    .venv/bin/python bench/bench_updates.py --quick
    .venv/bin/python bench/bench_updates.py [--size 100000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_search_speed import collection_name, ensure_built  # noqa: E402
from bench.common import find_source, loadavg, machine, md_table, require, write_results  # noqa: E402
from bench.scaled import LEVEL, scaled_documents, source_chunks  # noqa: E402
from ingest.pipeline import IngestOptions, Ingestor, Record, _contextualize  # noqa: E402
from retrieval.analyzer import Analyzer  # noqa: E402
from retrieval.collection import Collection  # noqa: E402
from retrieval.embedders import Embedder, get_embedder  # noqa: E402
from retrieval.search import HybridRetriever  # noqa: E402
from retrieval.store import NewChunk  # noqa: E402
from retrieval.types import Document  # noqa: E402

TITLE = "Zorblatine tolerance in xylophagous weevils"
TEXT = ("Zorblatine, a quinoline alkaloid, was tolerated by xylophagous weevils at doses lethal to other beetles. "
        "Tolerance depended on a cytochrome P450 that hydroxylates zorblatine within minutes of ingestion.")
QUERY = "Do xylophagous weevils tolerate zorblatine?"


def new_document(emb: Embedder, key: str) -> tuple[Document, list[NewChunk]]:
    text = _contextualize(TITLE, (TITLE,), TEXT)
    toks = Analyzer().tokenize(text)
    chunk = NewChunk(level=LEVEL, position=0, section_position=0, heading_path=(TITLE,), kind="text", text=TEXT,
                     token_count=len(toks), tokens=toks, embedding=emb.embed_documents([text])[0])
    doc = Document(doc_id=key, collection="", source_path=key, title=TITLE, mime="text/plain", content_hash=key,
                   effective_date=None, date_source="none", ingested_at="2026-01-01T00:00:00+00:00", language="en")
    return doc, [chunk]


def visibility(emb: Embedder, reader: Collection, writer: Collection, pause: float) -> dict[str, Any]:
    ret = HybridRetriever(reader, emb)
    qv = emb.embed_query(QUERY)  # the reader's loop times search, not the embedder
    log: list[tuple[float, float, bool]] = []
    stop = threading.Event()
    key = "bench:visibility"

    def loop() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            found = any(h.chunk.source_path == key for h in ret.search(QUERY, top_k=10, query_vector=qv))
            log.append((t0, time.perf_counter(), found))

    th = threading.Thread(target=loop)
    th.start()
    time.sleep(pause)
    doc, chunks = new_document(emb, key)
    with writer.store.transaction() as conn:
        writer.store.add_document(conn, doc, None, [], chunks)
    t_add = time.perf_counter()
    time.sleep(pause)
    with writer.store.transaction() as conn:
        writer.store.delete_document(conn, key)
    t_del = time.perf_counter()
    time.sleep(pause)
    stop.set()
    th.join()

    def first_after(t: float, want: bool, since: float, until: float) -> dict[str, Any]:
        # Queries that straddle the commit may see either state; those wholly after it must see the new one.
        after = [x for x in log if t <= x[0] and x[1] <= until]
        early = sum(1 for x in log if since <= x[0] and x[1] <= t and x[2] == want)
        hit = next((x for x in after if x[2] == want), None)
        return {"next_query_correct": after[0][2] == want if after else None,
                "stale_after_commit": sum(1 for x in after if x[2] != want), "queries_after": len(after),
                "early_before_commit": early,
                "commit_to_visible_ms": round((hit[1] - t) * 1000, 1) if hit else None,
                "next_query_ms": round((after[0][1] - after[0][0]) * 1000, 1) if after else None}

    lat = np.array([(b - a) * 1000 for a, b, _ in log])
    return {"reader_queries": len(log), "reader_p50_ms": round(float(np.median(lat)), 1),
            "add": first_after(t_add, True, 0.0, t_del), "remove": first_after(t_del, False, t_add, float("inf"))}


def add_cost(emb: Embedder, src: Collection, reader: Collection, writer: Collection, n: int) -> dict[str, Any]:
    assert reader.indexes is not None and writer.indexes is not None
    chunks = source_chunks(src)
    docs = []
    for doc, cs in scaled_documents(chunks, len(chunks) + n, seed=7):
        if doc.doc_id.endswith("#0"):
            continue  # the real documents: already in the collection as copy 0
        docs.append((Document(**{**doc.__dict__, "doc_id": "add-" + doc.doc_id, "source_path": "add-" + doc.doc_id,
                                 "content_hash": "add-" + doc.doc_id}), cs))
    ivf_before = reader.indexes.dense[LEVEL]
    out: dict[str, Any] = {"chunks_added": sum(len(c) for _, c in docs), "loadavg": [loadavg()]}
    t = time.perf_counter()
    with writer.store.transaction() as conn:
        for doc, cs in docs:
            writer.store.add_document(conn, doc, None, [], cs)
    out["commit_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    applied = reader.indexes.refresh()
    out["reader_refresh_s"] = round(time.perf_counter() - t, 3)
    out["refresh_applied"] = applied
    out["same_dense_index_object"] = reader.indexes.dense[LEVEL] is ivf_before
    ret = HybridRetriever(reader, emb)
    t = time.perf_counter()
    ret.search(QUERY, top_k=10)
    out["first_query_after_ms"] = round((time.perf_counter() - t) * 1000, 1)
    t = time.perf_counter()
    writer.indexes.refresh()
    writer.indexes.snapshot()
    out["writer_refresh_and_snapshot_s"] = round(time.perf_counter() - t, 2)
    opts = IngestOptions(workers=0)
    t = time.perf_counter()
    with writer.write_lock():
        Ingestor(writer, emb, _chunking(writer), opts).ingest_records([Record("bench:pipeline", TITLE, TEXT)])
    out["pipeline_one_document_s"] = round(time.perf_counter() - t, 2)
    out["loadavg"].append(loadavg())
    return out


def _chunking(col: Collection) -> Any:
    from ingest.chunking import ChunkingSettings

    assert col.manifest is not None
    return ChunkingSettings(levels=tuple(col.manifest.chunking["levels"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default=None, help="default: what \"auto\" picks for English (SciFact)")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/ragqa-bench"))
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--add", type=int, default=1000, help="chunks added in the cost measurement")
    ap.add_argument("--pause", type=float, default=3.0, help="seconds of querying before and after each change")
    ap.add_argument("--source", default=None, help="SciFact collection the added chunks are copied from")
    ap.add_argument("--quick", action="store_true", help="smoke run on bench_search_speed --quick's 10k collection")
    args = ap.parse_args()
    require("scifact", "corpus.jsonl")
    if args.embedder is None:
        from retrieval.embedders import ENGLISH_DEFAULT

        args.embedder = ENGLISH_DEFAULT
    if args.quick:
        args.size, args.pause = 10_000, 1.0
    emb = get_embedder(args.embedder)
    emb.load()
    name = collection_name(emb.name, args.size, args.quick)
    root = args.cache_dir / "collections"
    ensure_built(args.cache_dir, emb, args.size, quick=args.quick, source=args.source)  # cached, or built now
    source = find_source(args.cache_dir, emb.name, args.source, args.quick)
    assert source is not None
    tmp = Path(tempfile.mkdtemp(prefix="ragqa-updates-"))
    try:
        shutil.copytree(root / name, tmp / "collections" / name)
        reader = Collection(tmp, name).open()
        writer = Collection(tmp, name).open()
        out: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv), "embedder": emb.name,
                               "collection_chunks": args.size}
        out["visibility"] = visibility(emb, reader, writer, args.pause)
        src = Collection(args.cache_dir, source).open()
        out["add_cost"] = add_cost(emb, src, reader, writer, args.add)
        src.close()
        reader.close()
        writer.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    v, c = out["visibility"], out["add_cost"]
    print(md_table([{"change": k, **v[k]} for k in ("add", "remove")], [
        ("change", "change", "s"), ("next_query_correct", "next query after commit correct", "s"),
        ("queries_after", "queries after commit", "d"), ("stale_after_commit", "stale ones", "d"),
        ("early_before_commit", "changed before commit", "d"),
        ("commit_to_visible_ms", "commit -> visible ms", ".1f"), ("next_query_ms", "that query ms", ".1f")]))
    print()
    print(md_table([c], [("chunks_added", "chunks added", "d"), ("commit_s", "commit s", ".3f"),
                         ("reader_refresh_s", "reader refresh s", ".3f"),
                         ("same_dense_index_object", "no rebuild (same index object)", "s"),
                         ("first_query_after_ms", "first query after ms", ".1f"),
                         ("writer_refresh_and_snapshot_s", "writer snapshot s", ".2f"),
                         ("pipeline_one_document_s", "1 doc through pipeline s", ".2f")]))
    print(f"wrote {write_results('updates-quick' if args.quick else 'updates', out)}")


if __name__ == "__main__":
    main()
