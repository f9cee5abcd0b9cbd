"""After generation: do the cited passages speak of what the question asks? A check calibrated on evaluation data.

The score gate before generation (app/sufficiency.py) asks whether some source sentence holds most of the question's
words, and the citation check (app/citations.py) whether each answer sentence is backed by the sentence it cites. Both
pass an answer that restates the question and cites a sentence about a neighbouring thing: asked for the deaths in a
*temple stampede* in Kashmir, the 1.5B model answered "10 people [1]" citing a sentence about a *bus accident* in
Kashmir (RGB Chinese, every passage a distractor); the answer sentence carries the question's words, so it is
"supported". What such a citation lacks is the question's specific terms (寺庙, 踩踏), while it has the common ones
(事故, 死亡). So this check weighs each of the question's terms by its rarity and measures the weighted share the cited
passages hold (with their documents' titles: a CMRC passage often names its subject only there); below a threshold,
the answer becomes the standard refusal. The cited passages separated better on the dev half than the cited sentences
alone or all the evidence (AUC 0.66 against 0.60 and 0.62), though no lexical feature separated well (0.54-0.66).

Rarity is inverse document frequency from jieba's table (about 270,000 Chinese words from a large general corpus, the
table jieba's own keyword extraction uses); a word missing from it gets the table's median, as in jieba. No English
frequency table ships with the project's dependencies, so English terms weigh alike (the share is then the plain
share of the question's terms); a collection's own BM25 document frequencies would serve both languages but are not
exposed by every index backend. Years are left out as in the gate: "the warranty in 2025" is a time qualifier.

The threshold was chosen on a dev half of the committed evaluation runs and tested on the other half
(bench/refusal_calibration.py; figures in PipelineConfig.min_cited_share and docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from retrieval.analyzer import Analyzer
from retrieval.text import YEAR, has_cjk, strip_markers


@dataclass(frozen=True)
class TermWeights:
    idf: dict[str, float]
    default: float  # a Chinese word the table lacks, and every non-Chinese term


@cache
def term_weights() -> TermWeights:
    """jieba's IDF table, loaded once (about 0.3 s)."""
    import jieba

    path = Path(jieba.__file__).parent / "analyse" / "idf.txt"
    idf: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        word, _, value = line.rpartition(" ")
        if word:
            idf[word] = float(value)
    values = sorted(idf.values())
    return TermWeights(idf, values[len(values) // 2] if values else 1.0)


def weight(term: str) -> float:
    w = term_weights()
    return w.idf.get(term, w.default) if has_cjk(term) else w.default


def question_terms(analyzer: Analyzer, question: str) -> tuple[str, ...]:
    """The question's distinct search terms (the analyzer's: stop words out, English stemmed), years left out."""
    return tuple(dict.fromkeys(analyzer.tokenize(YEAR.sub(" ", strip_markers(question)))))


@dataclass(frozen=True)
class CitedSupport:
    share: float  # rarity-weighted share of the question's terms found in the cited sentences (1.0 without terms)
    missing: tuple[str, ...]  # the question's terms the cited sentences lack, rarest first


def cited_support(analyzer: Analyzer, question: str, cited: Sequence[str]) -> CitedSupport:
    """How much of what the question asks about the cited texts mention, weighted by rarity.

    Terms match as the analyzer cuts them. Counting a Chinese term found inside a longer word too (the segmenter cuts
    印控 alone in a question but 印控查谟 in a sentence) separated slightly worse on the dev half (AUC 0.639 against
    0.657), so it is not done."""
    terms = question_terms(analyzer, question)
    if not terms:
        return CitedSupport(1.0, ())
    found: set[str] = set()
    for text in cited:
        found.update(analyzer.tokenize(text))
    total = sum(weight(t) for t in terms)
    share = sum(weight(t) for t in terms if t in found) / total if total > 0 else 1.0
    return CitedSupport(share, tuple(sorted((t for t in terms if t not in found), key=lambda t: -weight(t))))


def cited_text(title: str, passage: str) -> str:
    """A cited passage as the check reads it: with its document's title, where the subject is often named only."""
    return f"{title}\n{passage}" if title else passage


def off_topic(support: CitedSupport, threshold: float) -> bool:
    """True when the cited sentences hold too little of the question's rare terms to answer it."""
    return support.share < threshold
