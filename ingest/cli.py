"""`ragqa ingest PATH...`: walk, parse, chunk, embed and index, then print a per-file summary."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ingest.chunking import ChunkingSettings
from ingest.dates import parse_user_date
from ingest.language import AUTO, resolve_embedder
from ingest.parsers.archive import ArchiveLimits
from ingest.pipeline import FileResult, IngestOptions, Ingestor, IngestReport
from retrieval.backend import LOCAL, BackendConfig
from retrieval.collection import Collection
from retrieval.embedders import Embedder, get_embedder


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, help="files or folders (walked recursively)")
    p.add_argument("--collection", help="collection name (default: settings)")
    p.add_argument("--date", help="effective date for every file given (YYYY, YYYY-MM or YYYY-MM-DD)")
    p.add_argument("--authority", type=float, help="authority of these sources (higher wins conflicts)")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="user metadata (repeatable)")
    p.add_argument("--workers", type=int, help="parser processes")
    p.add_argument("--no-ocr", action="store_true", help="skip OCR of images and scanned pages")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--async", dest="async_", action="store_true",
                   help="queue an ingest job for `ragqa worker` (or the server's worker) and print its id")


def open_collection(
    data_dir: Path, name: str, embedder: Embedder, chunking: ChunkingSettings, create: bool,
    backend: BackendConfig = LOCAL,
) -> Collection:
    """Open (or create) a collection, refusing one built with another embedder or chunking.

    `embedder` is loaded here (its dimension goes into the manifest); once the collection is open it is the
    collection's own model, so callers embed with this same object rather than loading another."""
    embedder.load()
    return Collection(data_dir, name, backend).open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=create
    )


def resolve_chunking(
    data_dir: Path, name: str, chunking: ChunkingSettings, backend: BackendConfig = LOCAL
) -> ChunkingSettings:
    """The chunking to ingest `name` with: an existing collection keeps the one its manifest pins (the chunk-level
    settings are for new collections), unless this code cannot cut chunks that way; open_collection then refuses."""
    manifest = Collection(data_dir, name, backend).stored_manifest()
    pinned = ChunkingSettings.from_manifest(manifest.chunking) if manifest else None
    return pinned or chunking


def resolve_spec(
    data_dir: Path, name: str, spec: str, paths: Sequence[Path], backend: BackendConfig = LOCAL
) -> str:
    """The embedder to open `name` with: for "auto", the one its manifest pins (on any backend), else as
    ingest.language.resolve_embedder chooses for new collections."""
    manifest = Collection(data_dir, name, backend).stored_manifest() if spec == AUTO else None
    return manifest.embedder if manifest else resolve_embedder(data_dir, name, spec, paths)


def run(
    args: argparse.Namespace, *, data_dir: Path, collection: str, embedder_spec: str, chunking: ChunkingSettings,
    max_bytes: int, workers: int, near_dup_threshold: float, batch_chunks: int = 512, max_file_tokens: int = 0,
    archive: ArchiveLimits | None = None, backend: BackendConfig = LOCAL,
) -> int:
    meta = {}
    for kv in args.meta:
        if "=" not in kv:
            print(f"error: --meta expects KEY=VALUE, got {kv!r}", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        meta[k] = v
    try:
        date = parse_user_date(args.date) if args.date else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = args.collection or collection
    col = Collection(data_dir, name, backend)
    with col.write_lock():
        embedder = get_embedder(resolve_spec(data_dir, name, embedder_spec, args.paths, backend))
        chunking = resolve_chunking(data_dir, name, chunking, backend)
        col = open_collection(data_dir, name, embedder, chunking, create=True, backend=backend)
        options = IngestOptions(
            effective_date=date, authority=args.authority, metadata=meta, max_bytes=max_bytes,
            workers=args.workers if args.workers is not None else workers, ocr=not args.no_ocr,
            near_dup_threshold=near_dup_threshold, batch_chunks=batch_chunks, max_file_tokens=max_file_tokens,
            archive=archive or ArchiveLimits(),
        )
        ingestor = Ingestor(col, embedder, chunking, options)
        progress = _Progress(enabled=not args.json and sys.stderr.isatty())
        report = ingestor.ingest_paths(args.paths, progress=progress)
        progress.close()
    _print_report(report, as_json=args.json)
    return 1 if report.failed else 0


class _Progress:
    def __init__(self, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(unit="file", disable=not enabled, file=sys.stderr)

    def __call__(self, r: FileResult) -> None:
        self.bar.update(1)
        self.bar.set_postfix_str(f"{r.status}: {Path(r.path).name[:40]}")

    def close(self) -> None:
        self.bar.close()


def _print_report(report: IngestReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "summary": report.summary(),
            "timings": report.timings,
            "files": [r.__dict__ for r in report.results],
        }, ensure_ascii=False, indent=2))
        return
    for r in report.results:
        if r.status != "unchanged":
            extra = f" ({r.chunks} chunks)" if r.chunks else ""
            why = f": {r.reason}" if r.reason and r.status in ("failed", "duplicate", "removed") else ""
            print(f"{r.status:<10} {r.path}{extra}{why}")
    s = report.summary()
    print(
        f"\n{s['added']} added, {s['updated']} updated, {s['unchanged']} unchanged, {s['duplicate']} duplicate, "
        f"{s['removed']} removed, {s['failed']} failed in {report.timings.get('total', 0):.1f}s"
    )
