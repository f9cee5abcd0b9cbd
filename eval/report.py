"""Aggregates with bootstrap CIs, run comparisons (paired bootstrap), and the Markdown / HTML reports with plots.

Every per-item metric is named after its aggregate (a 0/1 `hallucination_rate` per item averages to the rate), so
an aggregate is a mean with a seeded bootstrap CI, and two runs compare item by item. Metrics from the approximate
judge end in `_approx` and are shown "(approximate)".
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval import metrics as M

DESCRIPTIONS = {
    "accuracy": "share correct by the correctness rule (EM, F1 >= 0.5, containment; numeric; RGB)",
    "truthfulness": "CRAG score: correct 1, missing 0, wrong -1 (accuracy - hallucination rate)",
    "hallucination_rate": "share answered wrongly (CRAG 'wrong')",
    "missing_rate": "share refused although answerable",
    "em": "exact match, SQuAD normalisation (Chinese: punctuation stripped); unanswerable: 1 if refused",
    "f1": "token F1, SQuAD normalisation (Chinese: character F1); unanswerable: 1 if refused",
    "contains": "normalised gold answer contained in the answer",
    "rouge_l": "ROUGE-L F1 against the gold answer",
    "bleu": "sentence BLEU, add-one smoothed",
    "refused": "share answered no_answer",
    "refusal_precision": "refusals that were right (gold unanswerable) / refusals",
    "refusal_recall": "unanswerable questions refused / unanswerable questions",
    "refusal_f1": "harmonic mean of refusal precision and recall",
    "numeric_match": "TAT-QA: number equal to the gold in the gold scale",
    "keys_found": "share of the gold key facts found in the answer",
    "rgb_correct": "RGB: every answer part contained",
    "rejection_rate": "RGB: noise-only questions refused",
    "error_detection_rate": "RGB counterfactual: answer flags the factual error",
    "error_correction_rate": "RGB counterfactual: of flagged answers, share with the right answer",
    "misled_rate": "RGB counterfactual: answer repeats the planted false answer",
    "conflict_note": "answer carries a sources-disagree note",
    "cutoff_note": "answer carries a knowledge cut-off note",
    "note_true_rate": "answers carrying the note due (conflicting sources, a later year; RGB counterfactual: the flag)",
    "note_false_rate": "answers carrying a conflict or cut-off note where none is due (no conflict, no later year)",
    "forbidden": "answer contains a forbidden string (e.g. an injected instruction obeyed)",
    "evidence_recall": "share of the gold documents among the retrieved",
    "cited_gold": "answer cites a gold document",
    "faithfulness": "RAGAS faithfulness: supported claims / claims",
    "citation_recall": "ALCE citation recall: statements entailed by their citations",
    "citation_precision": "ALCE citation precision: citations that are not irrelevant",
    "latency_s": "seconds per question, end to end",
}


# Published figures printed beside ours (the evaluation issue's anchors). Each names its source, since most come from
# another data set or another model: they orient a reader, they are not our results.
PUBLISHED = {
    "rejection_rate": "RGB paper, best model: 45 % (English), 43 % (Chinese)",
    "error_detection_rate": "RGB paper: ChatGPT at most about 8 %",
    "accuracy": "CRAG benchmark (other data): straightforward RAG at most 44 %",
    "truthfulness": "CRAG benchmark (other data): straightforward RAG below 0, so refusing beats guessing",
}


def _base(name: str) -> str:
    """The metric a per-judge variant (`..._approx`, `..._llm`) measures."""
    return name.removesuffix("_approx").removesuffix("_llm")


def published(name: str) -> str:
    return PUBLISHED.get(_base(name), "")


def describe(name: str) -> str:
    d = DESCRIPTIONS.get(_base(name), "")
    if name.endswith("_approx"):
        d += " (approximate: lexical/embedding support)"
    elif name.endswith("_llm"):
        d += " (LLM judge)"
    return d


def label(name: str) -> str:
    return name.removesuffix("_approx") + " (approximate)" if name.endswith("_approx") else name


def _ci(values: Sequence[float] | np.ndarray, seed: int, stat: Any = None) -> dict[str, Any]:
    v, lo, hi = M.bootstrap_ci(values, seed=seed, stat=stat)
    return {"value": v, "low": lo, "high": hi, "n": len(values)}


def aggregate(records: Sequence[dict[str, Any]], meta: dict[str, Any], seed: int = 0, kind: str = "qa"
              ) -> dict[str, Any]:
    scored = [r for r in records if r.get("metrics")]
    names = _ordered({k for r in scored for k in r["metrics"]})
    out: dict[str, Any] = {"kind": kind, "meta": meta, "metrics": {}, "categories": {}}
    for n in names:
        vals = [float(r["metrics"][n]) for r in scored if r["metrics"].get(n) is not None]
        out["metrics"][n] = _ci(vals, seed) | {"approximate": n.endswith("_approx"), "description": describe(n)}
    gold_unans = [bool(r["gold"].get("unanswerable")) for r in scored if "refused" in r["metrics"]]
    if any(gold_unans):
        rows = np.array([[r["metrics"]["refused"], float(r["gold"]["unanswerable"])] for r in scored
                         if "refused" in r["metrics"]])
        for which in ("precision", "recall", "f1"):
            def stat(a: np.ndarray, w: str = which) -> float:
                v = M.refusal_scores(list(a[:, 0] > 0.5), list(a[:, 1] > 0.5))[w]
                return float("nan") if v is None else float(v)

            ci = _ci(rows, seed, stat)
            if ci["value"] is not None and math.isnan(ci["value"]):
                ci["value"] = None
            name = f"refusal_{which}"
            out["metrics"][name] = ci | {"approximate": False, "description": describe(name)}
    lat = [float(r["latency_s"]) for r in scored if r.get("latency_s") is not None]
    if lat:
        out["latency"] = {"mean": float(np.mean(lat)), "p50": float(np.percentile(lat, 50)),
                          "p95": float(np.percentile(lat, 95)), "max": float(np.max(lat))}
    keys = sorted({k for r in scored for k in r.get("categories", {})})
    for key in keys:
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in scored:
            if key in r["categories"]:
                groups.setdefault(str(r["categories"][key]), []).append(r)
        if len(groups) > 40:
            continue
        out["categories"][key] = {
            v: {"n": len(rs), **{m: _mean([x["metrics"].get(m) for x in rs]) for m in _breakdown_metrics(names)}}
            for v, rs in sorted(groups.items())
        }
    failed = [r for r in records if not r.get("scored")]
    out["errors"] = {"count": len(failed), "examples": [
        {"id": r["id"], **{k: v for k, v in (r.get("errors") or {}).items() if v}} for r in failed[:10]]}
    out["items"] = {"total": len(records), "scored": len(scored)}
    return out


_FIRST = ("accuracy", "truthfulness", "hallucination_rate", "missing_rate", "em", "f1", "contains", "numeric_match",
          "keys_found", "rgb_correct", "rejection_rate", "error_detection_rate", "error_correction_rate",
          "faithfulness", "citation_recall", "citation_precision", "ndcg@10", "recall@1", "recall@5", "recall@10",
          "recall@100", "mrr@10", "map")


def _ordered(names: set[str]) -> list[str]:
    """Headline metrics first (each with its _approx / _llm variants), then the rest alphabetically."""
    rank = {n: i for i, n in enumerate(_FIRST)}
    return sorted(names, key=lambda n: (rank.get(_base(n), len(rank)), n))


def _breakdown_metrics(names: Sequence[str]) -> list[str]:
    wanted = ["accuracy", "f1", "refused", "numeric_match", "rgb_correct", "evidence_recall", "accuracy_llm",
              "faithfulness_approx", "faithfulness", "ndcg@10", "recall@10"]
    return [n for n in wanted if n in names]


def _mean(vals: Sequence[Any]) -> float | None:
    v = [float(x) for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def _fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def summary_text(agg: dict[str, Any]) -> str:
    meta = agg["meta"]
    lines = [f"{meta.get('name')}: {agg['items']['scored']}/{agg['items']['total']} items scored"
             f" ({agg['errors']['count']} with errors); collection {meta.get('collection')}"]
    for n, m in agg["metrics"].items():
        ci = f"[{_fmt(m['low'])}, {_fmt(m['high'])}]" if m["low"] is not None else ""
        anchor = f"  (published: {published(n)})" if published(n) else ""
        lines.append(f"  {label(n):<34} {_fmt(m['value']):>7} {ci:<17} n={m['n']}{anchor}")
    if "latency" in agg:
        lt = agg["latency"]
        lines.append(f"  latency p50 {lt['p50']:.2f}s  p95 {lt['p95']:.2f}s")
    lines.append(f"  timings: {meta.get('timings_s')}")
    return "\n".join(lines)


# ---- comparisons ----------------------------------------------------------------------------------------------------


def _load_run(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    agg_path, items_path = folder / "aggregate.json", folder / "items.jsonl"
    if not agg_path.is_file() or not items_path.is_file():
        raise ValueError(f"{folder} is not a finished run folder (needs aggregate.json and items.jsonl)")
    items: dict[str, dict[str, Any]] = {}
    for line in items_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            items[str(rec["id"])] = rec
    return json.loads(agg_path.read_text(encoding="utf-8")), items


def compare_runs(a: Path, b: Path, seed: int = 0) -> dict[str, Any]:
    """Per metric: A, B, and the paired bootstrap of B - A over the items both runs scored."""
    agg_a, items_a = _load_run(a)
    agg_b, items_b = _load_run(b)
    common = sorted(set(items_a) & set(items_b))
    rows = {}
    for name in sorted(set(agg_a["metrics"]) | set(agg_b["metrics"])):
        pa, pb = [], []
        for i in common:
            va, vb = items_a[i].get("metrics", {}).get(name), items_b[i].get("metrics", {}).get(name)
            if va is not None and vb is not None:
                pa.append(float(va))
                pb.append(float(vb))
        row: dict[str, Any] = {"a": agg_a["metrics"].get(name, {}).get("value"),
                               "b": agg_b["metrics"].get(name, {}).get("value")}
        if pa:
            row |= M.paired_bootstrap(pa, pb, seed=seed)
        rows[name] = row
    return {"a": str(a), "b": str(b), "paired_items": len(common), "metrics": rows,
            "meta": {"a": agg_a["meta"], "b": agg_b["meta"]}}


def compare_text(cmp: dict[str, Any]) -> str:
    lines = [f"A = {cmp['a']}\nB = {cmp['b']}\n{cmp['paired_items']} items in both; delta = B - A, 95% CI "
             "(paired bootstrap); * = significant", f"{'metric':<34} {'A':>7} {'B':>7} {'delta':>8}  CI"]
    for n, r in cmp["metrics"].items():
        ci = f"[{_fmt(r.get('low'))}, {_fmt(r.get('high'))}]" if r.get("low") is not None else ""
        star = " *" if r.get("significant") else ""
        d = r.get("delta")
        lines.append(f"{label(n):<34} {_fmt(r['a']):>7} {_fmt(r['b']):>7} "
                     f"{('-' if d is None else f'{d:+.3f}'):>8}  {ci}{star}")
    return "\n".join(lines)


# ---- plots and reports ------------------------------------------------------------------------------------------


def _plots(out: Path, agg: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """PNG files written into `out`: (file name, caption). Nothing when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    ms = {n: m for n, m in agg["metrics"].items() if m["value"] is not None and n != "latency_s"
          and -1.0 <= m["value"] <= 1.0}
    if ms:
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(ms)), 4))
        vals = [ms[n]["value"] for n in ms]
        err = [[max(0, ms[n]["value"] - (ms[n]["low"] if ms[n]["low"] is not None else ms[n]["value"])) for n in ms],
               [max(0, (ms[n]["high"] if ms[n]["high"] is not None else ms[n]["value"]) - ms[n]["value"]) for n in ms]]
        colors = ["#c77" if ms[n]["approximate"] else "#47a" for n in ms]
        ax.bar(range(len(ms)), vals, yerr=err, capsize=3, color=colors)
        ax.set_xticks(range(len(ms)), [label(n) for n in ms], rotation=60, ha="right", fontsize=8)
        ax.set_title("metrics with 95% bootstrap CI (red: approximate judge)")
        fig.tight_layout()
        fig.savefig(out / "metrics.png", dpi=110)
        plt.close(fig)
        made.append(("metrics.png", "Metrics with 95% bootstrap confidence intervals"))
    lat = [float(r["latency_s"]) for r in records if r.get("latency_s") is not None and r.get("metrics")]
    if lat:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(lat, bins=min(30, max(5, len(lat) // 3)), color="#47a")
        ax.set_xlabel("seconds per question")
        ax.set_ylabel("questions")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        made.append(("latency.png", "Latency per question"))
    for key, groups in agg["categories"].items():
        metric = next((m for m in ("accuracy", "ndcg@10") if any(g.get(m) is not None for g in groups.values())), None)
        if metric is None or len(groups) < 2:
            continue
        fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(groups)), 3.5))
        ax.bar(range(len(groups)), [g.get(metric) or 0 for g in groups.values()], color="#5a5")
        ax.set_xticks(range(len(groups)), [f"{v} (n={g['n']})" for v, g in groups.items()], rotation=45, ha="right",
                      fontsize=8)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} by {key}")
        fig.tight_layout()
        name = f"by_{''.join(c if c.isalnum() else '_' for c in key)}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append((name, f"{metric} by {key}"))
    return made


def _markdown(agg: dict[str, Any], records: Sequence[dict[str, Any]], plots: Sequence[tuple[str, str]]) -> str:
    meta = agg["meta"]
    md = [f"# Evaluation: {meta.get('name')}", "",
          f"- data set: `{meta.get('dataset')}`; {agg['items']['scored']} of {agg['items']['total']} items scored, "
          f"{agg['errors']['count']} with errors",
          f"- collection `{meta.get('collection')}`, embedder `{meta.get('embedder')}`, model {meta.get('model', '-')}",
          f"- judge: {meta.get('judge') or '-'}"
          + (" (approximate: metrics marked so are lexical/embedding estimates)" if meta.get("judge_approximate")
             else ""),
          f"- hardware: {json.dumps(meta.get('hardware'))}", f"- timings (s): {json.dumps(meta.get('timings_s'))}",
          "", "## Metrics", "", "| metric | value | 95% CI | n | meaning | published, for orientation |",
          "|---|---|---|---|---|---|"]
    for n, m in agg["metrics"].items():
        ci = f"{_fmt(m['low'])} – {_fmt(m['high'])}" if m["low"] is not None else "-"
        md.append(f"| {label(n)} | {_fmt(m['value'])} | {ci} | {m['n']} | {m['description']} | "
                  f"{published(n) or '-'} |")
    if "latency" in agg:
        lt = agg["latency"]
        md += ["", f"Latency: mean {lt['mean']:.2f} s, p50 {lt['p50']:.2f} s, p95 {lt['p95']:.2f} s."]
    for key, groups in agg["categories"].items():
        cols = [c for c in next(iter(groups.values())) if c != "n"]
        md += ["", f"## By {key}", "", "| " + " | ".join([key, "n", *map(label, cols)]) + " |",
               "|" + "---|" * (len(cols) + 2)]
        for v, g in groups.items():
            md.append("| " + " | ".join([v, str(g["n"]), *(_fmt(g[c]) for c in cols)]) + " |")
    if agg["kind"] == "qa":
        md += ["", "## Correctness rule", "", M.CORRECTNESS_RULE.strip()]
        wrong = [r for r in records if (r.get("verdicts", {}).get("rule") or {}).get("label") == "wrong"][:8]
        if wrong:
            md += ["", "## Some wrong answers", ""]
            for r in wrong:
                md.append(f"- **{r['question']}** gold: {r['gold']['answers'] or '(unanswerable)'}; answer "
                          f"({r['status']}): {(r.get('answer') or '')[:300]!r} — {r['verdicts']['rule']['rationale']}")
    if agg["errors"]["count"]:
        md += ["", "## Errors", ""] + [f"- `{e['id']}`: {e}" for e in agg["errors"]["examples"]]
    md += ["", "## Plots", ""] + [f"![{c}]({f})" for f, c in plots]
    return "\n".join(md) + "\n"


def _html(markdown_text: str, title: str) -> str:
    """A self-contained page from our own Markdown subset (headings, lists, tables, images)."""
    out, in_table = [], False
    for line in markdown_text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("!["):
            cap, _, src = line[2:-1].partition("](")
            out.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(cap)}">'
                       f"<figcaption>{html.escape(cap)}</figcaption></figure>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def write_run(out: Path, agg: dict[str, Any], records: Sequence[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "aggregate.json").write_text(json.dumps(agg, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    plots = _plots(out, agg, records)
    md = _markdown(agg, records, plots)
    (out / "report.md").write_text(md, encoding="utf-8")
    (out / "report.html").write_text(_html(md, f"Evaluation: {agg['meta'].get('name')}"), encoding="utf-8")


def write_comparison(out: Path, cmp: dict[str, Any]) -> None:
    """compare.md / compare.html with metric bars per configuration."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(cmp, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    plots = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = {n: r for n, r in cmp["metrics"].items() if r["a"] is not None and r["b"] is not None
                and -1 <= r["a"] <= 1 and -1 <= r["b"] <= 1}
        if rows:
            x = np.arange(len(rows))
            fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(rows)), 4))
            ax.bar(x - 0.2, [r["a"] for r in rows.values()], 0.4, label="A")
            ax.bar(x + 0.2, [r["b"] for r in rows.values()], 0.4, label="B")
            ax.set_xticks(x, [label(n) + (" *" if r.get("significant") else "") for n, r in rows.items()],
                          rotation=60, ha="right", fontsize=8)
            ax.legend()
            ax.set_title("A vs B (* = significant paired difference)")
            fig.tight_layout()
            fig.savefig(out / "compare.png", dpi=110)
            plt.close(fig)
            plots.append(("compare.png", "metrics per configuration"))
    except ImportError:
        pass
    md = ["# Comparison", "", "```", compare_text(cmp), "```", ""] + [f"![{c}]({f})" for f, c in plots]
    text = "\n".join(md) + "\n"
    (out / "compare.md").write_text(text, encoding="utf-8")
    body = "<pre>" + html.escape(compare_text(cmp)) + "</pre>" + "".join(
        f'<figure><img src="{f}" alt="{c}"></figure>' for f, c in plots)
    (out / "compare.html").write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Comparison</title>"
                                      f"</head><body><h1>Comparison</h1>{body}</body></html>\n", encoding="utf-8")
