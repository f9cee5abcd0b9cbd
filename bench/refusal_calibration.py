"""Offline study: a refusal decision after generation, calibrated on a dev half of committed runs, tested on the other.

Reads committed `ragqa eval qa` runs (eval/runs/*/items.jsonl) and, for every ANSWERED item, computes features that
exist at answer time: the share of the question's terms (app/support_gate.py; IDF-weighted, and unweighted; Chinese
cut in jieba's search and exact modes) found in the cited sentences, in the cited passages with their titles, and in
all the evidence the model read; and the score gate the pipeline recorded. Labels: should have refused (gold
unanswerable) against answered correctly (the rule verdict); answerable items answered wrongly are neither (refusing
them costs no accuracy).

Items are split into dev and test halves by a seeded hash of the question id, stratified by run (within each run,
sorted by the hash, the first half is dev). On dev only: for each feature, the threshold is the highest whose
refusals cost at most `--max-loss` of dev's answerable items that were answered correctly; the feature kept is the one
with the best dev refusal recall at its threshold. On the test half: refusal precision and recall and answerable
accuracy before (the committed answers) and after, with paired bootstrap 95 % intervals (items resampled,
eval.metrics.bootstrap_ci), pooled and per run; then the whole runs, and how many answers grounded in planted false
passages (RGB en_fact) the rule refuses. This is a SIMULATION on committed answers: the rule only turns answers into
refusals; a live run can differ where the pipeline's other stages would have reacted.

    .venv/bin/python bench/refusal_calibration.py --out bench/results/refusal-calibration.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.support_gate import cited_support, cited_text, question_terms
from eval.metrics import bootstrap_ci
from retrieval.analyzer import Analyzer

RUNS = ("i10-final-squad2-60", "i10-final-rgb-zh-40", "i12-rgb-zh-rejection-100", "i12-cmrc-100", "i12-tatqa-150")
# Counterfactual passages: every answer is grounded in a passage (a false one), so a refusal there is a false refusal.
GROUNDED = ("i12-rgb-en-fact-100",)


@dataclass(frozen=True)
class Item:
    run: str
    id: str
    unanswerable: bool
    answered: bool  # status answered or partial in the committed run
    correct: bool  # the rule verdict, for answerable items
    accuracy: float  # the run's accuracy metric for the item (1 for a refused unanswerable question)
    features: dict[str, float]


def split_key(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def _plain_share(analyzer: Analyzer, question: str, texts: list[str]) -> float:
    terms = question_terms(analyzer, question)
    found = {t for s in texts for t in analyzer.tokenize(s)}
    return sum(t in found for t in terms) / len(terms) if terms else 1.0


def features(d: dict[str, Any], analyzers: dict[str, Analyzer]) -> dict[str, float]:
    """Every candidate feature of one answered item, from what the pipeline had at answer time."""
    q = d["question"]
    trace = (d.get("raw") or {}).get("trace") or {}
    passages = {p["marker"]: p["text"] for p in (trace.get("evidence") or {}).get("passages", [])}
    raw_cites = (d.get("raw") or {}).get("citations") or []
    scopes = {
        "cited": [c["quote"] for c in raw_cites],  # the sentence each citation quotes
        # the cited passage as the model read it, with its document title (the subject is often only there)
        "passage": [cited_text(c.get("title") or "", passages.get(c["marker"], c["quote"])) for c in raw_cites],
        "evidence": list(passages.values()),  # everything the model read
    }
    out: dict[str, float] = {}
    for mode, analyzer in analyzers.items():
        for scope, texts in scopes.items():
            out[f"{scope}_share_{mode}"] = cited_support(analyzer, q, texts).share
            out[f"{scope}_share_{mode}_unweighted"] = _plain_share(analyzer, q, texts)
    gates = [r["score_gate"] for r in trace.get("rounds", []) if r.get("score_gate") is not None]
    out["gate"] = max(gates) if gates else 1.0
    return out


def load(runs_dir: Path, runs: tuple[str, ...]) -> list[Item]:
    analyzers = {"search": Analyzer(cjk_mode="search"), "exact": Analyzer(cjk_mode="exact")}
    out = []
    for run in runs:
        for line in (runs_dir / run / "items.jsonl").read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            answered = d["status"] in ("answered", "partial")
            label = (d.get("verdicts") or {}).get("rule", {}).get("label")
            out.append(Item(run, d["id"], bool(d["gold"]["unanswerable"]), answered, label == "correct",
                            float(d["metrics"]["accuracy"]), features(d, analyzers) if answered else {}))
    return out


def split(items: list[Item], seed: int) -> tuple[list[Item], list[Item]]:
    """Stratified by run: within each run, items sorted by the seeded hash of their id, the first half is dev. The
    hash is of the id alone, so a question asked in two runs (RGB at noise 0.4 and at noise 1) sorts alike in both."""
    dev, test = [], []
    for run in dict.fromkeys(i.run for i in items):
        ranked = sorted((i for i in items if i.run == run), key=lambda i: split_key(seed, i.id))
        half = len(ranked) // 2
        dev += ranked[:half]
        test += ranked[half:]
    return dev, test


def refuses(item: Item, feature: str, threshold: float) -> bool:
    return item.answered and item.features[feature] < threshold


def choose(dev: list[Item], feature: str, max_loss: float) -> float:
    """The highest threshold whose refusals of correct answers stay within `max_loss` of dev's answerable items."""
    answerable = sum(1 for i in dev if not i.unanswerable)
    values = sorted({i.features[feature] for i in dev if i.answered} | {0.0})
    best = 0.0
    for t in values:
        lost = sum(1 for i in dev if not i.unanswerable and i.correct and refuses(i, feature, t))
        if lost <= max_loss * answerable:
            best = t
    return best


def recall(items: list[Item], feature: str, threshold: float) -> float:
    unans = [i for i in items if i.unanswerable]
    return sum(1 for i in unans if not i.answered or refuses(i, feature, threshold)) / len(unans) if unans else 0.0


FIGS = ("refusal_precision", "refusal_recall", "answerable_accuracy")


def _figures(rows: np.ndarray) -> np.ndarray:
    """Columns of rows: refused before, refused after, unanswerable, accuracy before, accuracy after.
    Returns refusal precision, refusal recall, answerable accuracy: before, then after, then after - before."""
    un = rows[:, 2] > 0.5
    out = []
    for refused, acc in ((rows[:, 0] > 0.5, rows[:, 3]), (rows[:, 1] > 0.5, rows[:, 4])):
        said_no = refused.sum()
        out += [(refused & un).sum() / said_no if said_no else np.nan,
                (refused & un).sum() / un.sum() if un.any() else np.nan,
                acc[~un].mean() if (~un).any() else np.nan]
    return np.array([*out, *(np.array(out[3:]) - np.array(out[:3]))], dtype=float)


def _rows(items: list[Item], feature: str, threshold: float) -> np.ndarray:
    """Per item: refused before, refused after, unanswerable, accuracy before, accuracy after (a new refusal is
    correct on an unanswerable question and wrong on an answerable one)."""
    rows = []
    for i in items:
        new = refuses(i, feature, threshold)
        rows.append([not i.answered, not i.answered or new, i.unanswerable, i.accuracy,
                     float(i.unanswerable) if new else i.accuracy])
    return np.array(rows, dtype=float)


def _stat(col: int) -> Callable[[np.ndarray], float]:
    return lambda a: float(_figures(a)[col])


def evaluate(items: list[Item], feature: str, threshold: float, boot: int) -> dict[str, Any]:
    """Before (the committed answers) and after (the rule applied to them), with paired bootstrap intervals."""
    arr = _rows(items, feature, threshold)
    out: dict[str, Any] = {
        "n": len(items), "unanswerable": int(arr[:, 2].sum()),
        "newly_refused_unanswerable": sum(1 for i in items if i.unanswerable and refuses(i, feature, threshold)),
        "newly_refused_correct": sum(1 for i in items if i.correct and not i.unanswerable
                                     and refuses(i, feature, threshold)),
        "newly_refused_wrong": sum(1 for i in items if not i.correct and not i.unanswerable
                                   and refuses(i, feature, threshold)),
    }
    for k, fig in enumerate(FIGS):
        cell = {}
        for name, col in (("before", k), ("after", k + 3), ("delta", k + 6)):
            p, lo, hi = bootstrap_ci(arr, n_boot=boot, seed=0, stat=_stat(col))
            cell[name] = [None if x is None or np.isnan(x) else round(x, 3) for x in (p, lo, hi)]
        out[fig] = cell
    return out


def grounded_refusals(items: list[Item], feature: str, threshold: float) -> dict[str, int]:
    return {"n": len(items), "refused_before": sum(1 for i in items if not i.answered),
            "refused_after": sum(1 for i in items if not i.answered or refuses(i, feature, threshold))}


def auc(items: list[Item], feature: str) -> float | None:
    """How well the feature ranks 'answered correctly' (higher) above 'should have refused' (lower); 0.5 is chance."""
    pos = [i.features[feature] for i in items if i.answered and not i.unanswerable and i.correct]
    neg = [i.features[feature] for i in items if i.answered and i.unanswerable]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return round(wins / (len(pos) * len(neg)), 3)


def _fmt(cell: list[float | None], sign: bool = False) -> str:
    if cell[0] is None:
        return "-"
    f = "{:+.2f}" if sign else "{:.2f}"
    lo = "?" if cell[1] is None else f.format(cell[1])
    hi = "?" if cell[2] is None else f.format(cell[2])
    return f"{f.format(cell[0])} [{lo}, {hi}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-dir", type=Path, default=Path("eval/runs"))
    ap.add_argument("--runs", nargs="+", default=list(RUNS))
    ap.add_argument("--grounded", nargs="*", default=list(GROUNDED))
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--max-loss", type=float, default=0.05,
                    help="share of dev's answerable items the rule may turn from correct into refused")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    items = load(args.runs_dir, tuple(args.runs))
    grounded = load(args.runs_dir, tuple(args.grounded)) if args.grounded else []
    dev, test = split(items, args.seed)
    names = sorted(next(i.features for i in items if i.answered))
    print(f"{len(items)} items ({sum(i.answered for i in items)} answered), dev {len(dev)}, test {len(test)}. "
          "SIMULATION on committed answers: the rule only turns answers into refusals.")
    print("\n| feature | AUC dev | AUC test | threshold (dev) | refusal recall dev |\n|---|---|---|---|---|")
    table: dict[str, dict[str, Any]] = {}
    for f in names:
        t = choose(dev, f, args.max_loss)
        table[f] = {"auc_dev": auc(dev, f), "auc_test": auc(test, f), "threshold": round(t, 4),
                    "recall_dev": round(recall(dev, f, t), 3)}
        r = table[f]
        print(f"| {f} | {r['auc_dev']} | {r['auc_test']} | {r['threshold']} | {r['recall_dev']} |")
    # The rule: the feature with the best dev recall within the loss bound (ties: the better dev AUC).
    best = max(names, key=lambda f: (table[f]["recall_dev"], table[f]["auc_dev"] or 0.0))
    threshold = table[best]["threshold"]
    print(f"\nchosen on dev: refuse an answer when {best} < {threshold}")
    groups: dict[str, Callable[[Item], bool]] = {"all": lambda i: True}
    groups.update({r: (lambda i, r=r: i.run == r) for r in args.runs})
    print("\n| test half | n | refusal precision before / after | refusal recall before / after (change) | "
          "answerable accuracy before / after (change) | newly refused: unanswerable, correct, wrong |")
    print("|---|---|---|---|---|---|")
    per: dict[str, Any] = {}
    for g, keep in groups.items():
        r = per[g] = evaluate([i for i in test if keep(i)], best, threshold, args.boot)
        pr, rc, ac = (r[x] for x in FIGS)
        print(f"| {g} | {r['n']} | {_fmt(pr['before'])} / {_fmt(pr['after'])} | {_fmt(rc['before'])} / "
              f"{_fmt(rc['after'])} ({_fmt(rc['delta'], True)}) | {_fmt(ac['before'])} / {_fmt(ac['after'])} "
              f"({_fmt(ac['delta'], True)}) | "
              f"{r['newly_refused_unanswerable']}, {r['newly_refused_correct']}, {r['newly_refused_wrong']} |")
    # Whole committed runs under the rule: what `ragqa eval qa --rescore` would report if the rule had been applied,
    # half of it in-sample (the dev half chose the threshold).
    print("\n| whole run (SIMULATION, dev half in-sample) | n | refusal precision before / after | "
          "refusal recall before / after | answerable accuracy before / after |\n|---|---|---|---|---|")
    whole: dict[str, Any] = {}
    for run in [*args.runs, *args.grounded]:
        sub = [i for i in [*items, *grounded] if i.run == run]
        figs = _figures(_rows(sub, best, threshold))
        whole[run] = {fig: [None if np.isnan(figs[k + d]) else round(float(figs[k + d]), 3) for d in (0, 3)]
                      for k, fig in enumerate(FIGS)}
        cells = [" / ".join("-" if v is None else f"{v:.2f}" for v in whole[run][fig]) for fig in FIGS]
        print(f"| {run} | {len(sub)} | {' | '.join(cells)} |")
    g_ref = grounded_refusals(grounded, best, threshold)
    if grounded:
        print(f"\ngrounded answers (counterfactual passages, {', '.join(args.grounded)}, both halves): "
              f"{g_ref['refused_before']} of {g_ref['n']} refused before, {g_ref['refused_after']} after")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {"runs": args.runs, "grounded_runs": args.grounded, "seed": args.seed, "max_loss": args.max_loss,
                  "boot": args.boot, "n_dev": len(dev), "n_test": len(test), "simulation": True,
                  "features": table, "chosen": {"feature": best, "threshold": threshold},
                  "test": per, "grounded": g_ref, "whole_runs_simulated": whole}
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
