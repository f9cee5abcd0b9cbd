"""SQLite as the store and the job queue use it: a connection per thread, WAL, durable commits, IMMEDIATE writes."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ThreadConnections:
    """Cheap to construct; each thread opens its own connection on first use (sqlite3 objects are not shareable)."""

    def __init__(self, path: Path, timeout: float, foreign_keys: bool = False) -> None:
        self.path = path
        self.timeout = timeout
        self.foreign_keys = foreign_keys
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit reported done survives a power loss, which the crash tests rely on.
            conn.execute("PRAGMA synchronous=FULL")
            if self.foreign_keys:
                conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def immediate(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock before reading, so what it reads cannot change under it."""
        conn = self.get()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
