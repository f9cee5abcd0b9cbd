"""Thin routers: validate, call the service off the event loop, shape the response."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.api.auth import Access, authenticate, require_key
from app.api.schemas import ChunkOut, CollectionOut, DocumentOut, ErrorOut, SearchIn, SearchOut
from app.errors import BadRequest, Conflict, NotFound, Unauthorized, Unavailable
from app.service import SearchService, make_filter
from ingest.jobs import FINISHED, Job
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
    """Ready when the store opens, the LLM server lists the model we send (the LoRA adapter's name on vLLM) and
    the embedded ingest worker, if any, is kept running. Open to all: which dependency is down, never where it is,
    unless the caller holds a key for every collection (or no keys are configured)."""
    cols = await run_in_threadpool(svc.collections)
    operator = _operator(request)
    worker = request.app.state.worker
    if worker is not None and worker.failure:
        raise Unavailable(f"not ready: {worker.failure}")
    llm = request.app.state.llm
    down = llm.diagnose() if llm.diagnose else None
    if down:  # the embedded model failed for good: what died and what to do (no address, no log path)
        raise Unavailable(f"not ready: {down}")
    where = f" at {llm.base_url}" if operator else ""
    try:
        models = await llm.models()
    except Exception as e:
        log.warning("readyz: LLM server at %s is not reachable: %s", llm.base_url, e)
        why = f": {e}" if operator else f" ({type(e).__name__})"
        raise Unavailable(f"not ready: the LLM server{where} is not reachable{why}") from e
    if llm.model not in models:
        raise Unavailable(f"not ready: the LLM server{where} does not serve model {llm.model!r} (it has {models})")
    out: dict[str, object] = {
        "status": "ready", "llm": {"model": llm.model} | ({"base_url": llm.base_url} if operator else {}),
        "worker": worker.status() if worker is not None else {"state": "not embedded"},
    }
    if not request.app.state.api_keys:  # with keys, only GET /collections names them, to the keys that may see them
        out["collections"] = cols
    return out


def _operator(request: Request) -> bool:
    """May this caller see internal addresses: no keys configured, or a valid key for every collection?"""
    try:
        return authenticate(request).every_collection
    except Unauthorized:
        return False


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
                page_end=h.chunk.page_end, effective_date=h.chunk.effective_date, date_source=h.chunk.date_source,
                level=h.chunk.level,
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
            language=d.language, ingested_at=d.ingested_at, metadata=d.metadata,
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
               409: {"model": ErrorOut}, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}},
)
async def upload_documents(
    name: str, request: Request, key: Writer,
    files: Annotated[list[UploadFile], File(description="one or more files", min_length=1)],
    date: Annotated[str | None, Form(description="effective date for these files (YYYY[-MM[-DD]])")] = None,
    authority: Annotated[float | None, Form(description="authority of these sources", allow_inf_nan=False)] = None,
) -> JSONResponse:
    """Store the files under the collection's upload folder and queue an ingest job: 202 with the job id.

    All or nothing: on any error (409, 413, 415...) no file is stored and no job queued. A file name that is not
    already a safe name (a path, unusual characters) is stored as `stem~TAG.ext`, TAG a hash of the name (listed in
    `renamed`), and kept in the document's metadata as `upload_name`: two different names never overwrite each
    other, and the same name again updates its document. Two files of one request stored alike: 409.
    """
    from app.api.errors import json_safe
    from app.uploads import check_extension, store_uploads, supported_extensions

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
    options = {k: v for k, v in {"date": date, "authority": authority}.items() if v is not None}
    jobs = request.app.state.jobs
    # All or nothing: the files are staged and checked, then moved into place and queued together.
    job_id, stored = await run_in_threadpool(
        store_uploads, s.data_dir / "uploads" / name, [(f.filename or "", f.file) for f in files],
        s.max_file_mb * 2**20, lambda paths: jobs.enqueue(name, [str(p) for p in paths], options),
    )
    log.info("queued job %d: %d file(s) for %s", job_id, len(stored), name, extra={"job_id": job_id})
    return JSONResponse(
        json_safe({"job_id": job_id, "status": "queued", "collection": name, "files": [x.path.name for x in stored],
                   "renamed": {x.path.name: x.name for x in stored if x.renamed}, "status_url": f"/jobs/{job_id}"}),
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
    j = _visible_job(await run_in_threadpool(q.get, job_id), job_id, key)
    out = j.to_json()
    out["attempt_log"] = [a.__dict__ for a in await run_in_threadpool(q.attempts, job_id)]
    return out


@router.delete("/jobs/{job_id}", responses={**ERRORS, 409: {"model": ErrorOut}})
async def cancel_job(job_id: JobId, request: Request, key: Writer) -> JSONResponse:
    """Cancel a job: a queued one at once (200), a running one after the file in progress (202, status `running`
    with `cancel_requested` until its worker stops); 409 for a finished job."""
    q = request.app.state.jobs
    j = _visible_job(await run_in_threadpool(q.get, job_id), job_id, key)
    key.check(j.collection, write=True)
    if j.status in FINISHED:
        raise Conflict(f"job {job_id} is already {j.status}: nothing to cancel")
    j = await run_in_threadpool(q.cancel, job_id)
    log.info("job %d: cancel requested (now %s)", job_id, j.status, extra={"job_id": job_id})
    return JSONResponse(j.to_json(), status_code=202 if j.status == "running" else 200)


def _visible_job(j: Job | None, job_id: int, key: Access) -> Job:
    """The job, or 404 alike whether it does not exist or belongs to a collection the key may not see:
    job ids must not tell a scoped key what other collections are doing."""
    if j is None or not key.can_see(j.collection):
        raise NotFound(f"job {job_id} not found")
    return j


@router.get("/metrics", responses=ERRORS)
async def metrics(request: Request, key: Reader) -> Response:
    key.check_every_collection("/metrics")  # the metrics name every collection
    body, ctype = await run_in_threadpool(request.app.state.metrics.exposition)
    return Response(body, media_type=ctype)
