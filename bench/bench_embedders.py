"""Benchmark the bundled embedders: speed (default) and retrieval quality (--quality).

    .venv/bin/python bench/bench_embedders.py            # load s, texts/s at batch 32/64/128, query p50, RSS
    .venv/bin/python bench/bench_embedders.py --quality  # dense only: SciFact nDCG@10, R@100; CMRC R@1/5, MRR

Each embedder runs in its own subprocess, so load time and RSS are not flattered by an earlier import.
Rows are printed and merged (by embedder) into bench/results/embedders.json, sections "speed" and "quality".
Quality runs keep their vectors in --cache-dir, so an interrupted run resumes where it stopped.
Data: /work/shared/datasets (never copied into the repo).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval.embedders import BUNDLED_SPECS, Embedder, get_embedder  # noqa: E402

DATA = Path(os.environ.get("RAGQA_DATASETS", "/work/shared/datasets"))
RESULTS = ROOT / "bench" / "results" / "embedders.json"
BATCHES = (32, 64, 128)
CMRC_SPECS = ("use-multilingual", "e5-small", "minilm")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak_rss() -> None:
    # "5" resets VmHWM (Linux >= 4.0), so the peak below is this embedder's, not the corpus parsing's.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:"))
    return int(hwm.split()[1]) / 1024  # kB


def _scifact() -> tuple[list[str], list[str], list[str], list[str], dict[str, dict[str, int]]]:
    folder = DATA / "scifact"
    if not folder.is_dir():
        sys.exit(f"SciFact not found at {folder}: set RAGQA_DATASETS to the datasets folder")
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").open(encoding="utf-8")]
    doc_ids = [d["_id"] for d in corpus]
    docs = [f"{d['title']} {d['text']}" for d in corpus]
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    queries = [json.loads(line) for line in (folder / "queries.jsonl").open(encoding="utf-8")]
    queries = [q for q in queries if q["_id"] in qrels]
    return doc_ids, docs, [q["_id"] for q in queries], [q["text"] for q in queries], qrels


def _raw_encoder(spec: str, emb: Any, texts: list[str], batch: int) -> Callable[[], object]:
    """The package's own call on the same texts, for the wrapper-overhead ratio (reads private handles)."""
    if spec == "minilm":
        model = emb._st._model
        return lambda: model.encode(texts, batch_size=batch, normalize_embeddings=True)
    if spec == "minilm-int8":
        # Model time only: tokenised, sorted and padded beforehand.
        encs = emb._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encs[i].ids))
        feeds = []
        for s in range(0, len(texts), batch):
            rows = [encs[i].ids for i in order[s : s + batch]]
            width = max(map(len, rows))
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, seq in enumerate(rows):
                ids[r, : len(seq)], mask[r, : len(seq)] = seq, 1
            feeds.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        session = emb._session
        return lambda: [session.run(None, f) for f in feeds]
    if spec == "use-multilingual":
        return lambda: emb._model.encode(texts)
    if spec == "e5-small":
        return lambda: emb._model.passage(texts)
    raise ValueError(f"no raw encoder for {spec!r}")


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def worker_speed(spec: str, n_texts: int) -> dict[str, Any]:
    _, docs, _, claims, _ = _scifact()
    texts = docs[:n_texts]
    emb = get_embedder(spec)
    rss0 = _rss_mb()
    _reset_peak_rss()
    load_s = _timed(emb.load)
    rss_loaded = _rss_mb()
    emb.embed_documents(texts[:16])  # warm-up: first-call allocations and lazy kernels
    out: dict[str, Any] = {"spec": spec, "n_texts": len(texts), "dim": emb.dim, "max_tokens": emb.max_tokens}
    out["load_s"] = load_s
    # b64 last, right before the raw run it is compared with, so load drift on a shared machine hurts less.
    for b in (32, 128, 64):
        out[f"tps_b{b}"] = len(texts) / _timed(partial(emb.embed_documents, texts, batch_size=b))
    out["raw_tps_b64"] = len(texts) / _timed(_raw_encoder(spec, emb, texts, 64))
    out["wrapper_vs_raw_b64"] = out["tps_b64"] / out["raw_tps_b64"]
    lat = []
    for q in claims[:100]:
        t0 = time.perf_counter()
        emb.embed_query(q)
        lat.append((time.perf_counter() - t0) * 1000)
    out["query_p50_ms"] = float(np.percentile(lat, 50))
    out["query_p95_ms"] = float(np.percentile(lat, 95))
    out["rss_load_mb"] = rss_loaded - rss0
    out["rss_peak_mb"] = _peak_rss_mb() - rss0
    out["loadavg_1m"] = os.getloadavg()[0]
    return out


class _Cached:
    """Vectors kept on disk by (embedder, kind, texts), so a long quality run can be stopped and resumed."""

    def __init__(self, emb: Embedder, cache_dir: Path) -> None:
        self.emb, self.dir = emb, cache_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seconds = 0.0  # embedding time actually spent in this run

    def _get(self, kind: str, texts: list[str], fn: Callable[[], np.ndarray]) -> np.ndarray:
        key = hashlib.sha256(json.dumps([self.emb.name, kind, texts]).encode()).hexdigest()[:16]
        path = self.dir / f"{self.emb.name.replace('/', '_')}-{kind}-{key}.npy"
        if path.exists():
            return np.asarray(np.load(path))
        t0 = time.perf_counter()
        vecs = fn()
        self.seconds += time.perf_counter() - t0
        np.save(path, vecs)
        return vecs

    def documents(self, texts: list[str], chunk: int = 512) -> np.ndarray:
        # Saved chunk by chunk: e5-small needs hours for SciFact on two busy cores.
        parts = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
        embed = self.emb.embed_documents
        return np.concatenate([self._get("doc", p, partial(embed, p, batch_size=64)) for p in parts])

    def queries(self, texts: list[str]) -> np.ndarray:
        return self._get("query", texts, lambda: np.stack([self.emb.embed_query(t) for t in texts]))


def _ndcg_at_10(ranked: list[str], rels: dict[str, int]) -> float:
    # trec_eval / BEIR definition: gain = graded relevance, discount log2(rank + 1), ideal from the qrels.
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:10]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def _top_k(doc_vecs: np.ndarray, query_vecs: np.ndarray, k: int) -> np.ndarray:
    scores = query_vecs @ doc_vecs.T  # exact search: all documents
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def worker_quality(spec: str, cache_dir: Path) -> dict[str, Any]:
    emb = get_embedder(spec)
    emb.load()
    cached = _Cached(emb, cache_dir)
    out: dict[str, Any] = {"spec": spec}
    if spec in CMRC_SPECS:
        out.update(_cmrc(cached))  # first: it is the cheap half
    doc_ids, docs, qids, claims, qrels = _scifact()
    top = _top_k(cached.documents(docs), cached.queries(claims), 100)
    ndcg, recall = [], []
    for qid, row in zip(qids, top, strict=True):
        ranked = [doc_ids[i] for i in row]
        relevant = {d for d, r in qrels[qid].items() if r > 0}
        ndcg.append(_ndcg_at_10(ranked, qrels[qid]))
        recall.append(len(relevant & set(ranked)) / len(relevant))
    out.update(scifact_ndcg10=float(np.mean(ndcg)), scifact_recall100=float(np.mean(recall)))
    out["scifact_queries"] = len(qids)
    out["embed_s_this_run"] = cached.seconds
    return out


def _cmrc(cached: _Cached) -> dict[str, Any]:
    path = DATA / "cmrc2018" / "cmrc2018_trial.json"
    if not path.exists():
        sys.exit(f"CMRC 2018 not found at {path}: set RAGQA_DATASETS to the datasets folder")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    contexts: dict[str, int] = {}  # identical paragraphs count as one document
    questions: list[tuple[str, int]] = []
    for article in data:
        for para in article["paragraphs"]:
            cid = contexts.setdefault(para["context"], len(contexts))
            questions.extend((qa["question"], cid) for qa in para["qas"])
    top = _top_k(cached.documents(list(contexts)), cached.queries([q for q, _ in questions]), 10)
    hit = top == np.array([c for _, c in questions])[:, None]
    rank = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
    mrr = np.where(rank > 0, 1.0 / np.maximum(rank, 1), 0.0)
    return {
        "cmrc_recall1": float(hit[:, :1].any(axis=1).mean()),
        "cmrc_recall5": float(hit[:, :5].any(axis=1).mean()),
        "cmrc_mrr10": float(mrr.mean()),
        "cmrc_questions": len(questions),
        "cmrc_paragraphs": len(contexts),
    }


def _run_worker(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true"}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args], stdout=subprocess.PIPE, text=True, env=env, check=True
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str, str]]) -> str:
    head = " | ".join(f"{title:>{len(title)}}" for _, title, _ in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for key, title, fmt in cols:
            v = r.get(key)
            cells.append(f"{'-' if v is None else format(v, fmt):>{len(title)}}")
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def _save(section: str, rows: list[dict[str, Any]]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    by_spec = {r["spec"]: r for r in results.get(section, {}).get("rows", [])}
    for r in rows:
        by_spec[r["spec"]] = {**r, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    results[section] = {"cpus": os.cpu_count(), "rows": list(by_spec.values())}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--quality", action="store_true", help="retrieval quality instead of speed")
    parser.add_argument("--specs", nargs="+", default=list(BUNDLED_SPECS))
    parser.add_argument("--n-texts", type=int, default=1000, help="SciFact abstracts for the speed runs")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/ragqa_bench_embedders"))
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, spec, *rest = args.worker
        result = worker_speed(spec, int(rest[0])) if kind == "speed" else worker_quality(spec, Path(rest[0]))
        print(json.dumps(result))
        return
    if args.n_texts < 1:
        parser.error(f"--n-texts must be >= 1, got {args.n_texts}")
    if args.quality:
        rows = []
        for spec in args.specs:
            rows.append(_run_worker(["quality", spec, str(args.cache_dir)]))
            _save("quality", rows[-1:])  # each row as it comes: the whole run takes long
        print(
            _table(
                rows,
                [
                    ("spec", "embedder        ", "s"),
                    ("scifact_ndcg10", "SciFact nDCG@10", ".4f"),
                    ("scifact_recall100", "SciFact R@100", ".4f"),
                    ("cmrc_recall1", "CMRC R@1", ".4f"),
                    ("cmrc_recall5", "CMRC R@5", ".4f"),
                    ("cmrc_mrr10", "CMRC MRR@10", ".4f"),
                    ("embed_s_this_run", "embed s", ".0f"),
                ],
            )
        )
    else:
        rows = []
        for spec in args.specs:
            rows.append(_run_worker(["speed", spec, str(args.n_texts)]))
            _save("speed", rows[-1:])
        cols = [("spec", "embedder        ", "s"), ("load_s", "load s", ".1f")]
        cols += [(f"tps_b{b}", f"texts/s b{b}", ".1f") for b in BATCHES]
        cols += [
            ("raw_tps_b64", "raw b64", ".1f"),
            ("wrapper_vs_raw_b64", "ours/raw", ".2f"),
            ("query_p50_ms", "query p50 ms", ".1f"),
            ("rss_load_mb", "RSS load MB", ".0f"),
            ("rss_peak_mb", "RSS peak MB", ".0f"),
        ]
        print(_table(rows, cols))
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
