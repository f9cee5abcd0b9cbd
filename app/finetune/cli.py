"""`ragqa finetune data|train|export`: argument parsing; ragqa/cli.py hands the parsed arguments and Settings here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> Any:
    """The finetune subcommands; returns the subparsers, so that ragqa/cli.py can add data-set glue commands."""
    sub = p.add_subparsers(dest="finetune_cmd", required=True)

    d = sub.add_parser("data", help="RAFT examples (oracle + hard negatives, refusals) from a collection")
    d.add_argument("--collection", help="default: RAGQA_COLLECTION")
    d.add_argument("--out", type=Path, required=True, help="folder for train/val/test.jsonl and stats.json")
    d.add_argument("--chunks", type=int, default=300, help="chunks to write questions for (default 300)")
    d.add_argument("--refusal-share", type=float, default=0.2,
                   help="share of examples without the oracle, whose target is the refusal (default 0.2)")
    d.add_argument("--distractors", type=int, default=3, help="hard-negative chunks per example (default 3)")
    d.add_argument("--top-k", type=int, default=5, help="a question must retrieve its chunk in the top k")
    d.add_argument("--splits", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST"),
                   help="shares of documents per split (default 0.8 0.1 0.1)")
    d.add_argument("--seed", type=int, default=0)

    g = sub.add_parser("pairs", help="RAFT examples from an existing QA set (JSONL) over a collection of its documents")
    g.add_argument("--qa", type=Path, required=True,
                   help="JSONL: {id, question, answers[], unanswerable, doc_key} (doc_key: the document's source key)")
    g.add_argument("--collection", help="the collection holding the documents (default: RAGQA_COLLECTION)")
    add_pair_options(g)

    t = sub.add_parser("train", help="LoRA fine-tuning with peft (CPU), resumable from checkpoints")
    t.add_argument("--data", type=Path, required=True, help="folder written by `finetune data`")
    t.add_argument("--base", default="qwen2.5-0.5b",
                   help="a bundled model name (qwen2.5-0.5b), a .gguf file or a Hugging Face folder")
    t.add_argument("--out", type=Path, required=True, help="adapter folder (checkpoints under it)")
    t.add_argument("--epochs", type=float, default=1.0)
    t.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--rank", type=int, default=8)
    t.add_argument("--batch", type=int, default=1)
    t.add_argument("--grad-accum", type=int, default=4)
    t.add_argument("--max-tokens", type=int, default=1024, help="longer examples are skipped")
    t.add_argument("--save-every", type=int, default=25, help="checkpoint every N steps")
    t.add_argument("--threads", type=int, default=2, help="torch threads (default 2: this machine's cores)")
    t.add_argument("--dpo", action="store_true", help="preference tuning after SFT (not implemented yet)")
    t.add_argument("--seed", type=int, default=0)

    e = sub.add_parser("export", help="write the adapter for vLLM (PEFT folder) or llama.cpp (GGUF)")
    e.add_argument("adapter", type=Path)
    e.add_argument("--to", choices=["vllm", "gguf"], required=True)
    e.add_argument("--out", type=Path, help="vllm: folder (default ADAPTER-vllm); gguf: file (default ADAPTER.gguf)")
    e.add_argument("--with-base", action="store_true", help="vllm: also write the base model as a HF folder")
    e.add_argument("--outtype", choices=["f32", "f16", "q8_0"], default="f16", help="gguf: tensor type")
    return sub


def add_pair_options(p: argparse.ArgumentParser) -> None:
    """Options of examples built from given QA pairs (`pairs`, and data-set commands built on it)."""
    p.add_argument("--out", type=Path, required=True, help="folder for train/val/test.jsonl and stats.json")
    p.add_argument("--examples", type=int, default=300, help="examples to keep (default 300)")
    p.add_argument("--refusal-share", type=float, default=0.5,
                   help="share of unanswerable questions, whose target is the refusal (default 0.5)")
    p.add_argument("--distractors", type=int, default=3, help="other selected passages per example (default 3)")
    p.add_argument("--splits", type=float, nargs=3, default=[0.9, 0.1, 0.0], metavar=("TRAIN", "VAL", "TEST"),
                   help="shares of documents (doc_key) per split (default 0.9 0.1 0)")
    p.add_argument("--seed", type=int, default=0)


def build_pairs(args: argparse.Namespace, s: Settings, qa_file: Path, collection: str) -> int:
    """Examples from the QA pairs in `qa_file` over `collection`; prints the summary."""
    from tqdm import tqdm

    from app.finetune.pairs import PairOptions, build_from_pairs, read_pairs
    from app.service import SearchService

    opts = PairOptions(n_examples=args.examples, refusal_share=args.refusal_share, distractors=args.distractors,
                       splits=tuple(args.splits), seed=args.seed)
    pairs = read_pairs(qa_file)
    summary = build_from_pairs(SearchService(s.data_dir), collection, pairs, args.out, opts,
                               progress=lambda it: tqdm(list(it), desc="questions", unit="q"))
    print(f"{summary.generated} QA pairs, {summary.sampled} sampled; dropped: {summary.dropped or 'none'}\n"
          f"examples per split: {summary.examples}; kinds: {summary.kinds}; documents per split: {summary.documents}")
    print(f"wrote {args.out}/train.jsonl, val.jsonl, test.jsonl, stats.json")
    return 0 if sum(summary.examples.values()) else 1


def run(args: argparse.Namespace, s: Settings) -> int:
    from app.finetune.export import ExportError

    cmd = {"data": _data, "pairs": _pairs, "train": _train, "export": _export}[args.finetune_cmd]
    try:
        return cmd(args, s)
    except (FileNotFoundError, ExportError) as e:  # bad paths: a clear message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


def _data(args: argparse.Namespace, s: Settings) -> int:
    from tqdm import tqdm

    from app.components import build_llm
    from app.finetune.data import DataOptions, build, llm_generator
    from app.service import SearchService

    opts = DataOptions(n_chunks=args.chunks, refusal_share=args.refusal_share, distractors=args.distractors,
                       top_k=args.top_k, splits=tuple(args.splits), seed=args.seed)
    client, embedded = build_llm(s)
    try:
        summary = build(SearchService(s.data_dir), args.collection or s.collection, llm_generator(client), args.out,
                        opts, progress=lambda it: tqdm(list(it), desc="questions", unit="chunk"))
    finally:
        if embedded is not None:
            embedded.stop()
    print(summary.text())
    print(f"wrote {args.out}/train.jsonl, val.jsonl, test.jsonl, stats.json")
    return 0 if sum(summary.examples.values()) else 1


def _pairs(args: argparse.Namespace, s: Settings) -> int:
    return build_pairs(args, s, args.qa, args.collection or s.collection)


def resolve_base(base: str, s: Settings) -> Path:
    from app.llm.assets import MODELS, default_cache_dir, ensure_model

    if base in MODELS:
        return ensure_model(base, s.llm_cache_dir or default_cache_dir())  # type: ignore[arg-type]
    path = Path(base)
    if not path.exists():
        raise ValueError(f"--base {base!r}: neither a bundled model ({', '.join(MODELS)}) nor an existing path")
    return path


def _train(args: argparse.Namespace, s: Settings) -> int:
    from tqdm import tqdm

    from app.finetune.data import read_split
    from app.finetune.train import TrainOptions, train

    if args.dpo:
        print("error: --dpo is not implemented yet (SFT only); see docs/finetune.md", file=sys.stderr)
        return 2
    opts = TrainOptions(epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, rank=args.rank,
                        alpha=2 * args.rank, batch=args.batch, grad_accum=args.grad_accum, max_tokens=args.max_tokens,
                        save_every=args.save_every, threads=args.threads, seed=args.seed)
    rows, val = read_split(args.data, "train"), read_split(args.data, "val")
    summary = train(resolve_base(args.base, s), rows, val, args.out, opts, progress=tqdm)
    print(summary.text())
    return 0


def _export(args: argparse.Namespace, s: Settings) -> int:
    from app.finetune.export import export_gguf, export_vllm

    adapter: Path = args.adapter
    out: Any
    if args.to == "vllm":
        out = export_vllm(adapter, args.out or adapter.with_name(adapter.name + "-vllm"), with_base=args.with_base)
        base = out / "base" if args.with_base else "BASE"
        print(f"wrote {out}\n  serve: vllm serve {base} --enable-lora --lora-modules ragqa={out}")
    else:
        out = export_gguf(adapter, args.out or adapter.with_name(adapter.name + ".gguf"), outtype=args.outtype)
        print(f"wrote {out}\n  use: RAGQA_LLM_LORA={out} ragqa serve")
    return 0
