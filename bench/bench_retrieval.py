"""Retrieval quality through the real pipeline and HybridRetriever: SciFact (English) and CMRC 2018 (Chinese).

SciFact (train claims, qrels/train.tsv): nDCG@10 and recall@100 at document level (chunk hits collapsed to their
document at its best chunk) for BM25 alone, each embedder alone, hybrid RRF / weighted with a small grid of k and
weights, each chunk level, and, with the embedded llama.cpp model, hybrid + HyDE and hybrid + multi-query on a seeded
sample of claims. CMRC 2018 trial: each question's own paragraph is its only relevant document; recall@1/@5, MRR@10.

Each corpus is ingested with Ingestor.ingest_records (Record(key, title, text)) into one collection per embedder
under --cache-dir; a re-run only opens them. nDCG@10 comes from the production setting (candidates per retriever as
in SearchParams); recall@100 from a deep pass (candidates = top_k = --depth chunks), since 100 documents need
several hundred small chunks.

    .venv/bin/python bench/bench_retrieval.py --quick                        # minutes: small sample, two models
    .venv/bin/python bench/bench_retrieval.py --embedders use-multilingual   # full SciFact + CMRC
    .venv/bin/python bench/bench_retrieval.py --sample-docs 800 --levels 128 # all four models on a sample corpus
    .venv/bin/python bench/bench_retrieval.py --compare-levels --levels 128 256 512 --embedders minilm-int8 \
        --zh-embedders use-multilingual                # one level against several: SciFact, CMRC, HotpotQA
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    CachedVectors,
    RetrievalSet,
    cmrc,
    doc_ranking,
    ingest,
    machine,
    md_table,
    require,
    scifact,
    write_results,
)
from eval.metrics import mrr_at_k, ndcg_at_k, paired_bootstrap, recall_at_k  # noqa: E402
from ingest.chunking import ChunkingSettings  # noqa: E402
from ingest.pipeline import Record  # noqa: E402
from retrieval.collection import Collection  # noqa: E402
from retrieval.embedders import BUNDLED_SPECS, Embedder, get_embedder  # noqa: E402
from retrieval.fusion import rrf  # noqa: E402
from retrieval.search import HybridRetriever, SearchParams  # noqa: E402
from retrieval.types import ScoredChunk  # noqa: E402


def fusion_grid(level: int) -> list[tuple[str, SearchParams]]:
    base = SearchParams(level=level)
    # k=60 with equal weights is SearchParams() itself, evaluated as "current defaults".
    grid = [(f"hybrid rrf k={k}", replace(base, rrf_k=k)) for k in (10, 30, 100)]
    grid += [(f"hybrid rrf k=60 w={w[0]}:{w[1]}", replace(base, weights=w)) for w in ((0.5, 1.0), (1.0, 0.5))]
    grid += [(f"hybrid weighted {w:.1f}:{1 - w:.1f}", replace(base, fusion="weighted", weights=(w, 1 - w)))
             for w in (0.3, 0.5, 0.7)]
    # Near-duplicate collapsing drops a chunk whose near_dup_of (marked at ingest, cosine >= 0.85) is already kept.
    grid += [(f"{m} no near-dup collapse", replace(base, mode=m, collapse_duplicates=False))
             for m in ("hybrid", "dense", "sparse")]
    return grid


class Evaluator:
    """Runs one retriever over a query set, production pass and deep pass, and scores at document level."""

    def __init__(self, retriever: HybridRetriever, data: RetrievalSet, qvecs: np.ndarray, depth: int) -> None:
        self.retriever, self.data, self.depth = retriever, data, depth
        self.qids = list(data.queries)
        self.vecs = dict(zip(self.qids, qvecs, strict=True))

    def rankings(self, params: SearchParams, qid: str, deep: bool) -> list[ScoredChunk]:
        n = self.depth if deep else max(params.candidates, 10)
        p = replace(params, candidates=n) if deep else params
        return self.retriever.search(self.data.queries[qid], top_k=n, params=p, query_vector=self.vecs[qid])

    def scifact(self, name: str, params: SearchParams, deep: bool = True) -> dict[str, Any]:
        """nDCG@10 from the production pass; recall@100 (and documents reached) from the deep pass if `deep`."""
        t = time.perf_counter()
        qrels = self.data.qrels
        ndcg = [ndcg_at_k(doc_ranking(self.rankings(params, q, False)), qrels[q], 10) for q in self.qids]
        out = {"config": name, "level": params.level, "ndcg10": float(np.mean(ndcg)), "queries": len(self.qids),
               "per_query_ndcg10": ndcg}
        if deep:
            ranked = [doc_ranking(self.rankings(params, q, True)) for q in self.qids]
            out["recall100"] = float(np.mean([recall_at_k(r, qrels[q], 100)
                                              for q, r in zip(self.qids, ranked, strict=True)]))
            out["docs_ranked"] = float(np.mean([len(r) for r in ranked]))
        return {**out, "s": round(time.perf_counter() - t, 1)}

    def chinese(self, name: str, params: SearchParams) -> dict[str, Any]:
        ranks = [doc_ranking(self.rankings(params, q, False)) for q in self.qids]
        rel = [self.data.qrels[q] for q in self.qids]
        return {"config": name, "level": params.level, "queries": len(self.qids),
                "recall1": float(np.mean([recall_at_k(r, g, 1) for r, g in zip(ranks, rel, strict=True)])),
                "recall5": float(np.mean([recall_at_k(r, g, 5) for r, g in zip(ranks, rel, strict=True)])),
                "mrr10": float(np.mean([mrr_at_k(r, g, 10) for r, g in zip(ranks, rel, strict=True)]))}


def open_evaluator(
    args: argparse.Namespace, data: RetrievalSet, spec: str
) -> tuple[Evaluator, Embedder, dict[str, Any]]:
    emb = get_embedder(spec)
    emb.load()
    # A cached collection with more levels serves too: chunks of one level do not depend on the others.
    levels = tuple(args.levels)
    prefix = f"{data.name}-{spec}-L"
    root = args.cache_dir / "collections"
    for p in sorted(root.glob(prefix + "*")) if root.is_dir() else []:
        have = tuple(int(x) for x in p.name[len(prefix):].split("_") if x.isdigit())
        if set(levels) <= set(have):
            levels = have
            break
    col, info = ingest(args.cache_dir, prefix + "_".join(map(str, levels)), emb, data.records,
                       ChunkingSettings(levels=levels))
    print(f"  {spec}: {info['documents']} documents, {info['chunks']} chunks (ingest {info['seconds']} s this run)",
          flush=True)
    qvecs = CachedVectors(emb, args.cache_dir / "vectors").queries(list(data.queries.values()))
    return Evaluator(HybridRetriever(col, emb), data, qvecs, args.depth), emb, info


# ---- SciFact ---------------------------------------------------------------------------------------------------------


def run_scifact(args: argparse.Namespace, data: RetrievalSet) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    ingests = {}
    for n, spec in enumerate(args.embedders):
        ev, _, ingests[spec] = open_evaluator(args, data, spec)
        for level in args.levels:
            base = SearchParams(level=level)
            if n == 0:  # BM25 does not depend on the embedder
                rows.append(ev.scifact("bm25", replace(base, mode="sparse")))
            rows.append({**ev.scifact(f"dense {spec}", replace(base, mode="dense")), "embedder": spec})
            rows.append({**ev.scifact(f"hybrid {spec} (current defaults)", base), "embedder": spec})
            print(md_table(rows[-3:], COLS), flush=True)
        for name, params in fusion_grid(min(args.levels)) if args.grid else []:
            name = name.replace("hybrid", f"hybrid {spec}").replace("dense", f"dense {spec}").replace("sparse", "bm25")
            rows.append({**ev.scifact(name, params, deep=args.deep_grid), "embedder": spec, "grid": True})
        ev.retriever.collection.close()
    hybrid = [r for r in rows if r["config"].startswith("hybrid") and "collapse" not in r["config"]]
    best = max(hybrid, key=lambda r: r["ndcg10"])
    bm25 = next(r for r in rows if r["config"] == "bm25" and r["level"] == best["level"])
    best["vs_bm25"] = paired_bootstrap(bm25["per_query_ndcg10"], best["per_query_ndcg10"])
    return {"corpus": data.name, "documents": len(data.records), "queries": len(data.queries), "rows": rows,
            "ingest": ingests, "best": {k: v for k, v in best.items() if k != "per_query_ndcg10"}}


# ---- HyDE and multi-query with the embedded model ------------------------------------------------------------------


def llm_expansions(qids: Sequence[str], data: RetrievalSet, model: Path, cache: Path) -> dict[str, dict[str, Any]]:
    """HyDE passage and two extra queries per claim from the embedded server, as app/pipeline.py asks for them.
    Kept in `cache` (JSON) so an interrupted run goes on where it stopped."""
    from app.llm.embedded import EmbeddedLLMServer
    from retrieval import transforms

    done: dict[str, dict[str, Any]] = json.loads(cache.read_text()) if cache.exists() else {}
    todo = [q for q in qids if q not in done]
    if not todo:
        return done
    with EmbeddedLLMServer(model, n_ctx=2048, n_threads=2) as srv:
        client = srv.client(timeout=600.0)

        async def complete(prompt: str, max_tokens: int) -> str:
            return (await client.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens)).text

        async def one(q: str) -> dict[str, Any]:
            t = time.perf_counter()
            hyde = await transforms.hyde(complete, data.queries[q])
            t_hyde = time.perf_counter() - t
            multi = await transforms.multi_query(complete, data.queries[q], 2)
            return {"hyde": hyde, "multi": multi, "hyde_s": t_hyde, "multi_s": time.perf_counter() - t - t_hyde}

        for i, q in enumerate(todo):
            done[q] = asyncio.run(one(q))
            cache.write_text(json.dumps(done, ensure_ascii=False, indent=0))
            print(f"  LLM {i + 1}/{len(todo)}: {done[q]['hyde_s']:.0f}+{done[q]['multi_s']:.0f} s", flush=True)
    return done


def _llm_file(name_or_path: str) -> Path:
    """A bundled model's name (assembled and sha256-checked like `ragqa models prepare` does) or a GGUF path."""
    from app.llm.assets import MODELS, default_cache_dir, ensure_model

    if name_or_path in MODELS:
        return ensure_model(name_or_path, default_cache_dir())  # type: ignore[arg-type]
    path = Path(name_or_path)
    if not path.is_file():
        sys.exit(f"LLM model {path} not found: pass --llm-model NAME|GGUF, or --llm-limit 0 to skip HyDE and "
                 f"multi-query (bundled names: {sorted(MODELS)})")
    return path


def run_llm(args: argparse.Namespace, data: RetrievalSet, spec: str, params: SearchParams) -> dict[str, Any]:
    qids = sorted(random.Random(args.seed).sample(sorted(data.queries), min(args.llm_limit, len(data.queries))))
    model = _llm_file(args.llm_model)
    cache = args.cache_dir / f"llm-{model.stem}-{data.name}.json"
    exp = llm_expansions(qids, data, model, cache)
    ev, emb, _ = open_evaluator(args, data, spec)
    hyde_vecs = {q: emb.embed_documents([exp[q]["hyde"]])[0] for q in qids if exp[q]["hyde"]}

    def fused(qid: str, deep: bool, hyde: bool, multi: bool) -> list[str]:
        # As app/pipeline.py _fused: hybrid lists per query (+ a dense list for the HyDE passage), RRF over them.
        lists = [ev.rankings(params, qid, deep)]
        n = args.depth if deep else params.candidates
        p = replace(params, candidates=n)
        for extra in exp[qid]["multi"] if multi else []:
            lists.append(ev.retriever.search(extra, top_k=n, params=p))
        if hyde and qid in hyde_vecs:  # the pipeline, too, goes on without a HyDE list when the LLM gave none
            lists.append(ev.retriever.search(data.queries[qid], top_k=n, params=replace(p, mode="dense"),
                                             query_vector=hyde_vecs[qid]))
        if len(lists) == 1:
            return doc_ranking(lists[0])
        by_id = {h.chunk.chunk_id: h for hits in lists for h in hits}
        ranked = rrf([[(h.chunk.chunk_id, h.score) for h in hits] for hits in lists])
        return doc_ranking([by_id[c] for c, _ in ranked[:n]])

    rows: list[dict[str, Any]] = []
    for name, hyde, multi in (("hybrid", False, False), ("hybrid + HyDE", True, False),
                              ("hybrid + multi-query (2)", False, True)):
        nd = [ndcg_at_k(fused(q, False, hyde, multi), data.qrels[q], 10) for q in qids]
        rc = [recall_at_k(fused(q, True, hyde, multi), data.qrels[q], 100) for q in qids]
        rows.append({"config": name, "embedder": spec, "level": params.level, "queries": len(qids),
                     "ndcg10": float(np.mean(nd)), "recall100": float(np.mean(rc)), "per_query_ndcg10": nd})
    for r in rows[1:]:
        r["vs_hybrid"] = paired_bootstrap(rows[0]["per_query_ndcg10"], r["per_query_ndcg10"])
    ev.retriever.collection.close()
    secs = {k: float(np.median([exp[q][k] for q in qids])) for k in ("hyde_s", "multi_s")}
    return {"model": model.name, "seed": args.seed, "rows": rows, "median_llm_seconds": secs,
            "examples": {q: exp[q] for q in qids[:3]}}


# ---- CMRC ------------------------------------------------------------------------------------------------------------


def run_chinese(args: argparse.Namespace, data: RetrievalSet, chosen: SearchParams) -> dict[str, Any]:
    rows = []
    for n, spec in enumerate(args.zh_embedders):
        ev, _, _ = open_evaluator(args, data, spec)
        for level in args.levels:
            base = SearchParams(level=level)
            if n == 0:
                rows.append(ev.chinese("bm25 (jieba)", replace(base, mode="sparse")))
            rows.append({**ev.chinese(f"dense {spec}", replace(base, mode="dense")), "embedder": spec})
            rows.append({**ev.chinese(f"hybrid {spec}", replace(chosen, level=level)), "embedder": spec})
        print(md_table(rows[-2 * len(args.levels):], ZH_COLS), flush=True)
        ev.retriever.collection.close()
    return {"corpus": data.name, "documents": len(data.records), "queries": len(data.queries), "rows": rows}


# ---- chunk levels: one level against several (issue 10 part 5) -----------------------------------------------------


class ReusedVectors:
    """The embedder, but a text already embedded in another collection of this model takes its stored vector: a
    vector depends only on its text, so collections of other levels cost no second embedding. `misses` counts texts
    that were embedded here."""

    def __init__(self, emb: Embedder) -> None:
        self.emb = emb
        self.memo: dict[str, np.ndarray] = {}
        self.misses = 0

    @property
    def name(self) -> str:
        return self.emb.name

    @property
    def dim(self) -> int:
        return self.emb.dim

    @property
    def max_tokens(self) -> int:
        return self.emb.max_tokens

    def load(self) -> None:
        self.emb.load()

    def add_collection(self, col: Any) -> None:
        from ingest.pipeline import _contextualize

        rows = col.store._conn().execute(
            "SELECT d.title, c.heading_path, c.text, c.embedding FROM chunks c JOIN documents d USING (doc_id)")
        for title, path, text, blob in rows:
            self.memo[_contextualize(title, tuple(json.loads(path)), text)] = np.frombuffer(blob, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if todo:
            self.memo.update(zip(todo, self.emb.embed_documents(todo, batch_size), strict=True))
            self.misses += len(todo)
        return np.stack([self.memo[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.emb.embed_query(text)


def hotpotqa() -> RetrievalSet:
    """HotpotQA (100 questions, 994 passages): each passage a document; a question's two supporting passages are
    its relevant ones."""
    corpus = json.loads(require("hotpotqa", "hotpotqa_train_corpus.json").read_text(encoding="utf-8"))
    records = tuple(Record(key=f"hotpot:{t}", title=t, text="".join(s).strip()) for t, s in corpus.items())
    queries, qrels = {}, {}
    for q in json.loads(require("hotpotqa", "hotpotqa_train.json").read_text(encoding="utf-8")):
        queries[str(q["_id"])] = q["question"].strip()
        qrels[str(q["_id"])] = {f"hotpot:{t}": 1 for t, _ in q["supporting_facts"]}
    return RetrievalSet("hotpotqa", records, queries, qrels)


def _doc_rrf(rankings: Sequence[list[str]], k: int = 60) -> list[str]:
    score: dict[str, float] = {}
    for ranking in rankings:
        for rank, d in enumerate(ranking, 1):
            score[d] = score.get(d, 0.0) + 1.0 / (k + rank)
    return sorted(score, key=lambda d: -score[d])


def level_configs(args: argparse.Namespace, data: RetrievalSet, spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Retrievers per configuration: the collection with every level (today's default searches its smallest), each of
    its levels alone, RRF across levels, and collections built with one level only (its vectors reused)."""
    emb = get_embedder(spec)
    emb.load()
    levels = tuple(args.scifact_levels if data.name == "scifact" and args.scifact_levels else args.levels)
    reuse = ReusedVectors(emb)
    prefix = f"{data.name}-{spec}-L"
    for p in sorted((args.cache_dir / "collections").glob(prefix + "*")):  # an earlier, maybe interrupted, build
        if (p / "manifest.json").exists():
            cached = Collection(args.cache_dir, p.name).open()
            reuse.add_collection(cached)
            cached.close()
    multi, info = ingest(args.cache_dir, prefix + "_".join(map(str, levels)), reuse, data.records,
                         ChunkingSettings(levels=levels))
    reuse.add_collection(multi)
    multi_r = HybridRetriever(multi, emb)
    name = "levels " + "+".join(map(str, levels))
    configs: dict[str, Any] = {f"{name}, search {levels[0]} (default until now)": [(multi_r, levels[0])]}
    configs |= {f"{name}, search {lv}": [(multi_r, lv)] for lv in levels[1:]}
    configs[f"{name}, search {levels[0]}+{levels[1]}, RRF"] = [(multi_r, lv) for lv in levels[:2]]
    if len(levels) > 2:
        configs[f"{name}, search all, RRF"] = [(multi_r, lv) for lv in levels]
    built: dict[str, Any] = {"multi": {**info, "per_level": _per_level(multi)}}
    for lv in args.single_levels:
        col, inf = ingest(args.cache_dir, f"{data.name}-{spec}-L{lv}", reuse, data.records,
                          ChunkingSettings(levels=(lv,)))
        configs[f"level {lv} alone"] = [(HybridRetriever(col, emb), lv)]
        built[f"single {lv}"] = {**inf, "per_level": _per_level(col)}
    built["vectors_embedded_this_run"] = reuse.misses
    print(f"  {spec}: {built}", flush=True)
    qvecs = CachedVectors(emb, args.cache_dir / "vectors").queries(list(data.queries.values()))
    return configs, {"built": built, "qvecs": dict(zip(data.queries, qvecs, strict=True))}


def _per_level(col: Any) -> dict[str, dict[str, int]]:
    rows = col.store._conn().execute("SELECT level, count(*), sum(token_count) FROM chunks GROUP BY level").fetchall()
    return {str(lv): {"chunks": n, "tokens": t} for lv, n, t in rows}


def run_levels(args: argparse.Namespace, data: RetrievalSet, spec: str) -> dict[str, Any]:
    configs, extra = level_configs(args, data, spec)
    qvecs, qids = extra["qvecs"], list(data.queries)

    def ranking(parts: list[tuple[HybridRetriever, int]], qid: str, n: int) -> list[str]:
        lists = [doc_ranking(r.search(data.queries[qid], top_k=n,
                                      params=SearchParams(level=lv, candidates=max(n, SearchParams().candidates)),
                                      query_vector=qvecs[qid])) for r, lv in parts]
        return lists[0] if len(lists) == 1 else _doc_rrf(lists)

    rows: list[dict[str, Any]] = []
    per_query: dict[str, dict[str, list[float]]] = {}
    for name, parts in configs.items():
        t = time.perf_counter()
        prod = [ranking(parts, q, SearchParams().candidates) for q in qids]  # the production setting
        deep = [ranking(parts, q, args.depth) for q in qids]
        rel = [data.qrels[q] for q in qids]
        pq = {"ndcg10": [ndcg_at_k(r, g, 10) for r, g in zip(prod, rel, strict=True)],
              "recall10": [recall_at_k(r, g, 10) for r, g in zip(prod, rel, strict=True)],
              "recall100": [recall_at_k(r, g, 100) for r, g in zip(deep, rel, strict=True)],
              "mrr10": [mrr_at_k(r, g, 10) for r, g in zip(prod, rel, strict=True)]}
        per_query[name] = pq
        rows.append({"config": name, "embedder": spec, "queries": len(qids),
                     **{k: float(np.mean(v)) for k, v in pq.items()}, "s": round(time.perf_counter() - t, 1)})
    base = rows[0]["config"]
    for r in rows[1:]:
        for m in ("ndcg10", "recall10"):
            r[f"{m}_vs_default"] = paired_bootstrap(per_query[base][m], per_query[r["config"]][m])
    print(md_table(rows, LEVEL_COLS), flush=True)
    for col in {id(r.collection): r.collection for parts in configs.values() for r, _ in parts}.values():
        col.close()
    return {"corpus": data.name, "documents": len(data.records), "queries": len(qids), "embedder": spec,
            "built": extra["built"], "rows": rows}


def compare_levels(args: argparse.Namespace) -> None:
    """SciFact and HotpotQA with minilm-int8, CMRC with use-multilingual: what `RAGQA_EMBEDDER=auto` picks for each."""
    if len(args.levels) < 2:
        sys.exit("--compare-levels needs at least two --levels (the multi-level collection)")
    out: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv), "levels": args.levels,
                           "single_levels": args.single_levels, "depth": args.depth,
                           "production_candidates": SearchParams().candidates}
    sets: list[tuple[str, Callable[[], RetrievalSet], str]] = [("scifact", lambda: scifact(), args.embedders[0])]
    sets += [] if args.skip_chinese else [("cmrc", cmrc, args.zh_embedders[0])]
    sets += [("hotpotqa", hotpotqa, args.embedders[0])]
    for key, load, spec in sets:
        if key == "scifact" and args.skip_scifact:
            continue
        data = load()
        if args.sample_docs and key == "scifact":
            data = data.sample(args.sample_queries, args.sample_docs, args.seed)
        print(f"{data.name}: {len(data.records)} documents, {len(data.queries)} queries, {spec}", flush=True)
        out[key] = run_levels(args, data, spec)
    for key in ("scifact", "cmrc", "hotpotqa"):
        if key in out:
            print(f"\n## {out[key]['corpus']} ({out[key]['embedder']}, {out[key]['queries']} queries)\n"
                  + md_table(out[key]["rows"], LEVEL_COLS))
    print(f"wrote {write_results(args.out or 'levels', out)}")


LEVEL_COLS = [("config", "configuration", "s"), ("ndcg10", "nDCG@10", ".4f"), ("recall10", "R@10", ".4f"),
              ("recall100", "R@100", ".4f"), ("mrr10", "MRR@10", ".4f")]


COLS = [("config", "configuration", "s"), ("level", "level", "d"), ("ndcg10", "nDCG@10", ".4f"),
        ("recall100", "R@100", ".4f"), ("queries", "claims", "d")]
ZH_COLS = [("config", "configuration", "s"), ("level", "level", "d"), ("recall1", "R@1", ".4f"),
           ("recall5", "R@5", ".4f"), ("mrr10", "MRR@10", ".4f"), ("queries", "questions", "d")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/ragqa-bench"))
    ap.add_argument("--embedders", nargs="+", default=list(BUNDLED_SPECS))
    ap.add_argument("--zh-embedders", nargs="+", default=["use-multilingual", "e5-small", "minilm"])
    ap.add_argument("--levels", type=int, nargs="+", default=list(ChunkingSettings().levels),
                    help="chunk levels to ingest and to compare (default: the default chunking)")
    ap.add_argument("--depth", type=int, default=400, help="chunks per retriever in the recall@100 pass")
    ap.add_argument("--deep-grid", action="store_true", help="recall@100 for the fusion grid rows too")
    ap.add_argument("--sample-docs", type=int, default=0, help="a seeded sample corpus of this many documents")
    ap.add_argument("--sample-queries", type=int, default=200)
    ap.add_argument("--no-grid", dest="grid", action="store_false", help="skip the fusion grid")
    ap.add_argument("--skip-scifact", action="store_true")
    ap.add_argument("--skip-chinese", action="store_true")
    ap.add_argument("--llm-limit", type=int, default=None, help="claims for HyDE / multi-query (default 100; 0: skip)")
    ap.add_argument("--llm-model", default="qwen2.5-1.5b", help="bundled model name or a GGUF path (default: the "
                    "embedded default)")
    ap.add_argument("--llm-embedder", default=None, help="embedder for the LLM rows (default: best hybrid)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 300-document sample, 40 claims, two models")
    ap.add_argument("--out", default=None, help="results name (default retrieval, retrieval-quick, ...)")
    ap.add_argument("--compare-levels", action="store_true", help="only compare chunk-level configurations (SciFact, "
                    "CMRC, HotpotQA; collections with --levels and with each of --single-levels alone)")
    ap.add_argument("--single-levels", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--scifact-levels", type=int, nargs="+", help="levels of the SciFact multi-level collection "
                    "(default --levels)")
    args = ap.parse_args()
    require("scifact", "corpus.jsonl")
    if args.compare_levels:
        compare_levels(args)
        return
    if args.quick:
        args.sample_docs, args.sample_queries = args.sample_docs or 300, 40
        if args.embedders == list(BUNDLED_SPECS):
            args.embedders = ["minilm-int8", "use-multilingual"]
        args.zh_embedders, args.levels, args.grid = ["use-multilingual"], [128], False
        args.llm_limit = 0 if args.llm_limit is None else args.llm_limit
    args.llm_limit = 100 if args.llm_limit is None else args.llm_limit
    data = scifact()
    if args.sample_docs:
        data = data.sample(args.sample_queries, args.sample_docs, args.seed)
    out: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv), "levels": args.levels,
                           "depth": args.depth, "production_candidates": SearchParams().candidates}
    print(f"SciFact: {len(data.records)} documents, {len(data.queries)} claims, levels {args.levels}", flush=True)
    chosen = SearchParams(level=min(args.levels))
    if not args.skip_scifact:
        out["scifact"] = sci = run_scifact(args, data)
        best = sci["best"]
        spec = args.llm_embedder or best.get("embedder", args.embedders[0])
        grid = {n.replace("hybrid", f"hybrid {spec}"): p for n, p in fusion_grid(best["level"])}
        chosen = grid.get(best["config"], SearchParams(level=best["level"]))
        print(f"\nbest hybrid: {best['config']} level {best['level']} nDCG@10 {best['ndcg10']:.4f}")
        if args.llm_limit > 0:
            out["llm"] = run_llm(args, data, spec, chosen)
            print(md_table(out["llm"]["rows"], COLS))
    if not args.skip_chinese:
        require("cmrc2018", "cmrc2018_trial.json")
        zh = cmrc()
        if args.quick:
            zh = zh.sample(40, 40, args.seed)
        out["chinese"] = run_chinese(args, zh, chosen)
    print("\n## SciFact")
    for section in ("scifact", "llm"):
        if section in out:
            print(md_table(out[section]["rows"], COLS))
    if "chinese" in out:
        print("\n## CMRC 2018 trial\n" + md_table(out["chinese"]["rows"], ZH_COLS))
    name = args.out or ("retrieval-quick" if args.quick else
                        f"retrieval-{data.name}" if args.sample_docs else "retrieval")
    for section in ("scifact", "llm"):
        for r in out.get(section, {}).get("rows", []):
            r.pop("per_query_ndcg10", None)  # kept only inside the paired comparisons
    print(f"wrote {write_results(name, out)}")


if __name__ == "__main__":
    main()
