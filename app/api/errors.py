"""The one place where domain errors become HTTP responses."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.errors import BadRequest, Forbidden, NotFound, Overloaded, RagqaError, Unauthorized, Unavailable
from app.llm.client import LLMError
from retrieval.manifest import ManifestMismatch
from retrieval.search import UnknownLevel

_STATUS: list[tuple[type[Exception], int]] = [
    (Unauthorized, 401),
    (NotFound, 404),
    (BadRequest, 400),
    (Forbidden, 403),
    (Overloaded, 429),
    (Unavailable, 503),
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


def install(app: FastAPI) -> None:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
        return JSONResponse({"detail": json_safe(str(exc))}, status_code=status, headers=headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own handler, with the echoed input made encodable.
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, status_code=422)

    for cls, _ in _STATUS:
        app.add_exception_handler(cls, handler)
    app.add_exception_handler(RequestValidationError, invalid)
