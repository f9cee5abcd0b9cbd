"""Micro-benchmark of the in-memory engines: BM25Index, DenseIndex (flat, optionally ivf) and the Analyzer.

Documents are SciFact abstracts (title + text) replicated to the wanted size, each copy with ~15% of its
tokens replaced by random corpus terms, so term statistics look like real text; queries: the SciFact claims.
Dense vectors are random unit vectors (latency only: random data has no cluster structure, so the ivf recall
printed here is a worst case). Prints p50/p95 per-query latency (wall and CPU), build time and memory; writes
bench/results/engines.json.

    .venv/bin/python bench/bench_engines.py                 # 10k and 100k
    .venv/bin/python bench/bench_engines.py --big --ivf     # also 300k, and an ivf index
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.analyzer import Analyzer
from retrieval.bm25 import BM25Index
from retrieval.dense import DenseIndex, _faiss

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "scifact"
OUT = Path(__file__).resolve().parent / "results" / "engines.json"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def latency(
    fn: Callable[[Any], object], items: Sequence[Any] | np.ndarray, warmup: int = 10
) -> dict[str, float]:
    """Wall and process-CPU percentiles per call. On a shared machine wall time includes waiting for a core;
    the CPU time is what the call costs."""
    for it in items[:warmup]:
        fn(it)
    wall, cpu = [], []
    for it in items:
        t, c = time.perf_counter(), time.process_time()
        fn(it)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    w, c2 = np.asarray(wall) * 1000, np.asarray(cpu) * 1000
    return {
        "p50_ms": round(float(np.percentile(w, 50)), 3),
        "p95_ms": round(float(np.percentile(w, 95)), 3),
        "cpu_p50_ms": round(float(np.percentile(c2, 50)), 3),
        "cpu_p95_ms": round(float(np.percentile(c2, 95)), 3),
    }


def load_scifact(analyzer: Analyzer) -> tuple[list[list[str]], list[list[str]], list[str]]:
    docs, queries, raw_q = [], [], []
    with open(DATA / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(analyzer.tokenize(d["title"] + " " + d["text"]))
    with open(DATA / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)["text"]
            raw_q.append(q)
            queries.append(analyzer.tokenize(q))
    return docs, queries, raw_q


def synth_docs(base: list[list[str]], n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    vocab: dict[str, int] = {}
    coded = [np.array([vocab.setdefault(t, len(vocab)) for t in d], np.int64) for d in base]
    terms = np.array(list(vocab), dtype=object)
    freq = np.bincount(np.concatenate(coded), minlength=len(vocab)).astype(np.float64)
    p = 0.5 * freq / freq.sum() + 0.5 / len(vocab)  # half by corpus frequency, half uniform (rare terms)
    cdf = np.cumsum(p)
    out = []
    for i in range(n):
        ids = coded[i % len(coded)].copy()
        mask = rng.random(len(ids)) < 0.15
        ids[mask] = np.minimum(np.searchsorted(cdf, rng.random(int(mask.sum())) * cdf[-1]), len(cdf) - 1)
        out.append(terms[ids].tolist())
    return out


def bench_bm25(docs: list[list[str]], queries: list[list[str]], top_k: int) -> dict[str, object]:
    gc.collect()
    r0 = rss_mb()
    t = time.perf_counter()
    idx = BM25Index(k1=1.2, b=0.75)
    idx.add(np.arange(len(docs)) * 7 + 3, docs)  # sparse ids on purpose
    build = time.perf_counter() - t
    mem = rss_mb() - r0
    nbytes = sum(a.nbytes for a in (idx._indptr, idx._rows, idx._tfs, idx._ids, idx._lens, idx._alive))
    lat = latency(lambda q: idx.search(q, top_k), queries)
    rng = np.random.default_rng(1)
    allowed = rng.choice(len(docs), size=len(docs) // 10, replace=False) * 7 + 3
    filtered = latency(lambda q: idx.search(q, top_k, allowed=allowed), queries)
    # Incremental: 20 batches of 100 docs and 20 single removes, as the store's refresh would send them.
    extra = docs[:2000]
    t = time.perf_counter()
    for b in range(20):
        idx.add(np.arange(b * 100, (b + 1) * 100) * 7 + 10**9, extra[b * 100 : (b + 1) * 100])
        idx.remove([b * 7 + 3])
    incr = (time.perf_counter() - t) / 2000
    post_lat = latency(lambda q: idx.search(q, top_k), queries)
    return {
        "build_s": round(build, 2),
        "rss_mb": round(mem, 1),
        "arrays_mb": round(nbytes / 2**20, 1),
        "postings": int(len(idx._rows)),
        "terms": len(idx._vocab),
        "search": lat,
        "search_filtered_10pct": filtered,
        "incremental_add_ms_per_doc": round(incr * 1000, 3),
        "search_with_delta": post_lat,
    }


def bench_dense(n: int, dim: int, n_q: int, top_k: int, ivf: bool) -> dict[str, object]:
    faiss = _faiss()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    qs = rng.standard_normal((n_q, dim), dtype=np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    allowed = rng.choice(n, size=n // 10, replace=False) * 7 + 3
    res: dict[str, object] = {}
    gc.collect()
    r0 = rss_mb()
    t = time.perf_counter()
    flat = DenseIndex(dim)
    flat.add(ids, x)
    res["flat_build_s"] = round(time.perf_counter() - t, 2)
    res["flat_rss_mb"] = round(rss_mb() - r0, 1)

    def run(index: DenseIndex, allowed_ids: np.ndarray | None = None) -> dict[str, float]:
        return latency(lambda q: index.search(q, top_k, allowed=allowed_ids), qs)

    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        res[f"flat_search_{threads}thr"] = run(flat)
    faiss.omp_set_num_threads(1)
    res["flat_search_filtered_10pct"] = run(flat, allowed)
    if ivf:
        t = time.perf_counter()
        iv = DenseIndex(dim, kind="ivf")
        iv.add(ids, x)
        res["ivf_nlist"] = iv.nlist
        res["ivf_build_s"] = round(time.perf_counter() - t, 2)
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            res[f"ivf_search_nprobe{iv.nprobe}_{threads}thr"] = run(iv)
        faiss.omp_set_num_threads(1)
        res["ivf_search_filtered_10pct"] = run(iv, allowed)
        hit = [
            len({i for i, _ in iv.search(q, 10)} & {i for i, _ in flat.search(q, 10)}) / 10 for q in qs[:100]
        ]
        res["ivf_recall10_random_vectors"] = round(float(np.mean(hit)), 3)
        del iv
    del flat, x
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--big", action="store_true", help="also 300k docs")
    ap.add_argument(
        "--ivf", action="store_true", help="also build an ivf index (k-means training takes a while)"
    )
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--top-k", type=int, default=50)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not (DATA / "corpus.jsonl").is_file():
        sys.exit(f"SciFact not found at {DATA.resolve()}")
    sizes = sorted(set(args.sizes + ([300_000] if args.big else [])))

    analyzer = Analyzer()
    t = time.perf_counter()
    base, queries, raw_q = load_scifact(analyzer)
    tok_s = time.perf_counter() - t
    queries = [q for q in queries if q][: args.queries]
    tok_lat = latency(analyzer.tokenize, raw_q[: args.queries])
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cpus",
        "load_avg_1min": round(os.getloadavg()[0], 1),
        "top_k": args.top_k,
        "queries": len(queries),
        "mean_query_terms": round(float(np.mean([len(q) for q in queries])), 1),
        "analyzer": {"corpus_tokenize_s_5183_docs": round(tok_s, 2), "query_tokenize": tok_lat},
        "sizes": {},
    }
    print(json.dumps({k: v for k, v in report.items() if k != "sizes"}, indent=1))
    for n in sizes:
        docs = synth_docs(base, n)
        row = {"bm25": bench_bm25(docs, queries, args.top_k)}
        del docs
        row["dense"] = bench_dense(n, args.dim, len(queries), args.top_k, args.ivf)
        report["sizes"][str(n)] = row  # type: ignore[index]
        print(n, json.dumps(row, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
