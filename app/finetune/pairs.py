"""`ragqa finetune pairs`: RAFT examples from an existing QA set instead of questions the LLM writes.

The small models write poor questions (docs/finetune.md: the 0.5B paraphrased two thirds of its quotes), while public
QA sets hold good ones, with unanswerable questions among them. The input is neutral: JSONL lines of {id, question,
answers[], unanswerable, doc_key}, `doc_key` being the source reference (a record key or file path) of the document
the question was written against, plus a collection holding those documents. Data-set glue (SQuAD: eval/) writes
both; nothing here knows any data set.

Each example's prompt is what the pipeline shows the model in its first round: `gather` (our retriever, small-to-big)
then `select` (the question-bearing sentences) with the pipeline's own settings, so the prompt is short (a few
sentences, not whole chunks) and the adapter trains on what it reads when serving. Then RAFT:
- answerable: the oracle is the passage of the question's document that holds the gold sentence (the sentence of
  that document holding an answer string, the one sharing most terms with the question when several do); the other
  selected passages are the distractors (at most `distractors`), all in random order. The target is the gold
  sentence verbatim (values exact) ending with the oracle's marker. Dropped when the retriever misses the document
  (`not_retrieved`), the selection drops the gold sentence (`answer_not_selected`: serving would not show it
  either), the sentence is long (`answer_too_long`) or fails the pipeline's citation check (`grounded`).
- unanswerable: the selected passages as they come (near misses: the set's unanswerable questions were written
  against a real paragraph), target the refusal sentence.
Near-duplicate questions are removed as in data.py. Splits are by `doc_key`, so no validation question's document
is seen in training.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath

from app.arithmetic import prompt_hint
from app.citations import SupportScorer
from app.finetune.data import (
    DataSummary,
    Splits,
    grounded,
    loaded_embedder,
    near_duplicates,
    split_documents,
    write_examples,
)
from app.finetune.raft import QA, Example, cite, prompt_for_passages
from app.pipeline import PipelineConfig, sentence_similarity
from app.routing import NO_ANSWER
from app.service import SearchService
from retrieval.analyzer import Analyzer
from retrieval.evidence import gather
from retrieval.expand import Passage
from retrieval.search import HybridRetriever
from retrieval.store import SearchFilter
from retrieval.text import approx_tokens, language_of, split_sentences
from retrieval.types import Chunk

PairProgress = Callable[[Sequence["GivenQA"]], Iterable["GivenQA"]]


@dataclass(frozen=True)
class GivenQA:
    """One question of an existing QA set; `doc_key` names the document it was written against."""

    id: str
    question: str
    answers: tuple[str, ...]
    unanswerable: bool
    doc_key: str


@dataclass(frozen=True)
class PairOptions:
    n_examples: int = 300
    refusal_share: float = 0.5  # share of the sampled questions that are unanswerable (refusal targets)
    distractors: int = 3
    max_answer_tokens: int = 60  # a longer gold sentence is no short answer: dropped
    dup_cosine: float = 0.85
    dup_embedder: str = "use-multilingual"  # as in DataOptions: e5/MiniLM put unrelated questions too close
    splits: Splits = (0.9, 0.1, 0.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.refusal_share <= 1.0:
            raise ValueError(f"--refusal-share must be in [0, 1], got {self.refusal_share}")
        if self.n_examples < 1 or self.distractors < 1:
            raise ValueError("--examples and --distractors must be at least 1")
        if len(self.splits) != 3 or any(s < 0 for s in self.splits) or abs(sum(self.splits) - 1.0) > 1e-6:
            raise ValueError(f"--splits must be three shares adding up to 1, got {self.splits}")


def read_pairs(path: Path) -> list[GivenQA]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        d = json.loads(line)
        try:
            out.append(GivenQA(str(d["id"]), str(d["question"]).strip(), tuple(str(a) for a in d.get("answers", [])),
                               bool(d.get("unanswerable")) or not d.get("answers"), str(d["doc_key"])))
        except KeyError as e:
            raise ValueError(f"{path}:{n}: each line needs id, question and doc_key; missing {e}") from e
    return out


def write_pairs(path: Path, pairs: Iterable[GivenQA]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps({**asdict(p), "answers": list(p.answers)}, ensure_ascii=False) + "\n")


def sample_pairs(pairs: Sequence[GivenQA], n: int, refusal_share: float, rng: random.Random) -> list[GivenQA]:
    """About n * refusal_share unanswerable and the rest answerable, each group a seeded sample, in input order."""
    refuse = [p for p in pairs if p.unanswerable]
    answer = [p for p in pairs if not p.unanswerable]
    k = min(len(refuse), round(n * refusal_share))
    chosen = {p.id for p in rng.sample(refuse, k)} | {p.id for p in rng.sample(answer, min(len(answer), n - k))}
    return [p for p in pairs if p.id in chosen]


def gold_sentence(question: str, answers: Sequence[str], chunks: Sequence[Chunk], analyzer: Analyzer
                  ) -> tuple[Chunk, str] | None:
    """The (chunk, sentence) of `chunks` holding an answer string; several: the one sharing most question terms."""
    q = set(analyzer.tokenize(question))
    best: tuple[int, Chunk, str] | None = None
    for c in chunks:
        for s in split_sentences(c.text):
            s = s.strip()
            if any(a and a in s for a in answers):
                overlap = len(q & set(analyzer.tokenize(s)))
                if best is None or overlap > best[0]:
                    best = (overlap, c, s)
    return (best[1], best[2]) if best else None


def evidence(svc: SearchService, retriever: HybridRetriever, question: str, cfg: PipelineConfig,
             top_k: int) -> tuple[list[Passage], list[Passage]]:
    """(gathered, selected) passages for the question, as the answer pipeline's first round builds them."""
    ev = gather(retriever, [question], flt=SearchFilter(), top_k=top_k, budget_tokens=cfg.context_tokens,
                max_passage_tokens=cfg.max_passage_tokens)
    similarity = sentence_similarity(svc, retriever, cfg, question)
    return list(ev.passages), cfg.select(question, ev.passages, svc.analyzer, similarity)


def _norm(text: str) -> str:
    return " ".join(text.split())


def pair_example(pair: GivenQA, gathered: Sequence[Passage], chosen: Sequence[Passage], oracle_chunks: Sequence[Chunk],
                 analyzer: Analyzer, scorer: SupportScorer, opts: PairOptions, rng: random.Random
                 ) -> Example | str:
    """The RAFT example for one question over its evidence, or why it was dropped."""
    lang = language_of(pair.question)
    notes = prompt_hint(pair.question)
    if pair.unanswerable:
        shown = list(chosen[: opts.distractors + 1])
        if not shown:
            return "no_evidence"
        rng.shuffle(shown)
        top = shown[0].hit.chunk
        return Example(f"{pair.id}-r", "refusal", top.doc_id, top.chunk_id, lang, pair.question,
                       prompt_for_passages(pair.question, shown, lang, notes), NO_ANSWER[lang], None,
                       PurePath(pair.doc_key).name, pair.answers)
    found = gold_sentence(pair.question, pair.answers, oracle_chunks, analyzer)
    if found is None:
        return "answer_not_in_document"
    chunk, sentence = found
    if approx_tokens(sentence) > opts.max_answer_tokens:
        return "answer_too_long"
    if why := grounded(QA(chunk.chunk_id, pair.question, sentence, sentence), chunk, scorer):
        return why
    doc = chunk.doc_id
    if not any(p.hit.chunk.doc_id == doc for p in gathered):
        return "not_retrieved"
    oracle = next((p for p in chosen if p.hit.chunk.doc_id == doc and _norm(sentence) in _norm(p.text)), None)
    if oracle is None:
        return "answer_not_selected"
    shown = [oracle] + [p for p in chosen if p is not oracle][: opts.distractors]
    rng.shuffle(shown)
    marker = shown.index(oracle) + 1
    return Example(f"{pair.id}-o", "oracle", doc, chunk.chunk_id, lang, pair.question,
                   prompt_for_passages(pair.question, shown, lang, notes), cite(sentence, marker), marker,
                   PurePath(pair.doc_key).name, pair.answers)


def build_from_pairs(svc: SearchService, collection: str, pairs: Sequence[GivenQA], out: Path, opts: PairOptions,
                     progress: PairProgress | None = None, top_k: int = 6) -> DataSummary:
    """RAFT examples for a sample of `pairs` over `collection` (holding their documents), written to `out` as
    data.py writes its own (train/val/test.jsonl, test-eval.jsonl, stats.json). `top_k`: the pipeline's default."""
    rng = random.Random(opts.seed)
    retriever = svc.retriever(collection)
    store = retriever.collection.store
    level = min(store.levels())
    cfg = PipelineConfig()
    scorer = SupportScorer(svc.analyzer)
    # A share of the sampled questions is lost to the filters (measured on SQuAD: about a third of the answerable
    # ones): sample more than asked and keep the first n_examples that pass, answerable and unanswerable in proportion.
    sampled = sample_pairs(pairs, round(opts.n_examples * 1.6), opts.refusal_share, rng)
    dropped: Counter[str] = Counter()
    made: list[tuple[GivenQA, Example]] = []
    for pair in progress(sampled) if progress is not None else sampled:
        src = store.source(pair.doc_key)
        if src is None:
            dropped["document_not_in_collection"] += 1
            continue
        gathered, chosen = evidence(svc, retriever, pair.question, cfg, top_k)
        oracle_chunks = store.doc_chunks(src.doc_id, level) if not pair.unanswerable else []
        got = pair_example(pair, gathered, chosen, oracle_chunks, svc.analyzer, scorer, opts, rng)
        if isinstance(got, str):
            dropped[got] += 1
        else:
            made.append((pair, got))
    dup = near_duplicates(loaded_embedder(opts.dup_embedder).embed_documents([p.question for p, _ in made]),
                          opts.dup_cosine) if made else []
    dropped["near_duplicate"] += sum(dup)
    kept = [x for x, d in zip(made, dup, strict=True) if not d]
    kept = _balanced(kept, opts.n_examples, opts.refusal_share)
    split_of = split_documents([p.doc_key for p, _ in kept], opts.splits, opts.seed)
    examples = [(split_of[p.doc_key], ex) for p, ex in kept]
    return write_examples(out, examples, len(sampled), len(pairs), dropped)


def _balanced(kept: Sequence[tuple[GivenQA, Example]], n: int, refusal_share: float
              ) -> list[tuple[GivenQA, Example]]:
    """At most n, refusals at `refusal_share` of them where there are enough of each kind."""
    refuse = [x for x in kept if x[1].kind == "refusal"]
    answer = [x for x in kept if x[1].kind != "refusal"]
    k = min(len(refuse), round(n * refusal_share))
    k = min(len(refuse), n - min(len(answer), n - k))  # too few answerable: fill with refusals
    ids = {x[1].id for x in refuse[:k]} | {x[1].id for x in answer[: n - k]}
    return [x for x in kept if x[1].id in ids]
