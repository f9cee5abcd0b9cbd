"""Query transforms: each a small function over any LLM that completes a prompt (the `Complete` protocol).

Retrieval does not depend on the app's LLM client: the caller passes `complete`, an async prompt -> text function.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from importlib import resources
from string import Template

from retrieval.analyzer import Analyzer

Complete = Callable[[str, int], Awaitable[str]]  # (prompt, max_tokens) -> completion text


@lru_cache(maxsize=16)
def _prompt(name: str) -> Template:
    return Template((resources.files("retrieval.prompts") / f"{name}.txt").read_text(encoding="utf-8"))


def _first_line(text: str) -> str:
    line = next((x.strip() for x in text.strip().splitlines() if x.strip()), "")
    return line.strip().strip('"“”').removeprefix("Standalone query:").strip()


async def rewrite_standalone(complete: Complete, question: str, history: Sequence[tuple[str, str]]) -> str:
    """The last question as a standalone query, with pronouns resolved from the conversation."""
    if not history:
        return question
    convo = "\n".join(f"{role}: {text}" for role, text in history[-6:])
    out = _first_line(await complete(_prompt("rewrite").substitute(history=convo, question=question), 64))
    return out or question


async def hyde(complete: Complete, question: str) -> str:
    """A hypothetical passage answering the question: embedded instead of (or fused with) the question."""
    return (await complete(_prompt("hyde").substitute(question=question), 120)).strip()


async def multi_query(complete: Complete, question: str, n: int = 3) -> list[str]:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    text = await complete(_prompt("multi_query").substitute(question=question, n=n), 40 * n)
    lines = [re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", x).strip() for x in text.splitlines()]
    out = [x for x in lines if x and x.lower() != question.lower()]
    return out[:n]


async def translate(complete: Complete, question: str, target: str) -> str:
    """The query in another language, for a mixed Chinese-English corpus."""
    return _first_line(await complete(_prompt("translate").substitute(question=question, target=target), 64))


def keywords(analyzer: Analyzer, question: str) -> str:
    """The question reduced to its content words (stopwords, punctuation dropped) for BM25."""
    return " ".join(analyzer.tokenize(question))
