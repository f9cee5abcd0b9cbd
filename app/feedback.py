"""Thumbs up or down on an answer, kept in `<data_dir>/feedback.sqlite` for review and, later, as training pairs
(`GET /feedback`, `ragqa feedback export --out F.jsonl`)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from retrieval.sqlite import ThreadConnections

Rating = Literal["up", "down"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    collection TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT,
    conversation_id TEXT,
    citations TEXT NOT NULL DEFAULT '[]',
    key_name TEXT
);
CREATE INDEX IF NOT EXISTS feedback_collection ON feedback(collection, feedback_id);
"""


@dataclass(frozen=True)
class NewFeedback:
    collection: str
    question: str
    answer: str
    rating: Rating
    comment: str | None = None
    conversation_id: str | None = None
    citations: tuple[dict[str, Any], ...] = ()
    key_name: str | None = None  # which API key sent it (None without keys): who to ask about a rating


@dataclass(frozen=True)
class Feedback(NewFeedback):
    feedback_id: int = 0
    created_at: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["citations"] = list(self.citations)
        return out


class FeedbackStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = ThreadConnections(path, timeout=30.0)
        self._ready = False

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> FeedbackStore:
        return cls(Path(data_dir) / "feedback.sqlite")

    def _conn(self) -> sqlite3.Connection:
        if not self._ready:  # created on first use: constructing the store touches no file
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db.get().executescript(SCHEMA)
            self._ready = True
        return self._db.get()

    def add(self, f: NewFeedback) -> Feedback:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._conn()
        with self._db.immediate() as conn:
            cur = conn.execute(
                "INSERT INTO feedback (created_at, collection, question, answer, rating, comment, conversation_id, "
                "citations, key_name) VALUES (?,?,?,?,?,?,?,?,?)",
                (created, f.collection, f.question, f.answer, f.rating, f.comment, f.conversation_id,
                 json.dumps(list(f.citations), ensure_ascii=False), f.key_name))
            assert cur.lastrowid is not None
        return Feedback(**{**asdict(f), "citations": f.citations}, feedback_id=cur.lastrowid, created_at=created)

    def list(self, collections: Sequence[str] | None = None, rating: Rating | None = None, after_id: int = 0,
             limit: int | None = 100) -> list[Feedback]:
        """Oldest first from `after_id` (a cursor: pass the last id seen); `collections` None means all."""
        sql = "SELECT * FROM feedback WHERE feedback_id > ?"
        params: list[Any] = [after_id]
        if collections is not None:
            sql += f" AND collection IN ({','.join('?' * len(collections))})"
            params += list(collections)
        if rating is not None:
            sql += " AND rating = ?"
            params.append(rating)
        sql += " ORDER BY feedback_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_row(r) for r in self._conn().execute(sql, params)]

    def iter_all(self, collections: Sequence[str] | None = None, batch: int = 500) -> Iterator[Feedback]:
        last = 0
        while rows := self.list(collections, after_id=last, limit=batch):
            yield from rows
            last = rows[-1].feedback_id

    def export_jsonl(self, out: TextIO, collections: Sequence[str] | None = None) -> int:
        """One JSON object a line, oldest first; returns how many."""
        n = 0
        for f in self.iter_all(collections):
            out.write(json.dumps(f.to_json(), ensure_ascii=False) + "\n")
            n += 1
        return n

    def close(self) -> None:
        self._db.close()


def _row(r: tuple[Any, ...]) -> Feedback:
    return Feedback(
        feedback_id=r[0], created_at=r[1], collection=r[2], question=r[3], answer=r[4], rating=r[5], comment=r[6],
        conversation_id=r[7], citations=tuple(json.loads(r[8])), key_name=r[9],
    )
