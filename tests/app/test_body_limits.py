"""Body limits hold for the bytes received, and error bodies never echo unbounded input (issue 11, finding 4).

A real uvicorn server: the chunked bodies go through its HTTP parser as a client's would.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from ingest.chunking import ChunkingSettings
from ingest.pipeline import IngestOptions, Ingestor
from retrieval.collection import Collection
from retrieval.embedders import Embedder
from tests.support import free_port, start_server

pytestmark = pytest.mark.slow
LIMIT_KB = 64  # small, so that the tests send little


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, chunking: ChunkingSettings) -> Iterator[str]:
    root = tmp_path_factory.mktemp("limits")
    (root / "corpus").mkdir()
    (root / "corpus" / "care.md").write_text("# Care\n\nWipe the remote control with a dry cloth.\n", encoding="utf-8")
    col = Collection(root / "data", "kb").open(
        embedder=embedder.name, dim=embedder.dim, chunking=chunking.to_manifest(), create=True
    )
    Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([root / "corpus"])
    col.close()
    port = free_port()
    proc = start_server(root / "data", port, {
        "RAGQA_LLM_BASE_URL": "http://127.0.0.1:9/v1",  # nothing listens: no request here reaches the LLM
        "RAGQA_EMBEDDED_WORKER": "false", "RAGQA_MAX_BODY_KB": str(LIMIT_KB), "RAGQA_MAX_UPLOAD_MB": "1",
    })
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def _chunked(prefix: bytes, filler: int, suffix: bytes, block: int = 65536) -> Iterator[bytes]:
    """A request body of unknown length: httpx sends a generator with Transfer-Encoding: chunked."""
    yield prefix
    for start in range(0, filler, block):
        yield b"x" * min(block, filler - start)
    yield suffix


@pytest.mark.parametrize(("path", "field"), [("/search", "query"), ("/ask", "question")])
def test_a_chunked_body_over_the_limit_is_413_with_a_short_answer(server: str, path: str, field: str) -> None:
    body = _chunked(f'{{"{field}": "'.encode(), 20 * 2**20, b'"}')
    r = httpx.post(f"{server}{path}", content=body, headers={"content-type": "application/json"}, timeout=120)
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 413, r.text[:300]
    assert len(r.content) < 500 and f"{LIMIT_KB} KiB" in r.json()["detail"]


def test_a_chunked_body_under_the_limit_is_served(server: str) -> None:
    body = _chunked(b'{"query": "dry cloth remote', 1000, b'", "top_k": 2}', block=100)
    r = httpx.post(f"{server}/search", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["results"] and "cloth" in r.json()["results"][0]["text"]


def test_a_422_does_not_echo_a_large_input(server: str) -> None:
    raw = json.dumps({"query": "y" * (LIMIT_KB * 1024 - 100)})  # under the body limit, over the field's 4000 chars
    r = httpx.post(f"{server}/search", content=raw, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 422, r.text[:300]
    assert len(r.content) < 2000, f"a {len(raw)}-byte input came back as a {len(r.content)}-byte error"
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "query"] and err["input"].startswith("yyy") and "characters in all" in err["input"]


def test_a_422_lists_a_bounded_number_of_errors(server: str) -> None:
    r = httpx.post(f"{server}/search", json={"query": "x", "filters": {"doc_ids": list(range(1000))}}, timeout=60)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert len(detail) <= 21 and len(r.content) < 8000, f"{len(detail)} errors, {len(r.content)} bytes"
    assert detail[0]["loc"] == ["body", "filters", "doc_ids", 0] and "980 more errors" in detail[-1]["msg"]


def test_small_inputs_are_still_echoed_whole(server: str) -> None:
    r = httpx.post(f"{server}/search", json={"query": "x", "top_k": 1000}, timeout=30)
    assert r.status_code == 422 and r.json()["detail"][0]["input"] == 1000, r.text


def test_a_chunked_upload_is_411(server: str) -> None:
    body = _chunked(b"--b\r\n", 10, b"\r\n--b--\r\n")
    r = httpx.post(f"{server}/collections/kb/documents", content=body,
                   headers={"content-type": "multipart/form-data; boundary=b"}, timeout=30)
    assert r.status_code == 411 and "Content-Length" in r.json()["detail"]


def _raw_chunked_with_a_false_length(server: str, path: str, ctype: str, parts: Iterator[bytes]) -> tuple[int, bytes]:
    """A chunked body that also claims `Content-Length: 100`: the HTTP parser goes by the chunks, as RFC 9112 says."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\nContent-Length: 100\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        for part in parts:  # kept alive, the server reads and drops what follows its answer
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")
        answer = sock.makefile("rb")
        status = int(answer.readline().split()[1])
        length = 0
        while (line := answer.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            length = int(value) if name.lower() == "content-length" else length
        return status, answer.read(length)


@pytest.mark.parametrize("path", ["/search", "/collections/kb/documents"])
def test_a_body_longer_than_its_content_length_is_cut_off(server: str, path: str) -> None:
    if path == "/search":
        ctype, parts = "application/json", _chunked(b'{"query": "', 2 * 2**20, b'"}')
    else:
        head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.md"\r\n\r\n'
        ctype, parts = "multipart/form-data; boundary=b", _chunked(head, 2 * 2**20, b"\r\n--b--\r\n")
    status, body = _raw_chunked_with_a_false_length(server, path, ctype, parts)
    assert status == 413, body[:300]
    assert b"limit" in body and len(body) < 500
