"""Helpers shared by the retrieval benchmarks (bench_retrieval, bench_search_speed, bench_frameworks, bench_updates).

Timing and memory helpers come from bench_engines, the on-disk vector cache from bench_embedders, metrics from
eval.metrics: this module only adds what those lack (data-set loading as records, collections built through the real
ingest pipeline, machine facts, Markdown tables, result files).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.bench_embedders import _Cached  # noqa: E402  (vectors cached on disk by embedder and texts)
from bench.bench_engines import latency, rss_mb  # noqa: E402
from ingest.chunking import ChunkingSettings  # noqa: E402
from ingest.pipeline import IngestOptions, Ingestor, Record  # noqa: E402
from retrieval.collection import Collection  # noqa: E402
from retrieval.embedders import Embedder  # noqa: E402
from retrieval.types import ScoredChunk  # noqa: E402

__all__ = [
    "DATASETS", "RESULTS", "ROOT", "CachedVectors", "RetrievalSet", "cmrc", "dir_mb", "doc_ranking", "find_source",
    "ingest", "judged_within", "latency", "loadavg", "machine", "md_table", "require", "rss_mb", "scifact",
    "set_embedder_threads", "write_results",
]

DATASETS = Path(os.environ.get("RAGQA_DATASETS", "/work/shared/datasets"))
RESULTS = ROOT / "bench" / "results"
CachedVectors = _Cached


def require(*parts: str) -> Path:
    """The data-set path, or exit with a message saying what is missing (a fresh clone has no shared/ folder)."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        sys.exit(
            f"{path} not found: these benchmarks need the shared data sets (/work/shared/datasets, or set "
            "RAGQA_DATASETS to the folder holding scifact/ and cmrc2018/)"
        )
    return path


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        pass
    return {
        "cpu_model": model or platform.processor(),
        "cpus": len(os.sched_getaffinity(0)),
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg": loadavg(),
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def md_table(rows: Sequence[dict[str, Any]], cols: Sequence[tuple[str, str, str]]) -> str:
    """cols: (key, title, format spec). Missing values print as "-"."""
    lines = ["| " + " | ".join(t for _, t, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            cells.append("-" if v is None else str(v) if fmt == "s" else format(v, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def set_embedder_threads(n: int | None) -> None:
    """What-if for the speed runs: the bundled embedders take min(2, cores) threads (retrieval.embedders._threads);
    this overrides it for embedders loaded afterwards in this process."""
    if n is not None:
        import retrieval.embedders as embedders

        if n < 1:
            raise ValueError(f"embedder threads must be >= 1, got {n}")
        embedders._threads = lambda: n


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


# ---- data sets as records and judgements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalSet:
    name: str
    records: tuple[Record, ...]
    queries: dict[str, str]  # query id -> text, only judged queries
    qrels: dict[str, dict[str, int]]  # query id -> {record key: relevance}

    def subset(self, qids: Iterable[str]) -> RetrievalSet:
        keep = list(qids)
        return RetrievalSet(self.name, self.records, {q: self.queries[q] for q in keep},
                            {q: self.qrels[q] for q in keep})

    def sample(self, n_queries: int, n_docs: int, seed: int = 0) -> RetrievalSet:
        """A smaller corpus for embedders too slow for the whole one: `n_queries` seeded queries, every document
        relevant to them, and seeded random distractors up to `n_docs` documents. Scores come out higher than on
        the full corpus (fewer distractors); compare such rows only with each other."""
        rng = random.Random(seed)
        qids = sorted(rng.sample(sorted(self.queries), min(n_queries, len(self.queries))))
        needed = {d for q in qids for d in self.qrels[q]}
        rest = sorted(r.key for r in self.records if r.key not in needed)
        keep = needed | set(rng.sample(rest, max(0, min(len(rest), n_docs - len(needed)))))
        sub = self.subset(qids)
        return RetrievalSet(f"{self.name}{len(keep)}", tuple(r for r in self.records if r.key in keep),
                            sub.queries, sub.qrels)


def scifact(split: str = "train") -> RetrievalSet:
    from eval.datasets import load_beir

    data = load_beir(require("scifact"), split=split)
    qrels = {q: {f"beir:{d}": r for d, r in rel.items()} for q, rel in data.qrels.items()}
    return RetrievalSet("scifact", data.corpus, data.queries, qrels)


def cmrc() -> RetrievalSet:
    """CMRC 2018 trial as retrieval: each paragraph is a document, each question's own paragraph its only relevant one.
    Identical paragraphs count as one document; the article title is the document title, as a file would have."""
    data = json.loads(require("cmrc2018", "cmrc2018_trial.json").read_text(encoding="utf-8"))["data"]
    keys: dict[str, str] = {}
    records: list[Record] = []
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for art in data:
        for para in art["paragraphs"]:
            ctx = para["context"].strip()
            if ctx not in keys:
                keys[ctx] = f"cmrc:{para['id']}"
                records.append(Record(key=keys[ctx], title=str(art.get("title") or ""), text=ctx))
            for qa in para["qas"]:
                queries[qa["id"]] = qa["question"].strip()
                qrels[qa["id"]] = {keys[ctx]: 1}
    return RetrievalSet("cmrc2018-trial", tuple(records), queries, qrels)


# ---- collections built through the real pipeline -------------------------------------------------------------------


def ingest(
    cache_dir: Path, name: str, embedder: Embedder, records: Sequence[Record], chunking: ChunkingSettings | None = None
) -> tuple[Collection, dict[str, Any]]:
    """Open (or create) collection `name` under cache_dir and ingest `records` with Ingestor.ingest_records.

    Re-ingesting is incremental, so a second run only opens the collection: that is the cache."""
    chunking = chunking or ChunkingSettings()
    col = Collection(cache_dir, name).open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True
    )
    with col.write_lock():
        report = Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_records(records)
    info = {"collection": str(col.root), **report.summary(), **col.store.counts(),
            "seconds": round(report.timings.get("total", 0.0), 1)}
    return col, info


def find_source(cache_dir: Path, embedder: str, source: str | None, quick: bool = False) -> str | None:
    """The cached SciFact collection (bench_retrieval's) to take real level-128 chunks from: `source` if given, else
    the full-corpus one of this embedder (the --quick sample's in quick mode); None if there is none."""
    root = cache_dir / "collections"
    if source:
        if not (root / source / "manifest.json").exists():
            sys.exit(f"--source {source!r}: no such collection under {root}")
        return source
    prefix = f"scifact{'300' if quick else ''}-{embedder}-L"
    names = [p.name for p in sorted(root.glob(prefix + "*")) if "128" in p.name[len(prefix):].split("_")]
    return names[0] if names else None


def judged_within(data: RetrievalSet, col: Collection) -> RetrievalSet:
    """The queries all of whose judged documents are in the collection (all of them for a full-corpus one)."""
    have = set(col.store._conn().execute("SELECT path FROM sources").fetchall())
    have_keys = {p for (p,) in have}
    return data.subset(q for q in data.queries if set(data.qrels[q]) <= have_keys)


def doc_ranking(hits: Sequence[ScoredChunk]) -> list[str]:
    """Chunk hits (best first) -> document keys, each at its best chunk's place (collapse by max score)."""
    seen: dict[str, None] = {}
    for h in hits:
        seen.setdefault(h.chunk.source_path, None)
    return list(seen)
