"""Server-side conversations: the turns of a chat kept in `<data_dir>/conversations.sqlite`, so a thin client sends
only a `conversation_id` and the new question.

A conversation belongs to one collection (the key that may see the collection may read and delete it) and is
bounded: only the newest `max_turns` turns and at most `max_bytes` of their text are kept, older turns are dropped
as new ones arrive. The pipeline reads at most the last few turns anyway; the bound keeps a long-lived chat (or a
client looping on one id) from growing the file without end.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.errors import BadRequest, Conflict
from retrieval.sqlite import ThreadConnections

Role = Literal["user", "assistant"]
# Client-chosen ids (a browser's crypto.randomUUID()): letters, digits, '-', '_', 8-64 of them. Long enough to be
# unguessable when random; the collection scope, not the id, is what guards access.
ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
_ID = re.compile(ID_PATTERN)

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(conversation_id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_conversation ON turns(conversation_id, seq);
"""


@dataclass(frozen=True)
class StoredTurn:
    role: Role
    content: str
    created_at: float
    extra: dict[str, object]  # an assistant turn's status and citations, for a client that redraws the chat


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    collection: str
    created_at: float
    updated_at: float
    turns: tuple[StoredTurn, ...]

    def history(self) -> tuple[tuple[str, str], ...]:
        """The turns as the pipeline takes them: (role, text)."""
        return tuple((t.role, t.content) for t in self.turns)

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id, "collection": self.collection,
            "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
            "turns": [{"role": t.role, "content": t.content, "created_at": _iso(t.created_at), **t.extra}
                      for t in self.turns],
        }


def check_id(conversation_id: str) -> str:
    if not _ID.match(conversation_id):
        raise BadRequest("conversation_id must be 8-64 letters, digits, '-' or '_' (a UUID will do)")
    return conversation_id


class ConversationStore:
    def __init__(self, path: Path, max_turns: int = 20, max_bytes: int = 64 * 1024) -> None:
        if max_turns < 2 or max_bytes < 1024:
            raise ValueError(f"a conversation must hold at least one exchange: max_turns={max_turns}, "
                             f"max_bytes={max_bytes}")
        self.path = path
        self.max_turns = max_turns
        self.max_bytes = max_bytes
        self._db = ThreadConnections(path, timeout=30.0, foreign_keys=True)
        self._ready = False

    @classmethod
    def for_data_dir(cls, data_dir: Path, max_turns: int = 20, max_bytes: int = 64 * 1024) -> ConversationStore:
        return cls(Path(data_dir) / "conversations.sqlite", max_turns, max_bytes)

    def _conn(self) -> sqlite3.Connection:
        if not self._ready:  # created on first use: constructing the store touches no file
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db.get().executescript(SCHEMA)
            self._ready = True
        return self._db.get()

    def get(self, conversation_id: str) -> Conversation | None:
        conn = self._conn()
        row = conn.execute("SELECT collection, created_at, updated_at FROM conversations WHERE conversation_id = ?",
                           (conversation_id,)).fetchone()
        if row is None:
            return None
        turns = tuple(
            StoredTurn(r[0], r[1], r[3], json.loads(r[2]))
            for r in conn.execute("SELECT role, content, extra, created_at FROM turns WHERE conversation_id = ? "
                                  "ORDER BY seq", (conversation_id,))
        )
        return Conversation(conversation_id, row[0], row[1], row[2], turns)

    def append(self, conversation_id: str, collection: str,
               turns: Sequence[tuple[Role, str, dict[str, object]]]) -> Conversation:
        """Add turns (role, text, extra), creating the conversation if new; then drop the oldest beyond the bounds.

        Conflict when the id already names a conversation of another collection."""
        now = time.time()
        self._conn()
        with self._db.immediate() as conn:
            row = conn.execute("SELECT collection FROM conversations WHERE conversation_id = ?",
                               (conversation_id,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO conversations VALUES (?, ?, ?, ?)", (conversation_id, collection, now, now))
            elif row[0] != collection:
                raise Conflict(f"conversation {conversation_id!r} belongs to another collection: start a new one")
            else:
                conn.execute("UPDATE conversations SET updated_at = ? WHERE conversation_id = ?",
                             (now, conversation_id))
            conn.executemany(
                "INSERT INTO turns (conversation_id, role, content, extra, created_at) VALUES (?, ?, ?, ?, ?)",
                [(conversation_id, role, text, json.dumps(extra, ensure_ascii=False), now)
                 for role, text, extra in turns])
            self._trim(conn, conversation_id)
        got = self.get(conversation_id)
        assert got is not None
        return got

    def _trim(self, conn: sqlite3.Connection, conversation_id: str) -> None:
        rows = conn.execute("SELECT seq, length(CAST(content AS BLOB)) + length(CAST(extra AS BLOB)) FROM turns "
                            "WHERE conversation_id = ? ORDER BY seq DESC", (conversation_id,)).fetchall()
        kept, size = 0, 0
        for seq, n in rows:
            if kept >= self.max_turns or (kept and size + n > self.max_bytes):
                conn.execute("DELETE FROM turns WHERE conversation_id = ? AND seq <= ?", (conversation_id, seq))
                return
            kept, size = kept + 1, size + n

    def delete(self, conversation_id: str) -> bool:
        self._conn()
        with self._db.immediate() as conn:
            n = conn.execute("DELETE FROM conversations WHERE conversation_id = ?", (conversation_id,)).rowcount
        return n > 0

    def close(self) -> None:
        self._db.close()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
