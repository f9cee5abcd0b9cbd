"""Around an answer: the cited chunk and its original file, server-side conversations, and feedback on answers.

Chunks and files are read under the same key scopes as search (a key that may not see the collection gets 403);
a conversation is visible to a key that may see its collection, and 404 alike when absent or out of scope.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from app.api.auth import Access
from app.api.routes import ERRORS, Reader, Svc
from app.api.schemas import ChunkDetailOut, FeedbackIn, FeedbackOut
from app.conversations import Conversation, ConversationStore, check_id
from app.errors import BadRequest, Conflict, NotFound
from app.feedback import FeedbackStore, NewFeedback
from app.pipeline import AskRequest
from app.service import SearchService
from retrieval.evidence import rows_as_records
from retrieval.types import Answer, Document

router = APIRouter()
ChunkId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]
# Types a browser would run as a page of this origin (where the web page keeps the API key): an ingested HTML file is
# data, so it is served sandboxed, without scripts or access to the origin.
_ACTIVE = ("text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml")


# ---- chunks and files ----------------------------------------------------------------------------------------------


@router.get("/collections/{name}/chunks/{chunk_id}", response_model=ChunkDetailOut, responses=ERRORS)
async def chunk(
    name: str, chunk_id: ChunkId, svc: Svc, key: Reader,
    quote: Annotated[str | None, Query(max_length=4000, description="a citation's quote: `highlights` says where it "
                                                                   "is in the text")] = None,
) -> ChunkDetailOut:
    """One chunk with its section, document, page, date and neighbours (the chunks before and after it)."""
    key.check(name)
    out = await run_in_threadpool(_chunk_detail, svc, name, chunk_id)
    return out.model_copy(update={"highlights": locate(quote, out.text)}) if quote else out


def locate(quote: str, text: str) -> list[tuple[int, int]]:
    """Where a citation's quote is in its chunk's text, as [start, end) character ranges: the span itself (spacing
    may differ), or, for table rows quoted as records ("Code: E6; Meaning: ..."), the rows' lines. [] if not found."""
    words = quote.split()
    if not words:
        return []
    if m := re.search(r"\s+".join(map(re.escape, words)), text):
        return [(m.start(), m.end())]
    target, found = " ".join(words), []
    header: str | None = None
    pos = 0
    for line in text.splitlines(keepends=True):
        start, pos = pos, pos + len(line)
        if not line.lstrip().startswith("|"):
            header = None
        elif header is None:
            header = line
        elif (record := " ".join(rows_as_records(header + line).split())) and record in target:
            found.append((start, start + len(line.rstrip("\r\n"))))
    return found


def _chunk_detail(svc: SearchService, name: str, chunk_id: int) -> ChunkDetailOut:
    store = svc.retriever(name).collection.store
    found = store.chunks([chunk_id])
    if not found:
        raise NotFound(f"chunk {chunk_id} not found in collection {name!r}")
    c = found[0]
    doc = store.document(c.doc_id)
    siblings = [x.chunk_id for x in store.doc_chunks(c.doc_id, c.level)]
    i = siblings.index(c.chunk_id) if c.chunk_id in siblings else -1
    return ChunkDetailOut(
        chunk_id=c.chunk_id, collection=name, doc_id=c.doc_id, doc_title=c.title, source_path=c.source_path,
        mime=doc.mime if doc else "application/octet-stream", text=c.text, kind=c.kind,
        section_title=c.heading_path[-1] if c.heading_path else None, section_path=list(c.heading_path),
        page_start=c.page_start, page_end=c.page_end, effective_date=c.effective_date, date_source=c.date_source,
        level=c.level, position=c.position,
        previous_chunk_id=siblings[i - 1] if i > 0 else None,
        next_chunk_id=siblings[i + 1] if 0 <= i < len(siblings) - 1 else None,
        file_url=f"/collections/{name}/documents/{quote(c.doc_id, safe='')}/file",
    )


@router.get("/collections/{name}/documents/{doc_id}/file", response_class=FileResponse,
            responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}})
async def document_file(name: str, doc_id: str, svc: Svc, key: Reader) -> FileResponse:
    """The original file of a document (an upload, or the path it was ingested from), with its content type."""
    key.check(name)
    doc, path = await run_in_threadpool(_original, svc, name, doc_id)
    ctype = doc.mime if doc.mime and doc.mime != "application/octet-stream" else (
        mimetypes.guess_type(path.name)[0] or "application/octet-stream")
    headers = {"X-Content-Type-Options": "nosniff"}
    if ctype in _ACTIVE:
        headers["Content-Security-Policy"] = "sandbox"
    return FileResponse(path, media_type=ctype, filename=path.name, content_disposition_type="inline",
                        headers=headers)


def _original(svc: SearchService, name: str, doc_id: str) -> tuple[Document, Path]:
    doc = svc.retriever(name).collection.store.document(doc_id)
    if doc is None:
        raise NotFound(f"document {doc_id!r} not found in collection {name!r}")
    # Every path this content was ingested from; the first still on disk serves (a duplicate's copy is the same bytes).
    for p in dict.fromkeys((*doc.sources, doc.source_path)):
        path = Path(p)
        if path.is_file():
            return doc, path
    raise NotFound(f"the original file of document {doc_id!r} is no longer on disk (it was ingested from "
                   f"{doc.source_path!r}); re-upload it to serve it again")


# ---- conversations -------------------------------------------------------------------------------------------------


def conversation_store(request: Request) -> ConversationStore:
    store: ConversationStore = request.app.state.conversations
    return store


def _visible(conv: Conversation | None, conversation_id: str, key: Access) -> Conversation:
    """404 alike for an absent conversation and one of a collection the key may not see: ids tell nothing."""
    if conv is None or not key.can_see(conv.collection):
        raise NotFound(f"conversation {conversation_id!r} not found")
    return conv


def with_conversation(store: ConversationStore, req: AskRequest, conversation_id: str | None,
                      key: Access) -> AskRequest:
    """The request with a stored conversation's turns as its history (a new id starts an empty one)."""
    if conversation_id is None:
        return req
    if req.history:
        raise BadRequest("send either `history` or `conversation_id`, not both: a conversation keeps its own history")
    conv = store.get(check_id(conversation_id))
    if conv is None:
        return req
    conv = _visible(conv, conversation_id, key)
    if conv.collection != req.collection:
        raise Conflict(f"conversation {conversation_id!r} is about collection {conv.collection!r}, not "
                       f"{req.collection!r}: start a new conversation")
    return replace(req, history=conv.history())


def remember(store: ConversationStore, conversation_id: str | None, collection: str, question: str,
             answer: Answer) -> None:
    """Add the question and its answer to the conversation, if the request named one."""
    if conversation_id is None:
        return
    cites = [{"marker": c.marker, "chunk_id": c.chunk_id, "doc_id": c.doc_id, "title": c.title, "quote": c.quote}
             for c in answer.citations]
    store.append(conversation_id, collection, [
        ("user", question, {}),
        ("assistant", answer.answer, {"status": answer.status, "citations": cites}),
    ])


@router.get("/conversations/{conversation_id}", responses=ERRORS)
async def get_conversation(conversation_id: str, request: Request, key: Reader) -> dict[str, Any]:
    store = conversation_store(request)
    conv = await run_in_threadpool(store.get, check_id(conversation_id))
    return _visible(conv, conversation_id, key).to_json()


@router.delete("/conversations/{conversation_id}", responses=ERRORS)
async def delete_conversation(conversation_id: str, request: Request, key: Reader) -> dict[str, Any]:
    """Forget a conversation: any key that may read its collection may (the conversation is its asker's)."""
    store = conversation_store(request)
    conv = await run_in_threadpool(store.get, check_id(conversation_id))
    _visible(conv, conversation_id, key)
    await run_in_threadpool(store.delete, conversation_id)
    return {"deleted": conversation_id}


# ---- feedback ------------------------------------------------------------------------------------------------------


def feedback_store(request: Request) -> FeedbackStore:
    store: FeedbackStore = request.app.state.feedback
    return store


@router.post("/feedback", status_code=201, response_model=FeedbackOut, responses=ERRORS)
async def post_feedback(body: FeedbackIn, request: Request, key: Reader) -> FeedbackOut:
    """Thumbs up or down on an answer (any key that may read the collection: the people asking are the raters)."""
    name = body.collection or request.app.state.default_collection
    key.check(name)
    f = await run_in_threadpool(feedback_store(request).add, NewFeedback(
        collection=name, question=body.question, answer=body.answer, rating=body.rating, comment=body.comment,
        conversation_id=body.conversation_id, citations=tuple(body.citations), key_name=key.name))
    return FeedbackOut(**f.to_json())


@router.get("/feedback", response_model=list[FeedbackOut], responses=ERRORS)
async def list_feedback(
    request: Request, key: Reader, collection: str | None = None, rating: Literal["up", "down"] | None = None,
    after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[FeedbackOut]:
    """Feedback oldest first, after `after_id` (pass the last id seen to page on), of the collections the key sees.
    With keys configured a key is needed, as everywhere; a key limited to some collections sees only theirs."""
    if collection is not None:
        key.check(collection)
    scope = [collection] if collection is not None else (None if key.collections is None else sorted(key.collections))
    rows = await run_in_threadpool(feedback_store(request).list, scope, rating, after_id, limit)
    return [FeedbackOut(**f.to_json()) for f in rows]
