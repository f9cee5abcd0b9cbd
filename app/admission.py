"""Admission control for LLM-bound requests: a few run, a bounded number wait, the rest are turned away (429).

A wait is bounded too: a request that has not got a slot after `max_wait_s` fails with 503 and Retry-After (an
answer minutes late is worth less than a clear "try again"), and one whose client hung up leaves the queue at once
instead of holding a place, and later a slot, for no one.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from app.errors import Overloaded, RagqaError, Unavailable

log = logging.getLogger("ragqa.admission")
Receive = Callable[[], Awaitable[Mapping[str, Any]]]  # an ASGI `receive`


class QueueTimeout(Unavailable):
    """503: no LLM slot came free within the configured wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClientDisconnected(RagqaError):
    """The client went away while its request waited for a slot."""


class Admission:
    def __init__(self, max_active: int, max_waiting: int, max_wait_s: float = 60.0) -> None:
        if max_active < 1 or max_waiting < 0 or not max_wait_s > 0:
            raise ValueError(f"need max_active >= 1, max_waiting >= 0 and max_wait_s > 0, "
                             f"got {max_active}, {max_waiting}, {max_wait_s}")
        self.max_active = max_active
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self._sem = asyncio.Semaphore(max_active)
        self.waiting = 0
        self.active = 0

    @asynccontextmanager
    async def slot(self, receive: Receive | None = None) -> AsyncIterator[None]:
        """Hold one LLM slot. `receive`: the request's, its body already read; watched for the client hanging up.

        (Starlette's `request.is_disconnected()` cannot see a disconnect through a BaseHTTPMiddleware: it polls under
        a cancelled scope, and the middleware's receive loses the message to that cancellation.)
        """
        if self._sem.locked() and self.waiting >= self.max_waiting:
            raise Overloaded(
                f"too many questions in progress ({self.active} running, {self.waiting} waiting); retry shortly",
                retry_after=2,
            )
        self.waiting += 1
        try:
            await self._acquire(receive)
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._sem.release()

    async def _acquire(self, receive: Receive | None) -> None:
        if not self._sem.locked():
            await self._sem.acquire()  # free: taken at once, before any other request can look
            return
        acquire = asyncio.ensure_future(self._sem.acquire())
        watch = asyncio.ensure_future(_until_disconnect(receive)) if receive is not None else None
        try:
            await asyncio.wait([acquire] + ([watch] if watch else []), timeout=self.max_wait_s,
                               return_when=asyncio.FIRST_COMPLETED)
            if acquire.done():
                acquire.result()
                return
            if watch is not None and watch.done():
                log.info("a client disconnected while waiting for an answering slot")
                raise ClientDisconnected("the client disconnected while waiting for an answering slot")
            raise QueueTimeout(
                f"no answering slot came free within {self.max_wait_s:g} s ({self.active} running, "
                f"{self.waiting - 1} others waiting); retry later",
                retry_after=max(1, math.ceil(min(self.max_wait_s, 30) / 2)),
            )
        except BaseException:
            if acquire.done() and not acquire.cancelled() and acquire.exception() is None:
                self._sem.release()  # got the slot just as we gave up: hand it on
            else:
                acquire.cancel()
            raise
        finally:
            if watch is not None:
                watch.cancel()
                watch.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[None]) -> None:
    # A receive() that failed because the client went away counts as gone; its error need not be logged as lost.
    if not task.cancelled():
        task.exception()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive()).get("type") != "http.disconnect":
        pass
