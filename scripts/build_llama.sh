#!/usr/bin/env bash
# Build and install llama-cpp-python portably: AVX2 baseline (x86-64-v3), no -march=native, no AMX/AVX-512.
#
# Why: a native build on a host whose CPU flags advertise AMX compiles ggml's AMX kernels in, and a VM that does
# not let a process use AMX state dies with SIGILL on the first real prompt. The baseline below runs on every
# x86-64 CPU with AVX2 (Intel Haswell+, AMD Zen+); docs/benchmarks.md has its tokens/s beside a native build.
#
# pip's wheel cache keys a built wheel by the source archive, not by CMAKE_ARGS, so a wheel built natively earlier
# on this machine would be reused silently. We therefore build with --no-cache-dir into our own cache folder whose
# name carries the version and a hash of the flags, and install from there with --no-index.
#
#   scripts/build_llama.sh PIP [VERSION]       e.g. scripts/build_llama.sh .venv/bin/pip
set -euo pipefail
PIP=${1:?usage: build_llama.sh PIP [VERSION]}
VERSION=${2:-0.3.36}
FLAGS="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF \
-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
FLAGS=${RAGQA_LLAMA_CMAKE_ARGS:-$FLAGS}
KEY=$(printf '%s %s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-16)
CACHE=${RAGQA_WHEEL_CACHE:-$HOME/.cache/ragqa/wheels}/llama-cpp-python-$VERSION-$KEY
if ! ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $VERSION from source, portable flags (about 10 min on 2 cores) -> $CACHE"
    mkdir -p "$CACHE.tmp"
    CMAKE_ARGS="$FLAGS" FORCE_CMAKE=1 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "$PIP" wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python \
        -w "$CACHE.tmp" "llama-cpp-python==$VERSION"
    printf '%s\n' "$FLAGS" > "$CACHE.tmp/CMAKE_ARGS"
    rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
fi
"$PIP" install -q --force-reinstall --no-deps --no-index --find-links "$CACHE" "llama-cpp-python==$VERSION"
