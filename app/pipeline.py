"""The answer pipeline behind POST /ask, one straight line: decide, retrieve, judge, generate, cite, check.

Each stage is a function with its own input and output types; `stream` calls them in order and builds the trace from
their results. What a small model does unreliably is done in code: whether to retrieve, which sentences of the
sources matter (retrieval/evidence.py), ordering and dating the sources, finding disagreements, the knowledge
cut-off, and checking every citation. The model reads the selected sources and writes.

Events, in order (`stream`; `answer` returns the last one's answer):
  {"type": "status", "stage": "retrieve" | "judge" | "generate", "round": n, "text": ...}   what is happening
  {"type": "delta", "text": ...}                                                           the model's words
  {"type": "final", "answer": Answer, "revision": None | {"replaced": bool, "reason": ...}}
`revision` is set whenever the final answer is not the streamed text: a client shows `answer` in place of what it
streamed, and when `replaced` is true (a refusal after generation, say) it tells the user `reason` (README, /ask).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from app.arithmetic import prompt_hint, resolve
from app.citations import CitationReport, SupportScorer, check_citations, render_with_markers
from app.conflicts import Disagreement, find_disagreements
from app.errors import BadRequest, Unavailable
from app.llm.client import LLMClient, LLMError
from app.notes import conflict_sentence, cutoff_sentence, later_than_cutoff, prompt_notes, without_notes
from app.prompts import render_prompt
from app.routing import NO_ANSWER, SMALLTALK_REPLY, decide_retrieval
from app.service import SearchService
from app.sufficiency import JudgePolicy, Verdict, bridge_query, gate_score, judge, needs_model
from app.support_gate import cited_support, cited_text, off_topic, term_weights
from retrieval import transforms
from retrieval.analyzer import Analyzer
from retrieval.evidence import Evidence, Lead, gather, query_similarity, rows_as_records, select
from retrieval.expand import Passage
from retrieval.rerank import Reranker
from retrieval.search import HybridRetriever
from retrieval.store import SearchFilter
from retrieval.text import YEAR, Language, language_of, strip_markers
from retrieval.types import Answer, Citation, Conflict, ScoredChunk

_REFUSAL = re.compile(
    r"(does not contain|doesn't contain|do not contain|not (?:in|found in) the (?:knowledge base|sources)|"
    r"no information|cannot (?:be )?(?:answer|found)|知识库中没有|没有找到|未找到|无法回答|没有提供|未提及|不包含)",
    re.IGNORECASE,
)
Event = dict[str, Any]


@dataclass(frozen=True)
class AskRequest:
    question: str
    collection: str
    history: tuple[tuple[str, str], ...] = ()
    top_k: int = 6
    as_of: str | None = None
    hyde: bool = False
    multi_query: bool = False
    max_rounds: int = 3
    allow_model_knowledge: bool = False
    degrade_to_retrieval: bool = False
    filter: SearchFilter = field(default_factory=SearchFilter)


@dataclass(frozen=True)
class PipelineConfig:
    context_tokens: int = 1200  # evidence retrieved per question (small-to-big), before selection
    # What the model reads: the question-bearing sentences of that evidence, source headers included, at most
    # `evidence_tokens`, and only sentences scoring at least `evidence_floor` times the best one. Chosen on 100 SQuAD
    # questions: the answer is in 90 of the selections (92 of the full evidence) at 174 tokens on average.
    evidence_tokens: int = 320
    evidence_floor: float = 0.6
    evidence_context: int = 0  # sentences kept either side of a chosen one
    # Below the floor, a sentence is still kept when it holds this share of the question's weight in terms no kept
    # sentence holds (coverage for questions with several parts; tests/retrieval/test_evidence.py).
    evidence_min_new_share: float = 0.15
    semantic_weight: float = 2.0  # selection: weight of a sentence's embedding similarity beside its word overlap
    # The encoder of that similarity, whatever the collection's: multilingual USE embeds a sentence in about 1 ms
    # where e5-small takes 18 ms, and selection embeds 40-60 of them per question (bench/bench_select.py,
    # docs/benchmarks.md "/ask latency"). "" = the collection's own embedder.
    select_embedder: str = "use-multilingual"
    max_passage_tokens: int = 320
    answer_max_tokens: int = 200
    max_sentences: int = 4
    judge: JudgePolicy = "unsure"  # the model's sufficiency judgement: where the gate is unsure, always, or never
    min_lexical_support: float = 0.34  # score gate: below, the evidence cannot ground an answer
    sure_lexical_support: float = 0.75  # score gate: at or above, "unsure" skips the model's judgement
    bridge_below: float = 0.75  # one more retrieval when no source sentence holds this share of the question's words
    # After generation: refuse when the cited passages (with their titles) hold less than this rarity-weighted share
    # of the question's terms (app/support_gate.py); 0 turns the check off. Chosen on the dev half of the committed
    # runs (bench/refusal_calibration.py, seed 12: SQuAD 2.0, RGB zh at noise 0.4 and 1, CMRC, TAT-QA; the highest
    # threshold refusing at most 5 % of dev's answerable questions that were answered correctly). On the test half,
    # a simulation on the committed answers: refusal recall 0.48 -> 0.59, RGB zh rejection 0.56 -> 0.68, answerable
    # accuracy 0.68 -> 0.64 (-0.04 [-0.10, 0.00]); details in docs/evaluation.md, "Calibrated refusal (study)".
    min_cited_share: float = 0.555

    def select(self, question: str, passages: Sequence[Passage], analyzer: Analyzer,
               similarity: Callable[[Sequence[str]], np.ndarray] | None = None, lead: Lead | None = None
               ) -> list[Passage]:
        """The sentences the model reads (retrieval/evidence.py `select`) with these settings; the fine-tuning data
        (app/finetune/pairs.py) builds its prompts with it too, so it trains on what the pipeline shows."""
        return select(question, passages, analyzer, self.evidence_tokens, context=self.evidence_context,
                      similarity=similarity, semantic_weight=self.semantic_weight, relative_floor=self.evidence_floor,
                      min_new_share=self.evidence_min_new_share, lead=lead)


@dataclass(frozen=True)
class Plan:
    """Stage 1, decide: what the question needs."""

    lang: Language
    retrieve: bool
    reason: str
    flt: SearchFilter


@dataclass(frozen=True)
class Composed:
    """The evidence the model reads and the prompts built on it (judge and answer share `prefix`)."""

    passages: tuple[Passage, ...]
    prefix: str
    disagreements: tuple[Disagreement, ...]
    later: tuple[str, str] | None


@dataclass(frozen=True)
class Found:
    """Stage 2 and 3, retrieve and judge (iteratively): the evidence, and whether it suffices."""

    composed: Composed
    retrieved: tuple[ScoredChunk, ...]
    sufficient: bool
    cutoff: str | None


@dataclass(frozen=True)
class Draft:
    """Stage 4, generate: what the model wrote."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Trace:
    """Timings, token counts and per-stage records of one request, written from the stages' results."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.data: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t

    def tokens(self, prompt: int, completion: int) -> None:
        self.usage["prompt_tokens"] += prompt
        self.usage["completion_tokens"] += completion

    def warn(self, message: str) -> None:
        self.data.setdefault("warnings", []).append(message)

    def out(self) -> dict[str, Any]:
        self.timings["total"] = time.perf_counter() - self.t0
        return {**self.data, "timings_ms": {k: round(v * 1000, 1) for k, v in self.timings.items()}}


class AnswerPipeline:
    def __init__(
        self, service: SearchService, llm: LLMClient, config: PipelineConfig = PipelineConfig(),
        reranker: Reranker | None = None,
    ) -> None:
        self.service = service
        self.llm = llm
        self.config = config
        self.reranker = reranker
        self.scorer = SupportScorer(service.analyzer)
        # The support gate reads Chinese as whole words (jieba's exact mode): the search mode's sub-words match a
        # rare compound through a common part of it, and the exact mode separated better on the dev half (AUC 0.66
        # against 0.63, bench/refusal_calibration.py).
        self.gate_analyzer = replace(service.analyzer, cjk_mode="exact")

    def warm_up(self, collection: str) -> None:
        """Load the collection, its embedder and the sentence scorer now, so the first question doesn't pay."""
        self.service.warm_up(collection)
        if self.config.select_embedder:
            self.service.embedder(self.config.select_embedder)
        if self.config.min_cited_share > 0:
            term_weights()  # the support gate's IDF table (about 0.3 s)

    async def answer(self, req: AskRequest) -> Answer:
        final: Answer | None = None
        async for ev in self.stream(req, live=False):
            if ev["type"] == "final":
                final = ev["answer"]
        assert final is not None
        return final

    async def stream(self, req: AskRequest, live: bool = True) -> AsyncIterator[Event]:
        """The pipeline, stage by stage. `live`: stream the model's words as it writes them."""
        check_request(req)
        trace = Trace()
        plan = decide(req)
        trace.data["retrieval"] = {"needed": plan.retrieve, "reason": plan.reason}
        if not plan.retrieve:
            yield _final(Answer(SMALLTALK_REPLY[plan.lang], "answered", trace=trace.out()))
            return
        retriever = await asyncio.to_thread(self.service.retriever, req.collection)
        req = await self._resolve(req, trace)
        found: Found | None = None
        async for ev in self._retrieve(req, plan, retriever, req.question, trace):
            if isinstance(ev, Found):
                found = ev
            else:
                yield ev
        assert found is not None
        if not found.sufficient and not req.allow_model_knowledge:
            yield _final(self._no_answer(plan, found, trace))
            return
        yield _status("generate", "Writing the answer")
        parts: list[str] = []
        try:
            async for delta in self._generate(req, plan, found.composed, trace, live):
                parts.append(delta)
                yield {"type": "delta", "text": delta}
        except LLMError as e:
            yield _final(self._llm_failed(req, found, trace, e))
            return
        streamed = "".join(parts)
        answer = self._check(req, plan, found, streamed, trace)
        yield _final(answer, revision(streamed, answer))

    # ---- stages ----------------------------------------------------------------------------------------------------

    async def _resolve(self, req: AskRequest, trace: Trace) -> AskRequest:
        """Stage 1b, with history: the question made standalone ("And under the 2023 policy?" -> "How many years is
        the compressor covered under the 2023 policy?"). Every later stage (retrieval, selection, the score gate,
        the judge, the notes on dates and disagreements, the citation check) works on it; the prompts also show the
        conversation itself. If the model cannot rewrite, or its rewrite lost a number or code of the question (the
        0.5B model's rewrite of "And under the 2023 policy?" lost the year), the previous question is put before this
        one instead."""
        if not req.history:
            return req
        with trace.timed("rewrite"):
            standalone = await self._optional(trace, transforms.rewrite_standalone(
                self._complete, req.question, plain_turns(req.history)), default=None)
        kept = set(re.findall(r"\w+", (standalone or "").lower()))
        if not standalone or any(t not in kept for t in re.findall(r"\w*\d\w*", req.question.lower())):
            previous = next((text for role, text in reversed(req.history) if role == "user"), "")
            standalone = f"{previous} {req.question}".strip()
        trace.data["standalone_question"] = standalone
        return replace(req, question=str(standalone))

    async def _retrieve(
        self, req: AskRequest, plan: Plan, retriever: HybridRetriever, query: str, trace: Trace
    ) -> AsyncIterator[Event | Found]:
        """Rounds of gather -> select -> judge until the evidence suffices; then at most one bridge round for a
        question no single sentence covers. Yields status events, then the Found."""
        cfg = self.config
        rounds: list[dict[str, Any]] = []
        passages: tuple[Passage, ...] = ()
        vectors: dict[str, np.ndarray] = {}  # sentence embeddings, shared by the question's and the lead's scoring
        similarity = await asyncio.to_thread(sentence_similarity, self.service, retriever, cfg, req.question,
                                             vectors)

        def compose(passages: tuple[Passage, ...], lead: Lead | None = None) -> Composed:
            return self._compose(req, plan, passages, similarity, lead)

        composed = Composed((), "", (), None)  # replaced in round 1: check_request guarantees max_rounds >= 1
        sufficient = False
        for n in range(1, req.max_rounds + 1):
            yield _status("retrieve", "Searching the knowledge base", n)
            queries = await self._variants(req, query, trace)
            ev = await self._gather(req, plan, retriever, queries, passages, trace)
            passages = ev.passages
            with trace.timed("select"):
                composed = await asyncio.to_thread(compose, passages)
            gate = gate_score(self.scorer, req.question, composed.passages)
            if needs_model(gate, low=cfg.min_lexical_support, high=cfg.sure_lexical_support, policy=cfg.judge):
                yield _status("judge", "Checking that the sources answer the question", n)
            with trace.timed("judge"):
                task = render_prompt("sufficiency", conversation=conversation_block(req.history),
                                     question=req.question)
                verdict = await judge(self.llm, composed.prefix, task,
                                      gate, low=cfg.min_lexical_support, high=cfg.sure_lexical_support,
                                      policy=cfg.judge)
            _record_round(trace, rounds, n, queries, ev, verdict)
            if verdict.answerable:
                sufficient = True
                bridge = bridge_query(self.scorer, req.question, composed.passages, cfg.bridge_below)
                if bridge is not None and n < req.max_rounds:
                    # A multi-hop question that one round seemed to answer: look once more, from the bridge sentence.
                    yield _status("retrieve", "Following a lead to a second source", n + 1)
                    before = passages
                    ev = await self._gather(req, plan, retriever, [bridge], passages, trace)
                    passages = ev.passages
                    with trace.timed("select"):
                        lead_sim = await asyncio.to_thread(
                            sentence_similarity, self.service, retriever, cfg, bridge, vectors)
                        composed = await asyncio.to_thread(
                            compose, passages, Lead(bridge, brought(before, passages), lead_sim))
                    rounds.append({"round": n + 1, "queries": [bridge], "hits": [h.chunk.chunk_id for h in ev.hits],
                                   "bridge": True})
                break
            nxt = (verdict.next_query or verdict.missing).strip()
            if not nxt or nxt in {r["queries"][0] for r in rounds}:
                break
            query = nxt
        trace.data["rounds"] = rounds
        # What the model read, word for word: the judges of an evaluation check answers against this.
        trace.data["evidence"] = {
            "tokens": sum(p.token_count for p in composed.passages),
            "passages": [{"marker": i, "chunk_id": p.hit.chunk.chunk_id, "text": p.text}
                         for i, p in enumerate(composed.passages, 1)],
        }
        cutoff = await asyncio.to_thread(retriever.collection.store.newest_date, plan.flt)
        # A cut-off note only when the question names a year after the collection's newest document (app/notes.py).
        composed = replace(composed, later=later_than_cutoff(req.question, composed.passages, cutoff))
        yield Found(composed, tuple(p.hit for p in passages), sufficient, cutoff)

    async def _variants(self, req: AskRequest, query: str, trace: Trace) -> list[str]:
        if not req.multi_query:
            return [query]
        with trace.timed("transforms"):
            extra = await self._optional(trace, transforms.multi_query(self._complete, query, 2), default=[])
        return [query, *extra]

    async def _gather(
        self, req: AskRequest, plan: Plan, retriever: HybridRetriever, queries: list[str],
        previous: tuple[Passage, ...], trace: Trace,
    ) -> Evidence:
        hyde_vector = None
        if req.hyde:
            with trace.timed("transforms"):
                text = await self._optional(trace, transforms.hyde(self._complete, queries[0]), default="")
            if text:
                hyde_vector = (await asyncio.to_thread(retriever.embedder.embed_documents, [text]))[0]
                trace.data.setdefault("hyde", []).append(text[:200])
        with trace.timed("retrieve"):
            ev = await asyncio.to_thread(
                gather, retriever, queries, flt=plan.flt, top_k=req.top_k, budget_tokens=self.config.context_tokens,
                max_passage_tokens=self.config.max_passage_tokens, hyde_vector=hyde_vector, reranker=self.reranker,
                previous=previous,
            )
        if ev.rerank is not None:
            trace.timings["rerank"] = trace.timings.get("rerank", 0.0) + ev.timings.get("rerank", 0.0)
            trace.data.setdefault("rerank", []).append({
                "reranker": ev.rerank.reranker, "candidates": ev.rerank.candidates, "fallback": ev.rerank.fallback,
                "error": ev.rerank.error})
        return ev

    def _compose(self, req: AskRequest, plan: Plan, passages: tuple[Passage, ...],
                 similarity: Callable[[Sequence[str]], np.ndarray] | None = None, lead: Lead | None = None
                 ) -> Composed:
        chosen = tuple(self.config.select(req.question, passages, self.service.analyzer, similarity, lead))
        return Composed(
            passages=chosen,
            prefix=render_prompt("sources", sources=sources_block(chosen)),
            disagreements=tuple(find_disagreements(req.question, chosen, self.service.analyzer)),
            later=later_than_cutoff(req.question, chosen),
        )

    async def _generate(
        self, req: AskRequest, plan: Plan, composed: Composed, trace: Trace, live: bool
    ) -> AsyncIterator[str]:
        prompt = composed.prefix + render_prompt(
            "answer", language="Chinese" if plan.lang == "zh" else "English", max_sentences=self.config.max_sentences,
            notes=prompt_hint(req.question) + prompt_notes(composed.disagreements, composed.later),
            conversation=conversation_block(req.history), question=req.question)
        messages = [{"role": "user", "content": prompt}]
        clean = MarkupFilter()
        with trace.timed("generate"):
            if live:
                async for delta in self.llm.stream_chat(messages, max_tokens=self.config.answer_max_tokens):
                    if text := clean.feed(delta):
                        yield text
            else:
                r = await self.llm.chat(messages, max_tokens=self.config.answer_max_tokens)
                trace.tokens(r.usage.prompt_tokens, r.usage.completion_tokens)
                if text := clean.feed(r.text):
                    yield text
            if tail := clean.flush():
                yield tail

    def _check(self, req: AskRequest, plan: Plan, found: Found, text: str, trace: Trace) -> Answer:
        """Stages 5 and 6, cite and check: every citation verified, unsupported answers and answers whose cited
        passages lack the question's rare terms refused, notes appended."""
        c = found.composed
        chunks = {ch.chunk_id: ch for ch in self.service.chunks_for(req.collection, list(c.passages))}
        # <calc> tags the model wrote, computed in code (app/arithmetic.py); a table's unit ("in thousands") may be
        # stated in its section's other chunks, outside the lines selected for the model.
        calc = resolve(text.strip(), c.passages, list(chunks.values()))
        text = calc.text
        if calc.calculations or calc.failed:
            trace.data["calculations"] = [{"expression": x.expression, "value": x.value, "scale": x.scale,
                                           "operands": [[o.text, o.marker] for o in x.operands]}
                                          for x in calc.calculations] + [{"failed": f} for f in calc.failed]
        if not text or (_REFUSAL.search(text) and not re.search(r"\[\d+\]", text)):
            trace.data["refused_by_model"] = True
            return self._no_answer(plan, found, trace)
        # A year the question names is the question's, not a claim: an answer that repeats it ("the 2021 birth rate
        # was 7.52‰ [1]") needs the source for the value, not for the year; the cut-off note covers a later year.
        asked = frozenset(YEAR.findall(req.question)) | calc.computed
        report = check_citations(text, c.passages, chunks, self.scorer, asked)
        if report.coverage == 0.0 and not req.allow_model_knowledge:
            # Not one sentence is backed by the sources: whatever the judge thought, this came from the model's memory
            # (or was made up), and an honest "not in the knowledge base" is worth more than a fluent guess.
            trace.data["refused_unsupported"] = report.unsupported
            return self._no_answer(plan, found, trace)
        if self.config.min_cited_share > 0 and not req.allow_model_knowledge:
            # Backed sentence by sentence, yet the cited passages may be about a neighbouring thing (a bus accident
            # cited for a temple stampede): the question's rare terms must be there too (app/support_gate.py).
            cited = [cited_text(c.passages[x.marker - 1].hit.chunk.title, c.passages[x.marker - 1].text)
                     for x in report.citations]
            support = cited_support(self.gate_analyzer, req.question, cited)
            if off_topic(support, self.config.min_cited_share):
                trace.data["refused_off_topic"] = {"share": round(support.share, 3),
                                                   "threshold": self.config.min_cited_share,
                                                   "missing": list(support.missing[:5]),
                                                   "answer": text}  # what was refused, for the log and evaluation
                return self._no_answer(plan, found, trace)
        return self._answered(req, plan, found, report, trace)

    # ---- endings ---------------------------------------------------------------------------------------------------

    def _answered(self, req: AskRequest, plan: Plan, found: Found, report: CitationReport, trace: Trace) -> Answer:
        c = found.composed
        body = render_with_markers(report)
        if plan.lang == "zh":
            body = body.replace(" [", "[")
        sep = "" if plan.lang == "zh" else " "
        extra, conflicts = _conflicts(c)
        cites = list(report.citations) + [x for x in extra if x.marker not in {y.marker for y in report.citations}]
        notes = ([cutoff_sentence(plan.lang, c.later)] if c.later else []) + [
            conflict_sentence(plan.lang, x) for x in conflicts]
        if notes:
            body += sep + sep.join(notes)
            trace.data["notes"] = notes  # the same sentences, apart, for a client that shows them as such
        status: Literal["answered", "partial"] = "answered" if report.coverage >= 0.5 and cites else "partial"
        if req.allow_model_knowledge and not cites:
            status = "partial"
        trace.data["citation_coverage"] = round(report.coverage, 3)
        trace.data["unsupported_sentences"] = report.unsupported
        trace.data["dropped_citations"] = [m for s in report.sentences for m in s.dropped]
        return Answer(
            answer=body.strip(), status=status, citations=tuple(sorted(cites, key=lambda x: x.marker)),
            conflicts=tuple(conflicts), knowledge_cutoff=found.cutoff, retrieved=found.retrieved,
            trace=trace.out(), usage=dict(trace.usage),
        )

    def _no_answer(self, plan: Plan, found: Found, trace: Trace) -> Answer:
        return Answer(
            answer=NO_ANSWER[plan.lang], status="no_answer", knowledge_cutoff=found.cutoff,
            retrieved=found.retrieved[:5], trace=trace.out(), usage=dict(trace.usage),
        )

    def _llm_failed(self, req: AskRequest, found: Found, trace: Trace, e: LLMError) -> Answer:
        if not req.degrade_to_retrieval:
            raise Unavailable(f"the language model is unavailable: {e}") from e
        trace.warn(f"LLM failed, retrieval only: {e}")
        return Answer(answer="", status="retrieval_only", knowledge_cutoff=found.cutoff, retrieved=found.retrieved,
                      trace=trace.out(), usage=dict(trace.usage))

    # ---- helpers ---------------------------------------------------------------------------------------------------

    async def _complete(self, prompt: str, max_tokens: int) -> str:
        r = await self.llm.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens)
        return r.text

    async def _optional(self, trace: Trace, coro: Any, default: Any) -> Any:
        """An optional LLM step (rewrite, HyDE, multi-query): on failure, note it and go on without it."""
        try:
            return await coro
        except LLMError as e:
            trace.warn(f"{type(e).__name__}: {e}")
            return default


def sentence_similarity(service: SearchService, retriever: HybridRetriever, cfg: PipelineConfig, question: str,
                        vectors: dict[str, np.ndarray] | None = None) -> Callable[[Sequence[str]], np.ndarray]:
    """Selection's similarity of a sentence to the question, under the configured encoder (`vectors`: a sentence
    embedding cache shared between queries, retrieval/evidence.py `query_similarity`)."""
    embedder = service.embedder(cfg.select_embedder) if cfg.select_embedder else retriever.embedder
    return query_similarity(embedder, question, vectors)


def brought(before: Sequence[Passage], after: Sequence[Passage]) -> frozenset[int]:
    """Indexes in `after` of the passages a later search added (their hit is in no passage of `before`)."""
    seen = {p.hit.chunk.chunk_id for p in before}
    return frozenset(i for i, p in enumerate(after) if p.hit.chunk.chunk_id not in seen)


def decide(req: AskRequest) -> Plan:
    """Stage 1: the answer's language, whether to retrieve at all, and the filter (with `as_of` as an upper date)."""
    d = decide_retrieval(req.question)
    flt = req.filter
    if req.as_of:
        flt = replace(flt, date_to=min(req.as_of, flt.date_to) if flt.date_to else req.as_of)
    return Plan(language_of(req.question), d.needed, d.reason, flt)


def plain_turns(history: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The turns' words alone: no citation markers, no notes on dates and disagreements (they are about the earlier
    answers' sources), whitespace collapsed."""
    return tuple((role, " ".join(strip_markers(without_notes(text)).split())) for role, text in history)


def conversation_block(history: Sequence[tuple[str, str]], turns: int = 4, chars: int = 300) -> str:
    """The last turns of the conversation for a prompt (plain_turns), or "" without history. Each turn is clipped: on
    two CPU cores every prompt token costs time, and the standalone question already carries what the history
    resolves."""
    if not history:
        return ""
    lines = []
    for role, text in plain_turns(history[-turns:]):
        lines.append(f"{role}: {text[:chars]}{'…' if len(text) > chars else ''}")
    return ("Conversation so far (earlier questions and answers; answer only the question below):\n"
            + "\n".join(lines) + "\n\n")


def sources_block(passages: tuple[Passage, ...] | list[Passage]) -> str:
    blocks = []
    for i, p in enumerate(passages, 1):
        c = p.hit.chunk
        # A date only where the document states one: a file's copy time would read as "newest" to the model.
        head = f"[{i}] {c.title}" + (f" (effective {c.document_date})" if c.document_date else "")
        if c.authority is not None:
            head += f" (authority {c.authority:g})"
        body = rows_as_records(p.text).replace("<<<", "< < <").replace(">>>", "> > >")
        blocks.append(f"{head}\n<<<\n{body}\n>>>")
    return "\n\n".join(blocks)


class MarkupFilter:
    """Drops the prompt's own source delimiters (<<< >>>) from the model's text, across delta boundaries: a streamed
    answer must never show them (a Chinese answer once ended in ">>>")."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, delta: str) -> str:
        text = (self._held + delta).replace("<<<", "").replace(">>>", "")
        keep = len(text) - len(text.rstrip("<>"))
        keep = min(keep, 2)
        self._held, out = (text[-keep:], text[:-keep]) if keep else ("", text)
        return out

    def flush(self) -> str:
        out, self._held = self._held, ""
        return out


def revision(streamed: str, answer: Answer) -> dict[str, Any] | None:
    """How the final answer differs from what was streamed, or None when it is the streamed text.

    Not replaced: the same words, with citation markers checked (added, dropped) and notes appended after them.
    Replaced: a refusal after generation, or sentences removed."""
    if _bare(answer.answer, markers=False) == _bare(streamed, markers=False):
        return None
    if answer.status == "no_answer":
        if answer.trace.get("refused_off_topic"):
            missing = ", ".join(answer.trace["refused_off_topic"]["missing"])
            why = f"the cited sources do not mention what the question asks about (missing: {missing})"
        elif answer.trace.get("refused_unsupported"):
            why = "the model's answer was not supported by the sources"
        else:
            why = "the model said the sources do not answer the question"
        return {"replaced": not _REFUSAL.search(streamed), "reason": f"refused after generation: {why}"}
    if _bare(answer.answer).startswith(_bare(streamed).rstrip(".。")):
        return {"replaced": False, "reason": "citations checked; notes on dates or disagreeing sources appended"}
    return {"replaced": True, "reason": "unsupported sentences or citations were removed after checking the sources"}


def _bare(text: str, markers: bool = True) -> str:
    """The words alone: no whitespace, and (by default) no citation markers."""
    return re.sub(r"\s+", "", strip_markers(text) if markers else text)


def _status(stage: str, text: str, round_: int | None = None) -> Event:
    ev: Event = {"type": "status", "stage": stage, "text": text}
    if round_ is not None:
        ev["round"] = round_
    return ev


def _final(answer: Answer, rev: dict[str, Any] | None = None) -> Event:
    return {"type": "final", "answer": answer, "revision": rev}


def _record_round(trace: Trace, rounds: list[dict[str, Any]], n: int, queries: list[str], ev: Evidence,
                  verdict: Verdict) -> None:
    trace.tokens(verdict.prompt_tokens, verdict.completion_tokens)
    if verdict.warning:
        trace.warn(verdict.warning)
    rounds.append({"round": n, "queries": list(queries), "hits": [h.chunk.chunk_id for h in ev.hits],
                   "score_gate": round(verdict.gate, 3), "judged_by": verdict.by,
                   "answerable": verdict.answerable, "missing": verdict.missing})


def _conflicts(c: Composed) -> tuple[list[Citation], list[Conflict]]:
    extra: list[Citation] = []
    conflicts = []
    for d in c.disagreements[:2]:
        sides = []
        for fact in (d.preferred, d.other):
            p = c.passages[fact.passage_index]
            ch = p.hit.chunk
            sides.append(Citation(fact.passage_index + 1, ch.chunk_id, ch.doc_id, ch.title, ch.source_path,
                                  ch.page_start, fact.sentence, ch.effective_date, True, 1.0))
        extra += sides
        conflicts.append(Conflict(claim=d.preferred.sentence, preferred=sides[0], other=sides[1], reason=d.reason))
    return extra, conflicts


def check_request(req: AskRequest) -> None:
    if not req.question.strip():
        raise BadRequest("question is empty")
    if req.max_rounds < 1:
        raise BadRequest(f"max_rounds must be >= 1, got {req.max_rounds}")
