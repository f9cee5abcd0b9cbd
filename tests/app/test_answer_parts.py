"""Unit tests of the answer pipeline's code-side judgements: routing, citations, conflicts, time, admission."""

from __future__ import annotations

import asyncio

import pytest

from app.admission import Admission
from app.citations import SupportScorer, check_citations, render_with_markers
from app.conflicts import find_disagreements
from app.errors import Overloaded
from app.notes import cutoff_sentence as _cutoff_sentence
from app.notes import later_than_cutoff as _later_than_cutoff
from app.pipeline import PipelineConfig
from app.routing import decide_retrieval, language_of
from app.sufficiency import bridge_query, score_gate
from retrieval.analyzer import Analyzer
from retrieval.evidence import Lead
from retrieval.evidence import order_by_date as _order_by_date
from retrieval.expand import Passage
from retrieval.text import markers, numbers, split_sentences, strip_markers
from retrieval.types import Chunk, ScoredChunk


def _passage(cid: int, doc: str, text: str, date: str | None = None, family: str | None = None,
             authority: float | None = None, date_source: str = "content") -> Passage:
    c = Chunk(chunk_id=cid, doc_id=doc, collection="t", text=text, level=128, position=0, section_id=None,
              title=f"title {doc}", source_path=f"/kb/{doc}.md", effective_date=date, family=family,
              authority=authority, date_source=date_source)
    return Passage(ScoredChunk(c, 1.0 / cid), text, (cid,), len(text.split()), "chunk")


def test_routing_and_language() -> None:
    assert not decide_retrieval("Hello!").needed
    assert not decide_retrieval("你好").needed
    assert not decide_retrieval("who are you?").needed
    assert decide_retrieval("Hello, what does E4 mean?").needed
    assert decide_retrieval("压缩机保修几年？").needed
    assert language_of("压缩机保修几年？") == "zh"
    assert language_of("What is the KFR-35GW 制冷量?") == "en"


def test_text_helpers() -> None:
    assert markers("A [1]. B [2, 3] C【4】[1]") == [1, 2, 3, 4]
    assert strip_markers("Seven years [1][2].") == "Seven years."
    assert numbers("Covered for 7 years [3], 1,200 h, 0.95 MPa") == {"7", "1200", "0.95"}
    assert numbers("压缩机保修七年，二十天") == {"7", "20"}
    assert split_sentences("First one. Second one! 第三句。第四句？") == [
        "First one.", "Second one!", "第三句。", "第四句？"
    ]


def test_citations_keep_supported_drop_unsupported_and_attach_missing() -> None:
    a = Analyzer()
    ps = [
        _passage(1, "codes", "E4 means the outdoor fan motor has failed. Call service."),
        _passage(2, "care", "Wipe the remote control with a dry cloth."),
    ]
    chunks = {p.hit.chunk.chunk_id: p.hit.chunk for p in ps}
    answer = ("E4 means the outdoor fan motor has failed [2]. Wipe the remote with a dry cloth. "
              "The fan costs 90 euros [1].")
    rep = check_citations(answer, ps, chunks, SupportScorer(a))
    first, second, third = rep.sentences
    assert first.cited == (1,) and first.dropped == (2,) and first.added  # wrong marker dropped, right one attached
    assert second.cited == (2,) and second.added
    assert not third.supported and third.dropped == (1,)  # "90" is in no source
    assert rep.unsupported == ["The fan costs 90 euros [1]."]
    assert 0.6 < rep.coverage < 0.7
    assert {c.marker for c in rep.citations} == {1, 2}
    assert "outdoor fan motor has failed" in rep.citations[0].quote
    assert render_with_markers(rep).startswith("E4 means the outdoor fan motor has failed [1].")


def test_a_marker_after_the_full_stop_cites_the_sentence_it_ends() -> None:
    ps = [_passage(1, "a", "《漫长的季节》由辛爽执导。"), _passage(2, "b", "导演辛爽，主演范伟。")]
    chunks = {p.hit.chunk.chunk_id: p.hit.chunk for p in ps}
    rep = check_citations("导演辛爽。[2]", ps, chunks, SupportScorer(Analyzer()))
    assert [s.cited for s in rep.sentences] == [(2,)] and not rep.sentences[0].added
    assert render_with_markers(rep) == "导演辛爽 [2]。"


def test_numbers_must_match_for_support() -> None:
    p = _passage(1, "w", "The compressor is covered for 5 years from installation.")
    rep = check_citations(
        "The compressor is covered for 7 years [1].", [p], {1: p.hit.chunk}, SupportScorer(Analyzer())
    )
    assert not rep.sentences[0].supported
    # The year a question asks about needs no source when the answer states what held as of the newest document.
    p = _passage(2, "w", "The compressor warranty is 7 years from installation.")
    claim = "The compressor warranty was 7 years in 2025 [1]."
    assert not check_citations(claim, [p], {2: p.hit.chunk}, SupportScorer(Analyzer())).sentences[0].supported
    assert check_citations(claim, [p], {2: p.hit.chunk}, SupportScorer(Analyzer()),
                           frozenset({"2025"})).sentences[0].supported


def test_conflict_newer_wins_then_authority() -> None:
    a = Analyzer()
    old = _passage(1, "p2023", "The compressor is covered for 5 years from the date of installation.", "2023-01-01")
    new = _passage(2, "p2024", "The compressor is covered for 7 years from the date of installation.", "2024-03-01")
    other = _passage(3, "faq", "Filters should be cleaned every 2 weeks.", "2024-05-01")
    found = find_disagreements("How long is the compressor covered?", [old, new, other], a)
    assert len(found) == 1
    d = found[0]
    assert "7 years" in d.preferred.sentence and "5 years" in d.other.sentence and d.reason.startswith("newer")
    hi = _passage(4, "x", "The compressor is covered for 6 years from the date of installation.", None, authority=3)
    lo = _passage(5, "y", "The compressor is covered for 4 years from the date of installation.", None, authority=1)
    d2 = find_disagreements("compressor covered years", [lo, hi], a)[0]
    assert "6 years" in d2.preferred.sentence and "authoritative" in d2.reason
    # A date known only from mtime does not make a source "newer".
    m = _passage(6, "m", "The compressor is covered for 9 years from the date of installation.", "2026-01-01",
                 date_source="mtime")
    d3 = find_disagreements("compressor covered years", [old, m], a)[0]
    assert "5 years" in d3.preferred.sentence


def test_time_awareness() -> None:
    ps = [_passage(1, "p", "x", "2024-03-01"), _passage(2, "q", "y", "2023-01-01"),
          _passage(3, "r", "z", "2026-11-01", date_source="mtime")]
    assert _later_than_cutoff("What was the warranty in 2025?", ps) == ("2025", "2024-03-01")
    assert _later_than_cutoff("What was the warranty in 2023?", ps) is None
    assert _later_than_cutoff("What is the warranty?", ps) is None
    assert "2024-03-01" in _cutoff_sentence("en", ("2025", "2024-03-01"))
    assert "2025" in _cutoff_sentence("zh", ("2025", "2024-03-01"))


def test_versions_of_a_family_are_ordered_newest_first() -> None:
    ps = [_passage(1, "a", "old", "2023-01-01", "warranty"), _passage(2, "b", "faq"),
          _passage(3, "c", "new", "2024-03-01", "warranty")]
    assert [p.hit.chunk.doc_id for p in _order_by_date(ps)] == ["c", "b", "a"]


def test_admission_turns_away_beyond_the_queue() -> None:
    async def scenario() -> list[str]:
        adm = Admission(max_active=1, max_waiting=1)
        release = asyncio.Event()
        results: list[str] = []

        async def job(name: str) -> None:
            try:
                async with adm.slot():
                    await release.wait()
                    results.append(name)
            except Overloaded:
                results.append(f"{name}:429")

        tasks = [asyncio.create_task(job(n)) for n in ("a", "b", "c")]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(*tasks)
        return results

    assert sorted(asyncio.run(scenario())) == ["a", "b", "c:429"]


def test_admission_checks_arguments() -> None:
    with pytest.raises(ValueError, match="0"):
        Admission(max_active=0, max_waiting=1)


def test_score_gate_ignores_the_asked_year() -> None:
    scorer = SupportScorer(Analyzer())
    ps = [_passage(1, "w", "The compressor warranty is seven years from the date of purchase.", "2024-03-01")]
    # "2025" is in no source; the words are: the gate passes so the cut-off statement can be made.
    assert score_gate(scorer, "What was the compressor warranty in 2025?", ps, 0.34)
    assert not score_gate(scorer, "Which dishwasher detergent foams least?", ps, 0.34)
    assert not score_gate(scorer, "What was the compressor warranty in 2025?", [], 0.34)


def test_bridge_query_for_a_question_no_sentence_covers() -> None:
    scorer = SupportScorer(Analyzer())
    spec = _passage(1, "spec", "| Model | Refrigerant | Factory charge |\n|---|---|---|\n"
                               "| KFR-26GW | R410A | 0.62 kg |\n| KFR-35GW | R32 | 0.55 kg |")
    q = "What is the charging pressure for the refrigerant used by the KFR-35GW?"
    bridge = bridge_query(scorer, q, [spec], 0.75)
    # The table row, read as a record, names the bridge entity: the second search looks for R32's pressure.
    assert bridge is not None and "R32" in bridge and "KFR-35GW" in bridge and "R410A" not in bridge
    covered = _passage(2, "ref", "The charging pressure for the refrigerant used by the KFR-35GW is 0.95 MPa.")
    assert bridge_query(scorer, q, [spec, covered], 0.75) is None


def test_the_bridge_round_selects_the_second_hop_the_question_alone_would_drop() -> None:
    # HotpotQA's pattern: the second document names the bridge entity, not the question's words.
    scorer = SupportScorer(Analyzer())
    film = _passage(1, "film", "Night Harbour is a 1998 drama film directed by Alan Brewster. "
                               "The film was shot in Lisbon over six weeks.")
    person = _passage(2, "person", "Alan Brewster is a British screenwriter and producer. "
                                   "His early work was in theatre.")
    q = "What nationality is the director of Night Harbour?"
    bridge = bridge_query(scorer, q, [film], 0.75)
    assert bridge is not None and "Alan Brewster" in bridge
    cfg = PipelineConfig()
    alone = " ".join(p.text for p in cfg.select(q, [film, person], Analyzer()))
    led = " ".join(p.text for p in cfg.select(q, [film, person], Analyzer(), lead=Lead(bridge, frozenset({1}))))
    assert "British" not in alone
    assert "British" in led and "directed by Alan Brewster" in led and "theatre" not in led
