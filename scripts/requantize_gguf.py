"""Write a GGUF model in another llama.cpp quantisation, with llama.cpp's own quantiser (through llama-cpp-python).

    .venv/bin/python scripts/requantize_gguf.py SRC.gguf DST.gguf --type q8_0 [--threads 2]

For measuring how the tensor type moves prompt reading speed (bench/bench_llm.py takes a .gguf path as a model).
Requantising a Q4_K_M file to Q8_0 keeps Q4_K_M's rounding (no information comes back) and adds almost none;
to Q4_0 it adds a second rounding. Prints the output's sha256.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

from app.llm.embedded import sha256_file

TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


def requantize(src: Path, dst: Path, kind: str, threads: int) -> str:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, TYPES[kind])
    params.allow_requantize = True
    params.nthread = threads
    dst.parent.mkdir(parents=True, exist_ok=True)
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if code != 0:
        raise RuntimeError(f"llama_model_quantize failed with code {code}: {src} -> {dst} ({kind})")
    return sha256_file(dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--type", choices=sorted(TYPES), default="q8_0")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not args.src.is_file():
        print(f"error: no such file: {args.src}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    digest = requantize(args.src, args.dst, args.type, args.threads)
    mb = args.dst.stat().st_size / 1e6
    print(f"wrote {args.dst} ({mb:.0f} MB, {args.type}) in {time.monotonic() - t0:.0f} s; sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
