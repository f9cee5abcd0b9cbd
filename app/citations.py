"""Citations: read the [n] markers of a generated answer, check each against its source, keep what holds.

Support is scored in code (the default, deterministic and fast): the share of the sentence's content words found in one
sentence of the source, and every number in the sentence must appear there. Unsupported citations are dropped; a
sentence without markers gets the source that supports it best, if one does; sentences left without support are
reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.analyzer import Analyzer
from retrieval.expand import Passage
from retrieval.injection import looks_like_instruction
from retrieval.text import markers, numbers, split_sentences, strip_markers
from retrieval.types import Chunk, Citation


@dataclass(frozen=True)
class SentenceCheck:
    sentence: str
    cited: tuple[int, ...]  # markers kept (1-based passage numbers)
    dropped: tuple[int, ...]  # markers the source did not support
    supported: bool
    added: bool = False  # the citation was attached here, not written by the model


@dataclass(frozen=True)
class CitationReport:
    citations: tuple[Citation, ...]
    sentences: tuple[SentenceCheck, ...]

    @property
    def coverage(self) -> float:
        factual = [s for s in self.sentences if _is_factual(s.sentence)]
        return sum(1 for s in factual if s.supported) / len(factual) if factual else 1.0

    @property
    def unsupported(self) -> list[str]:
        return [s.sentence for s in self.sentences if _is_factual(s.sentence) and not s.supported]


def _is_factual(sentence: str) -> bool:
    """Headings, bare markers and one-word fragments carry no claim to support."""
    core = strip_markers(sentence).strip(" .。:：-*#")
    return len(core) >= 6


class SupportScorer:
    def __init__(self, analyzer: Analyzer, threshold: float = 0.5) -> None:
        self.analyzer = analyzer
        self.threshold = threshold

    def best_span(self, claim: str, source: str, ignore: frozenset[str] = frozenset()) -> tuple[float, str]:
        """(support score, the source sentence that supports the claim best); numbers in `ignore` need no support."""
        words = set(self.analyzer.tokenize(strip_markers(claim)))
        nums = numbers(claim) - ignore
        best, span = 0.0, ""
        for s in split_sentences(source) or [source]:
            if looks_like_instruction(s):  # an order to the assistant supports nothing (retrieval/injection.py)
                continue
            toks = set(self.analyzer.tokenize(s))
            score = len(words & toks) / len(words) if words else 0.0
            if nums and not nums <= numbers(s):
                score *= 0.5  # a claim whose numbers the source doesn't state is not supported by it
            if score > best:
                best, span = score, s
        if nums and not nums <= numbers(source):
            best = min(best, self.threshold - 1e-6)
        return best, span


def check_citations(
    answer: str,
    passages: Sequence[Passage],
    chunks_by_id: dict[int, Chunk],
    scorer: SupportScorer,
    ignore_numbers: frozenset[str] = frozenset(),
) -> CitationReport:
    """Each sentence's citations checked against the cited text. `ignore_numbers`: numbers the answer may state
    without a source, such as the year a question asks about when the answer says what held as of an earlier date."""
    checks: list[SentenceCheck] = []
    used: dict[int, Citation] = {}
    for sentence in _answer_sentences(answer):
        wanted = [m for m in markers(sentence) if 1 <= m <= len(passages)]
        kept, dropped = [], []
        for m in wanted:
            score, span = scorer.best_span(sentence, passages[m - 1].text, ignore_numbers)
            if score >= scorer.threshold:
                kept.append(m)
                used.setdefault(m, _citation(m, passages[m - 1], span, score, chunks_by_id))
            else:
                dropped.append(m)
        added = False
        if not kept and _is_factual(sentence):
            scored = [(scorer.best_span(sentence, p.text, ignore_numbers), i + 1) for i, p in enumerate(passages)]
            if scored:
                (score, span), m = max(scored, key=lambda x: x[0][0])
                if score >= max(scorer.threshold, 0.6):
                    kept.append(m)
                    added = True
                    used.setdefault(m, _citation(m, passages[m - 1], span, score, chunks_by_id))
        checks.append(SentenceCheck(sentence, tuple(kept), tuple(dropped), bool(kept), added))
    return CitationReport(tuple(used[m] for m in sorted(used)), tuple(checks))


def _answer_sentences(answer: str) -> list[str]:
    """The answer's sentences, a marker written after the full stop ("导演辛爽。[2]") joined to the sentence it ends:
    split alone, the sentence would have no citation and the marker no sentence."""
    out: list[str] = []
    for s in split_sentences(answer):
        if out and markers(s) and not strip_markers(s).strip(" .。"):
            out[-1] += s
        else:
            out.append(s)
    return out


def _citation(marker: int, p: Passage, span: str, score: float, chunks_by_id: dict[int, Chunk]) -> Citation:
    """Point at the exact chunk holding the quoted span (a section spans several chunks)."""
    chunk = p.hit.chunk
    for cid in p.chunk_ids:
        c = chunks_by_id.get(cid)
        if c is not None and span and span in c.text:
            chunk = c
            break
    return Citation(
        marker=marker, chunk_id=chunk.chunk_id, doc_id=chunk.doc_id, title=chunk.title,
        source_path=chunk.source_path, page=chunk.page_start, quote=span or chunk.text[:300],
        effective_date=chunk.effective_date, supported=True, support_score=round(score, 3),
    )


def render_with_markers(report: CitationReport) -> str:
    """The answer rewritten with only the citations that held (dropped markers removed, added ones appended)."""
    out = []
    for s in report.sentences:
        text = strip_markers(s.sentence)
        if s.cited:
            tail = ""
            if text and text[-1] in ".。!！?？":
                text, tail = text[:-1], text[-1]
            text = text + "".join(f" [{m}]" for m in s.cited) + tail
        out.append(text)
    joined = ""
    for piece in out:  # Chinese sentences follow each other without a space; Latin ones with one
        cjk = joined and ("\u3000" <= joined[-1] <= "\u9fff" or "\uff00" <= joined[-1] <= "\uffef")
        joined += piece if not joined or cjk else " " + piece
    return joined
