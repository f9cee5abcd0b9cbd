"""Metrics on hand-checked examples (the expected numbers are worked out in the comments)."""

from __future__ import annotations

import math

import pytest

from eval import metrics as M


def test_squad_normalisation_em_and_f1() -> None:
    assert M.normalize_answer("The Cat, sat!  ") == "cat sat"
    assert M.exact_match("the Normans", ["Normans", "Norse"]) == 1.0
    assert M.exact_match("Normans of France", ["Normans"]) == 0.0
    # pred "in 10th and 11th centuries" (5 tokens), gold 4 tokens, 4 shared: P = 4/5, R = 1, F1 = 8/9.
    assert M.token_f1("in the 10th and 11th centuries", ["10th and 11th centuries"]) == pytest.approx(8 / 9)
    # The best gold counts: "France" matches the second one exactly.
    assert M.token_f1("France", ["Paris", "France"]) == 1.0
    # SQuAD 2.0: no gold answer means the right answer is empty.
    assert M.token_f1("France", []) == 0.0 and M.token_f1("", []) == 1.0 and M.exact_match("", []) == 1.0


def test_containment_pads_words() -> None:
    assert M.contains_answer("The warranty lasts 7 years.", ["7 years"]) == 1.0
    assert M.contains_answer("It lasts 17 years.", ["7 years"]) == 0.0  # not inside another number
    assert M.contains_answer("Yes, both are American.", ["yes"]) == 1.0
    assert M.contains_answer("anything", [""]) == 0.0


def test_chinese_character_f1_strips_punctuation() -> None:
    assert M.zh_segments("KFR-35GW 的价格，是3500元。") == ["kfr", "35gw", "的", "价", "格", "是", "3500", "元"]
    # pred segments 12 人 死 亡 (4), gold 12 人 (2): P = 1/2, R = 1, F1 = 2/3.
    assert M.char_f1("12人死亡", ["12人"]) == pytest.approx(2 / 3)
    assert M.char_f1("北京，中国。", "北京中国") == 1.0
    assert M.exact_match_zh("“踢爆”。", ["踢爆"]) == 1.0
    assert M.contains_answer("至少造成12人死亡。", ["12人"], lang="zh") == 1.0


def test_numbers_with_scale_parsing() -> None:
    assert M.numbers_with_scale("fell (12.6) million, or 3.2%") == [(-12.6, "million", 1), (3.2, "percent", 1)]
    assert M.numbers_with_scale("from 2018-2019") == [(2018.0, None, 0), (2019.0, None, 0)]  # a range, not -2019
    assert M.to_number("$1,496.5") == 1496.5 and M.to_number(-12.6) == -12.6 and M.to_number(["(3.5)"]) == -3.5
    assert M.to_number("fixed-price type") is None and M.to_number(True) is None


def test_numeric_match_with_scale() -> None:
    assert M.numeric_match("Total sales were $1,496.5 million in 2019.", "$1,496.5", "million")
    assert M.numeric_match("Total sales: 1,496.5", "$1,496.5", "million")  # no scale word: read in the gold scale
    assert M.numeric_match("It was 12,600 thousand.", -12.6, "million") is False  # the sign is wrong
    assert M.numeric_match("It changed by -12,600 thousand.", -12.6, "million")  # converted: -12.6 million
    assert M.numeric_match("The change was (12.6).", -12.6, "million")
    assert M.numeric_match("The change was 12.6.", -12.6, "million") is False
    assert M.numeric_match("The margin rose to 3.2%.", 3.2, "percent")
    assert M.numeric_match("The margin rose to 32%.", 3.2, "percent") is False
    assert M.numeric_match("about 12.3%", 12.3456, "percent")  # one decimal coarser than 2 places: accepted
    assert M.numeric_match("about 12%", 12.3456, "percent") is False  # two decimals coarser: not
    assert M.numeric_match("12.6 billion", 12.6, "million") is False
    with pytest.raises(ValueError, match="'gazillion'"):
        M.numeric_match("1", 1, "gazillion")


def test_rouge_l_and_bleu() -> None:
    # rouge-score tokens (lower-cased, articles kept): [the cat sat on the mat] vs [the cat on the mat]: LCS 5,
    # P = 5/6, R = 1, F = 10/11.
    assert M.rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(10 / 11)
    assert M.rouge_l("The Cat.", ["a dog", "the cat"]) == pytest.approx(1.0)  # the best reference
    assert M.rouge_l("", "the cat") == 0.0
    # Chinese on characters (rouge-score's own tokenizer would drop every Han character): LCS 5 of 6 and 5.
    assert M.rouge_l("猫坐在垫子上", "猫在垫子上", lang="zh") == pytest.approx(10 / 11)
    assert M.bleu("the quick brown fox jumps", "the quick brown fox jumps") == pytest.approx(1.0)
    # sacrebleu, effective order: a 2-token hypothesis has 1- and 2-gram precision 1; BP = exp(1 - 4/2).
    assert M.bleu("cat sat", "cat sat on mat") == pytest.approx(math.exp(-1), abs=1e-4)
    assert M.bleu("dog", "cat sat on mat") == 0.0
    assert M.bleu("猫坐在垫子上", "猫坐在垫子上", lang="zh") == pytest.approx(1.0)
    # The zh tokenizer splits Han characters: without it the whole sentence is one token and shares nothing.
    assert M.bleu("猫坐在垫子上了", "猫坐在垫子上", lang="zh") > 0.5


def test_bleu_is_sacrebleus_sentence_bleu() -> None:
    import sacrebleu

    hyp, refs = "The warranty covers the compressor for seven years.", ["The compressor is covered for seven years."]
    assert M.bleu(hyp, refs) == pytest.approx(sacrebleu.sentence_bleu(hyp, refs).score / 100)


def test_refusal_precision_recall() -> None:
    r = M.refusal_scores([True, True, False, False], [True, False, True, False])
    assert r == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert M.refusal_scores([False, False], [False, False]) == {"precision": None, "recall": None, "f1": None}
    with pytest.raises(ValueError, match="2 and 1"):
        M.refusal_scores([True, False], [True])


def test_rgb_checks() -> None:
    assert M.rgb_labels("The game was in Tampa, Florida.", "Tampa, Florida") == [1]
    # A list of strings: every part must appear; a list of lists: any alternative of each part.
    assert M.rgb_labels("Athens and Paris", ["Athens", "London"]) == [1, 0]
    assert M.rgb_correct("Athens and Paris", [["London", "Paris"], ["athens"]])
    assert not M.rgb_correct("Athens", [["London", "Paris"], ["athens"]])
    assert not M.rgb_correct("anything", [])
    assert M.rate([True, False, False, True]) == 0.5 and M.rate([]) is None
    assert M.error_correction_rate([True, True, False], [True, False, True]) == 0.5
    assert M.error_correction_rate([False], [True]) is None


def test_crag_truthfulness() -> None:
    assert M.crag_label(correct=True, refused=False, unanswerable=False) == "correct"
    assert M.crag_label(correct=False, refused=True, unanswerable=False) == "missing"
    assert M.crag_label(correct=False, refused=True, unanswerable=True) == "correct"
    assert M.crag_label(correct=True, refused=False, unanswerable=True) == "wrong"
    t = M.truthfulness(["correct", "wrong", "missing", "correct"])
    assert t == {"accuracy": 0.5, "hallucination_rate": 0.25, "missing_rate": 0.25, "score": 0.25}
    with pytest.raises(ValueError, match="'right'"):
        M.truthfulness(["right"])


def test_faithfulness_and_alce_citations() -> None:
    assert M.faithfulness([True, False, True]) == pytest.approx(2 / 3)
    assert M.faithfulness([]) is None

    def entails(texts, statement):  # type: ignore[no-untyped-def]
        s = set(texts)
        return {"A": "pA" in s, "B": {"p1", "p2"} <= s}.get(statement, False)

    statements = [("A", ["pA", "pX"]), ("B", ["p1", "p2"]), ("C", [])]
    # Recall: A and B entailed, C has no citation: 2/3. Precision: pA precise, pX irrelevant (alone it doesn't
    # entail A, and pA without it still does); p1 and p2 are each needed: 3 precise of 4 citations.
    rec, prec = M.citation_recall_precision(statements, entails)
    assert rec == pytest.approx(2 / 3) and prec == pytest.approx(3 / 4)
    assert M.citation_recall_precision([], entails) == (None, None)
    # A statement its citations do not entail makes all its citations imprecise.
    assert M.citation_recall_precision([("B", ["p1"])], entails) == (0.0, 0.0)


def test_retrieval_metrics() -> None:
    ranking = ["d1", "d2", "d3"]
    qrels = {"d2": 2, "d3": 1, "d4": 1}
    # DCG = 2/log2(3) + 1/log2(4); IDCG = 2/log2(2) + 1/log2(3) + 1/log2(4).
    dcg = 2 / math.log2(3) + 0.5
    assert M.ndcg_at_k(ranking, qrels, 10) == pytest.approx(dcg / (2 + 1 / math.log2(3) + 0.5))
    assert M.ndcg_at_k(["d2", "d3", "d4"], qrels, 10) == pytest.approx(1.0)
    assert M.ndcg_at_k(ranking, qrels, 1) == 0.0
    # Two chunks of d2 ranked: d2 gains once and d3 moves up to rank 2, so the score never exceeds 1.
    assert M.ndcg_at_k(["d2", "d2", "d3", "d4"], qrels, 10) == pytest.approx(1.0)
    assert M.recall_at_k(ranking, qrels, 2) == pytest.approx(1 / 3)
    assert M.recall_at_k(ranking, qrels, 100) == pytest.approx(2 / 3)
    assert M.mrr_at_k(ranking, qrels, 10) == 0.5 and M.mrr_at_k(ranking, qrels, 1) == 0.0
    # Hits at ranks 2 and 3: (1/2 + 2/3) / 3 relevant.
    assert M.average_precision(ranking, qrels) == pytest.approx((1 / 2 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="got 0"):
        M.recall_at_k(ranking, qrels, 0)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    vals = [0.0, 1.0] * 50
    mean, lo, hi = M.bootstrap_ci(vals, seed=3)
    assert mean == 0.5 and lo is not None and hi is not None and lo < 0.5 < hi and hi - lo < 0.3
    assert M.bootstrap_ci(vals, seed=3) == (mean, lo, hi)
    assert M.bootstrap_ci([0.7] * 10) == (0.7, 0.7, 0.7)
    assert M.bootstrap_ci([]) == (None, None, None)
    d = M.paired_bootstrap([0.0, 0.5, 1.0] * 10, [1.0, 1.5, 2.0] * 10)
    assert d["delta"] == pytest.approx(1.0) and d["significant"] is True and d["n"] == 30
    same = M.paired_bootstrap([0.0, 1.0] * 10, [1.0, 0.0] * 10)
    assert same["delta"] == 0.0 and same["significant"] is False
