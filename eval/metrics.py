"""Evaluation metrics: pure functions over strings, labels and rankings. No I/O, no models.

The answer correctness rule behind accuracy and CRAG truthfulness is CORRECTNESS_RULE below.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np

Label = Literal["correct", "missing", "wrong"]

CORRECTNESS_RULE = """\
Per item:
- gold unanswerable: correct if the system refused (status no_answer), wrong otherwise;
- gold answerable and the system refused: missing;
- otherwise correct when, against any gold answer, EM = 1, or token F1 >= 0.5, or the normalised gold is contained in
  the normalised answer (a generated answer is a sentence, and F1 against a short span punishes the sentence, not the
  fact); Chinese uses character F1 and containment after removing punctuation; a numeric gold (TAT-QA) needs
  numeric_match; RGB uses its own containment check (rgb_correct); a jsonl item whose answers are key facts
  needs every key contained; an answer containing a forbidden string is wrong. Anything else is wrong.
- with --judge-url, the LLM judge's verdict gives the same figures again with the suffix _llm.
"""


# ---- SQuAD normalisation, EM, F1 -----------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD's normalisation: lower case, punctuation and articles removed, whitespace collapsed."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _golds(golds: str | Sequence[str]) -> list[str]:
    out = [golds] if isinstance(golds, str) else list(golds)
    return out or [""]  # SQuAD 2.0: no gold answer means the right answer is the empty string


def exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    return max(float(normalize_answer(prediction) == normalize_answer(g)) for g in _golds(golds))


def _f1_tokens(pred: Sequence[str], gold: Sequence[str]) -> float:
    if not pred or not gold:
        return float(list(pred) == list(gold))
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(gold)
    return 2 * p * r / (p + r)


def token_f1(prediction: str, golds: str | Sequence[str]) -> float:
    """SQuAD token F1, the best over the gold answers."""
    pred = normalize_answer(prediction).split()
    return max(_f1_tokens(pred, normalize_answer(g).split()) for g in _golds(golds))


def contains_answer(prediction: str, golds: str | Sequence[str], lang: str = "en") -> float:
    """1.0 when some non-empty normalised gold answer occurs in the normalised prediction."""
    norm = normalize_zh if lang == "zh" else (lambda s: " " + normalize_answer(s) + " ")
    p = norm(prediction)
    return max((float(bool(g.strip()) and norm(g) in p) for g in _golds(golds)), default=0.0)


# ---- Chinese --------------------------------------------------------------------------------------------------------


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def zh_segments(s: str) -> list[str]:
    """Characters for CJK text, whole words for runs of Latin letters and digits; punctuation and spaces dropped."""
    out: list[str] = []
    word = ""
    for ch in s.lower():
        if ch.isascii() and ch.isalnum() or (ch == "." and word[-1:].isdigit()):
            word += ch
            continue
        if word:
            out.append(word)
            word = ""
        if not ch.isspace() and not _is_punct(ch):
            out.append(ch)
    if word:
        out.append(word)
    return out


def normalize_zh(s: str) -> str:
    return "".join(zh_segments(s))


def char_f1(prediction: str, golds: str | Sequence[str]) -> float:
    """Character-level F1 (bag of characters, Latin words kept whole), punctuation stripped; best over golds."""
    pred = zh_segments(prediction)
    return max(_f1_tokens(pred, zh_segments(g)) for g in _golds(golds))


def exact_match_zh(prediction: str, golds: str | Sequence[str]) -> float:
    return max(float(normalize_zh(prediction) == normalize_zh(g)) for g in _golds(golds))


# ---- numbers with a scale (TAT-QA) --------------------------------------------------------------------------------

SCALES = {"": 1.0, "thousand": 1e3, "million": 1e6, "billion": 1e9, "percent": 1.0}
_SCALE_WORDS = {
    "%": "percent", "percent": "percent", "per cent": "percent", "thousand": "thousand", "thousands": "thousand",
    "million": "million", "millions": "million", "mn": "million", "billion": "billion", "billions": "billion",
    "bn": "billion",
}
_NUMBER = re.compile(
    r"(?<![\w.])(?P<neg>-|−|\()?\s*[$€£¥]?\s*(?P<num>\d[\d,]*(?:\.\d+)?|\.\d+)(?P<close>\))?"
    r"(?:\s*(?P<pct>%)|\s*(?P<scale>per cent|percent|thousands?|millions?|billions?|mn|bn)\b)?",
    re.IGNORECASE,
)


def to_number(value: Any) -> float | None:
    """A gold value as a float: numbers as they are; strings such as "$1,496.5", "(12.6)", "3.2%"; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return to_number(value[0]) if len(value) == 1 else None
    if not isinstance(value, str):
        return None
    found = numbers_with_scale(value)
    rest = _NUMBER.sub("", value).strip(" $€£¥")
    return found[0][0] if len(found) == 1 and not rest else None


def numbers_with_scale(text: str) -> list[tuple[float, str | None, int]]:
    """(value, scale word or None, decimals written) for every number in `text`; (12.6) reads as -12.6."""
    out = []
    for m in _NUMBER.finditer(text):
        raw = m.group("num").replace(",", "")
        try:
            v = float(raw)
        except ValueError:
            continue
        neg = m.group("neg")
        if neg and (neg != "(" or m.group("close")):
            v = -v
        scale = m.group("scale") or m.group("pct")
        decimals = len(raw.split(".")[1]) if "." in raw else 0
        out.append((v, _SCALE_WORDS.get(scale.lower()) if scale else None, decimals))
    return out


def _decimals(x: float) -> int:
    s = f"{round(x, 6):.6f}".rstrip("0")
    return len(s.split(".")[1]) if "." in s else 0


def numeric_match(prediction: str, gold: Any, scale: str = "") -> bool:
    """Does some number in `prediction` equal the gold value in the gold scale?

    A number written without a scale word is read in the gold scale (tables state their unit once); one written
    with a scale word must equal the gold after conversion (12,600 thousand = 12.6 million). Equality holds at the
    precision the prediction writes, which may be at most one decimal coarser than the gold's (capped at 2 places).
    The sign must match: (12.6) and -12.6 are negative.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    g = to_number(gold)
    if g is None:
        return False
    need = max(0, min(_decimals(g), 2) - 1)
    for v, s, d in numbers_with_scale(prediction):
        if s is None or s == scale:
            if d >= need and abs(v - g) <= 0.5 * 10**-d + 1e-9:
                return True
        elif s != "percent" and scale != "percent":
            pv, gv = v * SCALES[s], g * SCALES[scale]
            if math.isclose(pv, gv, rel_tol=1e-4):
                return True
    return False


# ---- generation overlap -------------------------------------------------------------------------------------------


class _ZhTokenizer:
    """rouge-score's tokenizer keeps only [a-z0-9] and so drops every Chinese character: Chinese is scored on the
    same segments as character F1 (each Han character, each Latin word or number)."""

    def tokenize(self, text: str) -> list[str]:
        return zh_segments(text)


@lru_cache(maxsize=2)
def _rouge_scorer(lang: str) -> Any:
    from rouge_score import rouge_scorer

    # No stemming: the default of Hugging Face `evaluate`, so our figures compare with theirs.
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=_ZhTokenizer() if lang == "zh" else None)


def rouge_l(prediction: str, references: str | Sequence[str], lang: str = "en") -> float:
    """ROUGE-L F1 from `rouge-score` (Google's implementation), the best over the references."""
    refs = [r for r in _golds(references) if r.strip()]
    if not prediction.strip() or not refs:
        return 0.0
    return float(_rouge_scorer(lang).score_multi(refs, prediction)["rougeL"].fmeasure)


def bleu(prediction: str, references: str | Sequence[str], lang: str = "en") -> float:
    """Sentence BLEU from `sacrebleu` (its `zh` tokenizer for Chinese, `13a` otherwise; exponential smoothing, the
    sentence_bleu default), on a 0-1 scale."""
    refs = [r for r in _golds(references) if r.strip()]
    if not prediction.strip() or not refs:
        return 0.0
    return float(_bleu_scorer(lang).sentence_score(prediction, refs).score) / 100.0


@lru_cache(maxsize=2)
def _bleu_scorer(lang: str) -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize="zh" if lang == "zh" else "13a", effective_order=True)


# ---- refusal, RGB, CRAG --------------------------------------------------------------------------------------------


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def refusal_scores(refused: Sequence[bool], unanswerable: Sequence[bool]) -> dict[str, float | None]:
    """Precision and recall of refusing (status no_answer) against gold unanswerable questions."""
    if len(refused) != len(unanswerable):
        raise ValueError(f"need equal lengths, got {len(refused)} and {len(unanswerable)}")
    both = sum(1 for r, u in zip(refused, unanswerable, strict=True) if r and u)
    p, r = _ratio(both, sum(map(bool, refused))), _ratio(both, sum(map(bool, unanswerable)))
    f1 = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
    return {"precision": p, "recall": r, "f1": f1}


def rgb_labels(prediction: str, answer: Any) -> list[int]:
    """RGB's check: one label per answer part; a part that is a list is a set of alternatives (any may appear)."""
    pred = prediction.lower()
    parts = answer if isinstance(answer, list) else [answer]
    labels = []
    for part in parts:
        if isinstance(part, list):
            labels.append(int(any(str(alt).lower() in pred for alt in part)))
        else:
            labels.append(int(str(part).lower() in pred))
    return labels


def rgb_correct(prediction: str, answer: Any) -> bool:
    labels = rgb_labels(prediction, answer)
    return bool(labels) and 0 not in labels


def rate(flags: Sequence[bool]) -> float | None:
    """Share of true flags: RGB's rejection rate (over noise-only questions) and error detection rate."""
    return _ratio(sum(map(bool, flags)), len(flags))


def error_correction_rate(detected: Sequence[bool], correct: Sequence[bool]) -> float | None:
    """RGB's CR: of the answers that flagged the factual error, the share that also gave the right answer."""
    if len(detected) != len(correct):
        raise ValueError(f"need equal lengths, got {len(detected)} and {len(correct)}")
    hits = sum(1 for d, c in zip(detected, correct, strict=True) if d and c)
    return _ratio(hits, sum(map(bool, detected)))


def crag_label(correct: bool, refused: bool, unanswerable: bool) -> Label:
    if unanswerable:
        return "correct" if refused else "wrong"
    if refused:
        return "missing"
    return "correct" if correct else "wrong"


def truthfulness(labels: Sequence[str]) -> dict[str, float | None]:
    """CRAG scoring: correct = 1, missing = 0, wrong (hallucinated) = -1; score = accuracy - hallucination rate."""
    bad = [x for x in labels if x not in ("correct", "missing", "wrong")]
    if bad:
        raise ValueError(f"labels must be correct/missing/wrong, got {bad[0]!r}")
    n = len(labels)
    if n == 0:
        return {"accuracy": None, "hallucination_rate": None, "missing_rate": None, "score": None}
    c = Counter(labels)
    acc, hal = c["correct"] / n, c["wrong"] / n
    return {"accuracy": acc, "hallucination_rate": hal, "missing_rate": c["missing"] / n, "score": acc - hal}


# ---- faithfulness and citations -------------------------------------------------------------------------------------


def faithfulness(supported: Sequence[bool]) -> float | None:
    """RAGAS faithfulness: supported claims / claims made (None for an answer with no claims)."""
    return _ratio(sum(map(bool, supported)), len(supported))


Entails = Callable[[Sequence[str], str], bool]


def citation_recall_precision(
    statements: Sequence[tuple[str, Sequence[str]]], entails: Entails
) -> tuple[float | None, float | None]:
    """ALCE citation recall and precision.

    `statements`: (statement, texts of the passages it cites). Recall of a statement is 1 when its cited passages
    together entail it (0 with no citation). A citation is precise when its statement's recall is 1 and it is not
    irrelevant; irrelevant means it does not entail the statement alone while the other citations still do.
    Precision = precise citations / all citations.
    """
    if not statements:
        return None, None
    recall_sum, precise, total = 0, 0, 0
    for text, cited in statements:
        cited = list(cited)
        total += len(cited)
        if not cited or not entails(cited, text):
            continue
        recall_sum += 1
        if len(cited) == 1:
            precise += 1
            continue
        for i, c in enumerate(cited):
            irrelevant = not entails([c], text) and entails(cited[:i] + cited[i + 1 :], text)
            precise += not irrelevant
    return recall_sum / len(statements), _ratio(precise, total)


# ---- retrieval ----------------------------------------------------------------------------------------------------


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def ndcg_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with graded relevance and linear gain, as trec_eval (and so BEIR) computes it."""
    _check_k(k)
    ranking = list(dict.fromkeys(ranking))  # a document ranked twice (two of its chunks) gains once, as in trec_eval
    dcg = sum(qrels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted((r for r in qrels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    _check_k(k)
    rel = {d for d, r in qrels.items() if r > 0}
    return len(rel & set(ranking[:k])) / len(rel) if rel else 0.0


def mrr_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float:
    _check_k(k)
    for i, d in enumerate(ranking[:k]):
        if qrels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def average_precision(ranking: Sequence[str], qrels: Mapping[str, int]) -> float:
    """AP over the ranking given (MAP is its mean over queries); relevant documents not ranked count as misses."""
    rel = {d for d, r in qrels.items() if r > 0}
    if not rel:
        return 0.0
    hits, total = 0, 0.0
    for i, d in enumerate(ranking):
        if d in rel:
            hits += 1
            total += hits / (i + 1)
    return total / len(rel)


# ---- confidence intervals -------------------------------------------------------------------------------------------


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    stat: Callable[[np.ndarray], float] | None = None,
) -> tuple[float | None, float | None, float | None]:
    """(statistic, low, high): percentile bootstrap over items (rows), seeded. `stat` defaults to the mean."""
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1, got {n_boot}, {alpha}")
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        return None, None, None
    f = stat or (lambda a: float(np.mean(a)))
    point = f(arr)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(arr), size=(n_boot, len(arr)))
    boots = np.array([f(arr[i]) for i in idx], dtype=float)
    boots = boots[~np.isnan(boots)]
    if len(boots) == 0:
        return point, None, None
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return point, float(lo), float(hi)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, float | bool | None]:
    """Mean of b - a over paired items with a bootstrap CI; significant when the CI excludes 0."""
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    delta, lo, hi = bootstrap_ci(diffs, n_boot=n_boot, seed=seed, alpha=alpha)
    significant = lo is not None and hi is not None and (lo > 0 or hi < 0)
    return {"delta": delta, "low": lo, "high": hi, "significant": bool(significant), "n": len(diffs)}
