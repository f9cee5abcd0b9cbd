"""Re-ranking: a `Reranker` re-scores a bounded candidate set; `rerank_or_keep` falls back to the fused order.

Three kinds: a sentence-transformers CrossEncoder loaded from a local path; a remote endpoint speaking the `/v1/rerank`
API that vLLM serves for cross-encoder models; and the served chat model itself, scoring each passage by the probability
it gives to "yes" (for deployments where that model is the only one).
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from retrieval.types import ScoredChunk


class RerankError(Exception):
    pass


class Reranker(Protocol):
    name: str

    def scores(self, query: str, texts: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class RerankInfo:
    reranker: str
    candidates: int
    fallback: bool
    seconds: float
    error: str = ""


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local folder (users bring their own: none ships with ragqa)."""

    def __init__(self, path: Path, batch_size: int = 32, max_length: int = 512) -> None:
        self.path = Path(path)
        self.name = f"cross-encoder:{self.path.name}"
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None

    def load(self) -> CrossEncoderReranker:
        if not self.path.is_dir():
            raise RerankError(f"cross-encoder path {self.path} is not a folder")
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(str(self.path), max_length=self.max_length, local_files_only=True)
        return self

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        if self._model is None:
            self.load()
        out = self._model.predict([(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False)
        return [float(x) for x in out]


class RemoteReranker:
    """POST {base_url}/v1/rerank {"model", "query", "documents"} -> {"results": [{"index", "relevance_score"}]}."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        root = base_url.rstrip("/")
        self.url = (root if root.endswith("/v1") else root + "/v1") + "/rerank"
        self.model = model
        self.name = f"remote:{model}"
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        import httpx

        body = {"model": self.model, "query": query, "documents": list(texts)}
        try:
            r = httpx.post(self.url, json=body, headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise RerankError(f"{self.url}: {type(e).__name__}: {e}") from e
        if r.status_code != 200:
            raise RerankError(f"{self.url} answered {r.status_code}: {r.text[:200]}")
        out = [0.0] * len(texts)
        try:
            for item in r.json()["results"]:
                out[int(item["index"])] = float(item["relevance_score"])
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise RerankError(f"{self.url} gave an unexpected body: {r.text[:200]}") from e
        return out


class LLMReranker:
    """Pointwise yes/no with log-probabilities from the answering model's server (llama.cpp, vLLM).

    `ask` sends each prompt for one token with its top log-probabilities and returns the OpenAI responses as dicts,
    in order: the app passes its one LLM client (`LLMClient.first_token_logprobs_sync`), so the re-ranker shares its
    retries and its concurrency bound instead of opening connections of its own."""

    PROMPT = (
        "Passage:\n<<<\n{passage}\n>>>\n\nQuestion: {query}\n\n"
        "Does the passage contain the answer to the question? Reply with one word: yes or no."
    )

    def __init__(
        self, ask: Callable[[Sequence[str]], Sequence[Mapping[str, Any]]], name: str, max_passage_chars: int = 1500
    ) -> None:
        self.ask = ask
        self.name = name
        self.max_passage_chars = max_passage_chars

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        prompts = [self.PROMPT.format(passage=t[: self.max_passage_chars], query=query) for t in texts]
        try:
            return [_p_yes(resp) for resp in self.ask(prompts)]
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise RerankError(f"{self.name}: the server's answer has no usable log-probabilities: {e!r}") from e


def _p_yes(resp: Mapping[str, Any]) -> float:
    """P(yes) / (P(yes) + P(no)) from the first token's top log-probabilities."""
    first = resp["choices"][0]["logprobs"]["content"][0]
    yes = no = 0.0
    for cand in first.get("top_logprobs", []) or [first]:
        tok = cand["token"].strip().lower()
        p = math.exp(cand["logprob"])
        if tok in ("yes", "是"):
            yes += p
        elif tok in ("no", "否"):
            no += p
    return yes / (yes + no) if yes + no > 0 else 0.0


def rerank_or_keep(
    reranker: Reranker, query: str, hits: Sequence[ScoredChunk], top_k: int, *, max_candidates: int = 30,
    timeout: float = 5.0,
) -> tuple[list[ScoredChunk], RerankInfo]:
    """Re-score at most `max_candidates` hits in `timeout` seconds; on any failure keep the fused order and say so."""
    cand = list(hits[:max_candidates])
    t = time.perf_counter()
    pool = cf.ThreadPoolExecutor(max_workers=1)
    try:
        scores = pool.submit(reranker.scores, query, [h.chunk.text for h in cand]).result(timeout=timeout)
        if len(scores) != len(cand):
            raise RerankError(f"{len(scores)} scores for {len(cand)} candidates")
    except cf.TimeoutError:
        return list(hits[:top_k]), RerankInfo(reranker.name, len(cand), True, time.perf_counter() - t,
                                              f"timed out after {timeout:g}s")
    except Exception as e:  # a broken re-ranker must never break search
        return list(hits[:top_k]), RerankInfo(reranker.name, len(cand), True, time.perf_counter() - t,
                                              f"{type(e).__name__}: {e}")
    finally:
        pool.shutdown(wait=False)
    order = sorted(range(len(cand)), key=lambda i: (-scores[i], i))
    out = [replace(cand[i], score=scores[i], scores={**cand[i].scores, "rerank": scores[i]}) for i in order[:top_k]]
    return out, RerankInfo(reranker.name, len(cand), False, time.perf_counter() - t)
