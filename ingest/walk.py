"""Walking the paths given to `ragqa ingest`: folders recursively, safely.

Symlink loops are cut by remembering each directory's (device, inode); hidden files and our own sidecars are skipped;
names that are not valid UTF-8 are kept (and shown with backslash escapes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

SIDECAR_SUFFIX = ".meta.json"


def path_key(path: Path) -> str:
    """The stored form of a path: absolute, and printable even when the name's bytes are not UTF-8."""
    raw = os.fsencode(os.path.abspath(path))
    return raw.decode("utf-8", "backslashreplace")


def _skip(name: str) -> bool:
    return name.startswith(".") or name.endswith(SIDECAR_SUFFIX) or name.startswith("~$")


def walk_paths(paths: Sequence[Path]) -> Iterator[tuple[Path, str | None]]:
    """Yield (file, None) for each file to ingest, or (path, reason) for a path that cannot be walked."""
    for top in paths:
        if not os.path.lexists(top):
            yield top, "no such file or directory"
            continue
        if not top.is_dir():
            if top.is_file():
                yield top.absolute(), None
            else:
                yield top, "not a regular file (broken link, device or socket)"
            continue
        seen: set[tuple[int, int]] = set()
        stack = [top.absolute()]
        while stack:
            d = stack.pop()
            try:
                st = d.stat()
            except OSError as e:
                yield d, f"cannot open folder: {e.strerror}"
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue  # a symlink loop or a second link to a folder already walked
            seen.add((st.st_dev, st.st_ino))
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError as e:
                yield d, f"cannot list folder: {e.strerror}"
                continue
            subdirs = []
            for entry in entries:
                if _skip(entry.name):
                    continue
                p = Path(entry.path)
                try:
                    if entry.is_dir(follow_symlinks=True):
                        subdirs.append(p)
                    elif entry.is_file(follow_symlinks=True):
                        yield p, None
                    elif entry.is_symlink():
                        yield p, "broken symbolic link"
                except OSError as err:
                    yield p, f"cannot stat: {err.strerror}"
            stack.extend(reversed(subdirs))
