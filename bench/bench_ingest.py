"""Ingest throughput: SciFact abstracts as records, and the mixed-format documents in ../shared/datasets/docs.

Prints a table and writes bench/results/ingest.json. The embedding stage is compared with the raw encoder on the same
texts in the same run: the pipeline should reach >= 90% of it (batching, no per-chunk overhead).

    .venv/bin/python bench/bench_ingest.py [--embedder minilm-int8] [--limit 5183] [--workers 2]

Chunk-level configurations compared in one run (bench/results/ingest-levels.json): each corpus is ingested under
every configuration back to back, in ABBA order over corpora and rounds, so that a drift in machine load (2 shared
cores) falls on all of them alike; items/s is the throughput (the same input), chunks/s depends on the levels.

    .venv/bin/python bench/bench_ingest.py --limit 300 --levels 128,256,512 --levels 128 --skip-raw
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.common import DATASETS, dir_mb, loadavg, machine, rss_mb  # noqa: E402
from ingest import chunking as chunking_module  # noqa: E402
from ingest.chunking import HEADER_SHARE, ChunkingSettings, chunk_document  # noqa: E402
from ingest.parsers import ocr  # noqa: E402
from ingest.pipeline import IngestOptions, Ingestor, Record, parsed_from_text  # noqa: E402
from retrieval.collection import Collection  # noqa: E402
from retrieval.embedders import Embedder, get_embedder  # noqa: E402
from retrieval.text import contextualize  # noqa: E402

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


def _levels(col: Collection) -> dict[str, dict[str, int]]:
    rows = col.store._conn().execute(
        "SELECT level, count(*), sum(token_count) FROM chunks GROUP BY level ORDER BY level").fetchall()
    return {str(lv): {"chunks": n, "tokens": t} for lv, n, t in rows}


def bench_records(
    tmp: Path, emb: Embedder, chunking: ChunkingSettings, limit: int, raw: bool = True
) -> dict[str, object]:
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
        texts += [contextualize(r.title, d.heading_path, d.text) for d in drafts]
    emb.embed_documents(texts[:64])  # warm-up: the first run of an ONNX session allocates
    raw_s = [_timed(emb.embed_documents, texts)] if raw else []
    load = [os.getloadavg()[0]]
    rss0 = rss_mb()
    t = time.perf_counter()
    rep = Ingestor(col, emb, chunking, IngestOptions(workers=0)).ingest_records(recs)
    total = time.perf_counter() - t
    chunks = col.store.counts()["chunks"]
    per_level = _levels(col)
    load.append(os.getloadavg()[0])
    if raw:
        raw_s.append(_timed(emb.embed_documents, texts))
        load.append(os.getloadavg()[0])
    col.close()
    tm = rep.timings
    out: dict[str, object] = {
        "levels": list(chunking.levels), "documents": len(recs), "chunks": chunks, "per_level": per_level,
        "seconds": round(total, 2), "docs_per_s": round(len(recs) / total, 2), "chunks_per_s": round(chunks / total, 1),
        "share": {k: round(tm.get(k, 0.0) / total, 3) for k in STAGES},
        "embed_stage_chunks_per_s": round(len(texts) / tm["embed"], 1), "embed_stage_s": round(tm["embed"], 1),
        "loadavg_1m_before_between_after" if raw else "loadavg_1m_before_after": load,
        "disk_mb": round(dir_mb(tmp / "collections" / "scifact"), 1),
        "disk_kb_per_chunk": round(dir_mb(tmp / "collections" / "scifact") * 1024 / max(chunks, 1), 2),
        "rss_delta_mb": round(rss_mb() - rss0, 1),
    }
    if raw:
        mean = sum(raw_s) / len(raw_s)
        out |= {"raw_encoder_chunks_per_s": round(len(texts) / mean, 1), "embed_vs_raw": round(mean / tm["embed"], 3),
                "raw_encoder_s_before_after": [round(x, 1) for x in raw_s]}
    return out


def bench_files(tmp: Path, emb: Embedder, chunking: ChunkingSettings, workers: int) -> dict[str, object]:
    folder = DATASETS / "docs"
    col = Collection(tmp, "docs").open(embedder=emb.name, dim=emb.dim, chunking=chunking.to_manifest(), create=True)
    load = [os.getloadavg()[0]]
    t = time.perf_counter()
    rep = Ingestor(col, emb, chunking, IngestOptions(workers=workers)).ingest_paths([folder])
    total = time.perf_counter() - t
    load.append(os.getloadavg()[0])
    chunks = col.store.counts()["chunks"]
    per_level = _levels(col)
    col.close()
    return {
        "levels": list(chunking.levels), "files": len(rep.results), "summary": rep.summary(),
        "seconds": round(total, 2), "files_per_s": round(len(rep.results) / total, 3), "chunks": chunks,
        "per_level": per_level, "chunks_per_s": round(chunks / total, 1),
        "share": {k: round(rep.timings.get(k, 0.0) / total, 3) for k in STAGES},
        "loadavg_1m_before_after": load,
        "failed": [{"file": Path(r.path).name, "reason": r.reason} for r in rep.failed],
    }


# (chunk levels, what runs as before issue 10): "legacy-ocr" the OCR settings; "legacy" those and a table's whole
# header repeated in every piece however wide (ingest/chunking.py HEADER_SHARE); "" today's code.
Config = tuple[tuple[int, ...], str]
_LEGACY = {"": "", "legacy-ocr": " (legacy OCR)", "legacy": " (legacy OCR and table headers)"}


def _parse_levels(s: str) -> Config:
    levels, _, legacy = s.partition(":")
    if legacy not in _LEGACY:
        raise argparse.ArgumentTypeError(f"--levels {s!r}: the suffix is ':legacy-ocr' or ':legacy'")
    try:
        return ChunkingSettings(levels=tuple(int(x) for x in levels.split(","))).levels, legacy
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--levels {s!r}: {e}") from e


def _name(cfg: Config) -> str:
    return "/".join(map(str, cfg[0])) + _LEGACY[cfg[1]]


def _row(name: str, r: dict[str, Any], items: str, rate: str) -> str:
    return (f"| {name} | {_name((tuple(r['levels']), r['ocr']))} | {r[items]} | {r['chunks']} | {r['seconds']} | "
            f"{r[rate]} | {r['chunks_per_s']} | " + " | ".join(f"{r['share'][k]:.0%}" for k in STAGES) + " |")


def _summary(runs: Sequence[dict[str, Any]], configs: Sequence[Config]) -> dict[str, Any]:
    """Per corpus and configuration: total items and seconds over the rounds; the ratio of each to the first."""
    out: dict[str, Any] = {}
    for corpus, items, rate in (("scifact", "documents", "docs_per_s"), ("docs", "files", "files_per_s")):
        per: dict[str, dict[str, Any]] = {}
        for cfg in configs:
            rs = [r for r in runs if r["corpus"] == corpus and (tuple(r["levels"]), r["ocr"]) == cfg]
            if not rs:
                continue
            secs = sum(r["seconds"] for r in rs)
            per[_name(cfg)] = {
                "runs": len(rs), "seconds": round(secs, 1), rate: round(sum(r[items] for r in rs) / secs, 3),
                "chunks_per_s": round(sum(r["chunks"] for r in rs) / secs, 1), "chunks": rs[0]["chunks"],
            }
        if per:
            first = next(iter(per.values()))
            for v in per.values():
                v["speedup_vs_first"] = round(v[rate] / first[rate], 2)
            out[corpus] = per
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="minilm-int8")
    ap.add_argument("--limit", type=int, default=5183)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-files", action="store_true")
    ap.add_argument("--levels", action="append", type=_parse_levels, metavar="L1,L2,...[:legacy[-ocr]]",
                    help="chunk levels (default: the default chunking); ':legacy-ocr' for the OCR settings before "
                         "issue 10, ':legacy' for those and its table headers; repeat to compare configurations in "
                         "one run")
    ap.add_argument("--rounds", type=int, default=1, help="ingest each corpus this many times per configuration")
    ap.add_argument("--skip-raw", action="store_true", help="do not time the raw encoder (saves two embeddings)")
    ap.add_argument("--out", default=None, help="results name (default ingest, or ingest-levels with several --levels)")
    args = ap.parse_args()
    if not (DATASETS / "scifact").is_dir():
        sys.exit(f"skipped: {DATASETS} not found (the shared data sets are not part of a fresh clone)")
    configs: list[Config] = list(dict.fromkeys(args.levels or [(ChunkingSettings().levels, "")]))
    emb = get_embedder(args.embedder)
    emb.load()
    tmp = Path(tempfile.mkdtemp(prefix="ragqa-bench-"))
    runs: list[dict[str, Any]] = []
    res: dict[str, Any] = {
        "machine": machine(), "command": "bench/bench_ingest.py " + " ".join(sys.argv[1:]),
        "embedder": args.embedder, "levels": [_name(c) for c in configs] if len(configs) > 1 else _name(configs[0]),
    }

    def run(corpus: str, cfg: Config, rnd: int) -> None:
        where = tmp / f"{corpus}-{'_'.join(map(str, cfg[0]))}{cfg[1]}-{rnd}"
        chunking = ChunkingSettings(levels=cfg[0])
        ocr.configure(ocr.LEGACY if cfg[1] else ocr.DEFAULT)  # parser processes are forked: they inherit it
        # Chunking runs in this process; a share no header reaches repeats every header whole, as before.
        chunking_module.HEADER_SHARE = 1e9 if cfg[1] == "legacy" else HEADER_SHARE
        t0 = time.strftime("%H:%M:%S", time.gmtime())
        r = (bench_records(where, emb, chunking, args.limit, raw=not args.skip_raw) if corpus == "scifact"
             else bench_files(where, emb, chunking, args.workers))
        runs.append({"corpus": corpus, "round": rnd, "started_utc": t0, "ocr": cfg[1], **r})
        print(f"  {corpus} {_name(cfg)} round {rnd}: {r['seconds']} s, {r['chunks']} chunks, "
              f"load {r.get('loadavg_1m_before_after') or r.get('loadavg_1m_before_between_after')}", flush=True)
        shutil.rmtree(where, ignore_errors=True)

    try:
        # ABBA: the order of the configurations flips between corpora and between rounds.
        for rnd in range(args.rounds):
            order = configs if rnd % 2 == 0 else configs[::-1]
            for cfg in order:
                run("scifact", cfg, rnd)
            for cfg in [] if args.skip_files else order[::-1]:
                run("docs", cfg, rnd)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["machine"]["loadavg_end"] = loadavg()
    print(f"\nIngest, embedder {args.embedder}")
    print("| corpus | levels | items | chunks | s | items/s | chunks/s | parse | chunk | embed | index |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        if r["corpus"] == "scifact":
            print(_row("SciFact records", r, "documents", "docs_per_s"))
        else:
            print(_row("shared/docs files", r, "files", "files_per_s"))
    if len(configs) == 1 and args.rounds == 1:
        res |= {r["corpus"]: {k: v for k, v in r.items() if k not in ("corpus", "round")} for r in runs}
        s = res["scifact"]
        if "embed_vs_raw" in s:
            print(f"\nembedding stage {s['embed_stage_chunks_per_s']} chunks/s vs raw encoder "
                  f"{s['raw_encoder_chunks_per_s']} chunks/s (mean of a run before and after the pipeline: "
                  f"{s['raw_encoder_s_before_after']} s): {s['embed_vs_raw']:.0%}")
        print(f"store: {s['disk_kb_per_chunk']} KiB/chunk on disk, RSS +{s['rss_delta_mb']} MiB for "
              f"{s['chunks']} chunks")
    else:
        res["runs"] = runs
        res["summary"] = _summary(runs, configs)
        for corpus, per in res["summary"].items():
            for name, v in per.items():
                print(f"{corpus} levels {name}: {v} ")
    out = REPO / "bench" / "results" / f"{args.out or ('ingest' if len(configs) == 1 else 'ingest-levels')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, ensure_ascii=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
