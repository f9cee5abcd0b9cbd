"""The support gate after generation (app/support_gate.py): the cited passages must hold the question's rare terms.

The unit tests use the real analyzer and jieba's real IDF table; the one pipeline test answers with FakeLLMServer
(tests/eval/fake_llm.py), named as a fake: it is about what the check stage does with an off-topic citation, not about
what a model writes. Retrieval there is real (the sample corpus)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.pipeline import AnswerPipeline, AskRequest, PipelineConfig, revision
from app.support_gate import cited_support, cited_text, off_topic, question_terms, weight
from retrieval.analyzer import Analyzer

EXACT = Analyzer(cjk_mode="exact")
THRESHOLD = PipelineConfig().min_cited_share

KASHMIR = "印控克什米尔地区寺庙踩踏事故死亡人数"
# The committed RGB run (eval/runs/i12-rgb-zh-rejection-100): every passage a distractor, answered "10人[1]" from this.
BUS = "据印度媒体5月30日报道，印控克什米尔地区发生一起交通事故，一辆巴士在行驶过程中坠入深谷，已造成10人死亡。"


def test_the_kashmir_bus_accident_does_not_answer_the_temple_stampede() -> None:
    s = cited_support(EXACT, KASHMIR, [BUS])
    assert off_topic(s, THRESHOLD), s
    assert set(s.missing[:2]) == {"踩踏", "寺庙"}  # the rarest missing terms come first


def test_a_paraphrase_that_answers_the_kashmir_question_passes() -> None:
    answer = "印控克什米尔地区一座寺庙发生踩踏事故，截至目前已造成12人死亡，另有14人受伤。"
    s = cited_support(EXACT, KASHMIR, [answer])
    assert not off_topic(s, THRESHOLD), s
    assert s.share > 0.85


def test_english_changed_entity_is_refused_and_a_paraphrase_passes() -> None:
    # SQuAD 2.0 (Yuan dynasty): the question asks for a grand *senator*, the passage names a grand *chancellor*.
    q = "Who did Gegeen appoint as grand senator?"
    chancellor = "He continued his father's policies with the help of his newly appointed grand chancellor Baiju."
    assert off_topic(cited_support(EXACT, q, [cited_text("Yuan dynasty", chancellor)]), THRESHOLD)
    q2 = "Who did Duke Yansheng Kong Duanyou flee with?"
    fled = "During the Southern Song dynasty the Duke Yansheng Kong Duanyou fled south with the Song Emperor to Quzhou."
    s = cited_support(EXACT, q2, [fled])
    assert not off_topic(s, THRESHOLD) and s.missing == ("flee",)  # "fled" is not stemmed to "flee": one term short


def test_the_document_title_can_supply_the_subject() -> None:
    q = "芙蓉洞以什么而著称？"
    sentence = "它以洞内钟乳石的种类繁多、形态各异而著称。"
    assert off_topic(cited_support(EXACT, q, [sentence]), THRESHOLD)
    assert not off_topic(cited_support(EXACT, q, [cited_text("芙蓉洞", sentence)]), THRESHOLD)
    assert cited_text("", sentence) == sentence


def test_rare_terms_weigh_more_and_years_are_not_terms() -> None:
    assert weight("踩踏") > weight("人数") > weight("年")
    assert weight("senator") == weight("year")  # no English frequency table: English terms weigh alike
    assert "2023" not in question_terms(EXACT, "2023年温网男单冠军")
    assert cited_support(EXACT, "？", ["anything"]).share == 1.0  # nothing asked, nothing to miss


def test_revision_names_the_missing_terms() -> None:
    from retrieval.types import Answer

    refused = Answer("知识库中没有找到答案。", "no_answer",
                     trace={"refused_off_topic": {"share": 0.49, "threshold": 0.555, "missing": ["踩踏", "寺庙"]}})
    rev = revision("印控克什米尔地区寺庙踩踏事故死亡人数为10人[1]。", refused)
    assert rev is not None and rev["replaced"] is True
    assert "do not mention what the question asks about (missing: 踩踏, 寺庙)" in rev["reason"]


@pytest.mark.slow
def test_the_pipeline_refuses_an_answer_citing_a_neighbouring_subject(sample_data_dir: Path) -> None:
    from app.llm.client import LLMClient
    from app.service import SearchService
    from tests.eval.fake_llm import FakeLLMServer, schema_of

    # The installer's guide says who may install the air conditioner; nothing in the corpus is about a solar inverter.
    question = "Who is authorised to install the solar inverter?"

    def off_subject(body: dict[str, Any]) -> str:
        if "answerable" in schema_of(body):
            return json.dumps({"answerable": True, "missing": "", "next_query": ""})
        return "This guide is for authorised installers of the KFR-35GW [1]."

    async def ask(config: PipelineConfig) -> Any:
        with FakeLLMServer(off_subject) as fake:
            pipe = AnswerPipeline(SearchService(sample_data_dir), LLMClient(fake.base_url, "fake", max_retries=0),
                                  config)
            try:
                return await pipe.answer(AskRequest(question=question, collection="default"))
            finally:
                await pipe.llm.aclose()

    on = asyncio.run(ask(PipelineConfig()))
    assert on.status == "no_answer", on.answer
    assert set(on.trace["refused_off_topic"]["missing"]) == {"solar", "invert"}
    off = asyncio.run(ask(replace(PipelineConfig(), min_cited_share=0.0)))  # the check off: the same answer stands
    assert off.status in ("answered", "partial") and "authorised installers" in off.answer, off.answer
