"""The distributed backend's store: a collection's documents, sections, chunks and change log in PostgreSQL.

The same tables and the same contract as the SQLite store (retrieval/store.py), one schema per collection, so API
replicas and workers on any host share them. Manifests live in `ragqa.manifests` (any host sees every collection) and
the one-writer-per-collection lock is a PostgreSQL advisory lock, dropped by the server when its holder's session ends
(a killed process, a lost host).

Commit order: every write transaction first takes its collection's transaction-level advisory lock, so the change log's
sequence numbers are handed out in commit order, as SQLite's single writer guarantees; an index that has replayed the
log up to seq N can never later see a commit with a smaller number appear.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from retrieval.backend import BackendUnavailable
from retrieval.manifest import FORMAT_VERSION, Manifest, ManifestMismatch
from retrieval.store import NewChunk, NewSection, SearchFilter, SourceRecord
from retrieval.types import Chunk, Document

_POOLS: dict[str, ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()
# The search_path each pooled connection was last given (PgStore._use_schema); forgotten with the connection.
_SCHEMA_OF: weakref.WeakKeyDictionary[psycopg.Connection[Any], str] = weakref.WeakKeyDictionary()
# Advisory lock classes (the first key of the two-key form), so that ragqa's locks never meet anyone else's.
_LOCK_DDL, _LOCK_TXN, _LOCK_WRITER = 0x52510001, 0x52510002, 0x52510003

CATALOG_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS ragqa;
CREATE TABLE IF NOT EXISTS ragqa.manifests (
    collection TEXT PRIMARY KEY,
    schema_name TEXT NOT NULL UNIQUE,
    manifest TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""

# The SQLite schema's columns and indexes; BIGSERIAL ids are never reused, like AUTOINCREMENT.
COLLECTION_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source_path TEXT NOT NULL,
    title TEXT NOT NULL,
    mime TEXT NOT NULL,
    content_hash TEXT NOT NULL UNIQUE,
    effective_date TEXT,
    date_source TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    authority DOUBLE PRECISION,
    language TEXT,
    family TEXT,
    metadata JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS documents_family ON documents(family);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sources_doc ON sources(doc_id);
CREATE TABLE IF NOT EXISTS sections (
    section_id BIGSERIAL PRIMARY KEY,
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
    chunk_id BIGSERIAL PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    level INTEGER NOT NULL,
    position INTEGER NOT NULL,
    section_id BIGINT,
    heading_path TEXT NOT NULL,
    kind TEXT NOT NULL,
    page_start INTEGER,
    page_end INTEGER,
    char_start INTEGER,
    char_end INTEGER,
    token_count INTEGER NOT NULL,
    text TEXT NOT NULL,
    tokens TEXT NOT NULL,
    embedding BYTEA NOT NULL,
    near_dup_of BIGINT
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, level, position);
CREATE INDEX IF NOT EXISTS chunks_level ON chunks(level, chunk_id);
CREATE TABLE IF NOT EXISTS changes (
    seq BIGSERIAL PRIMARY KEY,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    chunk_id BIGINT NOT NULL,
    level INTEGER NOT NULL
);
"""

_CHUNK_COLUMNS = (
    "c.chunk_id, c.doc_id, c.text, c.level, c.position, c.section_id, c.heading_path, c.kind, c.page_start, "
    "c.page_end, c.char_start, c.char_end, c.token_count, c.near_dup_of, d.title, d.source_path, "
    "d.effective_date, d.authority, d.language, d.family, d.date_source"
)


def pg_pool(url: str) -> ConnectionPool:
    """This process's connection pool for `url`, opened on first use (one per URL, shared by every collection)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(url)
        if pool is None:
            # autocommit: a read is one statement; writes open explicit transactions (PgStore.transaction).
            pool = ConnectionPool(url, min_size=1, max_size=10, kwargs={"autocommit": True}, open=True,
                                  name="ragqa", timeout=60)
            try:
                pool.wait(timeout=10)  # fail now, saying what is missing, rather than on every later call
            except PoolTimeout:
                pool.close()
                info = psycopg.conninfo.conninfo_to_dict(url)
                where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
                raise BackendUnavailable(
                    f"PostgreSQL at {where} (RAGQA_POSTGRES_URL) cannot be reached within 10 s: is it running, and "
                    "does it accept this user?"
                ) from None
            _POOLS[url] = pool
        return pool


def close_pools() -> None:
    """Close this process's pools (at shutdown, or before a test drops its database)."""
    with _POOLS_LOCK:
        for pool in _POOLS.values():
            pool.close()
        _POOLS.clear()


def schema_for(name: str) -> str:
    """The PostgreSQL schema of a collection (identifiers hold 63 bytes; long names get a hash suffix)."""
    if len(name) <= 57:
        return f"ragqa_{name}"
    return f"ragqa_{name[:44]}_{hashlib.sha256(name.encode()).hexdigest()[:12]}"


class PgCatalog:
    """The distributed backend's collections: manifests in `ragqa.manifests`, write locks as advisory locks."""

    _ready: set[str] = set()  # URLs whose catalog table this process has made sure of

    def __init__(self, pool: ConnectionPool, url: str) -> None:
        self.pool = pool
        self.url = url

    def _ensure(self) -> None:
        if self.url in PgCatalog._ready:
            return
        with self.pool.connection() as conn, conn.transaction():
            # Two processes creating the same tables at once collide in the catalog: take turns.
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_DDL,))
            conn.execute(CATALOG_SCHEMA)
        PgCatalog._ready.add(self.url)

    def manifest(self, name: str) -> Manifest | None:
        self._ensure()
        with self.pool.connection() as conn:
            row = conn.execute("SELECT manifest FROM ragqa.manifests WHERE collection = %s", (name,)).fetchone()
        return _manifest(row[0], name) if row else None

    def create(self, manifest: Manifest) -> Manifest:
        """Record a new collection's manifest; if another process recorded one first, return that one."""
        from dataclasses import asdict

        self._ensure()
        text = json.dumps(asdict(manifest), sort_keys=True)
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO ragqa.manifests (collection, schema_name, manifest) VALUES (%s, %s, %s) "
                "ON CONFLICT (collection) DO NOTHING", (manifest.collection, schema_for(manifest.collection), text),
            )
        found = self.manifest(manifest.collection)
        assert found is not None
        return found

    def names(self) -> list[str]:
        self._ensure()
        with self.pool.connection() as conn:
            return [r[0] for r in conn.execute("SELECT collection FROM ragqa.manifests ORDER BY collection")]

    @contextmanager
    def write_lock(self, name: str, wait: bool) -> Iterator[None]:
        """Held on a connection of its own for as long as the writer works: a pooled one would be lent out."""
        from retrieval.collection import CollectionLocked

        with psycopg.connect(self.url, autocommit=True) as conn:
            if wait:
                conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOCK_WRITER, name))
            else:
                row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_WRITER, name)).fetchone()
                if not row or not row[0]:
                    raise CollectionLocked(f"collection {name!r} is being written by another process")
            yield  # closing the session releases the lock

    def drop(self, name: str) -> None:
        self._ensure()
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_for(name))))
            conn.execute("DELETE FROM ragqa.manifests WHERE collection = %s", (name,))


def _manifest(text: str, name: str) -> Manifest:
    data = json.loads(text)
    if data.get("format_version") != FORMAT_VERSION:
        raise ManifestMismatch(
            f"collection {name!r}: format_version {data.get('format_version')!r}, this ragqa reads {FORMAT_VERSION}"
        )
    return Manifest(**data)


class PgStore:
    """PostgreSQL access for one collection. Thread-safe: connections come from the pool, a transaction's stay with
    its thread, and reads inside a transaction see its own writes (as SQLite's per-thread connection does)."""

    def __init__(self, pool: ConnectionPool, collection: str) -> None:
        self.pool = pool
        self.collection = collection
        self.schema = schema_for(collection)
        self._local = threading.local()

    def open(self) -> PgStore:
        with self.pool.connection() as conn:
            # CREATE INDEX IF NOT EXISTS locks the table even when the index exists: don't queue behind a writer.
            (found,) = conn.execute("SELECT to_regclass(%s)", (f'"{self.schema}".changes',)).fetchone() or (None,)
        if found is not None:
            return self
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_DDL,))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))
            conn.execute(COLLECTION_SCHEMA)
        return self

    def close(self) -> None:
        """Nothing to release: the pool is the process's, shared by every collection."""

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        if getattr(self._local, "conn", None) is not None:
            raise RuntimeError("a PgStore transaction is already open in this thread")
        with self.pool.connection() as conn:
            self._use_schema(conn)  # before BEGIN: a rollback would undo it
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_TXN, self.collection))
                self._local.conn = conn
                try:
                    yield conn
                finally:
                    self._local.conn = None

    def _use_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Point unqualified names at this collection's tables. Pooled connections are shared by every collection;
        each remembers the schema it was last set to, so a read costs one round trip, not three."""
        if _SCHEMA_OF.get(conn) != self.schema:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            _SCHEMA_OF[conn] = self.schema

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        held = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        with self.pool.connection() as conn:
            self._use_schema(conn)
            yield conn

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn() as conn:
            return conn.execute(query, params).fetchall()

    # ---- sources and documents -------------------------------------------------------------------------------------

    def source(self, path: str) -> SourceRecord | None:
        rows = self._rows("SELECT path, doc_id, size, mtime_ns, content_hash FROM sources WHERE path = %s", (path,))
        return SourceRecord(*rows[0]) if rows else None

    def sources_under(self, prefix: str) -> list[SourceRecord]:
        rows = self._rows("SELECT path, doc_id, size, mtime_ns, content_hash FROM sources "
                          "WHERE starts_with(path, %s)", (prefix,))
        return [SourceRecord(*r) for r in rows]

    def doc_id_for_hash(self, content_hash: str) -> str | None:
        rows = self._rows("SELECT doc_id FROM documents WHERE content_hash = %s", (content_hash,))
        return rows[0][0] if rows else None

    def document(self, doc_id: str) -> Document | None:
        docs = self.documents(doc_ids=[doc_id])
        return docs[0] if docs else None

    def documents(self, doc_ids: Sequence[str] | None = None) -> list[Document]:
        query = (
            "SELECT d.doc_id, d.source_path, d.title, d.mime, d.content_hash, d.effective_date, d.date_source, "
            "d.ingested_at, d.authority, d.language, d.metadata, d.family, "
            "coalesce((SELECT array_agg(s.path ORDER BY s.path) FROM sources s WHERE s.doc_id = d.doc_id), '{}') "
            "FROM documents d"
        )
        params: list[Any] = []
        if doc_ids is not None:
            query += " WHERE d.doc_id = ANY(%s)"
            params = [list(doc_ids)]
        out = []
        for r in self._rows(query + " ORDER BY d.source_path", params):
            meta = dict(r[10])
            if r[11]:
                meta.setdefault("family", r[11])
            out.append(
                Document(
                    doc_id=r[0], collection=self.collection, source_path=r[1], title=r[2], mime=r[3],
                    content_hash=r[4], effective_date=r[5], date_source=r[6], ingested_at=r[7], authority=r[8],
                    language=r[9], metadata=meta, sources=tuple(r[12]),
                )
            )
        return out

    def add_document(
        self, conn: psycopg.Connection[Any], doc: Document, family: str | None, sections: Sequence[NewSection],
        chunks: Sequence[NewChunk],
    ) -> list[int]:
        """Insert a document with its sections and chunks inside the caller's transaction; return the chunk ids."""
        conn.execute(
            "INSERT INTO documents (doc_id, source_path, title, mime, content_hash, effective_date, date_source, "
            "ingested_at, authority, language, family, metadata) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (
                doc.doc_id, doc.source_path, doc.title, doc.mime, doc.content_hash, doc.effective_date,
                doc.date_source, doc.ingested_at, doc.authority, doc.language, family,
                json.dumps(doc.metadata, ensure_ascii=False, sort_keys=True),
            ),
        )
        # Ids drawn first, in order, then rows sent in one batch: no round trip per row.
        section_ids = _next_ids(conn, "sections_section_id_seq", len(sections))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sections (section_id, doc_id, position, heading_path, text, token_count, page_start, "
                "page_end) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                [(sid, doc.doc_id, s.position, json.dumps(list(s.heading_path), ensure_ascii=False), s.text,
                  s.token_count, s.page_start, s.page_end) for sid, s in zip(section_ids, sections, strict=True)],
            )
            chunk_ids = _next_ids(conn, "chunks_chunk_id_seq", len(chunks))
            cur.executemany(
                "INSERT INTO chunks (chunk_id, doc_id, level, position, section_id, heading_path, kind, page_start, "
                "page_end, char_start, char_end, token_count, text, tokens, embedding, near_dup_of) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                [
                    (cid, doc.doc_id, c.level, c.position,
                     section_ids[c.section_position] if section_ids else None,
                     json.dumps(list(c.heading_path), ensure_ascii=False), c.kind, c.page_start, c.page_end,
                     c.char_start, c.char_end, c.token_count, c.text, " ".join(c.tokens),
                     np.ascontiguousarray(c.embedding, dtype=np.float32).tobytes(), c.near_dup_of)
                    for cid, c in zip(chunk_ids, chunks, strict=True)
                ],
            )
            cur.executemany("INSERT INTO changes (op, chunk_id, level) VALUES ('add', %s, %s)",
                            [(cid, c.level) for cid, c in zip(chunk_ids, chunks, strict=True)])
        return chunk_ids

    def delete_document(self, conn: psycopg.Connection[Any], doc_id: str) -> int:
        """Remove a document, its sections, chunks and sources inside the caller's transaction; return #chunks."""
        rows = conn.execute(
            "INSERT INTO changes (op, chunk_id, level) SELECT 'del', chunk_id, level FROM chunks WHERE doc_id = %s "
            "ORDER BY chunk_id RETURNING seq", (doc_id,),
        ).fetchall()
        conn.execute("DELETE FROM chunks WHERE doc_id = %s", (doc_id,))
        conn.execute("DELETE FROM sections WHERE doc_id = %s", (doc_id,))
        conn.execute("DELETE FROM sources WHERE doc_id = %s", (doc_id,))
        conn.execute("DELETE FROM documents WHERE doc_id = %s", (doc_id,))
        return len(rows)

    def set_source(self, conn: psycopg.Connection[Any], rec: SourceRecord) -> str | None:
        """Point a path at a document; return the doc id the path pointed at before, if it was another one."""
        row = conn.execute("SELECT doc_id FROM sources WHERE path = %s", (rec.path,)).fetchone()
        conn.execute(
            "INSERT INTO sources (path, doc_id, size, mtime_ns, content_hash) VALUES (%s,%s,%s,%s,%s) "
            "ON CONFLICT (path) DO UPDATE SET doc_id = excluded.doc_id, size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, content_hash = excluded.content_hash",
            (rec.path, rec.doc_id, rec.size, rec.mtime_ns, rec.content_hash),
        )
        old = row[0] if row else None
        return old if old != rec.doc_id else None

    def drop_source(self, conn: psycopg.Connection[Any], path: str) -> str | None:
        row = conn.execute("DELETE FROM sources WHERE path = %s RETURNING doc_id", (path,)).fetchone()
        return row[0] if row else None

    def delete_if_orphan(self, conn: psycopg.Connection[Any], doc_id: str) -> bool:
        """Delete a document nothing points at any more (its last source path changed or vanished)."""
        row = conn.execute("SELECT count(*) FROM sources WHERE doc_id = %s", (doc_id,)).fetchone()
        if row and row[0]:
            return False
        self.delete_document(conn, doc_id)
        return True

    # ---- chunks ----------------------------------------------------------------------------------------------------

    def chunks(self, chunk_ids: Iterable[int]) -> list[Chunk]:
        """Chunks by id, in the order asked; ids no longer present are skipped."""
        ids = [int(i) for i in chunk_ids]
        if not ids:
            return []
        rows = self._rows(f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id) "
                          "WHERE c.chunk_id = ANY(%s::bigint[])", (ids,))
        by_id = {r[0]: self._chunk(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def doc_chunks(self, doc_id: str, level: int) -> list[Chunk]:
        rows = self._rows(f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id) "
                          "WHERE c.doc_id = %s AND c.level = %s ORDER BY c.position", (doc_id, level))
        return [self._chunk(r) for r in rows]

    def section_text(self, section_id: int) -> tuple[str, int] | None:
        rows = self._rows("SELECT text, token_count FROM sections WHERE section_id = %s", (section_id,))
        return (rows[0][0], rows[0][1]) if rows else None

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
        for i in range(0, len(chunk_ids), 5000):
            batch = [int(c) for c in chunk_ids[i : i + 5000]]
            rows = self._rows("SELECT chunk_id, embedding, tokens FROM chunks WHERE chunk_id = ANY(%s::bigint[])",
                              (batch,))
            for cid, blob, toks in rows:
                yield cid, np.frombuffer(blob, dtype=np.float32), toks.split()

    def chunk_ids_at_level(self, level: int) -> list[int]:
        return [r[0] for r in self._rows("SELECT chunk_id FROM chunks WHERE level = %s ORDER BY chunk_id", (level,))]

    def levels(self) -> list[int]:
        return [r[0] for r in self._rows("SELECT DISTINCT level FROM chunks ORDER BY level")]

    def allowed_ids(self, level: int, flt: SearchFilter) -> np.ndarray:
        """Chunk ids at `level` that pass the filter (sorted int64), for filtering before top-k."""
        where = ["c.level = %s"]
        params: list[Any] = [level]
        if flt.doc_ids:
            where.append("c.doc_id = ANY(%s)")
            params.append(list(flt.doc_ids))
        if flt.source_prefix:
            where.append("EXISTS (SELECT 1 FROM sources s WHERE s.doc_id = c.doc_id AND starts_with(s.path, %s))")
            params.append(flt.source_prefix)
        # As in the SQLite store: a date known only from the file's mtime passes date filters like no date.
        if flt.date_from:
            where.append("(d.effective_date IS NULL OR d.date_source = 'mtime' OR d.effective_date >= %s)")
            params.append(flt.date_from)
        if flt.date_to:
            where.append("(d.effective_date IS NULL OR d.date_source = 'mtime' OR d.effective_date <= %s)")
            params.append(flt.date_to)
        if flt.language:
            where.append("d.language = %s")
            params.append(flt.language)
        if flt.kinds:
            where.append("c.kind = ANY(%s)")
            params.append(list(flt.kinds))
        for key, value in flt.metadata:
            # A JSON string equal to the value, as SQLite's json_extract(...) = ? compares.
            where.append("d.metadata -> %s = to_jsonb(%s::text)")
            params += [key, value]
        rows = self._rows("SELECT c.chunk_id FROM chunks c JOIN documents d USING (doc_id) WHERE "
                          + " AND ".join(where) + " ORDER BY c.chunk_id", params)
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def newest_date(self, flt: SearchFilter) -> str | None:
        """The latest effective date among documents the filter admits: the knowledge cut-off."""
        where = ["effective_date IS NOT NULL", "date_source != 'mtime'"]
        params: list[Any] = []
        if flt.date_to:
            where.append("effective_date <= %s")
            params.append(flt.date_to)
        if flt.doc_ids:
            where.append("doc_id = ANY(%s)")
            params.append(list(flt.doc_ids))
        rows = self._rows(f"SELECT max(effective_date) FROM documents WHERE {' AND '.join(where)}", params)
        return rows[0][0] if rows else None

    # ---- the change log --------------------------------------------------------------------------------------------

    def last_seq(self) -> int:
        return int(self._rows("SELECT coalesce(max(seq), 0) FROM changes")[0][0])

    def changes_since(self, seq: int) -> list[tuple[int, str, int, int]]:
        rows = self._rows("SELECT seq, op, chunk_id, level FROM changes WHERE seq > %s ORDER BY seq", (seq,))
        return [(int(a), str(b), int(c), int(d)) for a, b, c, d in rows]

    def counts(self) -> dict[str, int]:
        row = self._rows("SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM sources), "
                         "(SELECT count(*) FROM chunks)")[0]
        return {"documents": int(row[0]), "sources": int(row[1]), "chunks": int(row[2])}


def _next_ids(conn: psycopg.Connection[Any], sequence: str, n: int) -> list[int]:
    if n == 0:
        return []
    rows = conn.execute("SELECT nextval(%s) FROM generate_series(1, %s)", (sequence, n)).fetchall()
    return sorted(int(r[0]) for r in rows)
