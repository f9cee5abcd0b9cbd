"""Admission control for LLM-bound requests: a few run, a bounded number wait, the rest are turned away (429)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import Overloaded


class Admission:
    def __init__(self, max_active: int, max_waiting: int) -> None:
        if max_active < 1 or max_waiting < 0:
            raise ValueError(f"need max_active >= 1 and max_waiting >= 0, got {max_active}, {max_waiting}")
        self.max_active = max_active
        self.max_waiting = max_waiting
        self._sem = asyncio.Semaphore(max_active)
        self.waiting = 0
        self.active = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._sem.locked() and self.waiting >= self.max_waiting:
            raise Overloaded(
                f"too many questions in progress ({self.active} running, {self.waiting} waiting); retry shortly",
                retry_after=2,
            )
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._sem.release()
