"""Thin routers: validate, call the service off the event loop, shape the response."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.api.auth import Access, require_key
from app.api.schemas import ChunkOut, CollectionOut, DocumentOut, ErrorOut, SearchIn, SearchOut
from app.errors import BadRequest, NotFound, Unavailable
from app.service import SearchService, make_filter
from retrieval.collection import check_name
from retrieval.search import SearchParams

log = logging.getLogger("ragqa.api")
router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut},
}


def service(request: Request) -> SearchService:
    svc: SearchService = request.app.state.service
    return svc


def reader(request: Request) -> Access:
    return require_key(request, write=False)


def writer(request: Request) -> Access:
    return require_key(request, write=True)


Svc = Annotated[SearchService, Depends(service)]
Reader = Annotated[Access, Depends(reader)]
Writer = Annotated[Access, Depends(writer)]
# Job ids are SQLite INTEGERs: a larger number could not name a job, and SQLite would refuse to even look it up.
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorOut}})
async def readyz(request: Request, svc: Svc) -> dict[str, object]:
    """Ready when the store opens and the LLM server lists the model we send (the LoRA adapter's name on vLLM)."""
    cols = await run_in_threadpool(svc.collections)
    llm = request.app.state.llm
    try:
        models = await llm.models()
    except Exception as e:
        raise Unavailable(f"LLM server at {llm.base_url} is not reachable: {e}") from e
    if llm.model not in models:
        raise Unavailable(f"LLM server at {llm.base_url} does not serve model {llm.model!r} (it has {models})")
    out: dict[str, object] = {"status": "ready", "llm": {"base_url": llm.base_url, "model": llm.model}}
    if not request.app.state.api_keys:  # with keys, only GET /collections names them, to the keys that may see them
        out["collections"] = cols
    return out


@router.post("/search", response_model=SearchOut, responses=ERRORS)
async def search(body: SearchIn, request: Request, svc: Svc, key: Reader) -> SearchOut:
    name = body.collection or request.app.state.default_collection
    key.check(name)
    f = body.filters
    params = SearchParams(
        mode=body.mode, level=body.level,
        filter=make_filter(**f.model_dump()) if f else make_filter(),
    )
    retriever = await run_in_threadpool(svc.retriever, name)
    hits = await run_in_threadpool(retriever.search, body.query, body.top_k, params)
    return SearchOut(
        collection=name,
        results=[
            ChunkOut(
                chunk_id=h.chunk.chunk_id, doc_id=h.chunk.doc_id, title=h.chunk.title,
                source_path=h.chunk.source_path, text=h.chunk.text, score=h.score, scores=h.scores,
                kind=h.chunk.kind, heading_path=list(h.chunk.heading_path), page_start=h.chunk.page_start,
                page_end=h.chunk.page_end, effective_date=h.chunk.effective_date, level=h.chunk.level,
            )
            for h in hits
        ],
        timings_ms={k: round(v * 1000, 2) for k, v in retriever.last_timings.items()},
    )


@router.get("/collections", response_model=list[CollectionOut], responses=ERRORS)
async def collections(svc: Svc, key: Reader) -> list[CollectionOut]:
    """The collections this key may use."""
    names = key.visible(await run_in_threadpool(svc.collections))
    infos = [await run_in_threadpool(svc.info, n) for n in names]
    return [CollectionOut(**i.__dict__) for i in infos]


@router.get("/collections/{name}", response_model=CollectionOut, responses=ERRORS)
async def collection(name: str, svc: Svc, key: Reader) -> CollectionOut:
    key.check(name)
    info = await run_in_threadpool(svc.info, name)
    return CollectionOut(**info.__dict__)


@router.get("/collections/{name}/documents", response_model=list[DocumentOut], responses=ERRORS)
async def documents(name: str, svc: Svc, key: Reader) -> list[DocumentOut]:
    key.check(name)
    docs = await run_in_threadpool(svc.documents, name)
    return [
        DocumentOut(
            doc_id=d.doc_id, title=d.title, source_path=d.source_path, sources=list(d.sources), mime=d.mime,
            effective_date=d.effective_date, date_source=d.date_source, authority=d.authority,
            language=d.language, ingested_at=d.ingested_at,
        )
        for d in docs
    ]


@router.delete("/collections/{name}/documents/{doc_id}", responses=ERRORS)
async def delete_document(name: str, doc_id: str, svc: Svc, key: Writer) -> dict[str, object]:
    key.check(name, write=True)
    n = await run_in_threadpool(svc.delete_document, name, doc_id)
    return {"deleted": doc_id, "chunks": n}


# ---- ingest jobs: uploads, job status ------------------------------------------------------------------------------


@router.post(
    "/collections/{name}/documents", status_code=202,
    responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 411: {"model": ErrorOut},
               413: {"model": ErrorOut}, 415: {"model": ErrorOut}},
)
async def upload_documents(
    name: str, request: Request, key: Writer,
    files: Annotated[list[UploadFile], File(description="one or more files")],
    date: Annotated[str | None, Form(description="effective date for these files (YYYY[-MM[-DD]])")] = None,
    authority: Annotated[float | None, Form(description="authority of these sources", allow_inf_nan=False)] = None,
) -> JSONResponse:
    """Store the files under the collection's upload folder and queue an ingest job: 202 with the job id."""
    from app.uploads import check_extension, save_upload, supported_extensions

    key.check(name, write=True)
    try:
        check_name(name)
    except ValueError as e:
        raise BadRequest(str(e)) from e
    if date is not None:
        from ingest.dates import parse_user_date

        try:
            date = parse_user_date(date)
        except ValueError as e:
            raise BadRequest(str(e)) from e
    s = request.app.state.settings
    supported = supported_extensions()
    for f in files:  # check every file before storing any
        check_extension(f.filename or "", supported)
    folder = s.data_dir / "uploads" / name
    saved = [
        await run_in_threadpool(save_upload, f.file, folder, f.filename or "upload", s.max_file_mb * 2**20)
        for f in files
    ]
    options = {k: v for k, v in {"date": date, "authority": authority}.items() if v is not None}
    job_id = await run_in_threadpool(request.app.state.jobs.enqueue, name, [str(p) for p in saved], options)
    log.info("queued job %d: %d file(s) for %s", job_id, len(saved), name, extra={"job_id": job_id})
    return JSONResponse(
        {"job_id": job_id, "status": "queued", "collection": name, "files": [p.name for p in saved],
         "status_url": f"/jobs/{job_id}"},
        status_code=202, headers={"Location": f"/jobs/{job_id}"},
    )


@router.get("/jobs", responses=ERRORS)
async def jobs(request: Request, key: Reader, status: str | None = None, limit: int = 50) -> list[dict[str, object]]:
    """The newest jobs of the collections this key may use."""
    from ingest.jobs import STATUSES

    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {list(STATUSES)}, got {status!r}")
    scope = None if key.collections is None else sorted(key.collections)
    rows = await run_in_threadpool(request.app.state.jobs.list_jobs, status, max(1, min(limit, 500)), scope)
    return [j.to_json() for j in rows]


@router.get("/jobs/{job_id}", responses=ERRORS)
async def job(job_id: JobId, request: Request, key: Reader) -> dict[str, object]:
    q = request.app.state.jobs
    j = await run_in_threadpool(q.get, job_id)
    if j is None:
        raise NotFound(f"job {job_id} not found")
    key.check(j.collection)
    out = j.to_json()
    out["attempt_log"] = [a.__dict__ for a in await run_in_threadpool(q.attempts, job_id)]
    return out


@router.get("/metrics", responses=ERRORS)
async def metrics(request: Request, key: Reader) -> Response:
    key.check_every_collection("/metrics")  # the metrics name every collection
    body, ctype = await run_in_threadpool(request.app.state.metrics.exposition)
    return Response(body, media_type=ctype)
