"""The embedded server's start-up self-test and its fatal-crash handling, with a FAKE llama.cpp server.

The fake (a few lines of http.server, named as such) stands in for `python -m llama_cpp.server` because these tests
are about supervision: what happens when the model process dies with SIGILL on its first long prompt, as a
llama.cpp build with AMX kernels does on a VM that advertises AMX but does not allow it. No model is loaded.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from app.llm.builds import PORTABLE, LlamaBuild
from app.llm.client import LLMClient, LLMUnavailable
from app.llm.embedded import EmbeddedLLMServer, EmbeddedServerError, describe_exit

FAKE = r'''
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, mode = int(sys.argv[1]), sys.argv[2]

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def _send(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "ragqa", "object": "model"}]})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        n = int(len(body.get("prompt", "").split()) * 1.3)  # about as many tokens as a BPE tokenizer counts
        if mode == "sigill" and n > 50:
            print("invalid opcode: tilezero %tmm4 (fake)", flush=True)
            os.kill(os.getpid(), signal.SIGILL)
        self._send({"choices": [{"text": "ok", "index": 0, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": n, "completion_tokens": 1, "total_tokens": n + 1}})

HTTPServer(("127.0.0.1", port), H).serve_forever()
'''


class FakeLlamaServer(EmbeddedLLMServer):
    """The real supervisor around a fake server process (see the module docstring)."""

    mode = "ok"
    modes: dict[str, str] = {}  # per llama.cpp build name, when builds should differ

    def command(self) -> list[str]:
        return [sys.executable, "-c", FAKE, str(self.port), self.modes.get(self.build.name, self.mode)]


def _server(tmp_path: Path, mode: str, **kw: object) -> FakeLlamaServer:
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    kw.setdefault("build", [PORTABLE])  # one build unless a test gives more: the machine's builds must not matter
    srv = FakeLlamaServer(model, startup_timeout=30, log_path=tmp_path / "llm.log", **kw)  # type: ignore[arg-type]
    srv.mode = mode
    return srv


def test_describe_exit_names_the_signal() -> None:
    assert describe_exit(-int(signal.SIGILL)) == "killed by signal SIGILL (illegal instruction)"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-int(signal.SIGKILL)).startswith("killed by signal SIGKILL")


def test_a_server_that_dies_on_the_self_test_is_not_ready_and_says_why(tmp_path: Path) -> None:
    srv = _server(tmp_path, "sigill")
    with pytest.raises(EmbeddedServerError) as err:
        srv.start()
    msg = str(err.value)
    assert "killed by signal SIGILL" in msg and "self-test" in msg
    assert "scripts/build_llama.sh" in msg  # what to do
    assert "tilezero" in msg  # the log tail
    assert srv.failure is not None and srv.failure_summary is not None
    assert "Log /" not in srv.failure_summary and "SIGILL" in srv.failure_summary
    assert not srv.is_running() and srv.restarts == 0

    # A client of the failed server says the same thing instead of retrying a dead port.
    client = srv.client(timeout=5.0)
    with pytest.raises(LLMUnavailable, match="SIGILL"):
        client.models_sync()


def test_a_build_that_dies_with_sigill_falls_back_to_the_portable_one(tmp_path: Path) -> None:
    """A CPU that advertises AVX-512 but does not run it: the server starts anyway, on the portable build."""
    fast = LlamaBuild("avx512", tmp_path, frozenset({"avx512f"}))
    srv = _server(tmp_path, "ok", build=[fast, PORTABLE])
    srv.modes = {"avx512": "sigill"}
    try:
        srv.start()
        assert srv.build == PORTABLE and srv.failure is None
        log_text = (tmp_path / "llm.log").read_text()
        assert "avx512 build" in log_text and "portable build" in log_text and "tilezero" in log_text
    finally:
        srv.stop()
    # With no build left to fall back to, the SIGILL is the error, as before.
    (tmp_path / "b").mkdir()
    only = _server(tmp_path / "b", "ok", build=[fast])
    only.modes = {"avx512": "sigill"}
    with pytest.raises(EmbeddedServerError, match="SIGILL"):
        only.start()


def test_the_self_test_passes_with_a_long_enough_prompt(tmp_path: Path) -> None:
    with _server(tmp_path, "ok") as srv:
        assert srv.is_running() and srv.failure is None
    assert "self-test" not in (tmp_path / "llm.log").read_text()  # nothing went wrong


def test_sigill_while_serving_stops_the_restart_loop(tmp_path: Path) -> None:
    srv = _server(tmp_path, "ok", max_restarts_per_minute=5).start()
    try:
        pid = srv.pid
        assert pid is not None
        os.kill(pid, signal.SIGILL)  # as the CPU would on an unsupported instruction mid-answer
        deadline = time.monotonic() + 20
        while srv.failure is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.failure is not None and "killed by signal SIGILL" in srv.failure
        assert "scripts/build_llama.sh" in srv.failure
        time.sleep(1.5)  # longer than the first restart backoff: no restart may follow
        assert srv.restarts == 0 and not srv.is_running()
        with pytest.raises(LLMUnavailable, match="SIGILL"):
            LLMClient(srv.base_url, "ragqa", diagnose=lambda: srv.failure_summary).models_sync()
    finally:
        srv.stop()


def test_an_ordinary_crash_is_still_restarted(tmp_path: Path) -> None:
    srv = _server(tmp_path, "ok", max_restarts_per_minute=5).start()
    try:
        old = srv.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (srv.restarts == 0 or not srv.is_running()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.restarts == 1 and srv.pid != old and srv.failure is None
    finally:
        srv.stop()


@pytest.mark.slow
def test_readyz_and_ask_say_what_died_and_what_to_do(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    """Through the API: a model that failed its self-test makes /readyz and /ask answer 503 with the diagnosis."""
    from fastapi.testclient import TestClient

    from app.api.server import create_app
    from app.settings import Settings
    from ingest.pipeline import IngestOptions, Ingestor
    from retrieval.collection import Collection

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "codes.md").write_text("# Fault codes\n\nFault code E4 means the outdoor fan is blocked.\n")
    col = Collection(tmp_path / "data", "default").open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True)
    Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([docs])
    col.close()

    srv = _server(tmp_path, "sigill")
    with pytest.raises(EmbeddedServerError):
        srv.start()
    settings = Settings(data_dir=tmp_path / "data", embedded_worker=False)
    with TestClient(create_app(settings, llm=srv.client(timeout=5.0))) as api:
        r = api.get("/readyz")
        assert r.status_code == 503 and "SIGILL" in r.json()["detail"] and "build_llama.sh" in r.json()["detail"]
        r = api.post("/ask", json={"question": "What does fault code E4 mean?"})
        assert r.status_code == 503, r.text
        assert "SIGILL" in r.json()["detail"] and "build_llama.sh" in r.json()["detail"]
