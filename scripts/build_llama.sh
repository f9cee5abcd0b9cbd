#!/usr/bin/env bash
# Build and install llama-cpp-python portably (AVX2 baseline), plus an AVX-512 build kept beside it for CPUs that
# really have AVX-512.
#
# Why portable: a native build (-march=native) on a host whose flags advertise AMX compiles ggml's AMX kernels in,
# and a VM that does not let a process use AMX state dies with SIGILL on the first real prompt. The installed build
# runs on every x86-64 CPU with AVX2 (x86-64-v3: Intel Haswell+, AMD Zen+).
#
# Why a second build: prompt reading is most of an answer's time, and AVX-512 with VNNI/BF16 reads prompts much
# faster (docs/benchmarks.md, "llama.cpp builds"). It is unpacked under $VENV/llama-builds/avx512 (never installed
# over the portable one); app/llm/builds.py starts the model server on it only when the kernel's CPU flags list every
# instruction set it uses, and falls back to the portable build if it dies with SIGILL anyway. No build has AMX.
# ggml's own dispatch (GGML_BACKEND_DL with GGML_CPU_ALL_VARIANTS) was not used: it compiles a dozen variants,
# one of them AMX, and chooses by CPUID, which is exactly what a VM advertises and may not allow.
#
# pip's wheel cache keys a built wheel by the source archive, not by CMAKE_ARGS, so a wheel built natively earlier
# on this machine would be reused silently. We therefore build with --no-cache-dir into our own cache folder whose
# name carries the version and a hash of the flags, and install from there with --no-index.
#
#   scripts/build_llama.sh PIP [VERSION]       e.g. scripts/build_llama.sh .venv/bin/pip
#   RAGQA_LLAMA_VARIANTS=none scripts/build_llama.sh .venv/bin/pip     # the portable build only
set -euo pipefail
PIP=${1:?usage: build_llama.sh PIP [VERSION]}
VERSION=${2:-0.3.36}
VENV=$(cd "$(dirname "$PIP")/.." && pwd)
COMMON="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF \
-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
NO_AMX="-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
PORTABLE="$COMMON \
-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF \
$NO_AMX"
AVX512="$COMMON \
-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=OFF \
$NO_AMX"
# The kernel's names (/proc/cpuinfo) of every instruction set the AVX-512 build compiles in.
AVX512_REQUIRES="avx avx2 fma f16c bmi2 avx512f avx512cd avx512bw avx512dq avx512vl avx512vbmi avx512_vnni avx512_bf16"

# wheel FLAGS -> prints the folder holding the wheel built with FLAGS (built now unless cached)
wheel() {
    local flags=$1 key cache
    key=$(printf '%s %s' "$VERSION" "$flags" | sha256sum | cut -c1-16)
    cache=${RAGQA_WHEEL_CACHE:-$HOME/.cache/ragqa/wheels}/llama-cpp-python-$VERSION-$key
    if ! ls "$cache"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
        echo "building llama-cpp-python $VERSION from source (about 5 min on 2 cores): $flags" >&2
        mkdir -p "$cache.tmp"
        CMAKE_ARGS="$flags" FORCE_CMAKE=1 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
            "$PIP" wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python \
            -w "$cache.tmp" "llama-cpp-python==$VERSION" >&2
        printf '%s\n' "$flags" > "$cache.tmp/CMAKE_ARGS"
        rm -rf "$cache" && mv "$cache.tmp" "$cache"
    fi
    echo "$cache"
}

"$PIP" install -q --force-reinstall --no-deps --no-index --find-links "$(wheel "$PORTABLE")" "llama-cpp-python==$VERSION"

DEST=$VENV/llama-builds/avx512
rm -rf "$DEST"
if [ "$(uname -m)" = x86_64 ] && [ "${RAGQA_LLAMA_VARIANTS:-avx512}" != none ]; then
    CACHE=$(wheel "$AVX512")
    mkdir -p "$DEST.tmp"
    "$VENV/bin/python" -m zipfile -e "$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl | head -1)" "$DEST.tmp"
    "$VENV/bin/python" - "$DEST.tmp/BUILD.json" "$AVX512" "$AVX512_REQUIRES" <<'PY'
import json, sys
path, flags, requires = sys.argv[1:]
json.dump({"name": "avx512", "cmake_args": flags.split(), "requires": requires.split()}, open(path, "w"), indent=1)
PY
    mv "$DEST.tmp" "$DEST"
fi
