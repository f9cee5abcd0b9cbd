"""The answer pipeline behind POST /ask: decide, retrieve (iteratively), judge, answer, cite, check.

What a small model does unreliably is done here in code: whether to retrieve, ordering and dating the sources, finding
disagreements between them, the knowledge cut-off, and checking every citation. The model reads sources and writes.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from app.citations import SupportScorer, check_citations, render_with_markers
from app.conflicts import Disagreement, find_disagreements
from app.errors import BadRequest, Unavailable
from app.llm.client import LLMClient, LLMError
from app.llm.json_loose import parse_json_loose
from app.prompts import render_prompt
from app.routing import NO_ANSWER, SMALLTALK_REPLY, decide_retrieval, language_of
from app.service import SearchService
from retrieval import transforms
from retrieval.expand import Passage, expand
from retrieval.fusion import rrf
from retrieval.rerank import Reranker, rerank_or_keep
from retrieval.search import HybridRetriever, SearchParams
from retrieval.store import SearchFilter
from retrieval.types import Answer, Citation, Conflict, ScoredChunk

_REFUSAL = re.compile(
    r"(does not contain|doesn't contain|do not contain|not (?:in|found in) the (?:knowledge base|sources)|"
    r"no information|cannot (?:be )?(?:answer|found)|知识库中没有|没有找到|未找到|无法回答|没有提供|未提及|不包含)",
    re.IGNORECASE,
)
_YEAR = re.compile(r"(?<!\d)(19\d\d|20\d\d)(?!\d)")
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
    context_tokens: int = 1200  # evidence budget in the answer prompt: prompt processing dominates latency
    max_passage_tokens: int = 320
    answer_max_tokens: int = 300
    judge: bool = True  # LLM sufficiency judgement (the score gate always runs)
    min_lexical_support: float = 0.34  # score gate: share of question words found in the best passage
    bridge_below: float = 0.75  # one more retrieval when no source sentence holds this share of the question's words


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

    # ---- public ----------------------------------------------------------------------------------------------------

    async def answer(self, req: AskRequest) -> Answer:
        prepared = await self._prepare(req)
        if isinstance(prepared, Answer):
            return prepared
        prompt, state = prepared
        t = time.perf_counter()
        try:
            result = await self.llm.chat(
                [{"role": "user", "content": prompt}], max_tokens=self.config.answer_max_tokens
            )
        except LLMError as e:
            return self._llm_failed(req, state, e)
        state.timings["generate"] = time.perf_counter() - t
        state.usage["prompt_tokens"] += result.usage.prompt_tokens
        state.usage["completion_tokens"] += result.usage.completion_tokens
        return self._finish(req, state, result.text)

    async def stream(self, req: AskRequest) -> AsyncIterator[dict[str, Any]]:
        """Server-sent events: {"delta": text} while the model writes, then {"final": Answer-as-dict}."""
        prepared = await self._prepare(req)
        if isinstance(prepared, Answer):
            yield {"delta": prepared.answer}
            yield {"final": prepared}
            return
        prompt, state = prepared
        t = time.perf_counter()
        parts: list[str] = []
        try:
            async for delta in self.llm.stream_chat(
                [{"role": "user", "content": prompt}], max_tokens=self.config.answer_max_tokens
            ):
                parts.append(delta)
                yield {"delta": delta}
        except LLMError as e:
            yield {"final": self._llm_failed(req, state, e)}
            return
        state.timings["generate"] = time.perf_counter() - t
        yield {"final": self._finish(req, state, "".join(parts))}

    # ---- stages ----------------------------------------------------------------------------------------------------

    async def _complete(self, prompt: str, max_tokens: int) -> str:
        r = await self.llm.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens)
        return r.text

    async def _prepare(self, req: AskRequest) -> Answer | tuple[str, _State]:
        check_request(req)
        t_start = time.perf_counter()
        lang = language_of(req.question)
        state = _State(lang=lang, t_start=t_start)
        decision = decide_retrieval(req.question)
        state.trace["retrieval"] = {"needed": decision.needed, "reason": decision.reason}
        if not decision.needed:
            return Answer(SMALLTALK_REPLY[lang], "answered", trace=state.trace_out())
        retriever = await asyncio.to_thread(self.service.retriever, req.collection)
        flt = req.filter
        if req.as_of:
            flt = replace(flt, date_to=min(req.as_of, flt.date_to) if flt.date_to else req.as_of)
        query = req.question
        if req.history:
            t = time.perf_counter()
            rewrite = transforms.rewrite_standalone(self._complete, req.question, req.history)
            query = await self._llm_step(state, rewrite, default=req.question)
            state.timings["rewrite"] = time.perf_counter() - t
        rounds: list[dict[str, Any]] = []
        passages: list[Passage] = []
        sufficient = False
        for n in range(1, req.max_rounds + 1):
            queries = [query]
            t = time.perf_counter()
            if req.multi_query:
                queries += await self._llm_step(state, transforms.multi_query(self._complete, query, 2), default=[])
            hyde_text = ""
            if req.hyde:
                hyde_text = await self._llm_step(state, transforms.hyde(self._complete, query), default="")
            state.timings["transforms"] = state.timings.get("transforms", 0.0) + time.perf_counter() - t
            hits, passages = await self._gather(retriever, queries, hyde_text, flt, req.top_k, state, passages)
            gate = score_gate(self.scorer, req.question, passages, self.config.min_lexical_support)
            verdict: dict[str, Any] = {"answerable": gate, "missing": "", "next_query": ""}
            if gate and self.config.judge:
                t = time.perf_counter()
                verdict = await self._judge(state, req.question, passages)
                state.timings["judge"] = state.timings.get("judge", 0.0) + time.perf_counter() - t
            rounds.append({
                "round": n, "queries": queries + ([f"HyDE: {hyde_text[:200]}"] if hyde_text else []),
                "hits": [h.chunk.chunk_id for h in hits], "score_gate": gate,
                "answerable": bool(verdict.get("answerable")), "missing": verdict.get("missing", ""),
            })
            if verdict.get("answerable"):
                sufficient = True
                bridge = bridge_query(self.scorer, req.question, passages, self.config.bridge_below)
                if bridge is None or n == req.max_rounds:
                    break
                # A multi-hop question that one round seemed to answer: look once more, from the bridge sentence.
                hits, passages = await self._gather(retriever, [bridge], "", flt, req.top_k, state, passages)
                rounds.append({"round": n + 1, "queries": [bridge], "hits": [h.chunk.chunk_id for h in hits],
                               "bridge": True})
                break
            nxt = str(verdict.get("next_query") or verdict.get("missing") or "").strip()
            if not nxt or nxt in {r["queries"][0] for r in rounds}:
                break
            query = nxt
        state.trace["rounds"] = rounds
        state.passages = passages
        state.retrieved = [p.hit for p in state.passages]
        state.cutoff = retriever.collection.store.newest_date(flt)
        if not sufficient and not req.allow_model_knowledge:
            return self._no_answer(state)
        state.disagreements = find_disagreements(req.question, state.passages, self.service.analyzer)
        state.later = _later_than_cutoff(req.question, state.passages)
        notes = self._notes(state, req)
        # The sources come first and word for word as the judge saw them: llama.cpp reuses the cached prefix.
        prompt = render_prompt("sources", sources=_sources_block(state.passages)) + render_prompt(
            "answer", language="Chinese" if state.lang == "zh" else "English", max_sentences=4,
            notes=notes, question=req.question,
        )
        return prompt, state

    async def _gather(
        self, retriever: HybridRetriever, queries: Sequence[str], hyde_text: str, flt: SearchFilter, top_k: int,
        state: _State, passages: list[Passage],
    ) -> tuple[list[ScoredChunk], list[Passage]]:
        """One retrieval round: search, grow hits small-to-big, add them to the evidence (newest version first)."""
        t = time.perf_counter()
        hits = await asyncio.to_thread(self._retrieve, retriever, queries, hyde_text, flt, top_k, state)
        new = await asyncio.to_thread(
            expand, retriever.collection.store, hits, self.config.context_tokens, self.config.max_passage_tokens
        )
        state.timings["retrieve"] = state.timings.get("retrieve", 0.0) + time.perf_counter() - t
        return hits, _order_by_date(_merge(passages, new, self.config.context_tokens))

    def _retrieve(
        self, retriever: HybridRetriever, queries: Sequence[str], hyde_text: str, flt: SearchFilter, top_k: int,
        state: _State,
    ) -> list[ScoredChunk]:
        hits = self._fused(retriever, queries, hyde_text, flt, top_k * 4 if self.reranker else top_k)
        if self.reranker is None:
            return hits
        t = time.perf_counter()
        out, info = rerank_or_keep(self.reranker, queries[0], hits, top_k)
        state.timings["rerank"] = state.timings.get("rerank", 0.0) + time.perf_counter() - t
        state.trace.setdefault("rerank", []).append(
            {"reranker": info.reranker, "candidates": info.candidates, "fallback": info.fallback, "error": info.error}
        )
        return out

    def _fused(
        self, retriever: HybridRetriever, queries: Sequence[str], hyde_text: str, flt: SearchFilter, top_k: int
    ) -> list[ScoredChunk]:
        params = SearchParams(filter=flt)
        lists = [retriever.search(q, top_k=top_k, params=params) for q in queries]
        if hyde_text:
            vec = retriever.embedder.embed_documents([hyde_text])[0]
            lists.append(retriever.search(queries[0], top_k=top_k, params=replace(params, mode="dense"),
                                          query_vector=vec))
        if len(lists) == 1:
            return lists[0]
        by_id = {h.chunk.chunk_id: h for hits in lists for h in hits}
        fused = rrf([[(h.chunk.chunk_id, h.score) for h in hits] for hits in lists])
        return [replace(by_id[cid], score=s) for cid, s in fused[:top_k]]

    async def _judge(self, state: _State, question: str, passages: Sequence[Passage]) -> dict[str, Any]:
        prompt = render_prompt("sources", sources=_sources_block(passages)) + render_prompt(
            "sufficiency", question=question
        )
        try:
            r = await self.llm.chat([{"role": "user", "content": prompt}], max_tokens=120,
                                    json_schema=SUFFICIENCY_SCHEMA)
        except LLMError as e:
            state.trace.setdefault("warnings", []).append(f"sufficiency judge failed: {e}")
            return {"answerable": True, "missing": "", "next_query": ""}  # the score gate already passed
        state.usage["prompt_tokens"] += r.usage.prompt_tokens
        state.usage["completion_tokens"] += r.usage.completion_tokens
        parsed = parse_json_loose(r.text, ["answerable"])
        if parsed is None or not isinstance(parsed.get("answerable"), bool):
            state.trace.setdefault("warnings", []).append("sufficiency judge gave no usable JSON; score gate used")
            return {"answerable": True, "missing": "", "next_query": ""}
        return parsed

    async def _llm_step(self, state: _State, coro: Any, default: Any) -> Any:
        """An optional LLM step (rewrite, HyDE, multi-query): on failure, note it and go on without it."""
        try:
            return await coro
        except LLMError as e:
            state.trace.setdefault("warnings", []).append(f"{type(e).__name__}: {e}")
            return default

    def _notes(self, state: _State, req: AskRequest) -> str:
        lines = []
        for d in state.disagreements[:2]:
            a, b = _marker_of(state, d.preferred.passage_index), _marker_of(state, d.other.passage_index)
            lines.append(f"Note: sources [{a}] and [{b}] disagree; [{a}] is {d.reason} and takes precedence.")
        if state.later:
            lines.append(f"Note: the question asks about {state.later[0]}, but the newest source is dated "
                         f"{state.later[1]}; say what the sources state as of {state.later[1]}.")
        return ("\n" + "\n".join(lines) + "\n") if lines else ""

    # ---- endings ---------------------------------------------------------------------------------------------------

    def _finish(self, req: AskRequest, state: _State, text: str) -> Answer:
        text = text.strip()
        if not text or (_REFUSAL.search(text) and not re.search(r"\[\d+\]", text)):
            return self._no_answer(state)
        chunks = {c.chunk_id: c for c in self.service.chunks_for(req.collection, state.passages)}
        # The year asked about is answered by the cut-off note added below, not by the sources.
        asked = frozenset({state.later[0]}) if state.later else frozenset()
        report = check_citations(text, state.passages, chunks, self.scorer, asked)
        if report.coverage == 0.0 and not req.allow_model_knowledge:
            # Not one sentence is backed by the sources: whatever the judge thought, this came from the model's memory
            # (or was made up), and an honest "not in the knowledge base" is worth more than a fluent guess.
            state.trace["refused_unsupported"] = report.unsupported
            return self._no_answer(state)
        body = render_with_markers(report) if state.lang == "en" else render_with_markers(report).replace(" [", "[")
        sep = "" if state.lang == "zh" else " "
        extra, conflicts = self._conflict_notes(state, report.citations, chunks)
        cites = list(report.citations) + [c for c in extra if c.marker not in {x.marker for x in report.citations}]
        if state.later:
            body += sep + _cutoff_sentence(state.lang, state.later)
        if conflicts:
            body += sep + sep.join(_conflict_sentence(state.lang, c) for c in conflicts)
        status: Literal["answered", "partial"] = "answered" if report.coverage >= 0.5 and cites else "partial"
        if req.allow_model_knowledge and not cites:
            status = "partial"
        state.trace["citation_coverage"] = round(report.coverage, 3)
        state.trace["unsupported_sentences"] = report.unsupported
        state.trace["dropped_citations"] = [m for s in report.sentences for m in s.dropped]
        return Answer(
            answer=body.strip(), status=status, citations=tuple(sorted(cites, key=lambda c: c.marker)),
            conflicts=tuple(conflicts), knowledge_cutoff=state.cutoff, retrieved=tuple(state.retrieved),
            trace=state.trace_out(), usage=dict(state.usage),
        )

    def _conflict_notes(
        self, state: _State, citations: Sequence[Citation], chunks: dict[int, Any]
    ) -> tuple[list[Citation], list[Conflict]]:
        extra: list[Citation] = []
        conflicts = []
        for d in state.disagreements[:2]:
            sides = []
            for fact in (d.preferred, d.other):
                m = _marker_of(state, fact.passage_index)
                p = state.passages[fact.passage_index]
                c = p.hit.chunk
                sides.append(Citation(m, c.chunk_id, c.doc_id, c.title, c.source_path, c.page_start, fact.sentence,
                                      c.effective_date, True, 1.0))
            extra += sides
            conflicts.append(Conflict(claim=d.preferred.sentence, preferred=sides[0], other=sides[1], reason=d.reason))
        return extra, conflicts

    def _no_answer(self, state: _State) -> Answer:
        return Answer(
            answer=NO_ANSWER[state.lang], status="no_answer", knowledge_cutoff=state.cutoff,
            retrieved=tuple(state.retrieved[:5]), trace=state.trace_out(), usage=dict(state.usage),
        )

    def _llm_failed(self, req: AskRequest, state: _State, e: LLMError) -> Answer:
        if not req.degrade_to_retrieval:
            raise Unavailable(f"the language model is unavailable: {e}") from e
        state.trace.setdefault("warnings", []).append(f"LLM failed, retrieval only: {e}")
        return Answer(
            answer="", status="retrieval_only", knowledge_cutoff=state.cutoff, retrieved=tuple(state.retrieved),
            trace=state.trace_out(), usage=dict(state.usage),
        )


@dataclass
class _State:
    lang: str
    t_start: float
    trace: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    passages: list[Passage] = field(default_factory=list)
    retrieved: list[ScoredChunk] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    later: tuple[str, str] | None = None
    cutoff: str | None = None

    def trace_out(self) -> dict[str, Any]:
        self.timings["total"] = time.perf_counter() - self.t_start
        return {**self.trace, "timings_ms": {k: round(v * 1000, 1) for k, v in self.timings.items()}}


def score_gate(scorer: SupportScorer, question: str, passages: Sequence[Passage], threshold: float) -> bool:
    """Cheap evidence check before any LLM judgement: enough of the question's words in one source sentence."""
    if not passages:
        return False
    # A year in the question is a time qualifier, not a term to find: "the warranty in 2025" must still reach the
    # sources (and the cut-off note) when the newest policy is dated 2024.
    question = _YEAR.sub(" ", question)
    return max(scorer.best_span(question, p.text)[0] for p in passages) >= threshold


def bridge_query(scorer: SupportScorer, question: str, passages: Sequence[Passage], below: float) -> str | None:
    """A follow-up query for a question that no single source sentence covers, else None.

    In a two-hop question ("the charging pressure of the refrigerant the KFR-35GW uses") the sentence that matches
    best names the bridge entity (R32) but not the asked fact; searching with the question plus that sentence finds
    the second document. A sentence that covers the question well needs no second look.
    """
    question = _YEAR.sub(" ", question)
    best, span = 0.0, ""
    for p in passages:
        score, sentence = scorer.best_span(question, _rows_as_records(p.text))
        if score > best:
            best, span = score, sentence
    if not span or best >= below:
        return None
    return f"{question.strip()} {span}"


def _merge(old: list[Passage], new: list[Passage], budget: int) -> list[Passage]:
    """Evidence accumulates over rounds; a chunk already shown is not shown again; the budget holds."""
    seen = {cid for p in old for cid in p.chunk_ids}
    out, used = list(old), sum(p.token_count for p in old)
    for p in new:
        if p.hit.chunk.chunk_id in seen or used + p.token_count > budget:
            continue
        out.append(p)
        used += p.token_count
        seen.update(p.chunk_ids)
    return out


def _order_by_date(passages: Sequence[Passage]) -> list[Passage]:
    """Keep retrieval order, except that versions of one document family swap places so the newest comes first."""
    out = list(passages)
    families: dict[str, list[int]] = {}
    for i, p in enumerate(out):
        if p.hit.chunk.family:
            families.setdefault(p.hit.chunk.family, []).append(i)
    for slots in families.values():
        if len(slots) > 1:
            members = sorted((out[i] for i in slots), key=lambda p: p.hit.chunk.effective_date or "", reverse=True)
            for i, p in zip(slots, members, strict=True):
                out[i] = p
    return out


def _sources_block(passages: Sequence[Passage]) -> str:
    blocks = []
    for i, p in enumerate(passages, 1):
        c = p.hit.chunk
        head = f"[{i}] {c.title}" + (f" (effective {c.effective_date})" if c.effective_date else "")
        if c.authority is not None:
            head += f" (authority {c.authority:g})"
        body = _rows_as_records(p.text).replace("<<<", "< < <").replace(">>>", "> > >")
        blocks.append(f"{head}\n<<<\n{body}\n>>>")
    return "\n\n".join(blocks)


def _rows_as_records(text: str) -> str:
    """Markdown tables as one "Header: value; ..." line per row: a small model misreads columns of pipes."""
    out: list[str] = []
    header: list[str] | None = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            header = None
            out.append(line)
        elif all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
            continue
        elif header is None:
            header = cells
        else:
            out.append("; ".join(f"{h}: {v}" if h else v for h, v in zip(header, cells, strict=False) if v))
    return "\n".join(out)


def _marker_of(state: _State, passage_index: int) -> int:
    return passage_index + 1


def _later_than_cutoff(question: str, passages: Sequence[Passage]) -> tuple[str, str] | None:
    """(asked year, newest source date) when the question asks about a year after every source."""
    years = [int(y) for y in _YEAR.findall(question)]
    dates = [p.hit.chunk.effective_date for p in passages
             if p.hit.chunk.effective_date and p.hit.chunk.date_source != "mtime"]
    if not years or not dates:
        return None
    newest = max(dates)
    assert newest is not None
    if max(years) > int(newest[:4]):
        return str(max(years)), newest
    return None


def _cutoff_sentence(lang: str, later: tuple[str, str]) -> str:
    year, newest = later
    if lang == "zh":
        return f"注意：知识库中最新的相关文档日期为 {newest}，没有关于 {year} 年的信息；以上为截至 {newest} 的情况。"
    return (f"Note: the newest relevant document in the knowledge base is dated {newest}; it has no information "
            f"about {year}, so this is what it says as of {newest}.")


def _conflict_sentence(lang: str, c: Conflict) -> str:
    a, b = c.preferred, c.other
    if lang == "zh":
        return (f"注意：来源之间存在不一致：[{a.marker}]（{a.effective_date or '无日期'}）与 [{b.marker}]"
                f"（{b.effective_date or '无日期'}）说法不同，本回答以 [{a.marker}] 为准（{c.reason}）。")
    return (f"Note: the sources disagree: [{a.marker}] ({a.effective_date or 'undated'}) and [{b.marker}] "
            f"({b.effective_date or 'undated'}) differ; this answer follows [{a.marker}], which is {c.reason}.")


def check_request(req: AskRequest) -> None:
    if not req.question.strip():
        raise BadRequest("question is empty")
    if req.max_rounds < 1:
        raise BadRequest(f"max_rounds must be >= 1, got {req.max_rounds}")
