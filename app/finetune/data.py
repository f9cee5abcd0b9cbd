"""`ragqa finetune data`: RAFT examples from a collection, written as train/val/test JSONL split by document.

For sampled chunks (languages in proportion to the collection's), the LLM writes a question, a one-sentence answer
and the quote it rests on (cached in `generated.jsonl`, so an interrupted run resumes where it stopped). A question
is kept only if its quote and every number of its answer occur in the chunk, if our own retriever finds the chunk
in the top k for it, and if no kept question is a near duplicate (cosine >= 0.85). Distractors are the retriever's
other hits for the question (hard negatives). A share of examples leaves the oracle out and teaches the refusal.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from app.citations import SupportScorer
from app.finetune.raft import QA, Example, build_example
from app.llm.client import LLMClient, LLMError
from app.llm.json_loose import parse_json_loose
from app.service import SearchService
from retrieval.embedders import Embedder, get_embedder
from retrieval.search import SearchParams
from retrieval.store import SearchFilter
from retrieval.text import approx_tokens, language_of, numbers
from retrieval.types import Chunk, Document

_SCHEMA = {"title": "qa", "type": "object", "required": ["question", "answer", "quote"], "properties": {
    "question": {"type": "string"}, "answer": {"type": "string"}, "quote": {"type": "string"}}}
Splits = tuple[float, float, float]
Generator = Callable[[Chunk], QA | None]  # writes one question for a chunk, or None
Progress = Callable[[Iterable[Chunk]], Iterable[Chunk]]


@dataclass(frozen=True)
class DataOptions:
    n_chunks: int = 300
    refusal_share: float = 0.2
    distractors: int = 3
    top_k: int = 5  # the question must retrieve its own chunk within this many hits
    dup_cosine: float = 0.85
    # Not the collection's embedder: e5-small (`auto` for mixed corpora) puts any two questions at cosine ~0.8, so
    # 0.85 would drop most of them; the multilingual USE spreads them (paraphrases 0.89, unrelated < 0.4, en/zh too).
    dup_embedder: str = "use-multilingual"
    splits: Splits = (0.8, 0.1, 0.1)
    min_chunk_tokens: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.refusal_share <= 1.0:
            raise ValueError(f"--refusal-share must be in [0, 1], got {self.refusal_share}")
        if self.n_chunks < 1 or self.distractors < 1 or self.top_k < 1:
            raise ValueError("--chunks, --distractors and --top-k must be at least 1")
        if len(self.splits) != 3 or any(s < 0 for s in self.splits) or abs(sum(self.splits) - 1.0) > 1e-6:
            raise ValueError(f"--splits must be three shares adding up to 1, got {self.splits}")


@dataclass(frozen=True)
class DataSummary:
    sampled: int
    generated: int
    dropped: dict[str, int]
    examples: dict[str, int]  # per split
    kinds: dict[str, int]
    languages: dict[str, int]
    documents: dict[str, int]  # per split

    def text(self) -> str:
        return (f"{self.sampled} chunks sampled, {self.generated} questions generated; dropped: "
                f"{dict(self.dropped) or 'none'}\nexamples per split: {self.examples}; kinds: {self.kinds}; "
                f"languages: {self.languages}; documents per split: {self.documents}")


def sample_chunks(chunks: Sequence[Chunk], n: int, min_tokens: int, rng: random.Random) -> list[Chunk]:
    """n chunks, each language in proportion to its share of the (usable) chunks."""
    usable = [c for c in chunks if approx_tokens(c.text) >= min_tokens]
    by_lang: dict[str, list[Chunk]] = defaultdict(list)
    for c in usable:
        by_lang[c.language or language_of(c.text)].append(c)
    out: list[Chunk] = []
    for group in by_lang.values():
        k = min(len(group), max(1, round(n * len(group) / max(1, len(usable)))))
        out.extend(rng.sample(group, k))
    rng.shuffle(out)
    return out[:n]


def split_documents(doc_ids: Iterable[str], splits: Splits, seed: int) -> dict[str, str]:
    """doc_id -> train/val/test: whole documents per split, so no test answer was seen in training."""
    ids = sorted(set(doc_ids))
    random.Random(seed).shuffle(ids)
    n = len(ids)
    n_test = max(1, round(n * splits[2])) if splits[2] and n >= 3 else 0
    n_val = max(1, round(n * splits[1])) if splits[1] and n >= 3 else 0
    out = {d: "test" for d in ids[:n_test]}
    out.update({d: "val" for d in ids[n_test:n_test + n_val]})
    out.update({d: "train" for d in ids[n_test + n_val:]})
    return out


def grounded(qa: QA, chunk: Chunk, scorer: SupportScorer | None = None) -> str | None:
    """None when the quote and every number of the answer occur in the chunk and (with `scorer`) the answer passes
    the pipeline's own citation check against it, else why not: a target must survive that check when served."""
    text = " ".join(chunk.text.split())
    if not qa.question.strip() or not qa.answer.strip():
        return "empty"
    if " ".join(qa.quote.split()) not in text:
        return "quote_not_in_chunk"
    if not numbers(qa.answer) <= numbers(text):
        return "value_not_in_chunk"
    if scorer is not None and scorer.best_span(qa.answer, chunk.text)[0] < scorer.threshold:
        return "answer_not_supported"
    return None


def near_duplicates(vectors: np.ndarray, threshold: float) -> list[bool]:
    """For each row, whether an earlier kept row is at least `threshold` cosine-similar (greedy, in order)."""
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    kept: list[int] = []
    dup: list[bool] = []
    for i in range(len(v)):
        is_dup = bool(kept) and float(np.max(v[kept] @ v[i])) >= threshold
        dup.append(is_dup)
        if not is_dup:
            kept.append(i)
    return dup


async def generate_qa(llm: LLMClient, chunk: Chunk) -> QA | None:
    lang = "Chinese" if (chunk.language or language_of(chunk.text)) == "zh" else "English"
    tpl = resources.files(__package__).joinpath("question_prompt.txt").read_text(encoding="utf-8")
    prompt = Template(tpl).substitute(language=lang, passage=chunk.text.replace(">>>", "> > >"))
    try:
        r = await llm.chat([{"role": "user", "content": prompt}], max_tokens=160, json_schema=_SCHEMA)
    except LLMError:
        return None
    got = parse_json_loose(r.text, ("question", "answer", "quote"))
    if not got or not all(isinstance(got.get(k), str) for k in ("question", "answer", "quote")):
        return None
    return QA(chunk.chunk_id, got["question"].strip(), got["answer"].strip(), got["quote"].strip())


def _cached(path: Path) -> dict[int, QA | None]:
    out: dict[int, QA | None] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                out[d["chunk_id"]] = QA(**d["qa"]) if d.get("qa") else None
    return out


def llm_generator(llm: LLMClient) -> Generator:
    """The generator that asks `llm` (the embedded model or a served one), one chunk at a time."""
    return lambda chunk: asyncio.run(generate_qa(llm, chunk))


def generate_all(generate: Generator, chunks: Sequence[Chunk], cache: Path,
                 progress: Progress = lambda x: x) -> dict[int, QA | None]:
    """The generator's output per chunk id; resumable through `cache` (one JSON line per chunk, appended)."""
    done = _cached(cache)
    todo = [c for c in chunks if c.chunk_id not in done]
    with cache.open("a", encoding="utf-8") as f:
        for c in progress(todo):
            qa = generate(c)
            done[c.chunk_id] = qa
            f.write(json.dumps({"chunk_id": c.chunk_id, "qa": qa.__dict__ if qa else None}, ensure_ascii=False) + "\n")
            f.flush()
    return done


def older_version(svc: SearchService, collection: str, chunk: Chunk, qa: QA, docs: dict[str, Document]) -> Chunk | None:
    """The best-matching chunk of an earlier-dated document of the same family that lacks the answer's values."""
    if not chunk.family or not chunk.effective_date:
        return None
    older = [d.doc_id for d in docs.values() if d.doc_id != chunk.doc_id and d.metadata.get("family") == chunk.family
             and d.effective_date and d.effective_date < chunk.effective_date]
    if not older:
        return None
    hits = svc.search(collection, qa.question, 1, SearchParams(filter=SearchFilter(doc_ids=tuple(older))))
    want = numbers(qa.answer)
    if hits and want and not want <= numbers(hits[0].chunk.text):
        return hits[0].chunk
    return None


def build(svc: SearchService, collection: str, generate: Generator, out: Path, opts: DataOptions,
          progress: Progress = lambda x: x) -> DataSummary:
    rng = random.Random(opts.seed)
    retriever = svc.retriever(collection)
    store = retriever.collection.store
    level = min(store.levels())
    out.mkdir(parents=True, exist_ok=True)
    every = store.chunks(store.chunk_ids_at_level(level))
    # Resuming with another --chunks: chunks already asked about (generated.jsonl) are taken first.
    asked = set(_cached(out / "generated.jsonl"))
    chunks = [c for c in every if c.chunk_id in asked][: opts.n_chunks]
    chunks += sample_chunks([c for c in every if c.chunk_id not in asked], opts.n_chunks - len(chunks),
                            opts.min_chunk_tokens, rng) if len(chunks) < opts.n_chunks else []
    generated = generate_all(generate, chunks, out / "generated.jsonl", progress)
    docs = {d.doc_id: d for d in store.documents()}
    dropped: Counter[str] = Counter()
    scorer = SupportScorer(svc.analyzer)
    candidates: list[tuple[QA, Chunk, list[Chunk]]] = []
    for c in chunks:
        qa = generated.get(c.chunk_id)
        why = "no_question" if qa is None else grounded(qa, c, scorer)
        if qa is None or why:
            dropped[why or "no_question"] += 1
            continue
        hits = svc.search(collection, qa.question, opts.top_k + 2 * opts.distractors, SearchParams())
        if c.chunk_id not in [h.chunk.chunk_id for h in hits[: opts.top_k]]:
            dropped["not_retrieved"] += 1
            continue
        negatives = [h.chunk for h in hits if h.chunk.doc_id != c.doc_id][: opts.distractors]
        candidates.append((qa, c, negatives))
    questions = [q.question for q, _, _ in candidates]
    dup = near_duplicates(loaded_embedder(opts.dup_embedder).embed_documents(questions),
                          opts.dup_cosine) if candidates else []
    dropped["near_duplicate"] += sum(dup)
    kept = [x for x, d in zip(candidates, dup, strict=True) if not d]
    split_of = split_documents([c.doc_id for _, c, _ in kept], opts.splits, opts.seed)
    examples: list[tuple[str, Example]] = []
    for qa, c, negatives in kept:
        lang = c.language or language_of(c.text)
        refusal = rng.random() < opts.refusal_share and len(negatives) > 0
        older = None if refusal else older_version(svc, collection, c, qa, docs)
        ex = build_example(qa, c, negatives, language=lang, refusal=refusal, rng=rng, older=older)
        examples.append((split_of[c.doc_id], ex))
    n_generated = sum(generated.get(c.chunk_id) is not None for c in chunks)
    return write_examples(out, examples, len(chunks), n_generated, dropped)


def loaded_embedder(spec: str) -> Embedder:
    e = get_embedder(spec)
    e.load()
    return e


def write_examples(out: Path, examples: list[tuple[str, Example]], sampled: int, generated: int,
           dropped: Counter[str]) -> DataSummary:
    by_split: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for split, ex in examples:
        by_split[split].append(ex)
    for split, exs in by_split.items():
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for ex in exs:
                f.write(json.dumps(ex.record(split), ensure_ascii=False) + "\n")
    _write_eval(out / "test-eval.jsonl", by_split["test"])
    summary = DataSummary(
        sampled=sampled, generated=generated, dropped={k: v for k, v in dropped.items() if v},
        examples={k: len(v) for k, v in by_split.items()},
        kinds=dict(Counter(ex.kind for _, ex in examples)), languages=dict(Counter(ex.language for _, ex in examples)),
        documents={k: len({ex.doc_id for ex in v}) for k, v in by_split.items()},
    )
    (out / "stats.json").write_text(json.dumps(summary.__dict__, indent=2), encoding="utf-8")
    return summary


def _write_eval(path: Path, examples: Sequence[Example]) -> None:
    """The test questions in eval's jsonl format, for `ragqa eval qa --dataset jsonl:PATH --corpus DIR` before and
    after fine-tuning. Each question once; in the full pipeline every one is answerable (the oracle is indexed)."""
    seen: set[str] = set()
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            if ex.question in seen:
                continue
            seen.add(ex.question)
            f.write(json.dumps({"id": ex.id, "question": ex.question, "answers": list(ex.answer_keys),
                                "language": ex.language, "source_files": [ex.source_file],
                                "categories": {"kind": "finetune-test"}}, ensure_ascii=False) + "\n")


def read_split(folder: Path, split: str) -> list[dict[str, Any]]:
    path = folder / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: make it with `ragqa finetune data --out {folder}`")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
