"""A follow-up question end to end: a real `ragqa serve` with the bundled model (the default 1.5B: here the answer's
content is the point) over the sample corpus, the conversation kept by the server.

"How many years is the compressor covered by the warranty?" then "And under the 2023 policy?": the second answer
must be about the compressor under the 2023 policy (5 years, warranty-policy-2023.md), not a refusal and not the
2024 policy's 7 years.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import REPO, free_port, start_server

pytestmark = [pytest.mark.llm, pytest.mark.slow]


@pytest.fixture(scope="module")
def base(sample_data_dir: Path) -> Iterator[str]:
    pytest.importorskip("llama_cpp", reason="the embedded LLM needs the [llm] extra")
    port = free_port()
    proc = start_server(sample_data_dir, port, {"RAGQA_LLM_TIMEOUT_S": "900", "RAGQA_EMBEDDED_WORKER": "false"},
                        wait_s=600)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=60)


def ask(base: str, question: str, **extra: Any) -> dict[str, Any]:
    r = httpx.post(f"{base}/ask", json={"question": question, "collection": "default", **extra}, timeout=1200)
    assert r.status_code == 200, r.text
    return r.json()


def about_2023_compressor(a: dict[str, Any]) -> None:
    assert a["status"] in ("answered", "partial"), a["answer"]
    assert "5" in a["answer"].split("Note:")[0], a["answer"]
    old = [c for c in a["citations"] if Path(c["source_path"]).name == "warranty-policy-2023.md"]
    assert any("5 years" in c["quote"] or "5 year" in c["quote"] for c in old), a["citations"]
    assert a["trace"]["standalone_question"] != "And under the 2023 policy?"
    for c in a["conflicts"]:  # the 2023 version is the one in force in the year asked, so it is followed
        assert c["preferred"]["effective_date"] == "2023-01-01", c
    # The first answer's note ("follows [1], which is newer") is not shown to the model, so not copied into this one.
    assert "which is newer" not in a["answer"], a["answer"]


def test_follow_up_in_a_server_side_conversation(base: str) -> None:
    cid = str(uuid.uuid4())
    first = ask(base, "How many years is the compressor covered by the warranty?", conversation_id=cid)
    assert first["status"] in ("answered", "partial") and "7" in first["answer"]
    second = ask(base, "And under the 2023 policy?", conversation_id=cid)
    about_2023_compressor(second)
    conv = httpx.get(f"{base}/conversations/{cid}", timeout=30).json()
    assert [t["content"] for t in conv["turns"][::2]] == ["How many years is the compressor covered by the warranty?",
                                                          "And under the 2023 policy?"]
    assert conv["turns"][3]["content"] == second["answer"]
    assert httpx.delete(f"{base}/conversations/{cid}", timeout=30).status_code == 200


def test_cli_ask_streams_with_earlier_turns(sample_data_dir: Path) -> None:
    """`ragqa ask` in-process with the 0.5B model (the answer's quality is not the point here): the stages on
    stderr, the streamed words, then the citations and the status."""
    pytest.importorskip("llama_cpp", reason="the embedded LLM needs the [llm] extra")
    env = dict(os.environ, RAGQA_DATA_DIR=str(sample_data_dir), RAGQA_LLM_EMBEDDED_MODEL="qwen2.5-0.5b",
               PYTHONPATH=str(REPO), RAGQA_LOG_LEVEL="WARNING")
    p = subprocess.run(
        [sys.executable, "-m", "ragqa.cli", "ask", "And what does E6 mean?", "--collection", "default",
         "--turn", "user:What does fault code E4 mean?", "--turn", "assistant:A communication error [1]."],
        env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "... Searching the knowledge base" in p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].strip() and lines[-1].startswith("status: ")
    p = subprocess.run([sys.executable, "-m", "ragqa.cli", "ask", "E6?", "--turn", "robot:hi"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--turn" in p.stderr
