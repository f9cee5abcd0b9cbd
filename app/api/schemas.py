"""Request and response bodies, with bounds on everything a client sends."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.conversations import ID_PATTERN
from app.errors import BadRequest

ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
CONVERSATION_ID = ID_PATTERN  # app/conversations.py


def _valid_date(v: str | None) -> str | None:
    if v is not None:
        dt.date.fromisoformat(v)  # raises ValueError -> 422 with the message
    return v


def _valid_unicode(v: object) -> object:
    # JSON may spell a lone UTF-16 surrogate ("\ud800"); Python keeps it in a str that SQLite, the tokenizers and
    # the response encoder all refuse with UnicodeEncodeError. Pydantic rejects it in a plain str field, not inside
    # lists or dicts, so every string of a request body is checked here.
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError("text must be valid Unicode, without lone surrogates (\\ud800-\\udfff)") from e
    elif isinstance(v, list | tuple):
        for x in v:
            _valid_unicode(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            _valid_unicode(k)
            _valid_unicode(x)
    return v


class RequestBody(BaseModel):
    """Base of every request body: unknown fields and invalid Unicode are 422."""

    model_config = ConfigDict(extra="forbid")
    _unicode = field_validator("*")(_valid_unicode)


# The date filters' rule, in the OpenAPI docs: it surprised a user when only a code comment said it.
DATE_RULE = (
    "Inclusive. A document passes when its effective date is in range, or when it has no effective date it can be "
    "held to: undated documents, and documents dated only by their file's modification time (`date_source` "
    '"mtime", which says when a copy was made, often the upload day, not when the text took effect), pass every '
    "date filter. Each hit carries `date_source` to tell them apart."
)


class FilterIn(RequestBody):
    doc_ids: list[str] | None = Field(None, max_length=1000)
    source_prefix: str | None = Field(None, max_length=4096)
    date_from: str | None = Field(None, pattern=ISO_DATE, description=f"YYYY-MM-DD, at most date_to. {DATE_RULE}")
    date_to: str | None = Field(None, pattern=ISO_DATE, description=f"YYYY-MM-DD, at least date_from. {DATE_RULE}")
    language: str | None = Field(None, max_length=16)
    kinds: list[Literal["text", "table", "image"]] | None = None
    metadata: dict[str, str] | None = Field(None, max_length=32)

    _dates = field_validator("date_from", "date_to")(_valid_date)

    @model_validator(mode="after")
    def _date_order(self) -> FilterIn:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(
                f"date_from ({self.date_from}) is after date_to ({self.date_to}): no date is in that range; "
                "swap them, or give one bound"
            )
        return self


class SearchIn(RequestBody):
    query: str = Field(..., min_length=1, max_length=4000)
    collection: str | None = Field(None, max_length=64)
    top_k: int = Field(10, ge=1, le=100)
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    level: int | None = Field(None, ge=16, le=8192)
    filters: FilterIn | None = None


class ChunkOut(BaseModel):
    chunk_id: int
    doc_id: str
    title: str
    source_path: str
    text: str
    score: float
    scores: dict[str, float]
    kind: str
    heading_path: list[str]
    page_start: int | None
    page_end: int | None
    effective_date: str | None
    date_source: str = Field(description='where effective_date came from; "mtime" and "none" pass date filters')
    level: int


class SearchOut(BaseModel):
    collection: str
    results: list[ChunkOut]
    timings_ms: dict[str, float]


class CollectionOut(BaseModel):
    name: str
    embedder: str
    documents: int
    chunks: int


class DocumentOut(BaseModel):
    doc_id: str
    title: str
    source_path: str
    sources: list[str]
    mime: str
    effective_date: str | None
    date_source: str = Field(description='where effective_date came from; "mtime" and "none" pass date filters')
    authority: float | None
    language: str | None
    ingested_at: str
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="user metadata (sidecar, ingest --meta); `upload_name`: the client's name "
                                          "of an upload stored under another name")


class ErrorOut(BaseModel):
    detail: str


class Turn(RequestBody):
    role: Literal["user", "assistant"]
    content: str = Field(..., max_length=4000)


class AskIn(RequestBody):
    question: str = Field(..., min_length=1, max_length=2000)
    collection: str | None = Field(None, max_length=64)
    history: list[Turn] = Field(default_factory=list, max_length=20)
    top_k: int = Field(6, ge=1, le=20)
    as_of: str | None = Field(None, pattern=ISO_DATE, description="answer as of this date (YYYY-MM-DD)")
    hyde: bool = False
    multi_query: bool = False
    max_rounds: int = Field(3, ge=1, le=5)
    allow_model_knowledge: bool = Field(False, description="may answer from the model's own knowledge, marked uncited")
    degrade_to_retrieval: bool = Field(False, description="if the LLM is down, return sources without an answer")
    filters: FilterIn | None = None
    stream: bool = Field(False, description="Server-Sent Events: text deltas, then a final event")
    conversation_id: str | None = Field(
        None, pattern=CONVERSATION_ID, description="a server-side conversation (created on first use): its turns are "
        "the history, and this question and its answer are added to it; not together with `history`")

    _as_of = field_validator("as_of")(_valid_date)


class CitationOut(BaseModel):
    marker: int
    chunk_id: int
    doc_id: str
    title: str
    source_path: str
    page: int | None
    quote: str
    effective_date: str | None
    supported: bool
    support_score: float | None


class ConflictOut(BaseModel):
    claim: str
    preferred: CitationOut
    other: CitationOut
    reason: str


class RetrievedOut(BaseModel):
    chunk_id: int
    doc_id: str
    title: str
    source_path: str
    score: float
    effective_date: str | None
    date_source: str = Field("none", description="where effective_date came from; `mtime` (the file's time) is weak "
                             "evidence and is ignored by date filters and the knowledge cut-off")


class AskOut(BaseModel):
    answer: str
    status: Literal["answered", "no_answer", "partial", "retrieval_only"]
    citations: list[CitationOut]
    conflicts: list[ConflictOut]
    knowledge_cutoff: str | None
    retrieved: list[RetrievedOut]
    trace: dict[str, object]
    usage: dict[str, int]
    conversation_id: str | None = None


# ---- browsing around an answer: chunks, conversations, feedback (app/api/browse.py) ---------------------------------


class ChunkDetailOut(BaseModel):
    chunk_id: int
    collection: str
    doc_id: str
    doc_title: str
    source_path: str
    mime: str
    text: str
    kind: str
    section_title: str | None = Field(description="the innermost heading above the chunk")
    section_path: list[str] = Field(description="the headings above the chunk, outermost first")
    page_start: int | None
    page_end: int | None
    effective_date: str | None
    date_source: str
    level: int
    position: int
    previous_chunk_id: int | None = Field(description="the chunk before this one in the document (same level)")
    next_chunk_id: int | None
    file_url: str = Field(description="the original file: GET it for the bytes")
    highlights: list[tuple[int, int]] = Field(
        default_factory=list, description="with `?quote=`: where the quote is in `text`, [start, end) characters")


class FeedbackIn(RequestBody):
    collection: str | None = Field(None, max_length=64)
    question: str = Field(..., min_length=1, max_length=4000)
    answer: str = Field(..., max_length=20_000)
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=4000)
    conversation_id: str | None = Field(None, pattern=CONVERSATION_ID)
    citations: list[dict[str, Any]] = Field(default_factory=list, max_length=50,
                                            description="the answer's citations, as /ask returned them")


class FeedbackOut(BaseModel):
    feedback_id: int
    created_at: str
    collection: str
    question: str
    answer: str
    rating: Literal["up", "down"]
    comment: str | None
    conversation_id: str | None
    citations: list[dict[str, Any]]
    key_name: str | None


# ---- the OpenAI-compatible endpoint (app/api/openai_compat.py) -----------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = Field(None, max_length=8000)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls...: accepted, not used
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    _unicode = field_validator("*")(_valid_unicode)

    def text(self) -> str:
        """The message's text; a part that is not text (an image) is 400: this model reads text only."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if bad := sorted({p.type for p in self.content if p.type != "text"}):
            raise BadRequest(f"only text content is supported, got content parts of type {bad}")
        return "".join(p.text or "" for p in self.content)


class RagqaOptions(RequestBody):
    """What /ask takes beyond the messages, in the request's `ragqa` field (the openai client: `extra_body`)."""

    top_k: int = Field(6, ge=1, le=20)
    as_of: str | None = Field(None, pattern=ISO_DATE)
    max_rounds: int = Field(3, ge=1, le=5)
    hyde: bool = False
    multi_query: bool = False
    filters: FilterIn | None = None

    _as_of = field_validator("as_of")(_valid_date)


class ChatCompletionIn(BaseModel):
    # Clients send sampling parameters (temperature, top_p, seed, ...) that a grounded answer does not take: they are
    # accepted and ignored rather than failing every off-the-shelf client.
    model_config = ConfigDict(extra="ignore")
    model: str = Field(..., min_length=1, max_length=64, description="the collection to answer from")
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=200)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=1)
    conversation_id: str | None = Field(None, pattern=CONVERSATION_ID)
    ragqa: RagqaOptions | None = None
