"""Offline study: should the citation check accept a sentence that two sources support together?

The check after generation (app/citations.py) backs an answer sentence only with one source sentence holding at least
half of its words (an unmarked sentence: 0.6). A multi-hop answer ("X, written by Y") joins words from two sources, so
the check refuses it as unsupported: on HotpotQA most of the refusals of a run came from there. This replays a
candidate rule on the answers that committed runs refused as unsupported (their traces keep the unsupported sentences
and the exact evidence the model read): every factual sentence is backed when the best sentences of two sources
together hold at least THRESHOLD of its words, each adds words the other lacks, and every number it states is in one
of the two. Per run and pooled: how many refused answers the rule would give back, split by what they were (correct,
wrong, or an answer to an unanswerable question). Every answer given back that is not correct is a new hallucination.

    .venv/bin/python bench/two_source_support.py [--thresholds 0.6 0.75 0.85] [--out two-source-support]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.citations import SupportScorer  # noqa: E402
from bench.common import write_results  # noqa: E402
from retrieval.analyzer import Analyzer  # noqa: E402
from retrieval.text import numbers, strip_markers  # noqa: E402


def backed_by_two(scorer: SupportScorer, sentence: str, texts: list[str], threshold: float) -> bool:
    words = set(scorer.analyzer.tokenize(strip_markers(sentence)))
    if not words:
        return False
    spans = [scorer.best_span(sentence, t)[1] for t in texts]
    for a, b in itertools.combinations(spans, 2):
        if not a or not b:
            continue
        ta, tb = set(scorer.analyzer.tokenize(a)), set(scorer.analyzer.tokenize(b))
        joint = len(words & (ta | tb)) / len(words)
        each_adds = bool((words & ta) - tb) and bool((words & tb) - ta)
        if joint >= threshold and each_adds and numbers(sentence) <= numbers(a) | numbers(b):
            return True
    return False


def kind(item: dict[str, Any], answer: str) -> str:
    gold = item["gold"]
    if gold.get("unanswerable"):
        return "unanswerable"
    return "correct" if any(a.lower() in answer.lower() for a in gold.get("answers", [])) else "wrong"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.75, 0.85])
    ap.add_argument("--out", default="two-source-support")
    args = ap.parse_args()
    scorer = SupportScorer(Analyzer())
    runs = sorted(p for p in (REPO / "eval" / "runs").glob("*/items.jsonl")
                  if not any(x in p.parent.name for x in ("rescore", "nogate", "compare")))
    out: dict[str, Any] = {"command": "bench/two_source_support.py " + " ".join(sys.argv[1:]), "thresholds": {}}
    for th in args.thresholds:
        pooled: Counter[str] = Counter()
        per_run: dict[str, dict[str, int]] = {}
        for path in runs:
            c: Counter[str] = Counter()
            for line in path.read_text(encoding="utf-8").splitlines():
                item = json.loads(line)
                trace = (item.get("raw") or {}).get("trace") or {}
                if "refused_unsupported" not in trace:
                    continue
                texts = [p["text"] for p in trace.get("evidence", {}).get("passages", [])]
                sentences = trace["refused_unsupported"]  # the factual sentences no source backed (CitationReport)
                k = kind(item, " ".join(sentences))
                c[k] += 1
                if sentences and all(backed_by_two(scorer, s, texts, th) for s in sentences):
                    c["given back: " + k] += 1
            if c:
                per_run[path.parent.name] = dict(c)
                pooled.update(c)
        out["thresholds"][str(th)] = {"pooled": dict(pooled), "runs": per_run}
        back = {k: pooled[f"given back: {k}"] for k in ("correct", "wrong", "unanswerable")}
        print(f"threshold {th}: refused as unsupported {sum(pooled[k] for k in back)}; given back "
              f"{back['correct']} correct of {pooled['correct']}, {back['wrong']} wrong of {pooled['wrong']}, "
              f"{back['unanswerable']} unanswerable of {pooled['unanswerable']}: truthfulness change "
              f"{back['correct'] - back['wrong'] - back['unanswerable']:+d} items")
    print(f"wrote {write_results(args.out, out)}")


if __name__ == "__main__":
    main()
