"""Hybrid search quality, local indexes (FAISS + our BM25) against Milvus (Milvus Lite here), on a SciFact subset.

One collection is ingested through the real pipeline (SQLite store, local indexes); a MilvusIndexSet is then built
from the same store's change log, so both backends search exactly the same chunks and vectors, with the same
HybridRetriever (same fusion: RRF k=60, 100 candidates per retriever). nDCG@10 at document level per claim, and the
paired bootstrap of Milvus minus local (1,000 resamples, 95 %): "same" means the interval contains 0. Dense-only and
BM25-only rows show where a difference comes from. Timings are Milvus Lite's, a pure-Python engine in this process:
they say nothing about a Milvus server and are labelled so.

    .venv/bin/python bench/bench_backends.py                      # 1,500-document sample, 300 claims (minutes)
    .venv/bin/python bench/bench_backends.py --sample-docs 0      # the whole corpus (ingest about 35 min)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    CachedVectors,
    doc_ranking,
    ingest,
    machine,
    md_table,
    require,
    scifact,
    write_results,
)
from eval.metrics import ndcg_at_k, paired_bootstrap  # noqa: E402
from ingest.chunking import ChunkingSettings  # noqa: E402
from retrieval.embedders import get_embedder  # noqa: E402
from retrieval.milvus_index import MilvusIndexSet  # noqa: E402
from retrieval.search import HybridRetriever, SearchParams  # noqa: E402

COLS = [("config", "configuration", "s"), ("local", "local nDCG@10", ".4f"), ("milvus", "Milvus nDCG@10", ".4f"),
        ("delta", "Milvus - local", "+.4f"), ("ci", "95 % CI", "s"), ("same", "same?", "s"),
        ("local_ms", "local ms/query", ".1f"), ("milvus_ms", "Milvus Lite ms/query (not representative)", ".1f")]


def evaluate(retriever: HybridRetriever, params: SearchParams, queries: dict[str, str], vecs: dict[str, np.ndarray],
             qrels: dict[str, dict[str, int]]) -> tuple[list[float], float]:
    """Per-claim nDCG@10 and the median search time in ms (query embedding excluded: vectors are given)."""
    scores, times = [], []
    for qid, text in queries.items():
        t = time.perf_counter()
        hits = retriever.search(text, top_k=10, params=params, query_vector=vecs[qid])
        times.append(time.perf_counter() - t)
        scores.append(ndcg_at_k(doc_ranking(hits), qrels[qid], 10))
    return scores, 1000 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/ragqa-bench"))
    ap.add_argument("--embedder", default="minilm-int8")
    ap.add_argument("--sample-docs", type=int, default=1500, help="seeded sample corpus size (0: the whole corpus)")
    ap.add_argument("--sample-queries", type=int, default=300)
    ap.add_argument("--variants", nargs="+", default=["jieba:text", "standard:text", "jieba:terms"],
                    help="Milvus BM25 set-ups to build and compare, ANALYZER:INPUT (one Milvus collection each): "
                         "INPUT text = Milvus analyses the chunk text, terms = our Analyzer's terms")
    ap.add_argument("--index-type", default="HNSW", help="Milvus vector index (HNSW, FLAT, IVF_FLAT...)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="backends")
    args = ap.parse_args()
    require("scifact", "corpus.jsonl")
    data = scifact()
    if args.sample_docs:
        data = data.sample(args.sample_queries, args.sample_docs, args.seed)
    level = 128
    emb = get_embedder(args.embedder)
    emb.load()
    col, info = ingest(args.cache_dir, f"{data.name}-{args.embedder}-L{level}", emb, data.records,
                       ChunkingSettings(levels=(level,)))
    print(f"SciFact: {len(data.records)} documents, {info['chunks']} chunks, {len(data.queries)} claims", flush=True)
    qids = list(data.queries)
    vecs = dict(zip(qids, CachedVectors(emb, args.cache_dir / "vectors").queries([data.queries[q] for q in qids]),
                    strict=True))
    local_idx = col.indexes
    configs = {"hybrid (RRF k=60, the default)": SearchParams(level=level),
               "dense only": SearchParams(level=level, mode="dense"),
               "BM25 only": SearchParams(level=level, mode="sparse")}
    retriever = HybridRetriever(col, emb)
    local = {name: evaluate(retriever, p, data.queries, vecs, data.qrels) for name, p in configs.items()}
    rows: list[dict[str, Any]] = []
    builds: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ragqa-milvus-") as tmp:
        for variant in args.variants:
            analyzer, bm25_input = variant.split(":")
            t = time.perf_counter()
            uri = str(Path(tmp) / f"{analyzer}-{bm25_input}.db")
            milvus = MilvusIndexSet(col.store, col.name, emb.dim, (level,), uri, analyzer=analyzer,
                                    bm25_input=bm25_input, index_type=args.index_type).load()
            milvus.snapshot()  # seal and index, as ingest does at the end of a run
            builds[variant] = {"seconds": round(time.perf_counter() - t, 1), "rows": milvus.count(level)}
            print(f"Milvus Lite ({variant}, {args.index_type}): {builds[variant]['rows']} rows built from the "
                  f"change log and sealed in {builds[variant]['seconds']} s (not representative)", flush=True)
            col.indexes = milvus
            for name, params in configs.items():
                if variant != args.variants[0] and params.mode == "dense":
                    continue  # the BM25 set-up does not touch the dense side
                m_scores, m_ms = evaluate(retriever, params, data.queries, vecs, data.qrels)
                l_scores, l_ms = local[name]
                pb = paired_bootstrap(l_scores, m_scores)
                rows.append({
                    "config": f"{name}, Milvus BM25 {analyzer} over {bm25_input}" if params.mode != "dense" else name,
                    "local": float(np.mean(l_scores)), "milvus": float(np.mean(m_scores)), "delta": pb["delta"],
                    "ci": f"[{pb['low']:+.4f}, {pb['high']:+.4f}]", "same": "no" if pb["significant"] else "yes",
                    "local_ms": l_ms, "milvus_ms": m_ms, "bootstrap": pb, "variant": variant,
                    "per_query_local": l_scores, "per_query_milvus": m_scores,
                })
                print(md_table(rows[-1:], COLS), flush=True)
            milvus.close()
            col.indexes = local_idx
    table = md_table(rows, COLS)
    print("\n" + table)
    path = write_results(args.out, {
        "machine": machine(), "command": " ".join(sys.argv), "corpus": data.name, "documents": len(data.records),
        "chunks": info["chunks"], "queries": len(data.queries), "embedder": args.embedder, "level": level,
        "milvus": {"engine": "Milvus Lite (milvus-lite, pure Python, in process)", "index_type": args.index_type,
                   "builds": builds, "timings_note": "Milvus Lite timings, not representative of a Milvus server"},
        "rows": rows, "table": table,
    })
    print(f"results: {path}")
    col.close()


if __name__ == "__main__":
    main()
