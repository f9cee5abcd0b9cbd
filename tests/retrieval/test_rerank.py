"""Re-rankers and the fallback to the fused order."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from retrieval.rerank import CrossEncoderReranker, RemoteReranker, _p_yes, rerank_or_keep
from retrieval.types import Chunk, ScoredChunk


def _hits(texts: list[str]) -> list[ScoredChunk]:
    return [
        ScoredChunk(Chunk(chunk_id=i, doc_id=f"d{i}", collection="c", text=t, level=128, position=0, section_id=None),
                    1.0 / (i + 1))
        for i, t in enumerate(texts)
    ]


class FakeRerankServer(BaseHTTPRequestHandler):
    """A /v1/rerank endpoint for testing the client and the fallback (the tests are not about ranking quality)."""

    mode = "ok"

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if FakeRerankServer.mode == "slow":
            time.sleep(2)
        if FakeRerankServer.mode == "error":
            self.send_response(500)
            self.end_headers()
            return
        # Score = length of the document, so the expected order is known.
        results = [{"index": i, "relevance_score": float(len(d))} for i, d in enumerate(body["documents"])]
        data = json.dumps({"results": results}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def rerank_url() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeRerankServer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    FakeRerankServer.mode = "ok"


def test_remote_reranker_reorders(rerank_url: str) -> None:
    hits = _hits(["a", "ccc", "bb"])
    out, info = rerank_or_keep(RemoteReranker(rerank_url, "m"), "q", hits, top_k=2)
    assert [h.chunk.text for h in out] == ["ccc", "bb"] and not info.fallback
    assert out[0].scores["rerank"] == 3.0


@pytest.mark.parametrize("mode,why", [("error", "500"), ("slow", "timed out")])
def test_failing_reranker_keeps_fused_order_and_says_so(rerank_url: str, mode: str, why: str) -> None:
    FakeRerankServer.mode = mode
    hits = _hits(["a", "ccc", "bb"])
    out, info = rerank_or_keep(RemoteReranker(rerank_url, "m", timeout=5), "q", hits, top_k=3, timeout=0.5)
    assert [h.chunk.text for h in out] == ["a", "ccc", "bb"]
    assert info.fallback and why in info.error


def test_bounded_candidates(rerank_url: str) -> None:
    hits = _hits(["x" * (i + 1) for i in range(50)])
    out, info = rerank_or_keep(RemoteReranker(rerank_url, "m"), "q", hits, top_k=5, max_candidates=10)
    assert info.candidates == 10 and [len(h.chunk.text) for h in out] == [10, 9, 8, 7, 6]


def test_p_yes_from_logprobs() -> None:
    resp = {"choices": [{"logprobs": {"content": [{"token": "yes", "logprob": -0.1, "top_logprobs": [
        {"token": "yes", "logprob": -0.1}, {"token": " No", "logprob": -2.4}, {"token": "maybe", "logprob": -5.0}]}]}}]}
    p = _p_yes(resp)
    assert 0.9 < p < 0.92


@pytest.mark.slow
def test_cross_encoder_from_local_path(tmp_path: Path) -> None:
    """A real CrossEncoder built offline from the bundled MiniLM weights (random head: checks loading and shapes)."""
    from sentence_transformers import CrossEncoder

    from retrieval.embedders import _minilm_dir

    ce = CrossEncoder(str(_minilm_dir()), num_labels=1, local_files_only=True)
    ce.save(str(tmp_path / "ce"))
    rr = CrossEncoderReranker(tmp_path / "ce").load()
    scores = rr.scores("filter cleaning", ["Clean the filter every two weeks.", "The compressor warranty."])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    out, info = rerank_or_keep(rr, "q", _hits(["a", "b", "c"]), top_k=2)
    assert len(out) == 2 and not info.fallback
