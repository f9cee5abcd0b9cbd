"""Is the evidence enough to answer? A score gate in code, and the model's judgement only where the gate is unsure.

The gate is the share of the question's words found in one source sentence. Below `low` nothing the model could say
would be grounded, and the pipeline looks again or refuses; at or above `high` the sources name everything the question
asks about, and the model's judgement adds little but its cost (on two CPU cores it re-reads the evidence: most of
/ask's time before this change, docs/benchmarks.md). In between, the model decides, on the same prompt prefix as the
answer, so llama.cpp's prefix cache makes the answer that follows cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from app.citations import SupportScorer
from app.llm.client import LLMClient, LLMError
from app.llm.json_loose import parse_json_loose
from retrieval.evidence import rows_as_records
from retrieval.expand import Passage
from retrieval.text import YEAR

JudgePolicy = Literal["unsure", "always", "never"]
SUFFICIENCY_SCHEMA = {
    "type": "object",
    "properties": {
        "answerable": {"type": "boolean"},
        "missing": {"type": "string"},
        "next_query": {"type": "string"},
    },
    "required": ["answerable", "missing", "next_query"],
}


@dataclass(frozen=True)
class Verdict:
    answerable: bool
    gate: float  # the score gate's value
    by: Literal["gate", "model", "gate (model failed)"]
    missing: str = ""
    next_query: str = ""
    warning: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def gate_score(scorer: SupportScorer, question: str, passages: Sequence[Passage]) -> float:
    """The best share of the question's words that one source sentence holds (0 without evidence).

    A year in the question is a time qualifier, not a term to find: "the warranty in 2025" must still reach the
    sources (and the cut-off note) when the newest policy is dated 2024."""
    if not passages:
        return 0.0
    question = YEAR.sub(" ", question)
    return max(scorer.best_span(question, p.text)[0] for p in passages)


def score_gate(scorer: SupportScorer, question: str, passages: Sequence[Passage], threshold: float) -> bool:
    return bool(passages) and gate_score(scorer, question, passages) >= threshold


def bridge_query(scorer: SupportScorer, question: str, passages: Sequence[Passage], below: float) -> str | None:
    """A follow-up query for a question that no single source sentence covers, else None.

    In a two-hop question ("the charging pressure of the refrigerant the KFR-35GW uses") the sentence that matches
    best names the bridge entity (R32) but not the asked fact; searching with the question plus that sentence finds
    the second document. A sentence that covers the question well needs no second look.
    """
    question = YEAR.sub(" ", question)
    best, span = 0.0, ""
    for p in passages:
        score, sentence = scorer.best_span(question, rows_as_records(p.text))
        if score > best:
            best, span = score, sentence
    if not span or best >= below:
        return None
    return f"{question.strip()} {span}"


def needs_model(gate: float, *, low: float, high: float, policy: JudgePolicy) -> bool:
    return gate >= low and (policy == "always" or (policy == "unsure" and gate < high))


async def judge(
    llm: LLMClient, prefix: str, task: str, gate: float, *, low: float, high: float, policy: JudgePolicy
) -> Verdict:
    """The verdict on the evidence in `prefix` (the answer prompt's own start, so the answer reuses its cache)."""
    if not needs_model(gate, low=low, high=high, policy=policy):
        return Verdict(gate >= low, gate, "gate")
    try:
        r = await llm.chat([{"role": "user", "content": prefix + task}], max_tokens=80, json_schema=SUFFICIENCY_SCHEMA)
    except LLMError as e:
        return Verdict(True, gate, "gate (model failed)", warning=f"sufficiency judge failed: {e}")
    parsed = parse_json_loose(r.text, ["answerable"])
    if parsed is None or not isinstance(parsed.get("answerable"), bool):
        return Verdict(True, gate, "gate (model failed)",
                       warning="sufficiency judge gave no usable JSON; score gate used",
                       prompt_tokens=r.usage.prompt_tokens, completion_tokens=r.usage.completion_tokens)
    return Verdict(bool(parsed["answerable"]), gate, "model", str(parsed.get("missing") or ""),
                   str(parsed.get("next_query") or ""), prompt_tokens=r.usage.prompt_tokens,
                   completion_tokens=r.usage.completion_tokens)
