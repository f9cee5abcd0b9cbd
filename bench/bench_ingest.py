"""Ingest throughput: SciFact abstracts as records, and the mixed-format documents in ../shared/datasets/docs.

Prints a table and writes bench/results/ingest.json. The embedding stage is compared with the raw encoder on the same
texts in the same run: the pipeline should reach >= 90% of it (batching, no per-chunk overhead).

    .venv/bin/python bench/bench_ingest.py [--embedder minilm-int8] [--limit 5183] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.common import DATASETS, dir_mb, machine, rss_mb  # noqa: E402
from ingest.chunking import ChunkingSettings, chunk_document  # noqa: E402
from ingest.pipeline import IngestOptions, Ingestor, Record, _contextualize, parsed_from_text  # noqa: E402
from retrieval.collection import Collection  # noqa: E402
from retrieval.embedders import get_embedder  # noqa: E402

STAGES = ("parse", "chunk", "embed", "index")


def _timed(fn: Callable[..., object], *args: object) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def scifact_records(limit: int) -> list[Record]:
    out = []
    with open(DATASETS / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append(Record(key=f"scifact:{d['_id']}", title=d.get("title", ""), text=d["text"]))
            if len(out) >= limit:
                break
    return out


def bench_records(tmp: Path, embedder_spec: str, chunking: ChunkingSettings, limit: int) -> dict[str, object]:
    emb = get_embedder(embedder_spec)
    emb.load()
    recs = scifact_records(limit)
    col = Collection(tmp, "scifact").open(
        embedder=emb.name, dim=emb.dim, chunking=chunking.to_manifest(), create=True
    )
    # The raw encoder on exactly the texts the pipeline embeds, in one call, same process, same run: once before the
    # pipeline and once after, so a drift in machine load between the two does not count for or against either.
    texts = []
    for r in recs:
        parsed = parsed_from_text(r.title, r.text)
        _, drafts = chunk_document(parsed, chunking)
        texts += [_contextualize(r.title, d.heading_path, d.text) for d in drafts]
    emb.embed_documents(texts[:64])  # warm-up: the first run of an ONNX session allocates
    raw_s = [_timed(emb.embed_documents, texts)]
    load = [os.getloadavg()[0]]
    rss0 = rss_mb()
    t = time.perf_counter()
    rep = Ingestor(col, emb, chunking, IngestOptions(workers=0)).ingest_records(recs)
    total = time.perf_counter() - t
    chunks = col.store.counts()["chunks"]
    load.append(os.getloadavg()[0])
    raw_s.append(_timed(emb.embed_documents, texts))
    load.append(os.getloadavg()[0])
    raw = sum(raw_s) / len(raw_s)
    col.close()
    tm = rep.timings
    return {
        "documents": len(recs), "chunks": chunks, "seconds": round(total, 2),
        "docs_per_s": round(len(recs) / total, 1), "chunks_per_s": round(chunks / total, 1),
        "share": {k: round(tm.get(k, 0.0) / total, 3) for k in STAGES},
        "embed_stage_chunks_per_s": round(len(texts) / tm["embed"], 1),
        "raw_encoder_chunks_per_s": round(len(texts) / raw, 1),
        "embed_vs_raw": round(raw / tm["embed"], 3),
        "raw_encoder_s_before_after": [round(x, 1) for x in raw_s], "embed_stage_s": round(tm["embed"], 1),
        "loadavg_1m_before_between_after": load,
        "disk_mb": round(dir_mb(tmp / "collections" / "scifact"), 1),
        "disk_kb_per_chunk": round(dir_mb(tmp / "collections" / "scifact") * 1024 / max(chunks, 1), 2),
        "rss_delta_mb": round(rss_mb() - rss0, 1),
    }


def bench_files(tmp: Path, embedder_spec: str, chunking: ChunkingSettings, workers: int) -> dict[str, object]:
    emb = get_embedder(embedder_spec)
    emb.load()
    folder = DATASETS / "docs"
    col = Collection(tmp, "docs").open(embedder=emb.name, dim=emb.dim, chunking=chunking.to_manifest(), create=True)
    t = time.perf_counter()
    rep = Ingestor(col, emb, chunking, IngestOptions(workers=workers)).ingest_paths([folder])
    total = time.perf_counter() - t
    chunks = col.store.counts()["chunks"]
    col.close()
    return {
        "files": len(rep.results), "summary": rep.summary(), "seconds": round(total, 2),
        "files_per_s": round(len(rep.results) / total, 2), "chunks": chunks,
        "chunks_per_s": round(chunks / total, 1),
        "share": {k: round(rep.timings.get(k, 0.0) / total, 3) for k in STAGES},
        "failed": [{"file": Path(r.path).name, "reason": r.reason} for r in rep.failed],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="minilm-int8")
    ap.add_argument("--limit", type=int, default=5183)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-files", action="store_true")
    args = ap.parse_args()
    if not (DATASETS / "scifact").is_dir():
        sys.exit(f"skipped: {DATASETS} not found (the shared data sets are not part of a fresh clone)")
    chunking = ChunkingSettings()
    tmp = Path(tempfile.mkdtemp(prefix="ragqa-bench-"))
    try:
        res: dict[str, object] = {
            "machine": machine(), "command": "bench/bench_ingest.py " + " ".join(sys.argv[1:]),
            "embedder": args.embedder, "levels": list(chunking.levels),
        }
        res["scifact"] = bench_records(tmp, args.embedder, chunking, args.limit)
        if not args.skip_files:
            res["docs"] = bench_files(tmp, args.embedder, chunking, args.workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s = res["scifact"]
    assert isinstance(s, dict)
    print(f"\nIngest, embedder {args.embedder}, levels {list(chunking.levels)}")
    print("| corpus | items | chunks | s | items/s | chunks/s | parse | chunk | embed | index |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| SciFact records | {s['documents']} | {s['chunks']} | {s['seconds']} | {s['docs_per_s']} | "
          f"{s['chunks_per_s']} | " + " | ".join(f"{s['share'][k]:.0%}" for k in STAGES) + " |")
    if "docs" in res:
        d = res["docs"]
        assert isinstance(d, dict)
        print(f"| shared/docs files | {d['files']} | {d['chunks']} | {d['seconds']} | {d['files_per_s']} | "
              f"{d['chunks_per_s']} | " + " | ".join(f"{d['share'][k]:.0%}" for k in STAGES) + " |")
    print(f"\nembedding stage {s['embed_stage_chunks_per_s']} chunks/s vs raw encoder {s['raw_encoder_chunks_per_s']} "
          f"chunks/s (mean of a run before and after the pipeline: {s['raw_encoder_s_before_after']} s): "
          f"{s['embed_vs_raw']:.0%}")
    print(f"store: {s['disk_kb_per_chunk']} KiB/chunk on disk, RSS +{s['rss_delta_mb']} MiB for {s['chunks']} chunks")
    out = REPO / "bench" / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, ensure_ascii=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
