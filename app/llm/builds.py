"""Which llama.cpp build the embedded model server runs: the portable AVX2 one, or a faster one the CPU really runs.

`make install` (scripts/build_llama.sh) installs the portable build (x86-64-v3, no AVX-512, no AMX) and unpacks an
AVX-512 build, with VNNI and BF16 but never AMX, under `<venv>/llama-builds/avx512` with a `BUILD.json` that lists
the instruction sets it uses. Prompt reading, most of an answer's time, is 1.41x as fast on it on
an Intel Xeon VM (docs/benchmarks.md, "The embedded model's build").

The choice reads the kernel's CPU flags (/proc/cpuinfo), not CPUID: the kernel drops the AVX-512 flags when the OS
does not save that register state, which CPUID alone would not show. A VM can still advertise what it does not
allow (the AMX case that issue 10 reports), so candidates come best first and the portable build last: the embedded
server moves to the next one when a build dies with SIGILL during its start-up self-test.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

BuildChoice = Literal["auto", "portable", "avx512"]
PORTABLE_REQUIRES = frozenset({"avx", "avx2", "fma", "f16c", "bmi2"})


@dataclass(frozen=True)
class LlamaBuild:
    name: str
    site: Path | None  # a folder holding another `llama_cpp` package, put first on PYTHONPATH; None = the venv's own
    requires: frozenset[str] = PORTABLE_REQUIRES

    def runs_on(self, flags: frozenset[str]) -> bool:
        return self.requires <= flags


PORTABLE = LlamaBuild("portable", None)


def builds_root() -> Path:
    return Path(sys.prefix) / "llama-builds"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's flags as the kernel reports them; empty when unknown (not Linux, or not x86)."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def installed(root: Path | None = None) -> list[LlamaBuild]:
    """The extra builds under `root`, each a folder with a `BUILD.json` ({"name", "requires"}) and `llama_cpp/`."""
    root = builds_root() if root is None else root
    out = []
    for meta in sorted(root.glob("*/BUILD.json")):
        try:
            spec = json.loads(meta.read_text(encoding="utf-8"))
            build = LlamaBuild(str(spec["name"]), meta.parent, frozenset(spec["requires"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring the llama.cpp build in %s: unreadable BUILD.json (%s)", meta.parent, e)
            continue
        if (meta.parent / "llama_cpp").is_dir():
            out.append(build)
    return out


def candidates(choice: BuildChoice = "auto", flags: frozenset[str] | None = None,
               extra: Sequence[LlamaBuild] | None = None) -> list[LlamaBuild]:
    """The builds to try, best first; the portable one always last. `choice` names one build to use alone."""
    flags = cpu_flags() if flags is None else flags
    extra = installed() if extra is None else list(extra)
    if choice == "portable":
        return [PORTABLE]
    if choice != "auto":
        named = [b for b in extra if b.name == choice]
        if not named:
            raise ValueError(f"RAGQA_LLAMA_BUILD={choice}: no such llama.cpp build under {builds_root()} "
                             "(scripts/build_llama.sh makes it; RAGQA_LLAMA_BUILD=auto picks what exists)")
        return [*named, PORTABLE]
    usable = [b for b in extra if b.runs_on(flags)]
    skipped = [b.name for b in extra if b not in usable]
    if skipped:
        log.info("llama.cpp builds not used on this CPU (flags missing): %s", ", ".join(skipped))
    return [*usable, PORTABLE]
