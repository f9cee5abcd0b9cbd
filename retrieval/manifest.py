"""A collection's manifest: what its vectors and chunks were made with.

Opening a collection with a different embedder or chunking is refused, because mixing vectors from two models (or chunks
of two sizes) gives silently wrong search results.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


class ManifestMismatch(Exception):
    """The collection on disk was built with other settings than the ones asked for."""


@dataclass(frozen=True)
class Manifest:
    collection: str
    embedder: str
    dim: int
    chunking: dict[str, Any]
    analyzer: str = "ragqa-analyzer-v1"
    bm25: dict[str, float] = field(default_factory=lambda: {"k1": 1.2, "b": 0.75})
    format_version: int = FORMAT_VERSION

    def check_compatible(self, other: Manifest) -> None:
        """Raise ManifestMismatch naming every field that differs (other = what the caller asked for)."""
        diffs = []
        for key in ("embedder", "dim", "chunking", "analyzer", "format_version"):
            mine, theirs = getattr(self, key), getattr(other, key)
            if mine != theirs:
                diffs.append(f"{key}: collection has {mine!r}, asked for {theirs!r}")
        if diffs:
            raise ManifestMismatch(
                f"collection {self.collection!r} was built with other settings; "
                + "; ".join(diffs)
                + ". Re-index into a new collection, or open it with the settings it was built with."
            )

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format_version") != FORMAT_VERSION:
            raise ManifestMismatch(
                f"{path}: format_version {data.get('format_version')!r}, this ragqa reads {FORMAT_VERSION}"
            )
        return cls(**data)
