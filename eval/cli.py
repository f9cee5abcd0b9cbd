"""`ragqa eval retrieval|qa`: argument parsing; ragqa/cli.py hands the parsed arguments and Settings here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _kv(kind: type) -> Any:
    def parse(s: str) -> tuple[str, Any]:
        key, sep, value = s.rpartition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {s!r}")
        try:
            return key, kind(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{s!r}: {value!r} is not a {kind.__name__}") from e

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="eval_cmd", required=True)

    r = sub.add_parser("retrieval", help="nDCG@10, recall@k, MRR@10, MAP over a BEIR folder")
    r.add_argument("--dataset", required=True, help="beir:DIR (corpus.jsonl, queries.jsonl, qrels/*.tsv)")
    r.add_argument("--qrels", default="test", help="qrels split: qrels/SPLIT.tsv (default test)")
    _common(r)

    q = sub.add_parser("qa", help="answer quality, refusals, faithfulness and citations on a QA data set")
    q.add_argument("--dataset", help="KIND:PATH, KIND one of squad2, rgb, tatqa, freshqa, cmrc, hotpotqa, jsonl")
    q.add_argument("--corpus", type=Path, help="jsonl: folder of documents; freshqa/hotpotqa: corpus location")
    q.add_argument("--server", help="ask a running ragqa server (POST URL/ask) instead of in-process")
    q.add_argument("--sample", action="append", type=_kv(int), default=[], metavar="CATEGORY=N",
                   help="N items per value of CATEGORY (or CATEGORY:VALUE=N); repeatable")
    q.add_argument("--judge-url", help="OpenAI-compatible server of the LLM judge (default: approximate judge)")
    q.add_argument("--judge-model", help="model name of the LLM judge")
    q.add_argument("--judge-style", default="both", choices=["openai", "vllm", "both", "llamacpp"],
                   help="how the judge server takes a JSON schema (default both: vLLM)")
    q.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"),
                   help="compare two run folders item by item (paired bootstrap); with --out, write a report there")
    q.add_argument("--rescore", type=Path, metavar="RUN",
                   help="score a run's stored answers again with today's metrics into --out (nothing is asked)")
    q.add_argument("--without-support-gate", action="store_true",
                   help="with --rescore: give back the answers the support gate refused (the gate-off run, paired)")
    q.add_argument("--noise-ratio", type=float, nargs="+", default=[0.4], help="rgb: noise share(s); 1 = rejection")
    q.add_argument("--passages", type=int, default=5, help="rgb: passages per question")
    q.add_argument("--as-of", help="freshqa/jsonl: ask as of this date (YYYY-MM-DD)")
    q.add_argument("--corpus-date", default="2023-12-01", help="freshqa: effective date of the wiki pages")
    q.add_argument("--scope", choices=["doc", "corpus"], help="retrieve only from each question's own documents "
                   "(default for tatqa and rgb) or from the whole collection")
    q.add_argument("--articles", nargs="+", default=[], metavar="TITLE",
                   help="squad2/cmrc: only these articles (e.g. the held-out ones of `ragqa finetune squad2`)")
    q.add_argument("--table-format", choices=["html", "docx"], default="html", help="tatqa: how tables are rendered")
    q.add_argument("--max-rounds", type=int, help="retrieval rounds (1 = no iterative retrieval; default 3)")
    q.add_argument("--top-k", type=int, help="chunks retrieved per round (default 6)")
    q.add_argument("--concurrency", type=int, default=1, help="questions in flight (for a server or vLLM)")
    _common(q)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="JSON or TOML: SearchParams fields, embedder, ask/pipeline options")
    p.add_argument("--collection", help="collection name (default eval-<dataset>-<embedder>)")
    p.add_argument("--limit", type=int, help="a seeded random sample of N items")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="run folder (qa default: runs/<dataset>)")
    p.add_argument("--fail-under", action="append", type=_kv(float), default=[], metavar="METRIC=VALUE",
                   help="exit 1 when METRIC's value is below VALUE; repeatable")


def run(args: argparse.Namespace, settings: Any) -> int:
    from eval import runner

    config = runner.load_config(args.config)
    if args.eval_cmd == "retrieval":
        kind, _, folder = args.dataset.partition(":")
        if kind != "beir" or not folder:
            print(f"error: retrieval needs --dataset beir:DIR, got {args.dataset!r}", file=sys.stderr)
            return 2
        return runner.run_retrieval(Path(folder), settings, split=args.qrels, config=config,
                                    collection=args.collection, limit=args.limit, seed=args.seed, out=args.out,
                                    fail_under=args.fail_under)
    if args.compare:
        from eval import report

        cmp = report.compare_runs(args.compare[0], args.compare[1], seed=args.seed)
        print(report.compare_text(cmp))
        if args.out:
            report.write_comparison(args.out, cmp)
        return 0
    if args.rescore:
        if not args.out:
            print("error: --rescore RUN needs --out DIR (the run itself is kept as it was)", file=sys.stderr)
            return 2
        from eval import report

        print(report.summary_text(runner.rescore(args.rescore, args.out, seed=args.seed,
                                                         without_support_gate=args.without_support_gate)))
        return 0
    if not args.dataset:
        print("error: eval qa needs --dataset KIND:PATH (or --compare RUN_A RUN_B)", file=sys.stderr)
        return 2
    from eval.datasets import DatasetOptions, dataset_name, parse_spec

    for key, value in (("max_rounds", args.max_rounds), ("top_k", args.top_k)):
        if value is not None:
            config[key] = value
    options = DatasetOptions(
        corpus=args.corpus, scope=args.scope, noise_ratios=tuple(args.noise_ratio), passages=args.passages,
        seed=args.seed, as_of=args.as_of, corpus_date=args.corpus_date or None, table_format=args.table_format,
        articles=tuple(args.articles),
    )
    out = args.out or Path("runs") / dataset_name(*parse_spec(args.dataset))
    qa = runner.QARun(
        dataset=args.dataset, out=out, options=options, limit=args.limit, seed=args.seed, sample=tuple(args.sample),
        config=config, collection=args.collection, server=args.server, judge_url=args.judge_url,
        judge_model=args.judge_model, judge_style=args.judge_style, concurrency=args.concurrency,
        fail_under=tuple(args.fail_under),
    )
    return runner.run_qa(qa, settings)
