"""Value types shared by ingest, retrieval, app and eval.

Frozen dataclasses: cheap to build, hashable where it matters, and safe to pass between threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ElementKind = Literal["title", "heading", "paragraph", "table", "image", "list_item"]
DateSource = Literal["explicit", "metadata", "title", "content", "filename", "mtime", "none"]


@dataclass(frozen=True)
class Document:
    """One ingested file (or one logical document of a data set) in a collection."""

    doc_id: str
    collection: str
    source_path: str
    title: str
    mime: str
    content_hash: str
    effective_date: str | None  # ISO date, YYYY-MM-DD
    date_source: DateSource
    ingested_at: str  # ISO timestamp, UTC
    authority: float | None = None
    language: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Every path this exact content was seen under (exact duplicates are stored once).
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A piece of a document at one granularity, linked to its section for small-to-big."""

    chunk_id: int
    doc_id: str
    collection: str
    text: str
    level: int  # target size in tokens (e.g. 128, 256, 512)
    position: int  # order of the chunk within the document at this level
    section_id: int | None
    heading_path: tuple[str, ...] = ()
    kind: str = "text"  # "text" | "table" | "image"
    page_start: int | None = None
    page_end: int | None = None
    char_start: int | None = None  # offsets into the document's extracted text
    char_end: int | None = None
    token_count: int = 0
    near_dup_of: int | None = None  # chunk_id of an earlier chunk with cosine >= threshold
    # Denormalised document fields that ranking and citing need without a join.
    title: str = ""
    source_path: str = ""
    effective_date: str | None = None
    authority: float | None = None
    language: str | None = None
    family: str | None = None  # documents that are versions of each other share a family
    date_source: str = "none"  # where effective_date came from; "mtime" is weak evidence, ignored for time logic

    @property
    def document_date(self) -> str | None:
        """The date the document states (explicit, metadata, title, content, file name), not its file's copy time."""
        return self.effective_date if self.effective_date and self.date_source != "mtime" else None


@dataclass(frozen=True)
class ScoredChunk:
    chunk: Chunk
    score: float
    # Per-stage scores and ranks, e.g. {"dense": 0.71, "sparse": 12.3, "fused": 0.032}.
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Citation:
    marker: int  # the n in [n]
    chunk_id: int
    doc_id: str
    title: str
    source_path: str
    page: int | None
    quote: str  # the supporting span, copied from the chunk
    effective_date: str | None
    supported: bool = True
    support_score: float | None = None


@dataclass(frozen=True)
class Conflict:
    """Two sources that disagree on the asked fact; `preferred` is the one the answer follows."""

    claim: str
    preferred: Citation
    other: Citation
    reason: str  # e.g. "newer (2024-03-01 > 2023-01-15)"


@dataclass(frozen=True)
class Answer:
    answer: str
    status: Literal["answered", "no_answer", "partial", "retrieval_only"]
    citations: tuple[Citation, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    knowledge_cutoff: str | None = None
    retrieved: tuple[ScoredChunk, ...] = ()
    trace: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)


def answer_dict(a: Answer) -> dict[str, Any]:
    """An Answer as the JSON that POST /ask returns (and evaluation runs store)."""
    from dataclasses import asdict

    return {
        "answer": a.answer, "status": a.status,
        "citations": [asdict(c) for c in a.citations],
        "conflicts": [{"claim": c.claim, "preferred": asdict(c.preferred), "other": asdict(c.other),
                       "reason": c.reason} for c in a.conflicts],
        "knowledge_cutoff": a.knowledge_cutoff,
        "retrieved": [
            {"chunk_id": h.chunk.chunk_id, "doc_id": h.chunk.doc_id, "title": h.chunk.title,
             "source_path": h.chunk.source_path, "score": h.score, "effective_date": h.chunk.effective_date,
             "date_source": h.chunk.date_source}
            for h in a.retrieved
        ],
        "trace": a.trace, "usage": a.usage,
    }
