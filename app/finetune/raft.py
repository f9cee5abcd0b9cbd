"""One RAFT example: the answer pipeline's own prompt over an oracle chunk and hard-negative distractors.

The prompt is built exactly as app/pipeline.py builds it (the `sources` and `answer` templates, `sources_block`),
so the adapter is trained on what it will read when serving. The target is in our answer format: the answer
sentence ending with its source's marker, or the refusal sentence (`NO_ANSWER`) when the oracle was left out.
For a dated conflict, the prompt carries the pipeline's disagreement note and the target cites the newer source;
the pipeline appends the conflict sentence itself after the citation check, so the model need not write it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any, Literal

from app.pipeline import sources_block
from app.prompts import render_prompt
from app.routing import NO_ANSWER
from retrieval.expand import Passage
from retrieval.text import approx_tokens, has_cjk, numbers
from retrieval.types import Chunk, ScoredChunk

Kind = Literal["oracle", "refusal", "conflict"]
MAX_SENTENCES = 4  # PipelineConfig.max_sentences


@dataclass(frozen=True)
class QA:
    """A question the generator wrote for one chunk, with its one-sentence answer and the span it rests on."""

    chunk_id: int
    question: str
    answer: str
    quote: str


@dataclass(frozen=True)
class Example:
    id: str
    kind: Kind
    doc_id: str
    chunk_id: int
    language: str
    question: str
    prompt: str
    target: str
    oracle_marker: int | None  # the oracle's [n] in the prompt; None for a refusal
    source_file: str  # the oracle's file name, and the facts a right answer states: for `ragqa eval qa`
    answer_keys: tuple[str, ...]

    def record(self, split: str) -> dict[str, Any]:
        """The JSONL line: the fields plus chat `messages`, the format trl and our trainer read."""
        return {**asdict(self), "split": split, "messages": [
            {"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.target}]}


def as_passage(chunk: Chunk) -> Passage:
    return Passage(hit=ScoredChunk(chunk, 0.0), text=chunk.text, chunk_ids=(chunk.chunk_id,),
                   token_count=approx_tokens(chunk.text), expanded="chunk")


def prompt_for(question: str, chunks: Sequence[Chunk], language: str, notes: str = "") -> str:
    return prompt_for_passages(question, [as_passage(c) for c in chunks], language, notes)


def prompt_for_passages(question: str, passages: Sequence[Passage], language: str, notes: str = "") -> str:
    """The answer prompt over passages as given (whole chunks, or the sentences `retrieval.evidence.select` kept)."""
    prefix = render_prompt("sources", sources=sources_block(list(passages)))
    return prefix + render_prompt("answer", language="Chinese" if language == "zh" else "English",
                                  max_sentences=MAX_SENTENCES, notes=notes, conversation="",
                                  question=question)


def cite(answer: str, marker: int) -> str:
    """The answer sentence ending with its marker, as the prompt asks ("... 7 years [1].")."""
    body = answer.strip()
    end = body[-1] if body and body[-1] in ".。!?！？" else ""
    body = body[: len(body) - len(end)].rstrip() if end else body
    return f"{body} [{marker}]{end or ('。' if has_cjk(body) else '.')}"


def build_example(
    qa: QA, oracle: Chunk, distractors: Sequence[Chunk], *, language: str, refusal: bool, rng: random.Random,
    older: Chunk | None = None,
) -> Example:
    """Oracle (unless `refusal`) and distractors in random order; `older`, an earlier version of the oracle's
    document that says otherwise, makes a dated-conflict example."""
    chunks = list(distractors)
    if not refusal:
        chunks.append(oracle)
        if older is not None:
            chunks.append(older)
    rng.shuffle(chunks)
    keys = tuple(sorted(numbers(qa.answer))) or (qa.quote,)
    src = PurePath(oracle.source_path).name
    if refusal:
        return Example(f"{qa.chunk_id}-r", "refusal", oracle.doc_id, oracle.chunk_id, language, qa.question,
                       prompt_for(qa.question, chunks, language), NO_ANSWER["zh" if language == "zh" else "en"], None,
                       src, keys)
    a = chunks.index(oracle) + 1
    notes = ""
    if older is not None:
        b = chunks.index(older) + 1
        notes = (f"Note: sources [{a}] and [{b}] disagree; [{a}] is newer ({oracle.effective_date} > "
                 f"{older.effective_date}) and takes precedence.\n")
    kind: Kind = "conflict" if older is not None else "oracle"
    return Example(f"{qa.chunk_id}-{kind[0]}", kind, oracle.doc_id, oracle.chunk_id, language, qa.question,
                   prompt_for(qa.question, chunks, language, notes), cite(qa.answer, a), a, src, keys)
