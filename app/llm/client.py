"""One client for any OpenAI-compatible chat server: vLLM in production, llama.cpp's server when embedded.

Async first (the API awaits it); `chat_sync` / `models_sync` wrap it for scripts. Retries connect errors,
timeouts, 5xx and 429 (honouring Retry-After) with exponential backoff and jitter; never a 4xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from app.errors import Unavailable

log = logging.getLogger(__name__)

StructuredStyle = Literal["openai", "vllm", "both", "llamacpp"]
Message = Mapping[str, Any]
_STYLES = ("openai", "vllm", "both", "llamacpp")


class LLMError(Exception):
    """The LLM server answered, but not with a usable completion (a 4xx, a malformed body)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMUnavailable(LLMError, Unavailable):
    """The LLM server cannot be reached or keeps failing (connect refused, timeouts, 5xx, 429)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ChatResult:
    text: str
    usage: Usage
    finish_reason: str | None
    model: str


@dataclass
class _LoopState:
    client: Any  # httpx.AsyncClient, imported lazily
    sem: asyncio.Semaphore


class LLMClient:
    """An OpenAI-compatible chat client. Cheap to build: no connection until the first call.

    `base_url` may end in /v1 or not. `structured_style` says how `json_schema` is sent: "openai"
    (response_format json_schema), "vllm" (structured_outputs), "both" (vLLM takes both and merges them), or
    "llamacpp": llama-cpp-python's server (0.3.x) only knows response_format {"type": "json_object",
    "schema": ...}, answers the OpenAI form with HTTP 500 (a validation error); it ignores structured_outputs.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        max_concurrency: int = 4,
        *,
        structured_style: StructuredStyle = "both",
        connect_timeout: float = 5.0,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        retry_after_cap: float = 30.0,
        diagnose: Callable[[], str | None] | None = None,
    ) -> None:
        if not re.match(r"^https?://[^/]+", base_url or ""):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not model:
            raise ValueError(f"model must be a non-empty name, got {model!r}")
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError(f"timeouts must be > 0, got timeout={timeout} connect_timeout={connect_timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if structured_style not in _STYLES:
            raise ValueError(f"structured_style must be one of {_STYLES}, got {structured_style!r}")
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else root + "/v1"
        self.model = model
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.structured_style: StructuredStyle = structured_style
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_cap = retry_after_cap
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Why the server is known to be down (the embedded server's supervisor gave up): said instead of retrying.
        self.diagnose = diagnose
        # httpx's async pool and asyncio.Semaphore belong to one event loop; chat_sync runs its own loop.
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self.base_url!r}, model={self.model!r})"

    # ---- public API -------------------------------------------------------------------------------------

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        """One completion. LLMUnavailable when the server cannot be reached; LLMError for a refusal."""
        body = self.chat_body(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            json_schema=json_schema,
            stream=False,
        )
        st = self._state()
        async with st.sem:
            resp = await self._send(st, "POST", "/chat/completions", body, stream=False)
        return self._parse_chat(resp)

    async def stream_chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """Yield the text deltas as they arrive. Retries happen only before the first delta."""
        import httpx

        body = self.chat_body(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            json_schema=json_schema,
            stream=True,
        )
        st = self._state()
        async with st.sem:
            resp = await self._send(st, "POST", "/chat/completions", body, stream=True)
            decoder = SSEDecoder()
            try:
                async for line in resp.aiter_lines():
                    data = decoder.feed(line)
                    if data is not None and data.strip() == "[DONE]":
                        return
                    if data is not None and (delta := self._delta(data)):
                        yield delta
                tail = decoder.flush()
                if tail is not None and tail.strip() != "[DONE]" and (delta := self._delta(tail)):
                    yield delta
            except httpx.TransportError as e:
                raise LLMUnavailable(f"LLM server at {self.base_url} broke off the stream: {e!r}") from e
            finally:
                await resp.aclose()

    async def models(self) -> list[str]:
        """The model names the server serves (GET /v1/models): a readiness check.

        Not bounded by max_concurrency: a probe must not queue behind long generations."""
        st = self._state()
        resp = await self._send(st, "GET", "/models", None, stream=False)
        data = self._json(resp)
        try:
            return [str(m["id"]) for m in data["data"]]
        except (KeyError, TypeError) as e:
            raise LLMError(
                f"LLM server at {self.base_url} sent a malformed /models answer: {data!r:.300}"
            ) from e

    def chat_sync(self, messages: Sequence[Message], **kwargs: Any) -> ChatResult:
        """`chat` for scripts (not from inside a running event loop)."""
        return asyncio.run(self._once(self.chat(messages, **kwargs)))

    def models_sync(self) -> list[str]:
        return asyncio.run(self._once(self.models()))

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        st = self._states.pop(asyncio.get_running_loop(), None)
        if st is not None:
            await st.client.aclose()

    def chat_body(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        json_schema: Mapping[str, Any] | None = None,
        stream: bool = False,
    ) -> dict[str, Any]:
        """The JSON body of a chat completion request (public so callers can log or inspect it)."""
        if not messages:
            raise ValueError("messages must not be empty")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if not 0.0 <= temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {temperature}")
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }
        if stop:
            body["stop"] = list(stop)
        if json_schema is not None:
            schema = dict(json_schema)
            if self.structured_style in ("openai", "both"):
                name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title", "output")))[:64] or "output"
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": True},
                }
            if self.structured_style in ("vllm", "both"):
                body["structured_outputs"] = {"json": schema}
            if self.structured_style == "llamacpp":
                body["response_format"] = {"type": "json_object", "schema": schema}
        return body

    # ---- internals --------------------------------------------------------------------------------------

    def _state(self) -> _LoopState:
        import httpx

        loop = asyncio.get_running_loop()
        st = self._states.get(loop)
        if st is None:
            client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                limits=httpx.Limits(max_connections=self.max_concurrency + 2),
            )
            st = _LoopState(client=client, sem=asyncio.Semaphore(self.max_concurrency))
            self._states[loop] = st
        return st

    async def _once(self, coro: Any) -> Any:
        try:
            return await coro
        finally:
            await self.aclose()

    async def _send(self, st: _LoopState, method: str, path: str, body: Any, *, stream: bool) -> Any:
        """One response with a status < 400, after retries; its body is unread when `stream`."""
        import httpx

        down = self.diagnose() if self.diagnose else None
        if down:
            raise LLMUnavailable(down)
        attempts = self.max_retries + 1
        last = ""
        status: int | None = None
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                request = st.client.build_request(method, path, json=body)
                resp = await st.client.send(request, stream=stream)
            except httpx.TransportError as e:  # connect refused, timeouts, a server dying mid-answer
                last, status = f"{type(e).__name__}: {e}".rstrip(": "), None
            else:
                if resp.status_code < 400:
                    return resp
                status = resp.status_code
                detail = await _error_detail(resp)
                if status != 429 and status < 500:
                    raise LLMError(
                        f"LLM server at {self.base_url} refused {method} {path}: HTTP {status}: {detail}",
                        status,
                    )
                last = f"HTTP {status}: {detail}"
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
                if retry_after is not None and retry_after > self.retry_after_cap:
                    raise LLMUnavailable(
                        f"LLM server at {self.base_url} asks to retry after {retry_after:.0f}s: {last}",
                        status,
                        retry_after,
                    )
            if attempt + 1 < attempts:
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_max, retry_after)
                log.warning(
                    "LLM %s %s%s failed (%s); retry %d/%d in %.2fs",
                    method,
                    self.base_url,
                    path,
                    last,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
        down = self.diagnose() if self.diagnose else None
        raise LLMUnavailable(
            down or f"LLM server at {self.base_url} unavailable after {attempts} attempt(s): {last}", status
        )

    def _json(self, resp: Any) -> Any:
        try:
            return resp.json()
        except ValueError as e:
            raise LLMError(f"LLM server at {self.base_url} sent invalid JSON: {resp.text[:300]!r}") from e

    def _parse_chat(self, resp: Any) -> ChatResult:
        data = self._json(resp)
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise LLMError(f"LLM server at {self.base_url} sent no choice: {data!r:.300}") from e
        u = data.get("usage") or {}
        usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
        return ChatResult(text, usage, choice.get("finish_reason"), str(data.get("model", self.model)))

    def _delta(self, data: str) -> str:
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise LLMError(f"LLM server at {self.base_url} streamed invalid JSON: {data[:300]!r}") from e
        if isinstance(obj, dict) and "error" in obj:
            raise LLMError(f"LLM server at {self.base_url} failed mid-stream: {obj['error']!r:.300}")
        try:
            choices = obj.get("choices") or []
            return (choices[0].get("delta") or {}).get("content") or "" if choices else ""
        except (AttributeError, IndexError, TypeError) as e:
            raise LLMError(f"LLM server at {self.base_url} streamed a malformed chunk: {data[:300]!r}") from e


class SSEDecoder:
    """Incremental server-sent-events decoder: feed lines, get each event's data when the event ends.

    Only `data:` fields matter for OpenAI streams: multi-line data joins with newlines; comments (`:`) and
    other fields are skipped. An event ends at a blank line; call `flush()` at end of stream for a server
    that omits the last blank line.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number attempt+1: the server's Retry-After when given, else
    exponential with "equal jitter" (half fixed, half random) so concurrent callers spread out."""
    if retry_after is not None:
        return max(0.0, retry_after)
    d = min(cap, base * 2**attempt)
    return d / 2 + random.uniform(0, d / 2)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def _error_detail(resp: Any) -> str:
    try:
        raw = await resp.aread()
    finally:
        await resp.aclose()
    text = raw.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
        err = obj.get("error", obj.get("detail", obj)) if isinstance(obj, dict) else obj
        if isinstance(err, dict) and "message" in err:
            err = err["message"]
        text = err if isinstance(err, str) else json.dumps(err, ensure_ascii=False)
    except ValueError:
        pass
    return text.strip()[:500] or "(empty body)"
