"""FakeLLMServer: a tiny OpenAI-compatible chat server, for tests about the runner's mechanics and the judge's
parsing (resume, fail-under, compare, error handling), never about answer quality."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], "str | tuple[int, str]"]
_SOURCE = re.compile(r"\[(\d+)\][^\n]*\n<<<\n(.*?)\n>>>", re.S)


def prompt_of(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def schema_of(body: dict[str, Any]) -> str:
    return json.dumps(body.get("response_format") or body.get("structured_outputs") or {})


def grounded_reply(body: dict[str, Any]) -> str | tuple[int, str]:
    """Sufficiency: always answerable. Answer: the source sentence sharing most words with the question, cited.
    A question containing FAIL gets HTTP 400 (an LLM failure the runner must record and survive)."""
    prompt = prompt_of(body)
    question = prompt.rsplit("Question:", 1)[-1].split("\n")[0]
    if "FAIL" in question:
        return 400, "model refuses this request"
    if "answerable" in schema_of(body):
        return json.dumps({"answerable": True, "missing": "", "next_query": ""})
    words = set(re.findall(r"\w+", question.lower()))
    best, marker = "", 1
    for m, text in _SOURCE.findall(prompt):
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            overlap = len(words & set(re.findall(r"\w+", sentence.lower())))
            if overlap > len(words & set(re.findall(r"\w+", best.lower()))):
                best, marker = sentence.strip(), int(m)
    return f"{best.rstrip('.')} [{marker}]." if best else "The knowledge base does not contain the answer."


class FakeLLMServer:
    def __init__(self, reply: Reply = grounded_reply) -> None:
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeLLMServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, text: str) -> None:
                """Server-sent events as OpenAI sends them, 3 characters a delta (so markers and delimiters split)."""
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for i in range(0, len(text), 3):
                    chunk = {"choices": [{"index": 0, "delta": {"content": text[i:i + 3]}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

            def do_GET(self) -> None:
                self._send(200, {"data": [{"id": "fake"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(body)
                out = fake.reply(body)
                if isinstance(out, tuple):
                    self._send(out[0], {"error": {"message": out[1]}})
                    return
                if body.get("stream"):
                    self._stream(out)
                    return
                self._send(200, {"model": body.get("model", "fake"), "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": out}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": len(prompt_of(body)) // 4, "completion_tokens": len(out) // 4}})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
