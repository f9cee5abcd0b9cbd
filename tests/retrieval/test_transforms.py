"""Query transforms parse what an LLM writes. The LLM here is a fake: these tests are about the parsing."""

from __future__ import annotations

import asyncio

import pytest

from retrieval import transforms
from retrieval.analyzer import Analyzer


class FakeComplete:
    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    async def __call__(self, prompt: str, max_tokens: int) -> str:
        self.prompts.append(prompt)
        return self.reply


def test_rewrite_uses_history_and_keeps_codes() -> None:
    fake = FakeComplete('"How often should the KFR-35GW filter be cleaned?"\nextra line')
    out = asyncio.run(transforms.rewrite_standalone(
        fake, "how often should it be cleaned?", [("user", "Tell me about the KFR-35GW filter"), ("assistant", "...")]
    ))
    assert out == "How often should the KFR-35GW filter be cleaned?"
    assert "KFR-35GW" in fake.prompts[0] and "how often should it be cleaned?" in fake.prompts[0]
    assert asyncio.run(transforms.rewrite_standalone(fake, "q", [])) == "q"  # no history: no LLM call
    assert len(fake.prompts) == 1


def test_multi_query_strips_numbering_and_duplicates() -> None:
    fake = FakeComplete("1. fan fault code E4\n2) outdoor fan error\n- What does E4 mean?\n\n* E4 meaning")
    out = asyncio.run(transforms.multi_query(fake, "What does E4 mean?", n=3))
    assert out == ["fan fault code E4", "outdoor fan error", "E4 meaning"]
    with pytest.raises(ValueError, match="0"):
        asyncio.run(transforms.multi_query(fake, "q", n=0))


def test_hyde_translate_keywords() -> None:
    assert asyncio.run(transforms.hyde(FakeComplete("  A passage.  "), "q")) == "A passage."
    translated = asyncio.run(transforms.translate(FakeComplete("压缩机保修\n"), "compressor warranty", "Chinese"))
    assert translated == "压缩机保修"
    kw = transforms.keywords(Analyzer(), "What is the warranty of the compressor?")
    assert "what" not in kw.split() and "compressor" in kw
