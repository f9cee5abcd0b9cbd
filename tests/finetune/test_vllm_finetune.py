"""Fine-tune, export for vLLM, serve the adapter on the real vLLM (CPU build) and answer through /ask.

`make test-vllm` runs it. The base is the tiny random Llama from scripts/make_tiny_llm.py (built with .venv-vllm);
the adapter is trained here, in .venv, by `ragqa finetune train` for a few steps and exported with `--to vllm`.
The answers are noise; what is checked is that vLLM loads our adapter under its name and /ask is served through it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.test_vllm import KEY, VENV, _wait_http
from tests.support import REPO, free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base model folder, exported adapter folder) after `ragqa finetune train` and `export --to vllm`."""
    if not (VENV / "bin" / "python").exists():
        pytest.skip(f"{VENV} is missing: run `make vllm-env`")
    tiny = tmp_path_factory.mktemp("tiny-ft")
    subprocess.run([str(VENV / "bin" / "python"), str(REPO / "scripts" / "make_tiny_llm.py"), str(tiny)],
                   check=True, capture_output=True, timeout=600)
    data = tiny / "data"
    data.mkdir()
    from tests.finetune.test_train_export import _rows

    for split in ("train", "val"):
        (data / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in _rows()) + "\n")
    out = tiny / "ragqa-lora"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for cmd in (["train", "--data", str(data), "--base", str(tiny / "model"), "--out", str(out), "--max-steps", "3",
                 "--rank", "8", "--grad-accum", "1"],
                ["export", str(out), "--to", "vllm", "--out", str(tiny / "vllm-lora")]):
        r = subprocess.run([sys.executable, "-m", "ragqa.cli", "finetune", *cmd], env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return tiny / "model", tiny / "vllm-lora"


@pytest.fixture(scope="module")
def served(adapter: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base_model, lora = adapter
    port, log = free_port(), tmp_path_factory.mktemp("vllm-ft") / "vllm.log"
    cmd = [str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", str(base_model),
           "--enable-lora", "--lora-modules", f"ragqa={lora}", "--max-lora-rank", "8", "--served-model-name", "tiny",
           "--api-key", KEY, "--dtype", "float32", "--max-model-len", "8192", "--host", "127.0.0.1",
           "--port", str(port),
           "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    vbase = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{vbase}/v1/models", proc, log, 900, headers={"Authorization": f"Bearer {KEY}"})
        root = tmp_path_factory.mktemp("ft-api")
        corpus = root / "corpus"
        corpus.mkdir()
        (corpus / "codes.md").write_text("# Air conditioner fault codes\n\nFault code E4 on the air conditioner means "
                                         "an outdoor fan fault: switch the unit off and call service.\n")
        env2 = dict(os.environ, RAGQA_DATA_DIR=str(root / "data"), RAGQA_COLLECTION="kb", PYTHONPATH=str(REPO),
                    RAGQA_LLM_BASE_URL=f"{vbase}/v1", RAGQA_LLM_MODEL="ragqa", RAGQA_LLM_API_KEY=KEY,
                    RAGQA_EMBEDDED_WORKER="false", RAGQA_EMBEDDER="minilm-int8")
        subprocess.run([sys.executable, "-m", "ragqa.cli", "ingest", str(corpus), "--collection", "kb"], env=env2,
                       check=True, capture_output=True, timeout=600)
        api_port, api_log = free_port(), root / "serve.log"
        with api_log.open("wb") as f:
            api = subprocess.Popen([sys.executable, "-m", "ragqa.cli", "serve", "--port", str(api_port)], env=env2,
                                   stdout=f, stderr=subprocess.STDOUT)
        try:
            _wait_http(f"http://127.0.0.1:{api_port}/healthz", api, api_log, 120)
            yield {"vllm": vbase, "api": f"http://127.0.0.1:{api_port}", "lora": lora}
        finally:
            api.terminate()
            api.wait(timeout=60)
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def test_vllm_serves_the_trained_adapter(served: dict[str, Any]) -> None:
    models = httpx.get(f"{served['vllm']}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
    by_id = {m["id"]: m for m in models["data"]}
    assert by_id["ragqa"]["parent"] == "tiny" and by_id["ragqa"]["root"] == str(served["lora"])


def test_ask_is_answered_through_the_adapter(served: dict[str, Any]) -> None:
    r = httpx.post(f"{served['api']}/ask", json={"question": "What does fault code E4 mean?"}, timeout=300)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["status"] in ("answered", "partial", "no_answer") and a["answer"]
    assert a["usage"]["completion_tokens"] > 0
    metrics = httpx.get(f"{served['vllm']}/metrics", timeout=10).text
    assert 'lora_adapters="ragqa"' in metrics
