"""One client for any OpenAI-compatible chat server: vLLM in production, llama.cpp's server when embedded; the
answer model, the judge and the LLM re-ranker all go through it (so one concurrency bound covers them all).

Async first (the API awaits it); `chat_sync` / `models_sync` wrap it for scripts. Retries connect errors,
timeouts, 5xx and 429 (honouring Retry-After) with exponential backoff and jitter; never a 4xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
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


class _Limit:
    """At most `n` requests in flight per client, across event loops and threads (the re-ranker calls from a
    worker thread with its own loop; an asyncio.Semaphore would not bound it together with the answers).

    Polls instead of blocking a thread so a cancelled waiter never holds a permit."""

    def __init__(self, n: int) -> None:
        self._sem = threading.BoundedSemaphore(n)

    async def __aenter__(self) -> None:
        while not self._sem.acquire(blocking=False):
            await asyncio.sleep(0.005)

    async def __aexit__(self, *exc: object) -> None:
        self._sem.release()


class LLMClient:
    """An OpenAI-compatible chat client on the official `openai` SDK. Cheap to build: no connection until the
    first call.

    The SDK does the HTTP, the SSE decoding and the typed responses; the retry policy stays ours (the SDK's own
    retries are off): never a 4xx, Retry-After honoured only up to `retry_after_cap` (a server asking for
    minutes is reported at once, not waited on), and a `diagnose` hook that names a known-dead server
    instead of retrying it.

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
        self._api_key = api_key
        # Why the server is known to be down (the embedded server's supervisor gave up): said instead of retrying.
        self.diagnose = diagnose
        self._limit = _Limit(max_concurrency)
        # The SDK's httpx pool belongs to one event loop; chat_sync and the re-ranker's thread run their own.
        self._sdks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

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
            messages, max_tokens=max_tokens, temperature=temperature, stop=stop, json_schema=json_schema
        )
        async with self._limit:
            resp = await self._send(body)
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
        import openai

        body = self.chat_body(
            messages, max_tokens=max_tokens, temperature=temperature, stop=stop, json_schema=json_schema,
            stream=True,
        )
        async with self._limit:
            stream = await self._send(body)
            try:
                async for chunk in stream:
                    if delta := self._delta(chunk):
                        yield delta
            except openai.APIConnectionError as e:
                raise LLMUnavailable(f"LLM server at {self.base_url} broke off the stream: {e!r}") from e
            except openai.APIError as e:  # an `error` event inside the stream
                raise LLMError(f"LLM server at {self.base_url} failed mid-stream: {e.message:.300}") from e
            except ValueError as e:
                raise LLMError(f"LLM server at {self.base_url} streamed invalid JSON: {e}") from e
            finally:
                await stream.close()

    async def models(self) -> list[str]:
        """The model names the server serves (GET /v1/models): a readiness check.

        Not bounded by max_concurrency: a probe must not queue behind long generations."""
        page = await self._retrying(lambda sdk: sdk.models.list(), "GET /models")
        try:
            return [str(m.id) for m in page.data]
        except (AttributeError, TypeError) as e:
            raise LLMError(f"LLM server at {self.base_url} sent a malformed /models answer: {page!r:.300}") from e

    async def first_token_logprobs(self, prompt: str, top: int = 10) -> dict[str, Any]:
        """One user prompt, one generated token with its `top` alternatives' log-probabilities: the OpenAI
        response as a plain dict (what a yes/no scorer such as the LLM re-ranker reads)."""
        body = self.chat_body([{"role": "user", "content": prompt}], max_tokens=1)
        body.update(logprobs=True, top_logprobs=top)
        async with self._limit:
            resp = await self._send(body)
        return dict(resp.model_dump())

    def first_token_logprobs_sync(self, prompts: Sequence[str], top: int = 10) -> list[dict[str, Any]]:
        """`first_token_logprobs` for each prompt, from a worker thread (the re-ranker): one event loop and one
        connection pool for the whole batch, requests in flight together up to the shared concurrency bound."""

        async def batch() -> list[dict[str, Any]]:
            return list(await asyncio.gather(*(self.first_token_logprobs(p, top) for p in prompts)))

        return asyncio.run(self._once(batch()))

    def chat_sync(self, messages: Sequence[Message], **kwargs: Any) -> ChatResult:
        """`chat` for scripts (not from inside a running event loop)."""
        return asyncio.run(self._once(self.chat(messages, **kwargs)))

    def models_sync(self) -> list[str]:
        return asyncio.run(self._once(self.models()))

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        sdk = self._sdks.pop(asyncio.get_running_loop(), None)
        if sdk is not None:
            await sdk.close()

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

    def _sdk(self) -> Any:
        import httpx
        import openai

        loop = asyncio.get_running_loop()
        sdk = self._sdks.get(loop)
        if sdk is None:
            sdk = openai.AsyncOpenAI(
                base_url=self.base_url,
                # The SDK insists on a key; servers without auth (llama.cpp, a local vLLM) ignore the header.
                api_key=self._api_key or "unused",
                max_retries=0,
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                http_client=openai.DefaultAsyncHttpxClient(
                    limits=httpx.Limits(max_connections=self.max_concurrency + 2)
                ),
            )
            self._sdks[loop] = sdk
        return sdk

    async def _once(self, coro: Any) -> Any:
        try:
            return await coro
        finally:
            await self.aclose()

    async def _send(self, body: dict[str, Any]) -> Any:
        """A chat completion (a stream when body["stream"]): the SDK's typed answer, after our retries.

        Keys the SDK does not model (structured_outputs, llama.cpp's response_format) travel in `extra_body`."""
        known = {"model", "messages", "max_tokens", "temperature", "stream", "stop", "logprobs", "top_logprobs"}
        args = {k: v for k, v in body.items() if k in known}
        extra = {k: v for k, v in body.items() if k not in known}
        return await self._retrying(
            lambda sdk: sdk.chat.completions.create(**args, extra_body=extra or None), "POST /chat/completions"
        )

    async def _retrying(self, call: Callable[[Any], Any], what: str) -> Any:
        import openai

        down = self.diagnose() if self.diagnose else None
        if down:
            raise LLMUnavailable(down)
        attempts = self.max_retries + 1
        last = ""
        status: int | None = None
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                return await call(self._sdk())
            except openai.APIStatusError as e:
                status = e.status_code
                detail = _error_detail(e)
                if status != 429 and status < 500:
                    raise LLMError(
                        f"LLM server at {self.base_url} refused {what}: HTTP {status}: {detail}", status
                    ) from e
                last = f"HTTP {status}: {detail}"
                retry_after = parse_retry_after(e.response.headers.get("retry-after"))
                if retry_after is not None and retry_after > self.retry_after_cap:
                    raise LLMUnavailable(
                        f"LLM server at {self.base_url} asks to retry after {retry_after:.0f}s: {last}",
                        status,
                        retry_after,
                    ) from e
            except openai.APIConnectionError as e:  # connect refused, timeouts, a server dying mid-answer
                cause = e.__cause__ or e
                last, status = f"{type(cause).__name__}: {cause}".rstrip(": "), None
            except (openai.APIResponseValidationError, ValueError) as e:
                raise LLMError(f"LLM server at {self.base_url} sent invalid JSON to {what}: {e}") from e
            if attempt + 1 < attempts:
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_max, retry_after)
                log.warning(
                    "LLM %s at %s failed (%s); retry %d/%d in %.2fs",
                    what, self.base_url, last, attempt + 1, self.max_retries, delay,
                )
                await asyncio.sleep(delay)
        down = self.diagnose() if self.diagnose else None
        raise LLMUnavailable(
            down or f"LLM server at {self.base_url} unavailable after {attempts} attempt(s): {last}", status
        )

    def _parse_chat(self, resp: Any) -> ChatResult:
        try:
            choice = resp.choices[0]
            text = choice.message.content or ""
        except (IndexError, TypeError, AttributeError) as e:
            raise LLMError(f"LLM server at {self.base_url} sent no choice: {resp!r:.300}") from e
        u = resp.usage
        usage = Usage(int(getattr(u, "prompt_tokens", 0) or 0), int(getattr(u, "completion_tokens", 0) or 0))
        return ChatResult(text, usage, choice.finish_reason, str(resp.model or self.model))

    def _delta(self, chunk: Any) -> str:
        try:
            choices = chunk.choices or []
            return (choices[0].delta.content or "") if choices and choices[0].delta else ""
        except (AttributeError, IndexError, TypeError) as e:
            raise LLMError(f"LLM server at {self.base_url} streamed a malformed chunk: {chunk!r:.300}") from e


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


def _error_detail(e: Any) -> str:
    """The server's own words from an error answer: `error.message`, `detail`, or the raw body."""
    text = e.response.text if getattr(e, "response", None) is not None else str(e)
    try:
        obj = json.loads(text)
        err = obj.get("error", obj.get("detail", obj)) if isinstance(obj, dict) else obj
        if isinstance(err, dict) and "message" in err:
            err = err["message"]
        text = err if isinstance(err, str) else json.dumps(err, ensure_ascii=False)
    except ValueError:
        pass
    return text.strip()[:500] or "(empty body)"
