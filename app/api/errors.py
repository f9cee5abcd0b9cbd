"""The one place where domain errors become HTTP responses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.errors import BadRequest, Forbidden, NotFound, Overloaded, RagqaError, Unauthorized, Unavailable
from app.llm.client import LLMError
from retrieval.manifest import ManifestMismatch

_STATUS: list[tuple[type[Exception], int]] = [
    (Unauthorized, 401),
    (NotFound, 404),
    (BadRequest, 400),
    (Forbidden, 403),
    (Overloaded, 429),
    (Unavailable, 503),
    (ManifestMismatch, 409),
    (LLMError, 502),
    (RagqaError, 400),
]


def install(app: FastAPI) -> None:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    for cls, _ in _STATUS:
        app.add_exception_handler(cls, handler)
