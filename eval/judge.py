"""Judging answers: the deterministic correctness rule, and two judges of faithfulness and citations.

`rule_verdict` applies the correctness rule written at the top of eval.metrics and returns the per-item scores.
`ApproxJudge` is deterministic: a claim (or cited statement) counts as supported when the project's own lexical
SupportScorer finds its words (and numbers) in one sentence of the context and, with an embedder, that sentence is
also close in meaning. It is labelled approximate everywhere: it shares its scorer with the pipeline's citation
check, so it is optimistic about citations. `LLMJudge` asks a separate model over the OpenAI-compatible API, with the
prompts in eval/prompts/ and structured JSON output (parse_json_loose as fallback).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any, Protocol

from app.citations import SupportScorer
from app.llm.client import LLMClient, LLMError
from app.llm.json_loose import parse_json_loose
from app.notes import has_conflict_note, has_cutoff_note
from eval import metrics as M
from eval.datasets import QAItem
from retrieval.text import markers, split_sentences, strip_markers

MAX_STATEMENTS = 12  # bounds judge calls per answer
_ERROR_FLAG = re.compile(
    r"factual(?:ly)? (?:error|incorrect|wrong)|incorrect|inaccura|misinformation|not (?:be )?(?:correct|accurate|true)|"
    r"contains? (?:an? )?errors?|事实性错误|错误|不正确|有误|不准确",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RuleResult:
    label: M.Label
    rationale: str
    metrics: dict[str, float]


def rule_verdict(item: QAItem, answer: str, status: str) -> RuleResult:
    """The correctness rule (see eval.metrics) and the per-item answer metrics for one answer."""
    refused = status == "no_answer"
    text = "" if refused else strip_markers(answer)
    zh = item.lang == "zh"
    m: dict[str, float] = {"refused": float(refused)}
    if item.unanswerable:
        m["em"] = m["f1"] = float(refused)
    else:
        m["em"] = (M.exact_match_zh if zh else M.exact_match)(text, item.answers)
        m["f1"] = (M.char_f1 if zh else M.token_f1)(text, item.answers)
        m["contains"] = M.contains_answer(text, item.answers, item.lang)
        m["rouge_l"] = M.rouge_l(text, item.answers, item.lang)
        m["bleu"] = M.bleu(text, item.answers, item.lang)
    why = ""
    if item.rule == "rgb":
        ok = M.rgb_correct(text, item.extra.get("rgb_answer", list(item.answers)))
        m["rgb_correct"] = float(ok)
        why = "RGB: every answer part appears" if ok else "RGB: an answer part is missing"
        if item.unanswerable:  # noise-only passages: RGB's negative rejection
            m["rejection_rate"] = float(refused)
        if "fakeanswer" in item.extra:  # counterfactual set; per-item values whose means are RGB's ED and CR
            detected = bool(_ERROR_FLAG.search(answer))
            m["error_detection_rate"] = float(detected)
            if detected:
                m["error_correction_rate"] = float(ok)
            m["misled_rate"] = M.contains_answer(text, [str(item.extra.get("fakeanswer") or "")], item.lang)
    elif item.rule == "numeric":
        ok = any(M.numeric_match(text, a, item.extra.get("scale", "")) for a in item.answers)
        m["numeric_match"] = float(ok)
        why = f"numeric match of {item.answers[0]} ({item.extra.get('scale') or 'no scale'})" if ok else \
            f"no number equal to {item.answers[0]} ({item.extra.get('scale') or 'no scale'})"
    elif item.rule == "keys" and item.answers:
        found = [M.contains_answer(text, a, item.lang) > 0 for a in item.answers]
        ok = all(found)
        m["keys_found"] = sum(found) / len(found)
        why = "every key fact appears" if ok else \
            "missing: " + ", ".join(a for a, f in zip(item.answers, found, strict=True) if not f)
    else:
        ok = m["em"] == 1.0 or m["f1"] >= 0.5 or m.get("contains", 0.0) == 1.0
        why = f"EM={m['em']:.0f} F1={m['f1']:.2f} contains={m.get('contains', 0):.0f}"
    forbidden = [s for s in item.extra.get("forbidden") or [] if s and s.lower() in answer.lower()]
    if item.extra.get("forbidden"):
        m["forbidden"] = float(bool(forbidden))
        if forbidden:
            ok, why = False, f"forbidden text in the answer: {forbidden[0]!r}"
    m.update(note_metrics(item, answer, refused, bool(m.get("error_detection_rate"))))
    label = M.crag_label(ok, refused, item.unanswerable)
    if item.unanswerable:
        why = "unanswerable: refused" if refused else "unanswerable, but answered"
    elif refused:
        why = "answerable, but refused"
    m.update(label_metrics(label))
    return RuleResult(label, why, m)


def expected_note(item: QAItem) -> str | None:
    """What note a right answer carries: "conflict" (RGB counterfactual, our jsonl `kind: conflict`), "cutoff"
    (`kind: later_year`), "none" (sets without conflicts or later years: SQuAD, CMRC, RGB noise and integration,
    HotpotQA, TAT-QA), or None where nobody knows (FreshQA, `kind: as_of`, RGB rejection)."""
    kind = item.categories.get("kind") or item.categories.get("set", "")
    if kind in ("counterfactual", "conflict"):
        return "conflict"
    if kind == "later_year":
        return "cutoff"
    # Unknown: FreshQA and as-of questions (whether a date note is due depends on the date), and RGB rejection (its
    # passages are all noise: a cut-off note on a question about a year they lack is true, if the answer is not).
    if kind in ("as_of", "rejection") or item.as_of or "fact_type" in item.categories:
        return None
    return "none"


def note_metrics(item: QAItem, answer: str, refused: bool, error_flagged: bool = False) -> dict[str, float]:
    """Per answered item: which notes the answer carries, and whether a note was due (`note_true_rate`, where the
    sources conflict or the question is later than the knowledge base) or false (`note_false_rate`, elsewhere). On
    the RGB counterfactual set a flagged factual error is the note due (its passages all agree with each other)."""
    if refused:
        return {}
    conflict, cutoff = has_conflict_note(answer), has_cutoff_note(answer)
    m = {"conflict_note": float(conflict), "cutoff_note": float(cutoff)}
    due = expected_note(item)
    if due == "none":
        m["note_false_rate"] = float(conflict or cutoff)
    elif due == "conflict":
        m["note_true_rate"] = float(conflict or error_flagged)
    elif due == "cutoff":
        m["note_true_rate"] = float(cutoff)
    return m


def label_metrics(label: M.Label, suffix: str = "") -> dict[str, float]:
    """Per-item values whose means are CRAG's accuracy, truthfulness score, hallucination and missing rates."""
    return {f"accuracy{suffix}": float(label == "correct"),
            f"truthfulness{suffix}": {"correct": 1.0, "missing": 0.0, "wrong": -1.0}[label],
            f"hallucination_rate{suffix}": float(label == "wrong"), f"missing_rate{suffix}": float(label == "missing")}


@dataclass(frozen=True)
class JudgeInput:
    question: str
    answers: tuple[str, ...]
    unanswerable: bool
    answer: str
    status: str
    context: tuple[str, ...]  # the passages the model read
    cited: dict[int, str] = field(default_factory=dict)  # marker -> text of the cited passage


class JudgeError(Exception):
    pass


class Judge(Protocol):
    name: str
    approximate: bool

    async def judge(self, x: JudgeInput) -> dict[str, Any]: ...


def claims_of(answer: str) -> list[str]:
    """The answer's sentences that state something (markers removed); what a claim splitter gets without an LLM."""
    out = []
    for s in split_sentences(answer):
        core = strip_markers(s).strip()
        if len(core.strip(" .。:：-*#")) >= 6 and not core.lower().startswith("note:") and not core.startswith("注意"):
            out.append(core)
    return out[:MAX_STATEMENTS]


def cited_statements(answer: str, cited: dict[int, str]) -> list[tuple[str, list[int]]]:
    """(statement, markers) for each sentence of the answer, as ALCE splits an answer."""
    out = []
    for s in split_sentences(answer):
        core = strip_markers(s).strip()
        if len(core.strip(" .。:：-*#")) >= 6:
            out.append((core, [m for m in markers(s) if m in cited]))
    return out[:MAX_STATEMENTS]


class ApproxJudge:
    """Deterministic support: SupportScorer (lexical, numbers must match) and, given an embedder, cosine >= min_cosine
    between the claim and the supporting sentence."""

    approximate = True
    name = "approximate"

    def __init__(self, scorer: SupportScorer, embedder: Any | None = None, min_cosine: float = 0.6) -> None:
        if not 0.0 <= min_cosine <= 1.0:
            raise ValueError(f"min_cosine must be in [0, 1], got {min_cosine}")
        self.scorer = scorer
        self.embedder = embedder
        self.min_cosine = min_cosine

    def supported(self, claim: str, texts: Sequence[str]) -> tuple[bool, float]:
        best, span = 0.0, ""
        for t in texts:
            s, sp = self.scorer.best_span(claim, t)
            if s > best:
                best, span = s, sp
        ok = best >= self.scorer.threshold
        if ok and self.embedder is not None and span:
            v = self.embedder.embed_documents([claim, span])
            ok = float(v[0] @ v[1]) >= self.min_cosine
        return ok, round(best, 3)

    async def judge(self, x: JudgeInput) -> dict[str, Any]:
        return await asyncio.to_thread(self.judge_sync, x)

    def judge_sync(self, x: JudgeInput) -> dict[str, Any]:
        out: dict[str, Any] = {"judge": self.name, "approximate": True}
        if x.status == "no_answer" or not x.answer.strip():
            return out | {"claims": [], "faithfulness": None, "citation_recall": None, "citation_precision": None}
        claims = []
        for c in claims_of(x.answer):
            ok, score = self.supported(c, x.context)
            claims.append({"claim": c, "supported": ok, "score": score})
        statements = cited_statements(x.answer, x.cited)
        rec, prec = M.citation_recall_precision(
            [(s, [x.cited[m] for m in ms]) for s, ms in statements], lambda texts, s: self.supported(s, texts)[0]
        )
        return out | {
            "claims": claims, "faithfulness": M.faithfulness([bool(c["supported"]) for c in claims]),
            "statements": [{"statement": s, "cited": ms} for s, ms in statements],
            "citation_recall": rec, "citation_precision": prec,
        }


CORRECTNESS_SCHEMA = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["correct", "incorrect", "missing"]},
                   "rationale": {"type": "string"}},
    "required": ["verdict", "rationale"],
}
CLAIMS_SCHEMA = {
    "type": "object",
    "properties": {"claims": {"type": "array", "items": {
        "type": "object", "properties": {"claim": {"type": "string"}, "supported": {"type": "boolean"}},
        "required": ["claim", "supported"]}}},
    "required": ["claims"],
}
ENTAIL_SCHEMA = {"type": "object", "properties": {"entailed": {"type": "boolean"}}, "required": ["entailed"]}


def load_prompt(name: str) -> str:
    return (resources.files("eval") / "prompts" / f"{name}.txt").read_text(encoding="utf-8")


class LLMJudge:
    """A judge model over the OpenAI-compatible API: correctness, RAGAS-style claims, ALCE entailment."""

    approximate = False

    def __init__(self, client: LLMClient, max_tokens: int = 600, max_context_chars: int = 12000) -> None:
        self.client = client
        self.name = f"llm:{client.model}"
        self.max_tokens = max_tokens
        self.max_context_chars = max_context_chars

    async def _ask(self, prompt: str, schema: dict[str, Any], keys: list[str]) -> dict[str, Any]:
        try:
            r = await self.client.chat([{"role": "user", "content": prompt}], max_tokens=self.max_tokens,
                                       json_schema=schema)
        except LLMError as e:
            raise JudgeError(f"judge request failed: {e}") from e
        try:
            obj = json.loads(r.text)
        except ValueError:
            obj = parse_json_loose(r.text, keys)
        if not isinstance(obj, dict) or any(k not in obj for k in keys):
            raise JudgeError(f"judge gave no usable JSON (keys {keys}): {r.text[:200]!r}")
        return obj

    async def judge(self, x: JudgeInput) -> dict[str, Any]:
        gold = "; ".join(x.answers) if x.answers else "(none)"
        note = ("- This question has NO answer in the knowledge base: a declining answer is \"correct\", any "
                "substantive answer is \"incorrect\".\n") if x.unanswerable else ""
        v = await self._ask(Template(load_prompt("correctness")).substitute(
            question=x.question, gold=gold, answer=x.answer or "(empty)", unanswerable_note=note),
            CORRECTNESS_SCHEMA, ["verdict"])
        verdict = str(v.get("verdict", "")).strip().lower()
        if verdict not in ("correct", "incorrect", "missing"):
            raise JudgeError(f"judge verdict must be correct/incorrect/missing, got {verdict!r}")
        out: dict[str, Any] = {"judge": self.name, "approximate": False, "verdict": verdict,
                               "rationale": str(v.get("rationale", ""))[:500]}
        if x.status == "no_answer" or not x.answer.strip():
            return out | {"claims": [], "faithfulness": None, "citation_recall": None, "citation_precision": None}
        context = "\n\n".join(f"[{i}] {t}" for i, t in enumerate(x.context, 1))[: self.max_context_chars]
        c = await self._ask(Template(load_prompt("faithfulness")).substitute(
            context=context, answer=strip_markers(x.answer)), CLAIMS_SCHEMA, ["claims"])
        claims = [{"claim": str(k.get("claim", "")), "supported": bool(k.get("supported"))}
                  for k in c["claims"] if isinstance(k, dict)][:MAX_STATEMENTS * 2]
        cache: dict[tuple[tuple[str, ...], str], bool] = {}

        async def entails(texts: Sequence[str], statement: str) -> bool:
            key = (tuple(texts), statement)
            if key not in cache:
                r = await self._ask(Template(load_prompt("entailment")).substitute(
                    passages="\n\n".join(texts)[: self.max_context_chars], statement=statement),
                    ENTAIL_SCHEMA, ["entailed"])
                cache[key] = bool(r["entailed"])
            return cache[key]

        # ALCE needs every entailment answer up front: ask them all, then score with the cached answers.
        statements = cited_statements(x.answer, x.cited)
        for s, ms in statements:
            texts = [x.cited[m] for m in ms]
            if texts and await entails(texts, s) and len(texts) > 1:
                for i in range(len(texts)):
                    if not await entails([texts[i]], s):
                        await entails(texts[:i] + texts[i + 1 :], s)
        rec, prec = M.citation_recall_precision(
            [(s, [x.cited[m] for m in ms]) for s, ms in statements], lambda t, s: cache[(tuple(t), s)]
        )
        return out | {
            "claims": claims, "faithfulness": M.faithfulness([bool(k["supported"]) for k in claims]),
            "statements": [{"statement": s, "cited": ms} for s, ms in statements],
            "citation_recall": rec, "citation_precision": prec,
        }
