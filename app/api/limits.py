"""Request body limits, enforced on the bytes received, not only on what Content-Length claims.

A body sent with `Transfer-Encoding: chunked` has no Content-Length: a check of the header alone let a 20 MB JSON
body through. JSON bodies are read here up to the limit and handed on whole (they are small, and the route would
read them all anyway); an upload streams on, counted, and is cut off at its limit.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import require_key
from app.errors import Forbidden, Unauthorized


class BodyTooLarge(HTTPException):
    """Raised from `receive` past the limit: an HTTPException, so that FastAPI answers it (413) wherever it lands."""

    def __init__(self, what: str) -> None:
        super().__init__(413, f"request body over the {what} limit")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, json_bytes: int, json_what: str, upload_bytes: int, upload_what: str) -> None:
        self.app = app
        self.json = (json_bytes, json_what)
        self.upload = (upload_bytes, upload_what)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and scope["path"].endswith("/documents")
        cap, what = self.upload if upload else self.json
        size = Headers(scope=scope).get("content-length")
        if upload and size is None:
            # Multipart bodies are spooled to disk before the route runs: refuse one of unknown size up front.
            await _answer(send, 411, "uploads need a Content-Length header")
            return
        if size is not None and (not size.isdigit() or int(size) > cap):
            await _answer(send, 413, f"request body over the {what} limit")
            return
        if upload:
            # The key is checked here as well as in the route, which runs only after the body has been spooled.
            try:
                require_key(Request(scope), write=True).check(scope["path"].split("/")[-2], write=True)
            except (Unauthorized, Forbidden) as e:
                await _answer(send, 401 if isinstance(e, Unauthorized) else 403, str(e))
                return
            await self._stream(scope, receive, send, cap, what)
            return
        body = await _read(receive, cap)
        if body is None:
            await _answer(send, 413, f"request body over the {what} limit")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, cap: int, what: str) -> None:
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise BodyTooLarge(what)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as e:  # raised where no handler caught it
            if started:
                raise
            await _answer(send, 413, str(e.detail))


async def _read(receive: Receive, cap: int) -> bytes | None:
    """The whole body, or None as soon as it passes `cap` (the rest is never read)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: hand on what there is, the route sees it
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that gives `body` once, then the real one's messages (a disconnect, which /ask waits for)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
