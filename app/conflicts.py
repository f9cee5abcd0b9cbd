"""Sources that disagree on the asked fact, found in code.

A small model reading two policy versions tends to pick one and not notice the other. Here two sentences from different
documents conflict when both are about the question, say nearly the same thing in words, and state different numbers
("covered for 5 years" vs "covered for 7 years"). The newer source wins, then the more authoritative one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.analyzer import Analyzer
from retrieval.expand import Passage
from retrieval.text import YEAR, numbers, split_sentences


@dataclass(frozen=True)
class FactSentence:
    passage_index: int
    sentence: str
    words: frozenset[str]  # analyzer tokens without numbers
    values: frozenset[str]
    relevance: float


@dataclass(frozen=True)
class Disagreement:
    preferred: FactSentence
    other: FactSentence
    reason: str


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _facts(question: str, passages: Sequence[Passage], analyzer: Analyzer, min_relevance: float) -> list[FactSentence]:
    q = {t for t in analyzer.tokenize(question) if not t.replace(".", "").isdigit()}
    out = []
    for i, p in enumerate(passages):
        for s in split_sentences(p.text):
            vals = numbers(s)
            if not vals:
                continue
            words = frozenset(t for t in analyzer.tokenize(s) if not t.replace(".", "").isdigit())
            rel = len(q & words) / len(q) if q else 0.0
            if rel >= min_relevance:
                out.append(FactSentence(i, s, words, frozenset(vals), rel))
    return out


def _date(p: Passage) -> str:
    return p.hit.chunk.document_date or ""


def preference(a: Passage, b: Passage, year: int | None = None) -> tuple[Passage, Passage, str]:
    """Order two sources: the one in force in the year the question names ("under the 2023 policy"), else the newer
    effective date, then higher authority; say why."""
    da, db = _date(a), _date(b)
    if year is not None and da and db:
        end = f"{year:04d}-12-31"
        if da <= end < db:
            return a, b, f"the version in force in {year} ({da}; {db} is later)"
        if db <= end < da:
            return b, a, f"the version in force in {year} ({db}; {da} is later)"
    if da != db and da and db:
        return (a, b, f"newer ({da} > {db})") if da > db else (b, a, f"newer ({db} > {da})")
    aa, ab = a.hit.chunk.authority or 0.0, b.hit.chunk.authority or 0.0
    if aa != ab:
        if aa > ab:
            return a, b, f"more authoritative ({aa:g} > {ab:g})"
        return b, a, f"more authoritative ({ab:g} > {aa:g})"
    if da != db:  # only one is dated
        return (a, b, "the only dated source") if da else (b, a, "the only dated source")
    return a, b, "ranked higher by retrieval (same date and authority)"


def same_subject(a: FactSentence, b: FactSentence, asked: frozenset[str], asked_values: frozenset[str] = frozenset()
                 ) -> bool:
    """Are two similar sentences about the same thing, with different values? Not when each names a part of the
    question the other lacks ("Intel's 2022 revenue" and "Nvidia's 2022 revenue" answer two parts of one question),
    nor when they state figures for different years (2022's and 2023's revenue are two facts), nor when they share a
    figure the question does not name: "10.51亿 users, 1919万 more" and "10.51亿 users, 74.4 % of the population"
    agree on the asked fact and add different ones (RGB's news passages, where every such pair was a false note)."""
    if (a.words - b.words) & asked and (b.words - a.words) & asked:
        return False
    if (a.values & b.values) - asked_values:
        return False
    ya, yb = {v for v in a.values if YEAR.fullmatch(v)}, {v for v in b.values if YEAR.fullmatch(v)}
    return not (ya and yb and ya != yb)


def find_disagreements(
    question: str,
    passages: Sequence[Passage],
    analyzer: Analyzer,
    min_relevance: float = 0.3,
    min_similarity: float = 0.5,
) -> list[Disagreement]:
    facts = _facts(question, passages, analyzer, min_relevance)
    asked = frozenset(t for t in analyzer.tokenize(question) if not t.replace(".", "").isdigit())
    asked_values = frozenset(numbers(question))
    years = set(YEAR.findall(question))
    year = int(years.pop()) if len(years) == 1 else None  # one named year picks the version in force then
    found: list[Disagreement] = []
    seen_pairs: set[tuple[int, int]] = set()
    for i, a in enumerate(facts):
        for b in facts[i + 1 :]:
            pa, pb = passages[a.passage_index], passages[b.passage_index]
            if pa.hit.chunk.doc_id == pb.hit.chunk.doc_id or a.values == b.values:
                continue
            if _jaccard(a.words, b.words) < min_similarity or not same_subject(a, b, asked, asked_values):
                continue
            pair = (min(a.passage_index, b.passage_index), max(a.passage_index, b.passage_index))
            if pair in seen_pairs:
                continue
            seen_pairs.add(pair)
            first, _second, reason = preference(pa, pb, year)
            pref, other = (a, b) if first is pa else (b, a)
            found.append(Disagreement(pref, other, reason))
    # Most relevant first: the disagreement about the asked fact, not an incidental one.
    found.sort(key=lambda d: -(d.preferred.relevance + d.other.relevance))
    return found
