"""Small parts of the answer pipeline: the judge policy, the stream revision rule, the markup filter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.components import pipeline_config
from app.pipeline import MarkupFilter, revision, sources_block
from app.prompts import render_prompt
from app.settings import Settings
from app.sufficiency import needs_model
from retrieval.expand import Passage
from retrieval.types import Answer, Chunk, ScoredChunk


def test_the_model_judges_where_the_gate_is_unsure_unless_told_otherwise(tmp_path: Path) -> None:
    assert pipeline_config(Settings(data_dir=tmp_path)).judge == "unsure"
    assert pipeline_config(Settings(data_dir=tmp_path, judge="never")).judge == "never"
    assert pipeline_config(Settings(data_dir=tmp_path, judge="always")).judge == "always"


def test_the_model_judges_only_between_the_gates_unless_told_otherwise() -> None:
    kw = {"low": 0.34, "high": 0.75}
    assert not needs_model(0.2, policy="always", **kw)  # nothing to judge: the gate already refuses
    assert needs_model(0.5, policy="unsure", **kw) and not needs_model(0.8, policy="unsure", **kw)
    assert needs_model(0.8, policy="always", **kw) and not needs_model(0.5, policy="never", **kw)


def test_revision_says_when_the_final_answer_is_not_what_was_streamed() -> None:
    streamed = "The KFR-35GW cools at 3500 W [1]."
    assert revision(streamed, Answer(" The KFR-35GW cools at 3500 W [1]. ", "answered")) is None
    amended = revision(streamed, Answer("The KFR-35GW cools at 3500 W [2]. Note: the sources disagree.", "answered"))
    assert amended is not None and amended["replaced"] is False
    refused = revision(streamed, Answer("The knowledge base does not contain the answer.", "no_answer",
                                        trace={"refused_unsupported": [streamed]}))
    assert refused is not None and refused["replaced"] is True and "not supported" in refused["reason"]
    cut = revision(streamed + " It is blue [1].", Answer("It is blue [1].", "partial"))
    assert cut is not None and cut["replaced"] is True


def test_markup_filter_drops_delimiters_split_across_deltas() -> None:
    f = MarkupFilter()
    out = "".join(f.feed(d) for d in ["运行2小时[1]。", ">", ">", "> ", "好<", "<<"]) + f.flush()
    assert out == "运行2小时[1]。 好"
    f = MarkupFilter()
    assert f.feed("a -> b") == "a -> b" and f.flush() == ""  # a lone arrow is text


def test_sentence_selection_scores_with_the_configured_encoder_not_the_collections(tmp_path: Path) -> None:
    """The real multilingual USE scores sentences for a collection embedded with another model; "" keeps the
    collection's own. The collection's encoder is a fake that fails when called: the test is about which is used."""
    from types import SimpleNamespace

    from app.pipeline import PipelineConfig, sentence_similarity
    from app.service import SearchService

    class FailingEncoderFake:
        def embed_query(self, text: str) -> None:
            raise AssertionError("the collection's encoder must not score sentences here")

        embed_documents = embed_query

    retriever = SimpleNamespace(embedder=FailingEncoderFake())
    service = SearchService(tmp_path)
    sim = sentence_similarity(service, retriever, PipelineConfig(), "How cold can it be outside for heating?")  # type: ignore[arg-type]
    scores = sim(["The unit heats reliably down to -15 °C outdoors.", "The warranty lasts two years."])
    assert scores[0] > scores[1]
    assert service.embedder("use-multilingual") is service.embedder("use-multilingual")  # loaded once
    with pytest.raises(AssertionError, match="collection's encoder"):
        sentence_similarity(service, retriever, PipelineConfig(select_embedder=""), "q")(["a sentence"])  # type: ignore[arg-type]


def _passage(title: str, date: str | None, source: str) -> Passage:
    chunk = Chunk(chunk_id=1, doc_id="d", collection="c", text="Coils are cleaned every 6 months.", level=128,
                  position=0, section_id=None, title=title, effective_date=date, date_source=source)
    return Passage(hit=ScoredChunk(chunk, 1.0), text=chunk.text, chunk_ids=(1,), token_count=8, expanded="chunk")


def test_source_headers_date_only_documents_that_state_a_date() -> None:
    block = sources_block([_passage("Schedule", "2023-09-01", "content"), _passage("FAQ", "2026-12-02", "mtime")])
    assert "[1] Schedule (effective 2023-09-01)\n<<<" in block
    assert "[2] FAQ\n<<<" in block and "2026-12-02" not in block  # a file's copy time is not the document's date


def test_answer_rules_come_before_the_sources_so_every_question_reuses_them() -> None:
    # The model server keeps the prompt prefix it read last: what precedes the sources is read once, not per question.
    a = render_prompt("sources", sources=sources_block([_passage("A", None, "none")]))
    b = render_prompt("sources", sources=sources_block([_passage("B", None, "none")]))
    shared = len(os.path.commonprefix([a, b]))
    assert "Copy values" in a[:shared] and "knowledge base does not contain" in a[:shared]
    tail = render_prompt("answer", language="English", max_sentences=4, notes="", conversation="", question="Q?")
    assert tail.endswith("Question: Q?\nAnswer:") and "in English" in tail
    # The citation rule stays next to the question: read from the cached start, the 1.5B model dropped markers.
    assert "must end with the number of its source" in tail
