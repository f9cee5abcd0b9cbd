"""The durable part of a collection: documents, sections, chunks, vectors and a change log in SQLite (WAL).

SQLite is the single source of truth. The FAISS and BM25 indexes (retrieval/indexes.py) are caches derived from it:
every chunk added or removed appends a row to `changes` in the same transaction, and an index snapshot records the last
change it contains. A crash at any point therefore leaves a consistent store: a committed transaction is complete, an
uncommitted one is absent, and a stale snapshot is brought up to date by replaying the log.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.sqlite import ThreadConnections
from retrieval.types import Chunk, Document

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source_path TEXT NOT NULL,
    title TEXT NOT NULL,
    mime TEXT NOT NULL,
    content_hash TEXT NOT NULL UNIQUE,
    effective_date TEXT,
    date_source TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    authority REAL,
    language TEXT,
    family TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS documents_family ON documents(family);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sources_doc ON sources(doc_id);
CREATE TABLE IF NOT EXISTS sections (
    section_id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    position INTEGER NOT NULL,
    heading_path TEXT NOT NULL,
    text TEXT NOT NULL,
    token_count INTEGER NOT NULL,
    page_start INTEGER,
    page_end INTEGER
);
CREATE INDEX IF NOT EXISTS sections_doc ON sections(doc_id);
CREATE TABLE IF NOT EXISTS chunks (
    -- AUTOINCREMENT: ids are never reused, so a stale index can never confuse an old chunk with a new one.
    chunk_id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    level INTEGER NOT NULL,
    position INTEGER NOT NULL,
    section_id INTEGER,
    heading_path TEXT NOT NULL,
    kind TEXT NOT NULL,
    page_start INTEGER,
    page_end INTEGER,
    char_start INTEGER,
    char_end INTEGER,
    token_count INTEGER NOT NULL,
    text TEXT NOT NULL,
    tokens TEXT NOT NULL,
    embedding BLOB NOT NULL,
    near_dup_of INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, level, position);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    chunk_id INTEGER NOT NULL,
    level INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class SourceRecord:
    path: str
    doc_id: str
    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class NewChunk:
    """A chunk ready to store: its text, where it sits, what BM25 indexes and its vector."""

    level: int
    position: int
    section_position: int
    heading_path: tuple[str, ...]
    kind: str
    text: str
    token_count: int
    tokens: Sequence[str]
    embedding: np.ndarray
    page_start: int | None = None
    page_end: int | None = None
    char_start: int | None = None
    char_end: int | None = None
    near_dup_of: int | None = None


@dataclass(frozen=True)
class NewSection:
    position: int
    heading_path: tuple[str, ...]
    text: str
    token_count: int
    page_start: int | None = None
    page_end: int | None = None


@dataclass(frozen=True)
class SearchFilter:
    """Restrictions applied before top-k. Empty fields restrict nothing."""

    doc_ids: tuple[str, ...] = ()
    source_prefix: str | None = None
    date_from: str | None = None  # ISO dates, inclusive; undated (or only mtime-dated) documents pass
    date_to: str | None = None
    language: str | None = None
    kinds: tuple[str, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()  # exact matches on user metadata fields

    def is_empty(self) -> bool:
        return self == SearchFilter()


_CHUNK_COLUMNS = (
    "c.chunk_id, c.doc_id, c.text, c.level, c.position, c.section_id, c.heading_path, c.kind, c.page_start, "
    "c.page_end, c.char_start, c.char_end, c.token_count, c.near_dup_of, d.title, d.source_path, "
    "d.effective_date, d.authority, d.language, d.family, d.date_source"
)


class Store:
    """SQLite access for one collection. Thread-safe: one connection per thread, writes serialised by SQLite."""

    def __init__(self, path: Path, collection: str) -> None:
        self.path = path
        self.collection = collection
        self._db = ThreadConnections(path, timeout=60, foreign_keys=True)

    def open(self) -> Store:
        conn = self._conn()
        conn.executescript(SCHEMA)
        return self

    def _conn(self) -> sqlite3.Connection:
        return self._db.get()

    def close(self) -> None:
        self._db.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._db.immediate()

    # ---- sources and documents -------------------------------------------------------------------------------------

    def source(self, path: str) -> SourceRecord | None:
        row = self._conn().execute(
            "SELECT path, doc_id, size, mtime_ns, content_hash FROM sources WHERE path = ?", (path,)
        ).fetchone()
        return SourceRecord(*row) if row else None

    def sources_under(self, prefix: str) -> list[SourceRecord]:
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._conn().execute(
            "SELECT path, doc_id, size, mtime_ns, content_hash FROM sources WHERE path LIKE ? ESCAPE '\\'", (like,)
        ).fetchall()
        return [SourceRecord(*r) for r in rows]

    def doc_id_for_hash(self, content_hash: str) -> str | None:
        row = self._conn().execute(
            "SELECT doc_id FROM documents WHERE content_hash = ?", (content_hash,)
        ).fetchone()
        return row[0] if row else None

    def document(self, doc_id: str) -> Document | None:
        docs = self.documents(doc_ids=[doc_id])
        return docs[0] if docs else None

    def documents(self, doc_ids: Sequence[str] | None = None) -> list[Document]:
        sql = (
            "SELECT doc_id, source_path, title, mime, content_hash, effective_date, date_source, ingested_at, "
            "authority, language, metadata, family FROM documents"
        )
        params: list[Any] = []
        if doc_ids is not None:
            sql += f" WHERE doc_id IN ({','.join('?' * len(doc_ids))})"
            params = list(doc_ids)
        conn = self._conn()
        out = []
        for r in conn.execute(sql + " ORDER BY source_path", params).fetchall():
            sources = tuple(
                p for (p,) in conn.execute("SELECT path FROM sources WHERE doc_id = ? ORDER BY path", (r[0],))
            )
            meta = json.loads(r[10])
            if r[11]:
                meta.setdefault("family", r[11])
            out.append(
                Document(
                    doc_id=r[0], collection=self.collection, source_path=r[1], title=r[2], mime=r[3],
                    content_hash=r[4], effective_date=r[5], date_source=r[6], ingested_at=r[7], authority=r[8],
                    language=r[9], metadata=meta, sources=sources,
                )
            )
        return out

    def add_document(
        self,
        conn: sqlite3.Connection,
        doc: Document,
        family: str | None,
        sections: Sequence[NewSection],
        chunks: Sequence[NewChunk],
    ) -> list[int]:
        """Insert a document with its sections and chunks inside the caller's transaction; return the chunk ids."""
        conn.execute(
            "INSERT INTO documents (doc_id, source_path, title, mime, content_hash, effective_date, date_source, "
            "ingested_at, authority, language, family, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                doc.doc_id, doc.source_path, doc.title, doc.mime, doc.content_hash, doc.effective_date,
                doc.date_source, doc.ingested_at, doc.authority, doc.language, family,
                json.dumps(doc.metadata, ensure_ascii=False, sort_keys=True),
            ),
        )
        section_ids = []
        for s in sections:
            cur = conn.execute(
                "INSERT INTO sections (doc_id, position, heading_path, text, token_count, page_start, page_end) "
                "VALUES (?,?,?,?,?,?,?)",
                (doc.doc_id, s.position, json.dumps(list(s.heading_path), ensure_ascii=False), s.text,
                 s.token_count, s.page_start, s.page_end),
            )
            section_ids.append(cur.lastrowid)
        chunk_ids = []
        for c in chunks:
            vec = np.ascontiguousarray(c.embedding, dtype=np.float32)
            cur = conn.execute(
                "INSERT INTO chunks (doc_id, level, position, section_id, heading_path, kind, page_start, page_end, "
                "char_start, char_end, token_count, text, tokens, embedding, near_dup_of) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    doc.doc_id, c.level, c.position,
                    section_ids[c.section_position] if section_ids else None,
                    json.dumps(list(c.heading_path), ensure_ascii=False), c.kind, c.page_start, c.page_end,
                    c.char_start, c.char_end, c.token_count, c.text, " ".join(c.tokens), vec.tobytes(),
                    c.near_dup_of,
                ),
            )
            assert cur.lastrowid is not None
            chunk_ids.append(cur.lastrowid)
            conn.execute("INSERT INTO changes (op, chunk_id, level) VALUES ('add', ?, ?)", (cur.lastrowid, c.level))
        return chunk_ids

    def delete_document(self, conn: sqlite3.Connection, doc_id: str) -> int:
        """Remove a document, its sections, chunks and sources inside the caller's transaction; return #chunks."""
        rows = conn.execute("SELECT chunk_id, level FROM chunks WHERE doc_id = ?", (doc_id,)).fetchall()
        conn.executemany("INSERT INTO changes (op, chunk_id, level) VALUES ('del', ?, ?)", rows)
        conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        conn.execute("DELETE FROM sections WHERE doc_id = ?", (doc_id,))
        conn.execute("DELETE FROM sources WHERE doc_id = ?", (doc_id,))
        conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        return len(rows)

    def set_source(self, conn: sqlite3.Connection, rec: SourceRecord) -> str | None:
        """Point a path at a document; return the doc id the path pointed at before, if it was another one."""
        row = conn.execute("SELECT doc_id FROM sources WHERE path = ?", (rec.path,)).fetchone()
        conn.execute(
            "INSERT INTO sources (path, doc_id, size, mtime_ns, content_hash) VALUES (?,?,?,?,?) "
            "ON CONFLICT(path) DO UPDATE SET doc_id=excluded.doc_id, size=excluded.size, "
            "mtime_ns=excluded.mtime_ns, content_hash=excluded.content_hash",
            (rec.path, rec.doc_id, rec.size, rec.mtime_ns, rec.content_hash),
        )
        old = row[0] if row else None
        return old if old != rec.doc_id else None

    def drop_source(self, conn: sqlite3.Connection, path: str) -> str | None:
        row = conn.execute("SELECT doc_id FROM sources WHERE path = ?", (path,)).fetchone()
        conn.execute("DELETE FROM sources WHERE path = ?", (path,))
        return row[0] if row else None

    def delete_if_orphan(self, conn: sqlite3.Connection, doc_id: str) -> bool:
        """Delete a document nothing points at any more (its last source path changed or vanished)."""
        (n,) = conn.execute("SELECT count(*) FROM sources WHERE doc_id = ?", (doc_id,)).fetchone()
        if n:
            return False
        self.delete_document(conn, doc_id)
        return True

    # ---- chunks ----------------------------------------------------------------------------------------------------

    def chunks(self, chunk_ids: Iterable[int]) -> list[Chunk]:
        """Chunks by id, in the order asked; ids no longer present are skipped."""
        ids = list(chunk_ids)
        if not ids:
            return []
        rows = self._conn().execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id) "
            f"WHERE c.chunk_id IN ({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
        by_id = {r[0]: self._chunk(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def doc_chunks(self, doc_id: str, level: int) -> list[Chunk]:
        rows = self._conn().execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id) "
            "WHERE c.doc_id = ? AND c.level = ? ORDER BY c.position",
            (doc_id, level),
        ).fetchall()
        return [self._chunk(r) for r in rows]

    def section_text(self, section_id: int) -> tuple[str, int] | None:
        row = self._conn().execute(
            "SELECT text, token_count FROM sections WHERE section_id = ?", (section_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def _chunk(self, r: tuple[Any, ...]) -> Chunk:
        return Chunk(
            chunk_id=r[0], doc_id=r[1], collection=self.collection, text=r[2], level=r[3], position=r[4],
            section_id=r[5], heading_path=tuple(json.loads(r[6])), kind=r[7], page_start=r[8], page_end=r[9],
            char_start=r[10], char_end=r[11], token_count=r[12], near_dup_of=r[13], title=r[14],
            source_path=r[15], effective_date=r[16], authority=r[17], language=r[18], family=r[19],
            date_source=r[20],
        )

    def vectors_and_tokens(self, chunk_ids: Sequence[int]) -> Iterator[tuple[int, np.ndarray, list[str]]]:
        """Yield (chunk_id, vector, bm25 tokens) for the ids still present, in batches to bound memory."""
        conn = self._conn()
        for i in range(0, len(chunk_ids), 5000):
            batch = list(chunk_ids[i : i + 5000])
            rows = conn.execute(
                f"SELECT chunk_id, embedding, tokens FROM chunks WHERE chunk_id IN ({','.join('?' * len(batch))})",
                batch,
            ).fetchall()
            for cid, blob, toks in rows:
                yield cid, np.frombuffer(blob, dtype=np.float32), toks.split()

    def chunk_ids_at_level(self, level: int) -> list[int]:
        return [r[0] for r in self._conn().execute("SELECT chunk_id FROM chunks WHERE level = ?", (level,))]

    def levels(self) -> list[int]:
        return [r[0] for r in self._conn().execute("SELECT DISTINCT level FROM chunks ORDER BY level")]

    def allowed_ids(self, level: int, flt: SearchFilter) -> np.ndarray:
        """Chunk ids at `level` that pass the filter (sorted int64), for filtering before top-k."""
        where = ["c.level = ?"]
        params: list[Any] = [level]
        if flt.doc_ids:
            where.append(f"c.doc_id IN ({','.join('?' * len(flt.doc_ids))})")
            params += list(flt.doc_ids)
        if flt.source_prefix:
            where.append("EXISTS (SELECT 1 FROM sources s WHERE s.doc_id = c.doc_id AND substr(s.path, 1, ?) = ?)")
            params += [len(flt.source_prefix), flt.source_prefix]
        # A date known only from the file's mtime says when a copy was made, not when the text took effect:
        # such documents pass date filters like undated ones.
        if flt.date_from:
            where.append("(d.effective_date IS NULL OR d.date_source = 'mtime' OR d.effective_date >= ?)")
            params.append(flt.date_from)
        if flt.date_to:
            where.append("(d.effective_date IS NULL OR d.date_source = 'mtime' OR d.effective_date <= ?)")
            params.append(flt.date_to)
        if flt.language:
            where.append("d.language = ?")
            params.append(flt.language)
        if flt.kinds:
            where.append(f"c.kind IN ({','.join('?' * len(flt.kinds))})")
            params += list(flt.kinds)
        for key, value in flt.metadata:
            where.append("json_extract(d.metadata, ?) = ?")
            params += ["$." + json.dumps(key), value]
        sql = (
            "SELECT c.chunk_id FROM chunks c JOIN documents d USING (doc_id) WHERE "
            + " AND ".join(where)
            + " ORDER BY c.chunk_id"
        )
        rows = self._conn().execute(sql, params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def newest_date(self, flt: SearchFilter) -> str | None:
        """The latest effective date among documents the filter admits: the knowledge cut-off."""
        where, params = ["effective_date IS NOT NULL", "date_source != 'mtime'"], []
        if flt.date_to:
            where.append("effective_date <= ?")
            params.append(flt.date_to)
        if flt.doc_ids:
            where.append(f"doc_id IN ({','.join('?' * len(flt.doc_ids))})")
            params += list(flt.doc_ids)
        row = self._conn().execute(f"SELECT max(effective_date) FROM documents WHERE {' AND '.join(where)}", params)
        return row.fetchone()[0]

    # ---- the change log --------------------------------------------------------------------------------------------

    def last_seq(self) -> int:
        row = self._conn().execute("SELECT max(seq) FROM changes").fetchone()
        return int(row[0] or 0)

    def changes_since(self, seq: int) -> list[tuple[int, str, int, int]]:
        return self._conn().execute(
            "SELECT seq, op, chunk_id, level FROM changes WHERE seq > ? ORDER BY seq", (seq,)
        ).fetchall()

    def counts(self) -> dict[str, int]:
        conn = self._conn()
        return {
            "documents": conn.execute("SELECT count(*) FROM documents").fetchone()[0],
            "sources": conn.execute("SELECT count(*) FROM sources").fetchone()[0],
            "chunks": conn.execute("SELECT count(*) FROM chunks").fetchone()[0],
        }
