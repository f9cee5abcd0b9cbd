"""Our retrieval metrics against trec_eval (pytrec_eval) as the oracle, on seeded random rankings with graded qrels,
so that the nDCG and recall we publish are the ones the literature's tools compute."""

from __future__ import annotations

import random

import pytest
import pytrec_eval

from eval import metrics as M


def _case(rng: random.Random, n_docs: int = 60) -> tuple[list[str], dict[str, int]]:
    docs = [f"d{i}" for i in range(n_docs)]
    qrels = {d: rng.choice([0, 1, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 12))}
    if not any(qrels.values()):
        qrels[docs[0]] = 1
    ranking = rng.sample(docs, rng.randint(5, n_docs))  # some judged documents are never retrieved
    return ranking, qrels


def test_ndcg_recall_map_and_mrr_equal_trec_eval() -> None:
    rng = random.Random(12)
    qrels_all, runs, ours = {}, {}, {}
    for q in range(40):
        qid = f"q{q}"
        ranking, qrels = _case(rng)
        qrels_all[qid] = qrels
        # Distinct descending scores: trec_eval orders by score, so it sees our ranking exactly.
        runs[qid] = {d: float(len(ranking) - i) for i, d in enumerate(ranking)}
        ours[qid] = {"ndcg_cut_10": M.ndcg_at_k(ranking, qrels, 10), "ndcg_cut_5": M.ndcg_at_k(ranking, qrels, 5),
                     "recall_5": M.recall_at_k(ranking, qrels, 5), "recall_10": M.recall_at_k(ranking, qrels, 10),
                     "recall_100": M.recall_at_k(ranking, qrels, 100), "map": M.average_precision(ranking, qrels),
                     "recip_rank": M.mrr_at_k(ranking, qrels, 10)}
    full = pytrec_eval.RelevanceEvaluator(qrels_all, {"ndcg_cut.5,10", "recall.5,10,100", "map"}).evaluate(runs)
    # MRR@10: trec_eval's reciprocal rank over the run cut to its first 10 documents.
    top10 = {q: dict(sorted(r.items(), key=lambda kv: -kv[1])[:10]) for q, r in runs.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels_all, {"recip_rank"}).evaluate(top10)
    for qid, mine in ours.items():
        oracle = {**full[qid], "recip_rank": rr[qid]["recip_rank"]}
        for name, value in mine.items():
            assert value == pytest.approx(oracle[name], abs=1e-4), (qid, name)
