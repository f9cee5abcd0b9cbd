"""Small-to-big: search small chunks, hand the reader their section (or neighbouring chunks) within a token budget.

The same text is never returned twice: hits in a section already returned are dropped, and neighbouring chunks are
joined on their character offsets so the overlap between consecutive windows appears once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.backend import DocumentStore
from retrieval.types import Chunk, ScoredChunk


@dataclass(frozen=True)
class Passage:
    hit: ScoredChunk  # the chunk that matched: citations point at it
    text: str  # what the reader sees: the chunk, its neighbours, or its whole section
    chunk_ids: tuple[int, ...]  # every chunk whose text is inside `text`
    token_count: int
    expanded: str  # "section" | "neighbors" | "chunk"


def join_chunks(chunks: Sequence[Chunk]) -> str:
    """Concatenate consecutive chunks of one document, writing their overlapping text once."""
    if not chunks:
        return ""
    out = chunks[0].text
    end = chunks[0].char_end
    for c in chunks[1:]:
        if end is not None and c.char_start is not None and c.char_start < end and c.kind == "text":
            overlap = end - c.char_start
            out += c.text[overlap:] if overlap < len(c.text) else ""
        else:
            out += "\n" + c.text
        end = c.char_end if c.char_end is not None else end
    return out


def expand(
    store: DocumentStore,
    hits: Sequence[ScoredChunk],
    budget_tokens: int = 2000,
    max_passage_tokens: int = 512,
    neighbors: int = 1,
) -> list[Passage]:
    if budget_tokens < 1 or max_passage_tokens < 1 or neighbors < 0:
        raise ValueError(
            f"need budget_tokens >= 1, max_passage_tokens >= 1, neighbors >= 0; got "
            f"{budget_tokens}, {max_passage_tokens}, {neighbors}"
        )
    out: list[Passage] = []
    covered: set[int] = set()
    sections_used: set[int] = set()
    used = 0
    for hit in hits:
        c = hit.chunk
        if c.chunk_id in covered or (c.section_id is not None and c.section_id in sections_used):
            continue
        passage = _section(store, hit, max_passage_tokens, covered) or _neighbors(
            store, hit, max_passage_tokens, neighbors, covered
        )
        if used + passage.token_count > budget_tokens:
            passage = Passage(hit, c.text, (c.chunk_id,), c.token_count, "chunk")
            if used + passage.token_count > budget_tokens:
                break
        out.append(passage)
        used += passage.token_count
        covered.update(passage.chunk_ids)
        if passage.expanded == "section" and c.section_id is not None:
            sections_used.add(c.section_id)
    return out


def _section(store: DocumentStore, hit: ScoredChunk, cap: int, covered: set[int]) -> Passage | None:
    c = hit.chunk
    if c.section_id is None:
        return None
    sec = store.section_text(c.section_id)
    if sec is None or sec[1] > cap:
        return None
    text, tokens = sec
    ids = tuple(x.chunk_id for x in store.doc_chunks(c.doc_id, c.level) if x.section_id == c.section_id)
    if covered.intersection(ids):  # part of it is already shown: don't show it twice
        return None
    return Passage(hit, text, ids or (c.chunk_id,), tokens, "section")


def _neighbors(store: DocumentStore, hit: ScoredChunk, cap: int, n: int, covered: set[int]) -> Passage:
    c = hit.chunk
    doc = store.doc_chunks(c.doc_id, c.level)
    pos = next((i for i, x in enumerate(doc) if x.chunk_id == c.chunk_id), None)
    if pos is None or n == 0:
        return Passage(hit, c.text, (c.chunk_id,), c.token_count, "chunk")
    window = [doc[pos]]
    tokens = c.token_count
    # Grow outwards, nearest first, staying in the section and within the cap.
    for step in range(1, n + 1):
        for j in (pos - step, pos + step):
            if (0 <= j < len(doc) and doc[j].section_id == c.section_id and doc[j].chunk_id not in covered
                    and tokens + doc[j].token_count <= cap):
                window.append(doc[j])
                tokens += doc[j].token_count
    window.sort(key=lambda x: x.position)
    kind = "neighbors" if len(window) > 1 else "chunk"
    return Passage(hit, join_chunks(window), tuple(x.chunk_id for x in window), tokens, kind)
