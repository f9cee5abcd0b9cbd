"""What the answer model reads: evidence selection variants on real questions, without the LLM.

For each answerable question of a few data sets, retrieves the evidence as the pipeline does (`gather`, the default
settings), then runs `select` under several variants and reports how often a gold answer string is still in the
selected text (answer kept), how many prompt tokens the sources take (the bundled model's tokenizer), and how long
selection takes (the sentence embedding is most of it). The answer model reads prompts at 40-90 tokens/s on two
cores, so every 100 tokens here is 1-2.5 s of the user's wait before the first word.

    .venv/bin/python bench/bench_select.py --data /tmp/ragqa-bench-select [--squad 100] [--rgb 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, write_results  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"


def _questions(args: argparse.Namespace) -> list[tuple[str, Any, list[str]]]:
    """(set name, item, doc_ids scope) for the answerable questions of each set."""
    from eval.datasets import DatasetOptions, load_dataset, select
    from eval.runner import build_collection, collection_name
    from ingest.chunking import ChunkingSettings

    out: list[tuple[str, Any, list[str]]] = []
    specs = [("sample", f"jsonl:{REPO}/examples/questions.jsonl", DatasetOptions(corpus=REPO / "examples" / "corpus"),
              args.sample),
             ("squad2", f"squad2:{DATASETS}/squad2/dev-v2.0-half-a.json", DatasetOptions(), args.squad),
             ("rgb-zh", f"rgb:{DATASETS}/rgb/zh_refine.json", DatasetOptions(noise_ratios=(0.4,)), args.rgb)]
    for name, spec, opts, n in specs:
        if n <= 0:
            continue
        ds = load_dataset(spec, opts)
        sample = (("answerable", n),) if name == "squad2" else ()  # SQuAD: n of its answerable questions
        items = [i for i in select(ds.items, None if sample else n, args.seed, sample) if not i.unanswerable][:n]
        part = ds.for_items(items)
        col = collection_name(part.name, "auto")
        built = build_collection(part, args.data, col, "auto", ChunkingSettings(levels=(128,)),
                                 args.data / "eval-corpus" / col)
        out += [(f"{name}:{col}", i, built.resolve(i.scope)) for i in items if i.answers]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/ragqa-bench-select"))
    ap.add_argument("--sample", type=int, default=100, help="questions of examples/questions.jsonl (it has ~30)")
    ap.add_argument("--squad", type=int, default=100)
    ap.add_argument("--rgb", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="select")
    args = ap.parse_args()

    from llama_cpp import Llama

    from app.llm.assets import default_cache_dir
    from app.pipeline import PipelineConfig, sources_block
    from app.service import SearchService
    from retrieval.embedders import get_embedder
    from retrieval.evidence import gather, query_similarity, select
    from retrieval.store import SearchFilter

    questions = _questions(args)
    tok = Llama(str(default_cache_dir() / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"), vocab_only=True, verbose=False)
    service = SearchService(args.data)
    cfg = PipelineConfig()
    use = get_embedder("use-multilingual")
    use.load()

    def similarity(kind: str, embedder: Any, question: str) -> Callable[[Sequence[str]], np.ndarray] | None:
        if kind == "none":
            return None
        return query_similarity(use if kind == "use" else embedder, question)

    variants = {  # name: (sentence scorer, relative floor)
        "collection embedder (until now)": ("collection", cfg.evidence_floor),
        "USE": ("use", cfg.evidence_floor),
        "USE, floor 0.7": ("use", 0.7),
        "words only": ("none", cfg.evidence_floor),
    }
    rows: dict[str, dict[str, list[float]]] = {v: {"kept": [], "tokens": [], "ms": []} for v in variants}
    sets: dict[str, dict[str, list[float]]] = {}
    for set_name, item, doc_ids in questions:
        retriever = service.retriever(set_name.split(":", 1)[1])
        ev = gather(retriever, [item.question], flt=SearchFilter(doc_ids=tuple(doc_ids)), top_k=6,
                    budget_tokens=cfg.context_tokens, max_passage_tokens=cfg.max_passage_tokens)
        for name, (kind, floor) in variants.items():
            t = time.perf_counter()
            sim = similarity(kind, retriever.embedder, item.question)
            chosen = select(item.question, ev.passages, service.analyzer, cfg.evidence_tokens,
                            context=cfg.evidence_context, similarity=sim, semantic_weight=cfg.semantic_weight,
                            relative_floor=floor)
            ms = (time.perf_counter() - t) * 1000
            text = sources_block(chosen)
            kept = float(any(a.lower() in text.lower() for a in item.answers))
            n_tok = len(tok.tokenize(text.encode(), add_bos=False))
            for bucket in (rows[name], sets.setdefault(f"{set_name.split(':')[0]} | {name}",
                                                      {"kept": [], "tokens": [], "ms": []})):
                bucket["kept"].append(kept)
                bucket["tokens"].append(n_tok)
                bucket["ms"].append(ms)
    print("| variant | questions | answer kept | source tokens mean | median | select ms p50 |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for name, r in list(rows.items()) + sorted(sets.items()):
        s = {"n": len(r["kept"]), "answer_kept": round(statistics.mean(r["kept"]), 3),
             "tokens_mean": round(statistics.mean(r["tokens"]), 1), "tokens_median": statistics.median(r["tokens"]),
             "select_ms_p50": round(statistics.median(r["ms"]), 1)}
        summary[name] = s
        print(f"| {name} | {s['n']} | {s['answer_kept']:.3f} | {s['tokens_mean']} | {s['tokens_median']} | "
              f"{s['select_ms_p50']} |")
    path = write_results(args.out, {"machine": machine(), "command": "bench/bench_select.py " + " ".join(sys.argv[1:]),
                                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "summary": summary})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
