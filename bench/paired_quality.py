"""Accuracy and refusal precision/recall of two answer paths over the same questions, with paired bootstrap intervals.

Reads pairs of `ragqa eval qa` run folders (before, after) that asked the same items, pools them, and resamples items
(the same resample for both paths) to put 95 % intervals on each path's figure and on the difference. `ragqa eval qa
--compare` does this per metric for one data set; refusal precision and recall are ratios over different subsets of
the items, so they need the whole resample, which is what this adds.

    .venv/bin/python bench/paired_quality.py eval/runs/i10-old-squad2-60 eval/runs/i10-final-squad2-60 \
        eval/runs/i10-old-rgb-zh-40 eval/runs/i10-final-rgb-zh-40 --out bench/results/paired-quality.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _items(folder: Path, pair: int) -> dict[str, dict[str, object]]:
    """Items keyed by the pair they belong to and their id: the same question in two sets stays two items."""
    out = {}
    for line in (folder / "items.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out[f"{pair}:{d['id']}"] = d
    return out


def _figures(acc: np.ndarray, refused: np.ndarray, unans: np.ndarray) -> dict[str, float]:
    said_no = refused.sum()
    return {
        "accuracy": float(acc.mean()),
        "refusal_precision": float((refused & unans).sum() / said_no) if said_no else float("nan"),
        "refusal_recall": float((refused & unans).sum() / unans.sum()) if unans.sum() else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="BEFORE AFTER [BEFORE AFTER ...]")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if len(args.runs) % 2:
        sys.exit("give run folders in pairs: BEFORE AFTER")
    before: dict[str, dict[str, object]] = {}
    after: dict[str, dict[str, object]] = {}
    for pair, (a, b) in enumerate(zip(args.runs[::2], args.runs[1::2], strict=True)):
        ia, ib = _items(a, pair), _items(b, pair)
        ids = sorted(set(ia) & set(ib))
        before.update({i: ia[i] for i in ids})
        after.update({i: ib[i] for i in ids})
    keys = sorted(before)
    cols = {}
    for name, runs in (("before", before), ("after", {k: after[k] for k in keys})):
        cols[name] = (np.array([float(runs[k]["metrics"]["accuracy"]) for k in keys]),  # type: ignore[index]
                      np.array([runs[k]["status"] == "no_answer" for k in keys]))
    unans = np.array([bool(before[k]["gold"]["unanswerable"]) for k in keys])  # type: ignore[index]
    rng = np.random.default_rng(0)
    boots: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(args.boot):
        idx = rng.integers(0, len(keys), len(keys))
        for name in boots:
            acc, ref = cols[name]
            boots[name].append(_figures(acc[idx], ref[idx], unans[idx]))
    out: dict[str, object] = {"n": len(keys), "unanswerable": int(unans.sum()), "runs": [str(r) for r in args.runs],
                              "figures": {}}
    print(f"{len(keys)} questions ({int(unans.sum())} unanswerable), paired bootstrap, {args.boot} resamples")
    print("| figure | before | after | after - before |\n|---|---|---|---|")
    for fig in ("accuracy", "refusal_precision", "refusal_recall"):
        row = {}
        for name in ("before", "after"):
            acc, ref = cols[name]
            vals = np.array([b[fig] for b in boots[name]])
            row[name] = [_figures(acc, ref, unans)[fig], *np.nanquantile(vals, [0.025, 0.975]).tolist()]
        d = np.array([x[fig] - y[fig] for x, y in zip(boots["after"], boots["before"], strict=True)])
        row["delta"] = [row["after"][0] - row["before"][0], *np.nanquantile(d, [0.025, 0.975]).tolist()]
        out["figures"][fig] = row  # type: ignore[index]
        f = [f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for v in (row["before"], row["after"])]
        print(f"| {fig} | {f[0]} | {f[1]} | {row['delta'][0]:+.3f} [{row['delta'][1]:+.3f}, {row['delta'][2]:+.3f}] |")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
