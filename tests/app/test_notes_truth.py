"""Conflict and cut-off notes only when they are true: the same thing with two values is a conflict, two things are
not; a cut-off note only for a year after the collection's newest document."""

from __future__ import annotations

import pytest

from app.conflicts import find_disagreements
from app.notes import conflict_sentence, cutoff_sentence, has_conflict_note, has_cutoff_note, later_than_cutoff
from retrieval.analyzer import Analyzer
from retrieval.expand import Passage
from retrieval.types import Chunk, Citation, Conflict, ScoredChunk


def _p(cid: int, text: str, date: str | None = None) -> Passage:
    c = Chunk(chunk_id=cid, doc_id=f"d{cid}", collection="t", text=text, level=128, position=0, section_id=None,
              title=f"t{cid}", source_path=f"/kb/{cid}.md", effective_date=date, date_source="content")
    return Passage(ScoredChunk(c, 1.0 / cid), text, (cid,), len(text.split()), "chunk")


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer()


def test_two_values_for_the_same_thing_are_a_conflict(analyzer: Analyzer) -> None:
    ps = [_p(1, "The compressor warranty is 5 years.", "2023-01-01"),
          _p(2, "The compressor warranty is 7 years.", "2024-03-01")]
    found = find_disagreements("How many years is the compressor warranty?", ps, analyzer)
    assert len(found) == 1 and found[0].preferred.passage_index == 1


def test_two_companies_revenues_are_not_a_conflict(analyzer: Analyzer) -> None:
    ps = [_p(1, "Intel reported revenue of $63.1 billion for 2022."),
          _p(2, "Nvidia reported revenue of $26.9 billion for 2022.")]
    assert find_disagreements("What were Intel's and Nvidia's revenues in 2022?", ps, analyzer) == []
    # In Chinese too (jieba splits the names off, so each sentence names a part of the question the other lacks).
    zh = [_p(3, "英特尔2022年营收为631亿美元。"), _p(4, "英伟达2022年营收为269亿美元。")]
    assert find_disagreements("英特尔和英伟达2022年的营收分别是多少？", zh, analyzer) == []


def test_figures_for_two_years_are_not_a_conflict(analyzer: Analyzer) -> None:
    ps = [_p(1, "Cloud revenue was 12,345 thousand in 2019."), _p(2, "Cloud revenue was 11,000 thousand in 2018.")]
    assert find_disagreements("How did cloud revenue change from 2018 to 2019?", ps, analyzer) == []
    same_year = [_p(1, "Cloud revenue was 12,345 thousand in 2019."),
                 _p(2, "Cloud revenue was 12,500 thousand in 2019.")]
    assert len(find_disagreements("What was cloud revenue in 2019?", same_year, analyzer)) == 1


def test_cutoff_only_after_the_collections_newest_document() -> None:
    ps = [_p(1, "The compressor warranty is 5 years.", "2023-01-01")]
    assert later_than_cutoff("What is the compressor warranty in 2024?", ps) == ("2024", "2023-01-01")
    # The 2024 policy exists in the collection, though the selection kept only the 2023 one: no cut-off.
    assert later_than_cutoff("What is the compressor warranty in 2024?", ps, newest="2024-03-01") is None
    assert later_than_cutoff("What is the compressor warranty in 2025?", ps, newest="2024-03-01") == (
        "2025", "2024-03-01")
    assert later_than_cutoff("What is the compressor warranty?", ps, newest="2024-03-01") is None
    assert later_than_cutoff("What is it in 2030?", [_p(2, "undated")], newest=None) is None


def test_notes_are_recognised_in_answers_in_both_languages() -> None:
    for lang in ("en", "zh"):
        assert has_cutoff_note("Answer [1]. " + cutoff_sentence(lang, ("2025", "2024-03-01")))
        c = Citation(1, 1, "d1", "t", "/kb/1.md", None, "q", "2024-03-01", True, 1.0)
        o = Citation(2, 2, "d2", "t", "/kb/2.md", None, "q", "2023-01-01", True, 1.0)
        note = conflict_sentence(lang, Conflict(claim="x", preferred=c, other=o, reason="newer"))
        assert has_conflict_note("Answer [1]. " + note) and not has_cutoff_note(note)
    assert not has_conflict_note("The sources agree: 7 years [1].") and not has_cutoff_note("Note: 7 years [1].")


def test_sentences_sharing_the_asked_figure_do_not_conflict(analyzer: Analyzer) -> None:
    # RGB zh, the committed path's false notes: both state 10.51亿 and each adds a different second figure.
    ps = [_p(1, "《报告》显示，截至2022年6月，我国网民规模达10.51亿，较2021年12月新增1919万。"),
          _p(2, "《报告》显示，截至2022年6月，我国网民规模为10.51亿，互联网普及率达74.4%。")]
    assert find_disagreements("2022年6月我国网民规模有多少人？", ps, analyzer) == []


def test_no_cutoff_note_for_a_year_the_sources_write_about() -> None:
    ps = [_p(1, "2022年男排世锦赛将在波兰和斯洛文尼亚举办。", "2014-01-01")]
    assert later_than_cutoff("2022年男排世锦赛在哪举办", ps, newest="2021-06-04") is None
    assert later_than_cutoff("2023年男排世锦赛在哪举办", ps, newest="2021-06-04") == ("2023", "2021-06-04")
