"""From query variants to the evidence a reader sees: search, fuse, re-rank, grow small-to-big, merge, date order, and
cut each passage down to the sentences that bear on the question.

`gather` is the one retrieval step of the answer pipeline (every round, the bridge round included); `select` is the
query-aware trim that keeps the answer prompt short. The model reads evidence at about 60 tokens/s on two cores, so
every sentence it does not need costs a sixtieth of a second of the user's wait (docs/benchmarks.md, "/ask").
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from retrieval.analyzer import Analyzer
from retrieval.embedders import Embedder
from retrieval.expand import Passage, expand
from retrieval.fusion import rrf
from retrieval.injection import looks_like_instruction
from retrieval.rerank import Reranker, RerankInfo, rerank_or_keep
from retrieval.search import HybridRetriever, SearchParams
from retrieval.store import SearchFilter
from retrieval.text import YEAR, approx_tokens, split_sentences
from retrieval.types import ScoredChunk


@dataclass(frozen=True)
class Evidence:
    hits: tuple[ScoredChunk, ...]  # this round's ranked hits
    passages: tuple[Passage, ...]  # everything shown so far, within the budget, newest version of a family first
    rerank: RerankInfo | None = None
    timings: dict[str, float] = field(default_factory=dict)


def gather(
    retriever: HybridRetriever,
    queries: Sequence[str],
    *,
    flt: SearchFilter,
    top_k: int,
    budget_tokens: int,
    max_passage_tokens: int,
    hyde_vector: np.ndarray | None = None,
    reranker: Reranker | None = None,
    previous: Sequence[Passage] = (),
) -> Evidence:
    """One retrieval round for `queries` (the first is the question; the rest are rewrites), fused by RRF."""
    if not queries:
        raise ValueError("gather needs at least one query")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    hits = _fused(retriever, queries, hyde_vector, flt, top_k * 4 if reranker else top_k)
    timings["search"] = time.perf_counter() - t
    info = None
    if reranker is not None:
        t = time.perf_counter()
        hits, info = rerank_or_keep(reranker, queries[0], hits, top_k)
        timings["rerank"] = time.perf_counter() - t
    t = time.perf_counter()
    new = expand(retriever.collection.store, hits, budget_tokens, max_passage_tokens)
    passages = order_by_date(merge(list(previous), new, budget_tokens))
    timings["expand"] = time.perf_counter() - t
    return Evidence(tuple(hits), tuple(passages), info, timings)


def _fused(
    retriever: HybridRetriever, queries: Sequence[str], hyde_vector: np.ndarray | None, flt: SearchFilter, top_k: int
) -> list[ScoredChunk]:
    params = SearchParams(filter=flt)
    lists = [retriever.search(q, top_k=top_k, params=params) for q in queries]
    if hyde_vector is not None:
        lists.append(retriever.search(queries[0], top_k=top_k, params=replace(params, mode="dense"),
                                      query_vector=hyde_vector))
    if len(lists) == 1:
        return lists[0]
    by_id = {h.chunk.chunk_id: h for hits in lists for h in hits}
    fused = rrf([[(h.chunk.chunk_id, h.score) for h in hits] for hits in lists])
    return [replace(by_id[cid], score=s) for cid, s in fused[:top_k]]


def merge(old: list[Passage], new: list[Passage], budget: int) -> list[Passage]:
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


def order_by_date(passages: Sequence[Passage]) -> list[Passage]:
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


def rows_as_records(text: str) -> str:
    """Markdown tables as one "Header: value; ..." line per row: a small model misreads columns of pipes, and a row
    written this way carries its header wherever it is cut."""
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




def query_similarity(embedder: Embedder, question: str, vectors: dict[str, np.ndarray] | None = None
                     ) -> Callable[[Sequence[str]], np.ndarray]:
    """`select`'s similarity: each text's cosine to the question under `embedder`, each text embedded once however
    often it is asked (the bridge round re-scores the sentences round 1 kept). Pass one `vectors` dict to the
    similarities of several queries over the same sentences (the question's and the bridge query's) to share it."""
    seen = {} if vectors is None else vectors
    query_vector = embedder.embed_query(question)

    def similarity(texts: Sequence[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in seen))
        if new:
            seen.update(zip(new, embedder.embed_documents(new), strict=True))
        return np.array([float(seen[t] @ query_vector) for t in texts])

    return similarity


@dataclass(frozen=True)
class Lead:
    """A bridge round's lead for `select`: the bridge query, and which passages its search brought. The second hop
    names the bridge entity ("Alan Brewster is a British screenwriter"), not the question's words, so scored against
    the question alone it falls below the floor; those passages' sentences are scored against the lead too, in a
    `share` of the budget held back for them."""

    text: str
    passages: frozenset[int]  # indexes into select's passages
    similarity: Callable[[Sequence[str]], np.ndarray] | None = None
    share: float = 1 / 3


def select(
    question: str, passages: Sequence[Passage], analyzer: Analyzer, budget_tokens: int, context: int = 1,
    header_tokens: int = 12, similarity: Callable[[Sequence[str]], np.ndarray] | None = None,
    semantic_weight: float = 1.0, relative_floor: float = 0.0, min_new_share: float = 0.15,
    lead: Lead | None = None,
) -> list[Passage]:
    """The question-bearing sentences of each passage (table rows whole, with their header), within the budget.

    Each sentence (or table row) is scored by the inverse-frequency-weighted share of the question's terms it holds,
    plus `semantic_weight` times its similarity to the question when `similarity` (texts -> cosines) is given: a
    paraphrased question shares few words with its answer;
    the best ones are taken, with `context` sentences either side, until the budget is spent (a source's first
    sentence also pays for the source's header in the prompt, `header_tokens` plus its title), or until the scores fall
    below `relative_floor` times the best one: a question one sentence answers gets a short prompt. Then, within the
    budget, a sentence holding at least `min_new_share` of the question's weight in terms no kept sentence holds is
    kept too, and a sentence that is itself a question brings the sentence after it (its answer, in an FAQ). With a
    `lead`, its passages' sentences are then ranked against the lead the same way, in the budget held back for them.
    A passage keeps its place in the order, and its text becomes the kept sentences in document order, gaps marked
    with "…"; a passage with nothing kept is dropped. The best sentence is always kept, however long, so evidence is
    never empty while any passage has a sentence; sentences that give orders to the assistant are dropped first.
    """
    if budget_tokens < 1:
        raise ValueError(f"budget_tokens must be >= 1, got {budget_tokens}")
    # Orders addressed to the assistant are not evidence (retrieval/injection.py): they never reach the model.
    units = [[u for u in _units(p.text) if not looks_like_instruction(u)] for p in passages]
    unit_terms = [[set(analyzer.tokenize(u)) for u in us] for us in units]
    n_units = sum(len(us) for us in units) or 1

    def weights(text: str) -> tuple[set[str], dict[str, int], dict[str, float]]:
        terms = set(analyzer.tokenize(YEAR.sub(" ", text))) or set(analyzer.tokenize(text))
        # Inverse frequency over the units at hand: a term in every sentence (the product's name) tells little.
        df = {t: sum(1 for ts in unit_terms for s in ts if t in s) for t in terms}
        return terms, df, {t: float(np.log(1 + n_units / (1 + df[t]))) for t in terms}

    def ranked(terms: set[str], weight: dict[str, float], sim: Callable[[Sequence[str]], np.ndarray] | None,
               only: frozenset[int] | None = None) -> list[tuple[float, int, int]]:
        total = sum(weight.values()) or 1.0
        at = [(pi, ui) for pi, ts in enumerate(unit_terms) if only is None or pi in only for ui in range(len(ts))]
        sims = np.asarray(sim([units[pi][ui] for pi, ui in at]), dtype=float).tolist() if sim and at else []
        scored = []
        for k, (pi, ui) in enumerate(at):
            score = sum(weight[t] for t in terms & unit_terms[pi][ui]) / total
            if sims:
                score += semantic_weight * max(0.0, sims[k])
            scored.append((score - 0.02 * pi, pi, ui))  # ties go to the better-ranked passage
        return sorted(scored, reverse=True)

    q_terms, df, weight = weights(question)
    scored = ranked(q_terms, weight, similarity)
    keep: list[set[int]] = [set() for _ in passages]
    used = 0
    limit = budget_tokens - (int(budget_tokens * lead.share) if lead and lead.passages else 0)

    def take(pi: int, ui: int) -> bool:
        window = [j for j in range(ui - context, ui + context + 1) if 0 <= j < len(units[pi])]
        if units[pi][ui].rstrip().endswith(("?", "？")) and ui + 1 < len(units[pi]):
            window.append(ui + 1)  # a question in a document (an FAQ) is answered by what follows it
        cost = sum(approx_tokens(units[pi][j]) for j in set(window) if j not in keep[pi])
        if not keep[pi]:  # a new source costs its header in the prompt too
            cost += header_tokens + approx_tokens(passages[pi].hit.chunk.title)
        nonlocal used
        if used + cost > limit:
            return False
        keep[pi].update(window)
        used += cost
        return True

    def best_first(scored: list[tuple[float, int, int]]) -> None:
        best = scored[0][0] if scored else 0.0
        for rank, (score, pi, ui) in enumerate(scored):
            if rank > 0 and (score <= 0 or score < relative_floor * best):
                break
            if not take(pi, ui) and rank == 0:  # the single best sentence, alone, however long
                keep[pi].add(ui)
                nonlocal used
                used += approx_tokens(units[pi][ui])

    best_first(scored)
    # Question terms that no kept sentence holds: the best sentence holding a good share of them is kept too, below
    # the floor (the second hop of "the pressure for the refrigerant the KFR-35GW uses", the other half of "X and Y").
    covered = set().union(*(unit_terms[pi][ui] for pi, kept in enumerate(keep) for ui in kept)) & q_terms
    reachable = sum(weight[t] for t in q_terms if df[t]) or 1.0  # a term no sentence holds cannot be covered
    for _, pi, ui in scored:
        new = (unit_terms[pi][ui] & q_terms) - covered
        if ui not in keep[pi] and sum(weight[t] for t in new) >= min_new_share * reachable and take(pi, ui):
            covered |= new
    if lead and lead.passages:
        limit = budget_tokens
        l_terms, _, l_weight = weights(lead.text)
        best_first(ranked(l_terms, l_weight, lead.similarity, lead.passages))
    out = []
    for p, us, kept in zip(passages, units, keep, strict=True):
        if not kept:
            continue
        idx = sorted(kept)
        parts: list[str] = []
        for k, j in enumerate(idx):
            if k and j != idx[k - 1] + 1:
                parts.append("…")
            parts.append(us[j])
        text = "\n".join(parts)
        if idx[0] > 0:
            text = "… " + text
        out.append(Passage(p.hit, text, p.chunk_ids, approx_tokens(text), "selected"))
    return out


def _units(text: str) -> list[str]:
    """Sentences of prose (hard-wrapped lines joined first) and table rows, each row one "Header: value" record."""
    out: list[str] = []
    block: list[str] = []
    in_table = False

    def flush() -> None:
        if block:
            if in_table:
                out.extend(x for x in rows_as_records("\n".join(block)).splitlines() if x.strip())
            else:
                joined = " ".join(x.strip() for x in block if x.strip())
                out.extend(split_sentences(joined) or ([joined] if joined else []))
            block.clear()

    for line in text.splitlines():
        is_row = line.lstrip().startswith("|")
        if not line.strip() or is_row != in_table:
            flush()
            in_table = is_row
        if line.strip():
            block.append(line)
    flush()
    return out
