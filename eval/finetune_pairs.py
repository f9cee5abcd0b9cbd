"""`ragqa finetune squad2 PATH`: a SQuAD-format set (SQuAD 2.0, CMRC 2018) as QA pairs for `ragqa finetune pairs`.

The glue lives in eval/ because app/ must not know data sets (and must not import eval/); the generic part, examples
from given QA pairs, is app/finetune/pairs.py. The split is by ARTICLE, seeded: the test articles' questions are
asked later with `ragqa eval qa --dataset squad2:PATH --articles ...`, so the adapter never saw their paragraphs,
neither as oracles nor as distractors (the training collection holds the training articles only). Each paragraph is
one document (`doc_key` = "squad2:Title#n"), so an answerable question's oracle is its own paragraph's chunk;
validation takes whole paragraphs of the training articles.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from app.finetune.pairs import GivenQA, write_pairs
from eval.datasets import QADataset, article_key, parse_spec
from ingest.chunking import ChunkingSettings
from ingest.pipeline import Record


def article_titles(path: Path) -> list[str]:
    return [str(a.get("title") or n) for n, a in enumerate(json.loads(path.read_text(encoding="utf-8"))["data"])]


def split_articles(titles: list[str], n_test: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, test) titles: a seeded shuffle, the first n_test for test; each list in data-set order."""
    if not 0 < n_test < len(titles):
        raise ValueError(f"--test-articles must be between 1 and {len(titles) - 1}, got {n_test}")
    shuffled = list(titles)
    random.Random(seed).shuffle(shuffled)
    test = set(shuffled[:n_test])
    return [t for t in titles if t not in test], [t for t in titles if t in test]


def squad_pairs(path: Path, prefix: str, titles: list[str]) -> tuple[list[Record], list[GivenQA]]:
    """The paragraphs of the named articles as records, and their questions as QA pairs."""
    want = {article_key(t) for t in titles}
    records, pairs = [], []
    for n, art in enumerate(json.loads(path.read_text(encoding="utf-8"))["data"]):
        title = str(art.get("title") or n)
        if article_key(title) not in want:
            continue
        for i, p in enumerate(art["paragraphs"]):
            key = f"{prefix}:{title}#{i}"
            records.append(Record(key=key, title=title.replace("_", " "), text=p["context"]))
            for qa in p["qas"]:
                answers = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a["text"].strip()))
                pairs.append(GivenQA(str(qa["id"]), qa["question"].strip(), answers,
                                     bool(qa.get("is_impossible")) or not answers, key))
    return records, pairs


def add_arguments(p: argparse.ArgumentParser) -> None:
    from app.finetune.cli import add_pair_options

    p.add_argument("dataset", help="squad2:PATH or cmrc:PATH (SQuAD format)")
    p.add_argument("--test-articles", type=int, default=3, help="articles held out for testing (default 3)")
    p.add_argument("--collection", help="collection of the training articles' paragraphs (default ft-<data set>)")
    add_pair_options(p)


def run(args: argparse.Namespace, s: Any) -> int:
    from app.finetune.cli import build_pairs
    from eval.runner import build_collection

    kind, path = parse_spec(args.dataset)
    if kind not in ("squad2", "cmrc"):
        raise ValueError(f"finetune squad2 takes a SQuAD-format set (squad2:PATH or cmrc:PATH), got {kind}")
    train, test = split_articles(article_titles(path), args.test_articles, args.seed)
    records, pairs = squad_pairs(path, kind, train)
    args.out.mkdir(parents=True, exist_ok=True)
    write_pairs(args.out / "pairs.jsonl", pairs)
    (args.out / "articles.json").write_text(json.dumps({"dataset": args.dataset, "seed": args.seed, "train": train,
                                                        "test": test}, indent=2), encoding="utf-8")
    name = args.collection or f"ft-{kind}-{path.stem}"[:64]
    ds = QADataset(kind, name, (), records=tuple(records))
    built = build_collection(ds, s.data_dir, name, s.embedder, ChunkingSettings(levels=s.chunk_levels,
                                                                                 overlap=s.chunk_overlap))
    print(f"train articles: {train}\ntest articles: {test}\ncollection {name!r}: {len(records)} paragraphs, "
          f"{built.summary}; {len(pairs)} questions")
    rc = build_pairs(args, s, args.out / "pairs.jsonl", name)
    print(f"test with: ragqa eval qa --dataset {args.dataset} --articles {' '.join(test)}")
    return rc
