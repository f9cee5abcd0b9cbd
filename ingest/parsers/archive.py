"""Zip-based formats (DOCX, PPTX, XLSX, EPUB) checked from their central directory before any member is inflated.

A 1 MB file can hold a member that inflates to gigabytes, and the parsers inflate whole members into memory. The
central directory declares each member's size, and Python's zipfile, which every parser here reads through, never
inflates a member past its declared size (it stops there and fails the CRC check). So the declared sizes bound the
work, and checking them needs no inflating at all.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from ingest.errors import FileTooLarge


@dataclass(frozen=True)
class ArchiveLimits:
    max_unpacked_bytes: int = 512 * 2**20  # all members together, as declared
    max_ratio: float = 100.0  # declared size / compressed size, per member
    ratio_floor_bytes: int = 2**20  # smaller members may compress better than max_ratio (runs of spaces, empty cells)
    max_members: int = 20_000

    def __post_init__(self) -> None:
        if self.max_unpacked_bytes < 1 or self.max_ratio < 1 or self.ratio_floor_bytes < 0 or self.max_members < 1:
            raise ValueError(f"bad archive limits: {self}")


class ArchiveBomb(FileTooLarge):
    """An archive that would unpack to more than the limits allow."""


def check_archive(data: bytes, limits: ArchiveLimits) -> None:
    """ArchiveBomb (an IngestError: the file fails, the batch goes on) when `data` would unpack past `limits`.

    A file that is not a readable zip passes: the parser reports the damage in its own words.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return
    if len(members) > limits.max_members:
        raise ArchiveBomb(f"archive has {len(members):,} members, over the limit of {limits.max_members:,}")
    total = sum(m.file_size for m in members)
    if total > limits.max_unpacked_bytes:
        biggest = max(members, key=lambda m: m.file_size)
        raise ArchiveBomb(
            f"archive would unpack to {_mib(total)} (largest member {biggest.filename!r}: {_mib(biggest.file_size)}), "
            f"over the {_mib(limits.max_unpacked_bytes)} limit (RAGQA_ARCHIVE_MAX_UNPACKED_MB); refused unopened"
        )
    for m in members:
        if m.file_size >= limits.ratio_floor_bytes and m.file_size > limits.max_ratio * max(m.compress_size, 1):
            ratio = m.file_size / max(m.compress_size, 1)
            raise ArchiveBomb(
                f"archive member {m.filename!r} would inflate {ratio:,.0f}x ({_mib(m.compress_size)} to "
                f"{_mib(m.file_size)}), over the {limits.max_ratio:g}x limit (RAGQA_ARCHIVE_MAX_RATIO): "
                f"refused unopened as a likely zip bomb"
            )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"
