"""Search speed at 10k, 100k and 300k chunks: one hybrid query (query embedding included, no filter, top_k 10, no LLM).

Collections are built by bench/scaled.py from the real SciFact level-128 chunks and their real vectors (taken from
bench_retrieval's cached collection of the same embedder; ingested here if missing), replicated with perturbed
copies, through Store.add_document, so the real index set is used, IVF switch included. Each size is measured in a
fresh process (so RSS is that of a server holding just this collection and the embedder): open time, p50/p95 wall
and CPU per query (SciFact claims), the stage split, RSS, size on disk; and, on the IVF sizes, recall@10 of the IVF
index against exact search over the same vectors, and how much of the hybrid top 10 changes.

    .venv/bin/python bench/bench_search_speed.py --quick
    .venv/bin/python bench/bench_search_speed.py [--sizes 10000 100000 300000] [--max-load 2.5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    dir_mb,
    find_source,
    ingest,
    latency,
    loadavg,
    machine,
    md_table,
    require,
    rss_mb,
    scifact,
    set_embedder_threads,
    write_results,
)
from bench.scaled import LEVEL, build, scaled_documents, source_chunks  # noqa: E402
from ingest.chunking import ChunkingSettings  # noqa: E402
from retrieval.collection import Collection  # noqa: E402
from retrieval.embedders import Embedder, get_embedder  # noqa: E402


def wait_for_load(max_load: float, max_wait: float) -> list[float]:
    """Wait (up to max_wait s) until the 1-minute load average is under max_load; return it as measured."""
    t = time.monotonic()
    while os.getloadavg()[0] > max_load and time.monotonic() - t < max_wait:
        time.sleep(15)
    return loadavg()


def source_collection(cache_dir: Path, emb: Embedder, quick: bool, source: str | None) -> Collection:
    """bench_retrieval's SciFact collection for this embedder (any levels including 128), or a new one."""
    name = find_source(cache_dir, emb.name, source, quick)
    if name:
        return Collection(cache_dir, name).open()
    prefix = f"scifact{'300' if quick else ''}-{emb.name}-L"
    data = scifact()
    if quick:
        data = data.sample(40, 300)
    print(f"embedding {len(data.records)} SciFact abstracts with {emb.name} (level {LEVEL} only) ...", flush=True)
    col, _ = ingest(cache_dir, f"{prefix}{LEVEL}", emb, data.records, ChunkingSettings(levels=(LEVEL,)))
    return col


def collection_name(embedder: str, n: int, quick: bool) -> str:
    return f"speed-{embedder}-{n}{'-quick' if quick else ''}"


def ensure_built(
    cache_dir: Path, emb: Embedder, n: int, *, quick: bool = False, source: str | None = None, copy_cos: float = 0.9,
    seed: int = 0, rebuild: bool = False,
) -> dict[str, Any]:
    """The n-chunk collection (its build facts), built from the SciFact one (ingested first if missing) unless cached.
    The framework and update benchmarks call this too, so each runs from a fresh clone as one command."""
    name = collection_name(emb.name, n, quick)
    root = cache_dir / "collections" / name
    if root.exists() and (root / "bench_build.json").exists() and not rebuild:
        return {**json.loads((root / "bench_build.json").read_text()), "cached": True}
    Collection(cache_dir, name).drop()
    src = source_collection(cache_dir, emb, quick, source)
    chunks = source_chunks(src)
    src.close()
    load0 = loadavg()
    col, info = build(cache_dir, name, emb.name, emb.dim, scaled_documents(chunks, n, copy_cos, seed))
    col.close()
    return {**info, "source_chunks": len(chunks), "loadavg_build": [load0, loadavg()], "cached": False}


def measure(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """In a fresh process: open the collection, run the queries, report latency, RSS and (IVF) recall."""
    from retrieval.dense import DenseIndex
    from retrieval.search import HybridRetriever, SearchParams

    rss0 = rss_mb()
    set_embedder_threads(args.embedder_threads)
    emb = get_embedder(args.embedder)
    emb.load()
    rss_emb = rss_mb()
    t = time.perf_counter()
    col = Collection(args.cache_dir, collection_name(emb.name, n, args.quick)).open()
    open_s = time.perf_counter() - t
    rss_open = rss_mb()
    assert col.indexes is not None
    ret = HybridRetriever(col, emb)
    claims = list(scifact().queries.values())[: args.queries]
    stages: dict[str, list[float]] = {}

    def one(q: str) -> None:
        ret.search(q, top_k=10)
        for k, v in ret.last_timings.items():
            stages.setdefault(k, []).append(v * 1000)

    load_before = wait_for_load(args.max_load, args.max_wait)
    lat = latency(one, claims)
    out: dict[str, Any] = {
        "chunks": len(col.indexes.dense[LEVEL]), "dense_kind": col.indexes.dense[LEVEL].kind,
        "open_s": round(open_s, 2), "hybrid": lat, "loadavg": [load_before, loadavg()],
        "stage_p50_ms": {k: round(float(np.median(v)), 2) for k, v in stages.items()},
        "rss_embedder_mb": round(rss_emb - rss0, 1), "rss_collection_mb": round(rss_open - rss_emb, 1),
        "rss_total_mb": round(rss_mb(), 1), "disk_mb": round(dir_mb(col.root), 1),
    }
    if col.indexes.dense[LEVEL].kind == "ivf":
        ivf = col.indexes.dense[LEVEL]
        ids, vecs = [], []
        for cid, vec, _ in col.store.vectors_and_tokens(col.store.chunk_ids_at_level(LEVEL)):
            ids.append(cid)
            vecs.append(vec)
        flat = DenseIndex(emb.dim)
        flat.add(ids, np.vstack(vecs))
        del vecs
        qv = [emb.embed_query(q) for q in claims]
        rec = [len({i for i, _ in ivf.search(v, 10)} & {i for i, _ in flat.search(v, 10)}) / 10 for v in qv]
        def top10() -> list[set[int]]:
            pairs = zip(claims, qv, strict=True)
            return [{h.chunk.chunk_id for h in ret.search(q, 10, query_vector=v)} for q, v in pairs]

        hyb_ivf = top10()
        col.indexes.dense[LEVEL] = flat
        hyb_flat = top10()
        out["ivf"] = {
            "nlist": ivf._index.nlist, "nprobe": ivf.nprobe, "dense_recall10_vs_exact": round(float(np.mean(rec)), 4),
            "hybrid_top10_overlap_vs_exact": round(float(np.mean(
                [len(a & b) / 10 for a, b in zip(hyb_ivf, hyb_flat, strict=True)])), 4),
        }
        wait_for_load(args.max_load, args.max_wait)
        out["hybrid_exact_dense"] = latency(lambda q: ret.search(q, top_k=10), claims)
        out["loadavg_exact"] = loadavg()
        col.indexes.dense[LEVEL] = ivf
        out["params"] = str(SearchParams())
    col.close()
    return out


COLS = [("chunks", "chunks", ",d"), ("dense_kind", "dense", "s"), ("p50", "p50 ms", ".1f"), ("p95", "p95 ms", ".1f"),
        ("cpu_p50", "CPU p50 ms", ".1f"), ("embed", "embed p50", ".1f"), ("dense", "FAISS p50", ".1f"),
        ("sparse", "BM25 p50", ".1f"), ("fuse_fetch", "fuse+fetch p50", ".1f"), ("build_s", "build s", ".0f"),
        ("open_s", "open s", ".1f"), ("rss_collection_mb", "RSS collection MB", ".0f"),
        ("rss_total_mb", "RSS total MB", ".0f"), ("disk_mb", "disk MB", ".0f"), ("load", "load avg", "s")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    ap.add_argument("--embedder", default=None, help="default: what \"auto\" picks for English (SciFact)")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/ragqa-bench"))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--copy-cos", type=float, default=0.9, help="cosine of a perturbed copy to its original")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rebuild", action="store_true", help="rebuild cached collections (build time is measured then)")
    ap.add_argument("--max-load", type=float, default=2.5, help="wait for the 1-min load average to drop below this")
    ap.add_argument("--max-wait", type=float, default=300, help="... but at most this many seconds")
    ap.add_argument("--source", default=None, help="cached SciFact collection to replicate (default: the full corpus "
                    "one of this embedder; e.g. scifact400-e5-small-L128 for bench_retrieval's sample)")
    ap.add_argument("--embedder-threads", type=int, default=None,
                    help="what-if: threads for the query embedder (default: as shipped, min(2, cores))")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2k and 10k chunks, 30 queries, no waiting")
    ap.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.embedder is None:
        from retrieval.embedders import ENGLISH_DEFAULT

        args.embedder = ENGLISH_DEFAULT
    if args.measure:
        print(json.dumps(measure(args, args.measure)))
        return
    require("scifact", "corpus.jsonl")
    if args.quick and args.measure is None:
        args.sizes, args.queries, args.max_wait = [2_000, 10_000], 30, 0
    emb = get_embedder(args.embedder)
    emb.load()
    rows, out = [], {"machine": machine(), "command": " ".join(sys.argv), "embedder": args.embedder,
                     "copy_cos": args.copy_cos, "sizes": {}}
    for n in sorted(args.sizes):
        built = ensure_built(args.cache_dir, emb, n, quick=args.quick, source=args.source, copy_cos=args.copy_cos,
                             seed=args.seed, rebuild=args.rebuild)
        cmd = [sys.executable, __file__, "--measure", str(n), "--embedder", args.embedder, "--cache-dir",
               str(args.cache_dir), "--queries", str(args.queries), "--max-load", str(args.max_load),
               "--max-wait", str(args.max_wait)] + (["--quick"] if args.quick else [])
        if args.embedder_threads:
            cmd += ["--embedder-threads", str(args.embedder_threads)]
        res = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout.splitlines()[-1])
        out["sizes"][str(n)] = {"build": built, **res}
        h = res["hybrid"]
        rows.append({"chunks": res["chunks"], "dense_kind": res["dense_kind"], "p50": h["p50_ms"], "p95": h["p95_ms"],
                     "cpu_p50": h["cpu_p50_ms"], **res["stage_p50_ms"], "build_s": built["build_s"],
                     **{k: res[k] for k in ("open_s", "rss_collection_mb", "rss_total_mb", "disk_mb")},
                     "load": f"{res['loadavg'][0][0]:.1f}-{res['loadavg'][1][0]:.1f}"})
        print(md_table(rows[-1:], COLS), flush=True)
        if "ivf" in res:
            print(f"  IVF: {res['ivf']}; hybrid with exact dense p50 {res['hybrid_exact_dense']['p50_ms']} ms")
    print(f"\nSearch speed, embedder {args.embedder}, {out['machine']['cpus']} cores ({out['machine']['cpu_model']})")
    print(md_table(rows, COLS))
    out["embedder_threads"] = args.embedder_threads or "as shipped"
    out["source"] = find_source(args.cache_dir, emb.name, args.source, args.quick)
    name = "search_speed" + (f"-threads{args.embedder_threads}" if args.embedder_threads else "")
    print(f"wrote {write_results(name + ('-quick' if args.quick else ''), out)}")


if __name__ == "__main__":
    main()
