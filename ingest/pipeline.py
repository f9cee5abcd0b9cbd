"""Ingest: files (or data-set records) -> parse -> chunk -> embed -> one transaction per batch.

Incremental by design: a path whose size and mtime match the store is skipped without being read; a path whose bytes
hash to what is stored only has its mtime refreshed; identical content under a second path is stored once with both
paths recorded; a changed file's old chunks leave in the same transaction that adds the new ones; files gone from an
ingested folder leave the index. Parsing runs in worker processes while this process embeds and commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ingest.chunking import ChunkingSettings, chunk_document
from ingest.dates import family_of, resolve_effective_date
from ingest.elements import Element, ParsedDocument
from ingest.errors import IngestError
from ingest.parsers.archive import ArchiveLimits
from ingest.walk import path_key, walk_paths
from retrieval.analyzer import Analyzer
from retrieval.collection import Collection
from retrieval.embedders import Embedder
from retrieval.store import NewChunk, NewSection, SourceRecord
from retrieval.text import contextualize, numbers
from retrieval.types import Document

Status = Literal["added", "updated", "unchanged", "duplicate", "failed", "removed"]


@dataclass(frozen=True)
class IngestOptions:
    effective_date: str | None = None
    authority: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    max_bytes: int = 100 * 2**20
    workers: int = 1  # parser processes; 0 parses inline
    ocr: bool = True
    near_dup_threshold: float = 0.85
    batch_chunks: int = 512  # embed and commit once this many chunks are waiting
    prune_missing: bool = True  # drop stored sources under an ingested folder that no longer exist
    archive: ArchiveLimits = ArchiveLimits()  # what a DOCX/XLSX/PPTX/EPUB may unpack to
    # A file's text above this many tokens fails instead of tying up the worker for minutes (0: no limit).
    max_file_tokens: int = 0


@dataclass(frozen=True)
class FileResult:
    path: str
    status: Status
    doc_id: str | None = None
    chunks: int = 0
    reason: str = ""


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"parse": 0.0, "embed": 0.0, "index": 0.0})

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> dict[str, int]:
        return {s: self.count(s) for s in ("added", "updated", "unchanged", "duplicate", "removed", "failed")}


@dataclass(frozen=True)
class Record:
    """A document given as text rather than a file (data sets, API uploads of plain text)."""

    key: str  # stable identity for incremental re-ingest, e.g. "scifact:4983"
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    effective_date: str | None = None


@dataclass
class _Pending:
    key: str
    stat: tuple[int, int]
    content_hash: str
    doc: Document
    family: str | None
    sections: list[NewSection]
    drafts: list[Any]  # ChunkDraft
    status: Status


def _parse_worker(path: str, max_bytes: int, ocr: bool, archive: ArchiveLimits | None = None) -> ParsedDocument:
    from ingest.parsers import parse_file

    return parse_file(Path(path), max_bytes=max_bytes, ocr=ocr, archive=archive)


class Ingestor:
    def __init__(
        self,
        collection: Collection,
        embedder: Embedder,
        chunking: ChunkingSettings,
        options: IngestOptions = IngestOptions(),
        analyzer: Analyzer | None = None,
    ) -> None:
        self.collection = collection
        self.embedder = embedder
        self.chunking = chunking
        self.options = options
        self.analyzer = analyzer or Analyzer()
        self._pending: list[_Pending] = []
        self._pending_chunks = 0

    # ---- files -----------------------------------------------------------------------------------------------------

    def ingest_paths(
        self, paths: Sequence[Path], progress: Callable[[FileResult], None] | None = None
    ) -> IngestReport:
        report = IngestReport()

        def emit(r: FileResult) -> None:
            report.results.append(r)
            if progress:
                progress(r)

        seen: set[str] = set()
        to_parse: list[tuple[Path, str, os.stat_result, bytes, str]] = []
        for path, error in walk_paths(paths):
            key = path_key(path)
            if error:
                emit(FileResult(key, "failed", reason=error))
                continue
            seen.add(key)
            r = self._check_file(path, key, to_parse)
            if r is not None:
                emit(r)
        # The same bytes twice in this run: parse once, then record the other paths as duplicates.
        first: dict[str, str] = {}
        unique: list[tuple[Path, str, os.stat_result, bytes, str]] = []
        copies: list[tuple[Path, str, os.stat_result, bytes, str]] = []
        for item in to_parse:
            (copies if item[4] in first else unique).append(item)
            first.setdefault(item[4], item[1])
        self._parse_and_commit(unique, report, emit)
        for _path, key, st, _data, h in copies:
            emit(self._attach_duplicate(key, st, h))
        if self.options.prune_missing:
            for root in paths:
                if root.is_dir():
                    for r in self._prune(path_key(root) + "/", seen):
                        emit(r)
        self._snapshot()
        return report

    def _check_file(
        self, path: Path, key: str, to_parse: list[tuple[Path, str, os.stat_result, bytes, str]]
    ) -> FileResult | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return FileResult(key, "failed", reason="file vanished before it could be read")
        except OSError as e:
            return FileResult(key, "failed", reason=f"cannot stat: {e.strerror}")
        if st.st_size == 0:
            return FileResult(key, "failed", reason="empty file (0 bytes)")
        if st.st_size > self.options.max_bytes:
            return FileResult(
                key, "failed",
                reason=f"file is {st.st_size / 2**20:.1f} MiB, over the {self.options.max_bytes / 2**20:.0f} MiB limit",
            )
        rec = self.collection.store.source(key)
        if rec and rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns:
            return FileResult(key, "unchanged", doc_id=rec.doc_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return FileResult(key, "failed", reason="file vanished before it could be read")
        except OSError as e:
            return FileResult(key, "failed", reason=f"cannot read: {e.strerror}")
        h = hashlib.sha256(data).hexdigest()
        if rec and rec.content_hash == h:
            with self.collection.store.transaction() as conn:
                self.collection.store.set_source(conn, SourceRecord(key, rec.doc_id, st.st_size, st.st_mtime_ns, h))
            return FileResult(key, "unchanged", doc_id=rec.doc_id)
        if self.collection.store.doc_id_for_hash(h) is not None:
            return self._attach_duplicate(key, st, h)
        to_parse.append((path, key, st, data, h))
        return None

    def _attach_duplicate(self, key: str, st: os.stat_result, h: str) -> FileResult:
        store = self.collection.store
        existing = store.doc_id_for_hash(h)
        if existing is None:  # its twin failed to parse
            return FileResult(key, "failed", reason="same content as a file that failed")
        with store.transaction() as conn:
            old = store.set_source(conn, SourceRecord(key, existing, st.st_size, st.st_mtime_ns, h))
            if old:
                store.delete_if_orphan(conn, old)
        return FileResult(key, "duplicate", doc_id=existing, reason="same content as an existing document")

    def _parse_and_commit(
        self,
        items: list[tuple[Path, str, os.stat_result, bytes, str]],
        report: IngestReport,
        emit: Callable[[FileResult], None],
    ) -> None:
        def handle(item: tuple[Path, str, os.stat_result, bytes, str], parsed: ParsedDocument | Exception) -> None:
            path, key, st, data, h = item
            if isinstance(parsed, Exception):
                reason = str(parsed) if isinstance(parsed, IngestError) else f"{type(parsed).__name__}: {parsed}"
                emit(FileResult(key, "failed", reason=reason or type(parsed).__name__))
                return
            too_long = self._over_token_limit(parsed)
            if too_long:
                emit(FileResult(key, "failed", reason=too_long))
                return
            rec = self.collection.store.source(key)
            try:
                sidecar = _read_sidecar(path)
            except IngestError as e:
                emit(FileResult(key, "failed", reason=str(e)))
                return
            self._queue(
                key=key, stat=(st.st_size, st.st_mtime_ns), content_hash=h, parsed=parsed, path=path,
                mime=_mime_of(path), sidecar=sidecar, mtime=st.st_mtime, status="updated" if rec else "added",
                report=report,
            )
            if self._pending_chunks >= self.options.batch_chunks:
                for r in self._flush(report):
                    emit(r)

        t0 = time.perf_counter()
        if self.options.workers <= 0 or len(items) <= 1:
            for item in items:
                t = time.perf_counter()
                try:
                    parsed: ParsedDocument | Exception = _parse_worker(
                        str(item[0]), self.options.max_bytes, self.options.ocr, self.options.archive
                    )
                except Exception as e:  # a parser bug must cost one file, not the batch
                    parsed = e
                report.timings["parse"] += time.perf_counter() - t
                handle(item, parsed)
        else:
            o = self.options
            with ProcessPoolExecutor(max_workers=o.workers) as pool:
                futures: list[Future[ParsedDocument]] = [
                    pool.submit(_parse_worker, str(i[0]), o.max_bytes, o.ocr, o.archive) for i in items
                ]
                for item, fut in zip(items, futures, strict=True):
                    t = time.perf_counter()
                    try:
                        parsed = fut.result()
                    except Exception as e:
                        parsed = e
                    report.timings["parse"] += time.perf_counter() - t  # time waiting on parsers
                    handle(item, parsed)
        for r in self._flush(report):
            emit(r)
        report.timings["total"] = time.perf_counter() - t0

    def _over_token_limit(self, parsed: ParsedDocument) -> str | None:
        """Why the file is refused for its length, or None. Chunking and embedding cost grows with the tokens."""
        cap = self.options.max_file_tokens
        text = parsed.text
        if not cap or len(text) <= cap:  # a token covers at least one character: no need to count
            return None
        from ingest.chunking import default_counter

        n = default_counter().count(text)
        if n <= cap:
            return None
        return (f"text has {n:,} tokens, over the per-file limit of {cap:,} (RAGQA_INGEST_MAX_FILE_TOKENS): "
                f"split the file or raise the limit")

    def _prune(self, prefix: str, seen: set[str]) -> Iterator[FileResult]:
        store = self.collection.store
        gone = [s for s in store.sources_under(prefix) if s.path not in seen]
        if not gone:
            return
        with store.transaction() as conn:
            for s in gone:
                doc_id = store.drop_source(conn, s.path)
                if doc_id:
                    store.delete_if_orphan(conn, doc_id)
        for s in gone:
            yield FileResult(s.path, "removed", doc_id=s.doc_id, reason="file no longer exists")

    # ---- records ---------------------------------------------------------------------------------------------------

    def ingest_records(self, records: Iterable[Record]) -> IngestReport:
        report = IngestReport()
        t0 = time.perf_counter()
        for rec in records:
            data = (rec.title + "\n\n" + rec.text).encode("utf-8")
            h = hashlib.sha256(data).hexdigest()
            src = self.collection.store.source(rec.key)
            if src and src.content_hash == h:
                report.results.append(FileResult(rec.key, "unchanged", doc_id=src.doc_id))
                continue
            t = time.perf_counter()
            parsed = parsed_from_text(rec.title, rec.text)
            report.timings["parse"] += time.perf_counter() - t
            self._queue(
                key=rec.key, stat=(len(data), 0), content_hash=h, parsed=parsed, path=None, mime="text/plain",
                sidecar={"effective_date": rec.effective_date, **rec.metadata} if rec.effective_date else rec.metadata,
                mtime=None, status="updated" if src else "added", report=report,
            )
            if self._pending_chunks >= self.options.batch_chunks:
                report.results.extend(self._flush(report))
        report.results.extend(self._flush(report))
        report.timings["total"] = time.perf_counter() - t0
        self._snapshot()
        return report

    # ---- shared: queue, embed, commit ------------------------------------------------------------------------------

    def _queue(
        self, *, key: str, stat: tuple[int, int], content_hash: str, parsed: ParsedDocument, path: Path | None,
        mime: str, sidecar: dict[str, Any], mtime: float | None, status: Status, report: IngestReport,
    ) -> None:
        t = time.perf_counter()
        sections, drafts = chunk_document(parsed, self.chunking)
        report.timings["chunk"] = report.timings.get("chunk", 0.0) + time.perf_counter() - t
        meta = {**self.options.metadata, **{k: v for k, v in sidecar.items() if k not in _SIDECAR_FIELDS}}
        # Titles fall back to file names, which need not be UTF-8: keep them printable and storable.
        stem = Path(key).stem if path else key
        title = _printable(str(sidecar.get("title") or parsed.title or stem))
        first_page = parsed.text[:3000]
        date, date_source = resolve_effective_date(
            explicit=self.options.effective_date, sidecar=sidecar.get("effective_date"), title=title,
            first_page=first_page, metadata=parsed.metadata, path=path, mtime=mtime,
        )
        authority = sidecar.get("authority", self.options.authority)
        doc = Document(
            doc_id=content_hash[:16], collection=self.collection.name, source_path=key, title=title, mime=mime,
            content_hash=content_hash, effective_date=date, date_source=date_source,
            ingested_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            authority=float(authority) if authority is not None else None, language=parsed.language, metadata=meta,
        )
        family = str(sidecar.get("family") or family_of(stem if path else title))
        self._pending.append(
            _Pending(
                key=key, stat=stat, content_hash=content_hash, doc=doc, family=family,
                sections=[
                    NewSection(s.position, s.heading_path, s.text, s.token_count, s.page_start, s.page_end)
                    for s in sections
                ],
                drafts=list(drafts), status=status,
            )
        )
        self._pending_chunks += len(drafts)

    def _flush(self, report: IngestReport) -> list[FileResult]:
        if not self._pending:
            return []
        pending, self._pending, self._pending_chunks = self._pending, [], 0
        store = self.collection.store
        texts = [contextualize(p.doc.title, d.heading_path, d.text) for p in pending for d in p.drafts]
        t = time.perf_counter()
        vecs = self.embedder.embed_documents(texts) if texts else np.zeros((0, self.embedder.dim), np.float32)
        report.timings["embed"] += time.perf_counter() - t
        t = time.perf_counter()
        tokens = [self.analyzer.tokenize(x) for x in texts]
        levels = [d.level for p in pending for d in p.drafts]
        dups = self._near_duplicates(vecs, levels, [d.text for p in pending for d in p.drafts])
        results = []
        i = 0
        assert self.collection.indexes is not None
        with store.transaction() as conn:
            batch_ids: list[int] = []
            for p in pending:
                chunks = []
                for d in p.drafts:
                    dup = dups.get(i)
                    if dup is not None and dup < 0:  # an earlier chunk of this same batch
                        pos = -1 - dup
                        dup = batch_ids[pos] if pos < len(batch_ids) and batch_ids[pos] >= 0 else None
                    chunks.append(
                        NewChunk(
                            level=d.level, position=d.position, section_position=d.section_position,
                            heading_path=d.heading_path, kind=d.kind, text=d.text, token_count=d.token_count,
                            tokens=tokens[i], embedding=vecs[i], page_start=d.page_start, page_end=d.page_end,
                            char_start=d.char_start, char_end=d.char_end, near_dup_of=dup,
                        )
                    )
                    i += 1
                if store.doc_id_for_hash(p.content_hash) is None:
                    batch_ids += store.add_document(conn, p.doc, p.family, p.sections, chunks)
                else:  # the same bytes twice in one batch: keep positions aligned, store once
                    batch_ids += [-1] * len(chunks)
                old = store.set_source(conn, SourceRecord(p.key, p.doc.doc_id, p.stat[0], p.stat[1], p.content_hash))
                if old:
                    store.delete_if_orphan(conn, old)
                results.append(FileResult(p.key, p.status, doc_id=p.doc.doc_id, chunks=len(chunks)))
        self.collection.indexes.refresh()
        report.timings["index"] += time.perf_counter() - t
        return results

    def _near_duplicates(self, vecs: np.ndarray, levels: list[int], texts: list[str]) -> dict[int, int]:
        """Map batch position -> chunk id (or -1 - batch position) of an earlier chunk with cosine >= threshold
        that states the same numbers.

        Marked, not dropped: retrieval collapses them, and the user still sees every source. The numbers matter
        because cosine hardly sees them: two sentences that differ in "5 years" / "7 years" alone are above the 0.85
        threshold with minilm-int8 (tests/ingest/test_pipeline.py checks it), and collapsing one into the other would
        hide the change a dated answer must report.
        """
        thr = self.options.near_dup_threshold
        out: dict[int, int] = {}
        if len(vecs) == 0 or thr >= 1.0:
            return out
        assert self.collection.indexes is not None
        lv = np.asarray(levels)
        values = [numbers(t) for t in texts]

        def same_values(j: int, chunk_id: int) -> bool:
            earlier = self.collection.store.chunks([chunk_id])
            return bool(earlier) and numbers(earlier[0].text) == values[j]

        for level in set(levels):
            idx = np.flatnonzero(lv == level)
            dense = self.collection.indexes.dense.get(level)
            if dense is not None and len(dense):
                for j in idx:
                    hits = dense.search(vecs[j], 1)
                    if hits and hits[0][1] >= thr and same_values(int(j), int(hits[0][0])):
                        out[int(j)] = int(hits[0][0])
            # Within the batch: the earliest earlier chunk that is close enough, encoded as -1 - position.
            sims = vecs[idx] @ vecs[idx].T
            for a in range(1, len(idx)):
                if int(idx[a]) in out:
                    continue
                close = [int(idx[b]) for b in np.flatnonzero(sims[a, :a] >= thr)
                         if values[int(idx[b])] == values[int(idx[a])]]
                if close:
                    out[int(idx[a])] = -1 - close[0]
        return out

    def _snapshot(self) -> None:
        assert self.collection.indexes is not None
        self.collection.indexes.refresh()
        self.collection.indexes.snapshot()


_SIDECAR_FIELDS = {"effective_date", "authority", "title", "family"}


def _read_sidecar(path: Path) -> dict[str, Any]:
    """`<file>.meta.json` beside a file: effective_date, authority, title, family and any user metadata."""
    side = path.with_name(path.name + ".meta.json")
    if not side.exists():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IngestError(f"bad sidecar {side.name}: {e}") from e
    if not isinstance(data, dict):
        raise IngestError(f"bad sidecar {side.name}: expected a JSON object")
    return data


def _printable(s: str) -> str:
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _mime_of(path: Path) -> str:
    import mimetypes

    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def parsed_from_text(title: str, text: str) -> ParsedDocument:
    """A ParsedDocument for plain text given directly: paragraphs split on blank lines."""
    elements = []
    pos = 0
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        elements.append(Element(kind="paragraph", text=para, heading_path=(title,) if title else (),
                                char_start=pos, char_end=pos + len(para)))
        pos += len(para) + 2
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    lang = None if not text.strip() else ("zh" if cjk > 0.3 * len(text.replace(" ", "")) else "en")
    return ParsedDocument(elements=tuple(elements), title=title, language=lang)
