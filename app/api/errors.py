"""The one place where domain errors become HTTP responses."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.admission import ClientDisconnected
from app.errors import BadRequest, Conflict, Forbidden, NotFound, Overloaded, RagqaError, Unauthorized, Unavailable
from app.llm.client import LLMError
from app.uploads import UnsupportedUpload, UploadConflict, UploadTooLarge
from retrieval.backend import BackendUnavailable
from retrieval.manifest import ManifestMismatch
from retrieval.search import UnknownLevel

log = logging.getLogger("ragqa")

# An error body is bounded whatever the request held: a message, each echoed input, and the number of errors listed.
MAX_DETAIL_CHARS = 2000
MAX_ECHO_CHARS = 200
MAX_ERRORS = 20

_STATUS: list[tuple[type[Exception], int]] = [
    (Unauthorized, 401),
    (NotFound, 404),
    (BadRequest, 400),
    (Forbidden, 403),
    (UnsupportedUpload, 415),
    (UploadTooLarge, 413),
    (UploadConflict, 409),
    (Conflict, 409),
    (ClientDisconnected, 499),  # nginx's "client closed request": no one reads it, the metrics and logs do
    (Overloaded, 429),
    (Unavailable, 503),
    (BackendUnavailable, 503),
    (ManifestMismatch, 409),
    (UnknownLevel, 400),
    (LLMError, 502),
    (RagqaError, 400),
]


def json_safe(v: object) -> object:
    """`v` with what strict JSON in UTF-8 cannot carry spelled out: NaN and infinities, lone surrogates.

    Error bodies echo what the client sent, and the client can send both (`1e400`, `NaN`, `"\\ud800"`); left as they
    are, the response encoder raises and a 422 becomes a 500.
    """
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, str):
        return v.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(v, dict):
        return {json_safe(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    return v


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters in all)"


def _echo(v: object) -> object:
    """An input echoed in a 422: as sent when short, else the start of its JSON text."""
    try:
        text = v if isinstance(v, str) else json.dumps(jsonable_encoder(v), ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(v)
    return v if len(text) <= MAX_ECHO_CHARS else clip(text, MAX_ECHO_CHARS)


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's error list, bounded: a request of many bad items or one huge value must not come back whole."""
    out = []
    for e in list(errors)[:MAX_ERRORS]:
        e = dict(e)
        if "input" in e:
            e["input"] = _echo(e["input"])
        if "ctx" in e:
            e["ctx"] = {k: _echo(x) for k, x in dict(e["ctx"]).items()}
        e["loc"] = [clip(x, MAX_ECHO_CHARS) if isinstance(x, str) else x for x in e.get("loc", ())]
        e["msg"] = clip(str(e.get("msg", "")), MAX_DETAIL_CHARS)
        out.append(e)
    if len(errors) > MAX_ERRORS:
        out.append({"type": "too_many_errors", "loc": [], "msg": f"{len(errors) - MAX_ERRORS} more errors not shown"})
    return out


def install(app: FastAPI) -> None:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        retry = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry)} if retry is not None else None
        return JSONResponse({"detail": json_safe(clip(str(exc), MAX_DETAIL_CHARS))}, status_code=status,
                            headers=headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own handler, with the echoed input bounded and made encodable.
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": json_safe(jsonable_encoder(validation_errors(exc.errors())))},
                            status_code=422)

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        # PostgreSQL lost mid-run (the distributed backend): a 503 the client may retry, never a 500. The log keeps
        # psycopg's own words; the body does not, as they name hosts.
        log.error("database error on %s %s: %r", request.method, request.url.path, exc)
        return JSONResponse({"detail": "the database (PostgreSQL, RAGQA_POSTGRES_URL) is unavailable; retry shortly"},
                            status_code=503, headers={"Retry-After": "5"})

    for cls, _ in _STATUS:
        app.add_exception_handler(cls, handler)
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # the distributed extra is not installed: no PostgreSQL to lose
        pass
    else:
        for db_error in (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout):
            app.add_exception_handler(db_error, database_down)
    app.add_exception_handler(RequestValidationError, invalid)
