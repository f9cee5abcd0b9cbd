"""Choosing the llama.cpp build from the kernel's CPU flags (app/llm/builds.py), on fake /proc/cpuinfo text and
fake build folders; the fallback on SIGILL is in test_llm_selftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.llm.builds import PORTABLE, candidates, cpu_flags, installed

AVX512 = "avx avx2 fma f16c bmi2 avx512f avx512cd avx512bw avx512dq avx512vl avx512vbmi avx512_vnni avx512_bf16"


def _build(root: Path, name: str, requires: str, package: bool = True) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "BUILD.json").write_text(json.dumps({"name": name, "requires": requires.split()}))
    if package:
        (root / name / "llama_cpp").mkdir()


def test_cpu_flags_reads_the_kernels_flags_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == frozenset({"fpu", "sse2", "avx2", "avx512f", "amx_tile"})
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_the_avx512_build_is_first_only_where_every_flag_it_needs_is_listed(tmp_path: Path) -> None:
    _build(tmp_path, "avx512", AVX512)
    extra = installed(tmp_path)
    assert [b.name for b in extra] == ["avx512"]
    full = frozenset(AVX512.split()) | {"amx_tile", "amx_int8"}
    assert [b.name for b in candidates("auto", full, extra)] == ["avx512", "portable"]
    # An Ice Lake has AVX-512 and VNNI but not BF16: the portable build only.
    no_bf16 = full - {"avx512_bf16"}
    assert candidates("auto", no_bf16, extra) == [PORTABLE]
    # A kernel that did not enable AVX-512 state lists none of it.
    assert candidates("auto", frozenset(["avx", "avx2", "fma", "f16c", "bmi2"]), extra) == [PORTABLE]


def test_explicit_choices_and_broken_folders(tmp_path: Path) -> None:
    _build(tmp_path, "avx512", AVX512)
    _build(tmp_path, "halfdone", AVX512, package=False)  # no llama_cpp/ inside: an interrupted install
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "BUILD.json").write_text("{not json")
    extra = installed(tmp_path)
    assert [b.name for b in extra] == ["avx512"]
    assert candidates("portable", frozenset(AVX512.split()), extra) == [PORTABLE]
    # Named: used even where the flags do not list it (a user's override), the portable build still behind it.
    assert [b.name for b in candidates("avx512", frozenset(), extra)] == ["avx512", "portable"]
    with pytest.raises(ValueError, match="no such llama.cpp build"):
        candidates("avx512", frozenset(), [])
