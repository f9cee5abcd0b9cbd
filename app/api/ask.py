"""POST /ask: the answering endpoint, JSON or Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from app.api.routes import ERRORS, Reader
from app.api.schemas import AskIn, AskOut, ErrorOut
from app.pipeline import AnswerPipeline, AskRequest
from app.service import make_filter
from retrieval.types import Answer

router = APIRouter()
RESPONSES = {**ERRORS, 429: {"model": ErrorOut}, 503: {"model": ErrorOut}}


def to_request(body: AskIn, default_collection: str) -> AskRequest:
    f = body.filters
    return AskRequest(
        question=body.question, collection=body.collection or default_collection,
        history=tuple((t.role, t.content) for t in body.history), top_k=body.top_k, as_of=body.as_of,
        hyde=body.hyde, multi_query=body.multi_query, max_rounds=body.max_rounds,
        allow_model_knowledge=body.allow_model_knowledge, degrade_to_retrieval=body.degrade_to_retrieval,
        filter=make_filter(**f.model_dump()) if f else make_filter(),
    )


def answer_json(a: Answer) -> dict[str, Any]:
    return {
        "answer": a.answer, "status": a.status,
        "citations": [asdict(c) for c in a.citations],
        "conflicts": [{"claim": c.claim, "preferred": asdict(c.preferred), "other": asdict(c.other),
                       "reason": c.reason} for c in a.conflicts],
        "knowledge_cutoff": a.knowledge_cutoff,
        "retrieved": [
            {"chunk_id": h.chunk.chunk_id, "doc_id": h.chunk.doc_id, "title": h.chunk.title,
             "source_path": h.chunk.source_path, "score": h.score, "effective_date": h.chunk.effective_date}
            for h in a.retrieved
        ],
        "trace": a.trace, "usage": a.usage,
    }


@router.post("/ask", response_model=AskOut, responses=RESPONSES)
async def ask(body: AskIn, request: Request, key: Reader) -> Any:
    pipeline: AnswerPipeline = request.app.state.pipeline
    req = to_request(body, request.app.state.default_collection)
    key.check(req.collection)  # before admission and any LLM work
    admission = request.app.state.admission
    if not body.stream:
        async with admission.slot():
            return answer_json(await pipeline.answer(req))

    # Admission is decided before the stream starts, so an overloaded server still answers 429, not a broken stream.
    slot = admission.slot()
    await slot.__aenter__()

    async def events() -> AsyncIterator[str]:
        try:
            async for ev in pipeline.stream(req):
                if "delta" in ev:
                    yield f"data: {json.dumps({'type': 'delta', 'text': ev['delta']}, ensure_ascii=False)}\n\n"
                else:
                    payload = {"type": "final", **answer_json(ev["final"])}
                    yield f"event: final\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"
        except Exception as e:  # the status line is gone; report in-band and end the stream
            yield f"event: error\ndata: {json.dumps({'type': 'error', 'detail': str(e)})}\n\n"
        finally:
            await slot.__aexit__(None, None, None)

    return StreamingResponse(events(), media_type="text/event-stream")
