"""Which bundled embedder a new collection gets when the setting is "auto": by the languages of its first documents.

The model is fixed at creation (the manifest pins it), so the choice looks at what is about to be ingested: file
names and the opening of every text-like file, without parsing anything heavy (PDF or OCR) twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path

from ingest.encoding import decode_text
from ingest.walk import walk_paths
from retrieval.collection import Collection
from retrieval.embedders import AUTO, choose_spec
from retrieval.manifest import Manifest

_TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".html", ".htm", ".csv", ".tsv", ".json", ".xml", ".eml"}


def sample_text(paths: Sequence[Path], max_files: int = 200, max_bytes: int = 8192) -> Iterator[str]:
    """File names, and the first `max_bytes` of each text-like file, over at most `max_files` files."""
    for n, (path, reason) in enumerate(walk_paths(paths)):
        if n >= max_files:
            return
        if reason is not None:
            continue
        yield path.stem
        if path.suffix.lower() in _TEXT_SUFFIXES:
            try:
                with path.open("rb") as f:
                    yield _decode_head(f.read(max_bytes))
            except OSError:
                continue  # the ingest itself reports the file


def _decode_head(data: bytes) -> str:
    # The cut at max_bytes may split a UTF-8 character; without this the detector would guess a legacy encoding.
    for cut in range(4):
        try:
            return data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return decode_text(data)[0]


def resolve_embedder(
    data_dir: Path, collection: str, spec: str, paths: Sequence[Path], texts: Iterable[str] = ()
) -> str:
    """The embedder spec to open `collection` with: "auto" means the existing collection's model, or for a new one
    the bundled model that suits the languages of `paths` and `texts` (documents given as text)."""
    if spec != AUTO:
        return spec
    manifest = Collection(data_dir, collection).root / "manifest.json"
    if manifest.exists():
        return Manifest.read(manifest).embedder
    return choose_spec(spec, chain(texts, sample_text(paths)))
