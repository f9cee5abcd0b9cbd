"""The installed llama.cpp runs on any x86-64 CPU with AVX2: no AMX, AVX-512 or AVX-VNNI instruction in it; the
extra AVX-512 build beside it has no AMX and declares every instruction set it uses, so it is chosen only where the
kernel's CPU flags list them (app/llm/builds.py).

A native build (-march=native) on a host whose flags advertise AMX compiles ggml's AMX kernels in, and a VM that does
not let a process use AMX state then kills the model server with SIGILL on its first real prompt. This machine may
not be one that crashes, so the guard reads the instructions themselves (`objdump -d`), whatever CPU runs the test.
The baseline is x86-64-v3 (AVX, AVX2, FMA, F16C, BMI1/2), the flags scripts/build_llama.sh builds with.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the baseline is for x86-64 builds")

# Mnemonics that exist only in AMX, AVX-512 (any width: EVEX-only forms) or AVX-VNNI / AVX512-VNNI / BF16.
ABOVE_BASELINE = re.compile(
    r"^(tile\w*|tdp\w*|ldtilecfg|sttilecfg|"  # AMX
    r"k(?:mov|or|and|andn|not|xor|xnor|add|shiftl|shiftr|test|ortest|unpck)[bwdq]\w*|"  # AVX-512 mask registers
    r"vpternlog[dq]|vperm[it]2\w+|vpcompress[bwdq]|vpexpand[bwdq]|vpro[lr]v?[dq]|vpmov[us]?[qdw][bwd]|"
    r"vpmov[bwdq]2m|vpmovm2[bwdq]|vpconflict[dq]|vplzcnt[dq]|vrcp14\w+|vrsqrt14\w+|vrndscale\w+|vreduce\w+|"
    r"vgetexp\w+|vgetmant\w+|vscalef\w+|vfixupimm\w+|vrange\w+|vfpclass\w+|vpermb|vpermw|vpmultishiftqb|"
    r"vpdpbusds?|vpdpwssds?|vcvtne2ps2bf16|vcvtneps2bf16|vdpbf16ps|vpopcnt[bwdq]|vpshufbitqmb|"
    r"vextract[fi](?:32x4|32x8|64x2|64x4)|vinsert[fi](?:32x4|32x8|64x2|64x4)|vbroadcast[fi](?:32x[248]|64x[24])|"
    r"vpbroadcastm\w+|valign[dq]|vdbpsadbw|vpcmpu?[bwdq]|vcvt(?:t?ps2u|t?pd2u|u)\w+)$"
)
ZMM_OR_MASK = re.compile(r"%zmm\d|\{%k[1-7]\}|%k[0-7]\b")


def _libraries(root: Path | None = None) -> list[Path]:
    if root is None:
        import llama_cpp

        root = Path(llama_cpp.__file__).parent
    libs = sorted(p for p in root.rglob("*.so*") if p.is_file() and "ggml" in p.name)
    assert libs, f"no ggml library under {root}: is llama-cpp-python installed as the Makefile does?"
    return libs


def _offending(lib: Path) -> list[str]:
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    bad = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].rstrip().endswith(":"):
            continue
        insn = parts[1].strip()
        mnemonic = insn.split(" ", 1)[0].removeprefix("{vex}").removeprefix("{evex}").strip()
        if not mnemonic:
            mnemonic = insn.split()[1] if len(insn.split()) > 1 else ""
        if ABOVE_BASELINE.match(mnemonic) or ZMM_OR_MASK.search(insn) or insn.startswith("{evex}"):
            bad.append(f"{parts[0].strip()} {insn}")
    return bad


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (Debian: binutils)")
def test_installed_ggml_has_no_instruction_above_the_avx2_baseline() -> None:
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (make install builds it)")
    for lib in _libraries():
        bad = _offending(lib)
        assert not bad, (
            f"{lib.name} holds {len(bad)} instructions above x86-64-v3 (AMX/AVX-512/VNNI), e.g. {bad[:5]}: it would "
            "die with SIGILL on CPUs without them. Rebuild with scripts/build_llama.sh (portable flags)."
        )


def test_the_scanner_finds_amx_and_avx512(tmp_path: Path) -> None:
    """The guard must be able to fail: compile a few lines that use AMX and AVX-512 and scan them."""
    if shutil.which("objdump") is None or shutil.which("gcc") is None:
        pytest.skip("needs gcc and objdump")
    src = tmp_path / "k.c"
    src.write_text(
        "#include <immintrin.h>\n"
        "void amx(void) { _tile_zero(4); }\n"
        "__m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }\n"
        "__m256 fma3(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }\n"
    )
    good = tmp_path / "v3.c"
    good.write_text("#include <immintrin.h>\n"
                    "__m256 fma3(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }\n")
    for c, flags in ((src, ["-mamx-tile", "-mavx512f", "-mfma"]), (good, ["-march=x86-64-v3"])):
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", *flags, "-o", str(c.with_suffix(".so")), str(c)],
                       check=True)
    bad = _offending(src.with_suffix(".so"))
    assert any("tilezero" in b for b in bad) and any("zmm" in b for b in bad), bad
    assert _offending(good.with_suffix(".so")) == []


AMX = re.compile(r"^(tile\w*|tdp\w*|ldtilecfg|sttilecfg)$")
# Instruction families of the AVX-512 build and the kernel flag each needs, beyond avx512f/bw/vl/dq/cd.
NEEDS = {re.compile(r"^vpdpbusds?$|^vpdpwssds?$"): "avx512_vnni", re.compile(r"^vdpbf16ps$|^vcvtne2?ps2bf16$"):
         "avx512_bf16", re.compile(r"^vpermb$|^vpermi2b$|^vpermt2b$|^vpmultishiftqb$"): "avx512vbmi"}


def _mnemonics(lib: Path) -> set[str]:
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].rstrip().endswith(":") and parts[1].strip():
            found.add(parts[1].split()[0].removeprefix("{vex}").removeprefix("{evex}"))
    return found


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (Debian: binutils)")
def test_extra_builds_have_no_amx_and_declare_what_they_use() -> None:
    from app.llm.builds import installed

    builds = installed()
    if not builds:
        pytest.skip("no extra llama.cpp build installed (RAGQA_LLAMA_VARIANTS=none, or not x86-64)")
    for build in builds:
        assert build.site is not None
        libs = _libraries(build.site / "llama_cpp")
        used = set().union(*(_mnemonics(lib) for lib in libs))
        amx = sorted(m for m in used if AMX.match(m))
        assert not amx, f"the {build.name} build holds AMX instructions {amx[:5]}: no build may (issue 10)"
        assert {"avx2", "fma", "f16c"} <= build.requires
        if any(ABOVE_BASELINE.match(m) for m in used):
            assert {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= build.requires, build.requires
        for pattern, flag in NEEDS.items():
            hits = sorted(m for m in used if pattern.match(m))
            if hits:
                assert flag in build.requires, f"{build.name} uses {hits[:3]} but does not require {flag}"
