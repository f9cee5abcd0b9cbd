"""The correctness rule, the approximate judge (real SupportScorer), and the LLM judge's protocol (FakeLLMServer)."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.citations import SupportScorer
from app.llm.client import LLMClient
from eval.datasets import QAItem
from eval.judge import ApproxJudge, JudgeError, JudgeInput, LLMJudge, rule_verdict
from retrieval.analyzer import Analyzer
from tests.eval.fake_llm import FakeLLMServer, prompt_of, schema_of


def test_span_rule_and_crag_labels() -> None:
    item = QAItem("q", "In what country is Normandy?", answers=("France",))
    r = rule_verdict(item, "Normandy is a region in France [1].", "answered")
    assert r.label == "correct" and r.metrics["contains"] == 1.0 and r.metrics["em"] == 0.0
    assert r.metrics["accuracy"] == 1.0 and r.metrics["truthfulness"] == 1.0 and r.metrics["hallucination_rate"] == 0
    wrong = rule_verdict(item, "Normandy is in Italy [1].", "answered")
    assert wrong.label == "wrong" and wrong.metrics["truthfulness"] == -1.0 and "F1=" in wrong.rationale
    missing = rule_verdict(item, "The knowledge base does not contain the answer.", "no_answer")
    assert missing.label == "missing" and missing.metrics["missing_rate"] == 1.0 and missing.metrics["f1"] == 0.0


def test_unanswerable_rule() -> None:
    item = QAItem("q", "Who gave their name to France?", unanswerable=True)
    refused = rule_verdict(item, "The knowledge base does not contain the answer.", "no_answer")
    assert refused.label == "correct" and refused.metrics["em"] == refused.metrics["f1"] == 1.0
    answered = rule_verdict(item, "The Normans [1].", "answered")
    assert answered.label == "wrong" and answered.metrics["f1"] == 0.0 and answered.rationale.startswith("unanswer")


def test_numeric_keys_and_forbidden_rules() -> None:
    tat = QAItem("t", "Change in Other?", answers=("-12.6",), rule="numeric", extra={"scale": "million"})
    assert rule_verdict(tat, "Other changed by (12.6) million [1].", "answered").label == "correct"
    assert rule_verdict(tat, "Other changed by 12.6 [1].", "answered").metrics["numeric_match"] == 0.0
    keys = QAItem("k", "怎样启动自清洁？", answers=("风速", "5秒"), lang="zh", rule="keys")
    assert rule_verdict(keys, "按住风速键5秒即可启动[1]。", "answered").label == "correct"
    half = rule_verdict(keys, "按住风速键即可[1]。", "answered")
    assert half.label == "wrong" and half.metrics["keys_found"] == 0.5 and "5秒" in half.rationale
    inj = QAItem("i", "Why does the fan run?", answers=("60 seconds",), rule="keys", extra={"forbidden": ["PWNED"]})
    bad = rule_verdict(inj, "PWNED. It runs for 60 seconds [1].", "answered")
    assert bad.label == "wrong" and bad.metrics["forbidden"] == 1.0


def test_rgb_counterfactual_and_rejection_rules() -> None:
    fact = QAItem("f", "Super Bowl 2021 location", answers=("Tampa, Florida",), rule="rgb",
                  extra={"rgb_answer": "Tampa, Florida", "fakeanswer": "Glendale, Arizona"})
    fixed = rule_verdict(fact, "The documents contain factual errors: it was in Tampa, Florida.", "answered")
    assert fixed.metrics["error_detection_rate"] == 1.0 and fixed.metrics["error_correction_rate"] == 1.0
    misled = rule_verdict(fact, "It was played in Glendale, Arizona [1].", "answered")
    assert misled.metrics["misled_rate"] == 1.0 and misled.metrics["error_detection_rate"] == 0.0
    assert "error_correction_rate" not in misled.metrics  # CR counts only answers that flagged the error
    noise = QAItem("n", "死亡人数", answers=("12人",), unanswerable=True, lang="zh", rule="rgb",
                   extra={"rgb_answer": ["12人"]})
    assert rule_verdict(noise, "知识库中没有相关信息。", "no_answer").metrics["rejection_rate"] == 1.0


def test_approximate_judge_with_the_real_support_scorer() -> None:
    judge = ApproxJudge(SupportScorer(Analyzer()))
    ctx = "The compressor warranty lasts 7 years from the date of purchase. Filters are cleaned monthly."
    x = JudgeInput("How long is the compressor warranty?", ("7 years",), False,
                   "The compressor warranty lasts 7 years [1]. The outdoor fan is painted bright blue [1].",
                   "answered", (ctx,), {1: ctx})
    v = asyncio.run(judge.judge(x))
    assert v["approximate"] is True and [c["supported"] for c in v["claims"]] == [True, False]
    assert v["faithfulness"] == 0.5 and v["citation_recall"] == 0.5 and v["citation_precision"] == 0.5
    wrong_number = JudgeInput("q", (), False, "The compressor warranty lasts 9 years [1].", "answered", (ctx,),
                              {1: ctx})
    assert asyncio.run(judge.judge(wrong_number))["faithfulness"] == 0.0  # numbers must be in the source
    refused = asyncio.run(judge.judge(JudgeInput("q", (), False, "No.", "no_answer", (ctx,), {})))
    assert refused["faithfulness"] is None and refused["citation_recall"] is None


def _judge_reply(body: dict) -> str:  # type: ignore[type-arg]
    schema, prompt = schema_of(body), prompt_of(body)
    if "verdict" in schema:  # fenced, as small models write it: parse_json_loose must recover it
        return '```json\n{"verdict": "correct", "rationale": "states 7 years",}\n```'
    if "claims" in schema:
        return json.dumps({"claims": [{"claim": "warranty is 7 years", "supported": True},
                                      {"claim": "fan is blue", "supported": False}]})
    return json.dumps({"entailed": "7 years" in prompt.split("Statement:")[-1]})


def test_llm_judge_protocol_and_verdicts() -> None:
    with FakeLLMServer(_judge_reply) as fake:
        judge = LLMJudge(LLMClient(fake.base_url, "judge-model", structured_style="openai"))
        ctx = "The compressor warranty lasts 7 years."
        x = JudgeInput("How long?", ("7 years",), False, "It lasts 7 years [1]. The fan is blue [1][2].", "answered",
                       (ctx, "other"), {1: ctx, 2: "other"})
        v = asyncio.run(judge.judge(x))
        assert v["judge"] == "llm:judge-model" and v["approximate"] is False
        assert v["verdict"] == "correct" and v["rationale"] == "states 7 years"
        assert v["faithfulness"] == 0.5 and v["citation_recall"] == 0.5 and v["citation_precision"] == 1 / 3
        assert all(b["response_format"]["type"] == "json_schema" for b in fake.requests)
        assert "Reference answer(s): 7 years" in prompt_of(fake.requests[0])


def test_llm_judge_without_usable_json_raises() -> None:
    with FakeLLMServer(lambda body: "I think it is fine.") as fake:
        judge = LLMJudge(LLMClient(fake.base_url, "judge-model", max_retries=0))
        with pytest.raises(JudgeError, match="no usable JSON"):
            asyncio.run(judge.judge(JudgeInput("q", ("a",), False, "a [1].", "answered", ("a",), {1: "a"})))
