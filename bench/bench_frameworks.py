"""ragqa's HybridRetriever against LangChain's EnsembleRetriever and LlamaIndex's QueryFusionRetriever.

Same machine, same process, same embedder object (ours, wrapped in each framework's embeddings interface), same chunks
and the same stored vectors (nothing is re-embedded), queries interleaved (query i goes to every system before query
i + 1 goes to any), so load swings hit all three alike.
- LangChain: EnsembleRetriever([BM25Retriever (rank-bm25), FAISS.as_retriever()], weights 0.5/0.5: weighted RRF,
  c=60). BM25Retriever tokenises with our Analyzer (its default, str.split, would lose to us on quality alone).
- LlamaIndex: QueryFusionRetriever([VectorStoreIndex over FaissVectorStore (IndexFlatIP), BM25Retriever (bm25s, its
  default English stemmer)], mode=FUSION_MODES.RECIPROCAL_RANK, num_queries=1: no LLM call).
- ragqa: HybridRetriever with SearchParams() defaults.
Every system gets 100 candidates per retriever (our SearchParams default) and returns its fused list; the top 10
chunks are timed. Quality: nDCG@10 at document level on the SciFact-size collection (bench_retrieval's, level 128).
Speed: the same at 100k chunks (bench_search_speed's collection).

    .venv/bin/python bench/bench_frameworks.py --quick
    .venv/bin/python bench/bench_frameworks.py [--size 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_search_speed import collection_name, ensure_built  # noqa: E402
from bench.common import (  # noqa: E402
    doc_ranking,
    find_source,
    judged_within,
    loadavg,
    machine,
    md_table,
    require,
    rss_mb,
    scifact,
    set_embedder_threads,
    write_results,
)
from bench.scaled import LEVEL  # noqa: E402
from eval.metrics import ndcg_at_k, paired_bootstrap  # noqa: E402
from ingest.pipeline import _contextualize  # noqa: E402
from retrieval.analyzer import Analyzer  # noqa: E402
from retrieval.collection import Collection  # noqa: E402
from retrieval.embedders import Embedder, get_embedder  # noqa: E402
from retrieval.search import HybridRetriever  # noqa: E402

K = 100  # candidates per retriever, as SearchParams().candidates


def corpus(col: Collection) -> tuple[list[str], list[str], np.ndarray]:
    """(texts as our BM25 and embedder saw them, document keys, stored vectors) of the level-128 chunks."""
    rows = col.store._conn().execute(
        "SELECT d.title, d.source_path, c.text, c.embedding FROM chunks c JOIN documents d USING (doc_id) "
        "WHERE c.level = ? ORDER BY c.chunk_id", (LEVEL,)).fetchall()
    texts = [_contextualize(t, (t,), x) for t, _, x, _ in rows]
    return texts, [k for _, k, _, _ in rows], np.vstack([np.frombuffer(e, np.float32) for *_, e in rows])


def langchain(emb: Embedder, texts: list[str], keys: list[str], vecs: np.ndarray) -> Callable[[str], list[str]]:
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_core.embeddings import Embeddings

    class Wrapped(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return emb.embed_documents(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return emb.embed_query(text).tolist()

    metas = [{"doc": k} for k in keys]
    bm25 = BM25Retriever.from_texts(texts, metadatas=metas, preprocess_func=Analyzer().tokenize, k=K)
    store = FAISS.from_embeddings(list(zip(texts, vecs.tolist(), strict=True)), Wrapped(), metadatas=metas)
    ens = EnsembleRetriever(retrievers=[bm25, store.as_retriever(search_kwargs={"k": K})], weights=[0.5, 0.5])
    return lambda q: list(dict.fromkeys(d.metadata["doc"] for d in ens.invoke(q)))  # documents at their best chunk


def llamaindex(emb: Embedder, texts: list[str], keys: list[str], vecs: np.ndarray) -> Callable[[str], list[str]]:
    import faiss
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.retrievers.fusion_retriever import FUSION_MODES
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever
    from llama_index.vector_stores.faiss import FaissVectorStore

    class Wrapped(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return emb.embed_query(query).tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return emb.embed_documents([text])[0].tolist()

    nodes: list[Any] = [
        TextNode(text=t, id_=str(i), embedding=v, metadata={"doc": k}, excluded_embed_metadata_keys=["doc"],
                 excluded_llm_metadata_keys=["doc"])
        for i, (t, k, v) in enumerate(zip(texts, keys, vecs.tolist(), strict=True))
    ]
    storage = StorageContext.from_defaults(vector_store=FaissVectorStore(faiss_index=faiss.IndexFlatIP(emb.dim)))
    index = VectorStoreIndex(nodes, storage_context=storage, embed_model=Wrapped(model_name=emb.name))
    fusion = QueryFusionRetriever(
        [index.as_retriever(similarity_top_k=K), BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=K)],
        similarity_top_k=K, num_queries=1, mode=FUSION_MODES.RECIPROCAL_RANK, use_async=False, llm=MockLLM())
    return lambda q: list(dict.fromkeys(n.node.metadata["doc"] for n in fusion.retrieve(q)))


def ours(emb: Embedder, col: Collection) -> Callable[[str], list[str]]:
    ret = HybridRetriever(col, emb)
    return lambda q: doc_ranking(ret.search(q, top_k=K))


def run(emb: Embedder, col: Collection, queries: dict[str, str], systems: list[str]) -> dict[str, dict[str, Any]]:
    texts, keys, vecs = corpus(col)
    fns: dict[str, Callable[[str], list[str]]] = {}
    out: dict[str, dict[str, Any]] = {}
    for name in systems:
        gc.collect()
        r0, t = rss_mb(), time.perf_counter()
        fns[name] = ours(emb, col) if name == "ragqa" else (langchain if name == "langchain" else llamaindex)(
            emb, texts, keys, vecs)
        fns[name]("warm up")
        out[name] = {"build_s": round(time.perf_counter() - t, 1), "rss_build_mb": round(rss_mb() - r0, 1),
                     "wall_ms": [], "cpu_ms": [], "rankings": {}}
    del texts, vecs
    load0 = loadavg()
    for qid, q in queries.items():
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            out[name]["rankings"][qid] = fn(q)
            out[name]["cpu_ms"].append((time.process_time() - c) * 1000)
            out[name]["wall_ms"].append((time.perf_counter() - t) * 1000)
    for r in out.values():
        w, c = r.pop("wall_ms"), r.pop("cpu_ms")
        r.update(chunks=len(keys), p50_ms=float(np.percentile(w, 50)), p95_ms=float(np.percentile(w, 95)),
                 cpu_p50_ms=float(np.percentile(c, 50)), loadavg=[load0, loadavg()])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default=None, help="default: what \"auto\" picks for English (SciFact)")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/ragqa-bench"))
    ap.add_argument("--size", type=int, default=100_000, help="bench_search_speed collection to time on")
    ap.add_argument("--queries", type=int, default=200, help="claims timed at --size (all 809 are scored)")
    ap.add_argument("--systems", nargs="+", default=["ragqa", "langchain", "llamaindex"])
    ap.add_argument("--embedder-threads", type=int, default=None, help="what-if: threads for the shared embedder")
    ap.add_argument("--source", default=None, help="SciFact collection for nDCG@10 (default: this embedder's full "
                    "corpus one); claims whose judged documents are all in it are scored")
    ap.add_argument("--quick", action="store_true", help="smoke run on the --quick collections of the other benches")
    args = ap.parse_args()
    require("scifact", "corpus.jsonl")
    try:
        import langchain_classic  # noqa: F401
        import llama_index.core  # noqa: F401
    except ImportError as e:
        sys.exit(f"{e}: install the frameworks compared here with `.venv/bin/pip install -e '.[bench]'`")
    if args.embedder is None:
        from retrieval.embedders import ENGLISH_DEFAULT

        args.embedder = ENGLISH_DEFAULT
    set_embedder_threads(args.embedder_threads)
    emb = get_embedder(args.embedder)
    emb.load()
    data = scifact()
    if args.quick:
        args.size, args.queries = 10_000, 20
    # The other benchmarks' collections when they exist; built here (SciFact ingested, then scaled) when they don't.
    ensure_built(args.cache_dir, emb, args.size, quick=args.quick, source=args.source)
    source = find_source(args.cache_dir, emb.name, args.source, args.quick)
    assert source is not None
    big_name = collection_name(emb.name, args.size, args.quick)
    out: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv), "embedder": emb.name, "k": K,
                           "embedder_threads": args.embedder_threads or "as shipped"}
    col = Collection(args.cache_dir, source).open()
    data = judged_within(data, col)
    out["source"], out["claims"] = source, len(data.queries)
    res = run(emb, col, data.queries, args.systems)
    col.close()
    per_query: dict[str, list[float]] = {}
    for name, r in res.items():
        ranks = r.pop("rankings")
        per_query[name] = [ndcg_at_k(ranks[q], data.qrels[q], 10) for q in data.queries]
        r["ndcg10"] = float(np.mean(per_query[name]))
    for name in args.systems[1:]:  # "equal or better" needs the noise: the other system's nDCG@10 minus the first's
        res[name]["ndcg10_vs_first"] = paired_bootstrap(per_query[args.systems[0]], per_query[name])
    out["scifact"] = res
    col = Collection(args.cache_dir, big_name).open()
    big = run(emb, col, dict(list(data.queries.items())[: args.queries]), args.systems)
    col.close()
    for r in big.values():
        r.pop("rankings")
    out["scaled"] = big
    rows = []
    for name in args.systems:
        s, b = res[name], big[name]
        vs = s.get("ndcg10_vs_first")
        rows.append({"system": name, "ndcg10": s["ndcg10"],
                     "delta": f"{vs['delta']:+.4f} [{vs['low']:+.4f}, {vs['high']:+.4f}]" if vs else "-",
                     "p50_small": s["p50_ms"], "chunks": b["chunks"],
                     "p50": b["p50_ms"], "p95": b["p95_ms"], "cpu_p50": b["cpu_p50_ms"], "build_s": b["build_s"],
                     "rss": b["rss_build_mb"], "ratio": b["p50_ms"] / big[args.systems[0]]["p50_ms"],
                     "load": f"{b['loadavg'][0][0]:.1f}-{b['loadavg'][1][0]:.1f}"})
    out["table"] = rows
    print(md_table(rows, [
        ("system", "system", "s"), ("ndcg10", f"nDCG@10 ({s['chunks']:,} chunks)", ".4f"),
        ("delta", f"minus {args.systems[0]}'s, 95 % CI", "s"),
        ("p50_small", "p50 ms there", ".1f"), ("chunks", "chunks", ",d"), ("p50", "p50 ms", ".1f"),
        ("p95", "p95 ms", ".1f"), ("cpu_p50", "CPU p50 ms", ".1f"), ("ratio", f"p50 / {args.systems[0]}", ".1f"),
        ("build_s", "build s", ".0f"), ("rss", "RSS build MB", ".0f"), ("load", "load avg", "s")]))
    print(f"wrote {write_results('frameworks-quick' if args.quick else 'frameworks', out)}")


if __name__ == "__main__":
    main()
