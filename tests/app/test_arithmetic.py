"""app/arithmetic.py: calculations the model names and code computes; every expected value worked out by hand."""

from __future__ import annotations

import pytest

from app import arithmetic as A
from app.arithmetic import CalcError, calculate, evaluate, resolve
from app.citations import SupportScorer, check_citations
from retrieval.analyzer import Analyzer
from retrieval.expand import Passage
from retrieval.types import Chunk, ScoredChunk

TABLE = ("Revenue by segment ($ in thousands). Cloud revenue: 2019 = 12,345; 2018 = 11,000. "
         "Hardware revenue: 2019 = 4,250; 2018 = 5,000.")
MEMO = "Headcount at year end was 420 people in 2019 and 400 people in 2018."


def _passage(cid: int, text: str) -> Passage:
    c = Chunk(chunk_id=cid, doc_id=f"d{cid}", collection="t", text=text, level=128, position=0, section_id=None,
              title=f"report {cid}", source_path=f"/kb/{cid}.html")
    return Passage(ScoredChunk(c, 1.0 / cid), text, (cid,), len(text.split()), "chunk")


def test_evaluate_plain_arithmetic_with_table_numbers() -> None:
    assert evaluate("12,345 - 11,000") == 1345.0
    assert evaluate("(12,345 - 11,000) / 11,000") == pytest.approx(1345 / 11000)  # 0.122272...
    assert evaluate("(4,250 + 5,000) / 2") == 4625.0
    assert evaluate("1,200 + 300 * 2") == 1800.0  # precedence: 300 * 2 first
    assert evaluate("−5 × 3 ÷ 2") == -7.5  # typographic minus, times and divide
    assert evaluate("$1,496.5 - $96.5") == 1400.0
    assert evaluate("12.5% - 10%") == 2.5  # a percent sign marks a unit, not an operator
    assert evaluate(".5 + 1") == 1.5


@pytest.mark.parametrize("bad", [
    "__import__('os').system('true')", "2 ** 10", "abs(-1)", "x + 1", "1; 2", "1, 2", "[1] * 3", "1 // 2",
    "1 if 1 else 2", "", "1 +", "1" * 301,
])
def test_evaluate_refuses_everything_but_numbers_and_four_operators(bad: str) -> None:
    with pytest.raises(CalcError):
        evaluate(bad)


def test_division_by_zero_is_a_calc_error() -> None:
    with pytest.raises(CalcError, match="division by zero"):
        evaluate("5 / (3 - 3)")


def test_format_number() -> None:
    assert A.format_number(1345.0) == "1,345"
    assert A.format_number(-7.5) == "-7.50"
    assert A.format_number(12.2272727) == "12.23"
    assert A.format_number(1234567.891) == "1,234,567.89"


def test_table_scale() -> None:
    assert A.table_scale("Revenue ($ in thousands)") == "thousand"
    assert A.table_scale("All figures in millions of dollars") == "million"
    assert A.table_scale("(In Billions)") == "billion"
    assert A.table_scale("Amount $'000") == "thousand"
    assert A.table_scale("Profit US$m 2019") == "million"
    assert A.table_scale("Revenue grew in 2019") is None


def test_a_difference_carries_the_tables_scale_and_cites_its_cells() -> None:
    c = calculate("12,345 - 11,000", [_passage(1, MEMO), _passage(2, TABLE)])
    assert c.value == 1345.0 and c.scale == "thousand"
    assert [(o.text, o.value, o.marker) for o in c.operands] == [("12,345", 12345.0, 2), ("11,000", 11000.0, 2)]
    assert c.text == "1,345 thousand (= 12,345 - 11,000)"


def test_a_ratio_has_no_table_scale_and_a_percent_sign_is_kept() -> None:
    c = calculate("(12,345 - 11,000) / 11,000 * 100", [_passage(1, TABLE)], percent=True)
    assert c.scale is None and c.value == pytest.approx(12.2272727, rel=1e-6)
    assert c.text.startswith("12.23% (= ")
    assert c.operands[-1].marker is None  # 100 is the percent constant: no source states it


def test_operands_from_two_sources_mixed_units_carry_no_scale() -> None:
    c = calculate("420 - 400", [_passage(1, MEMO), _passage(2, TABLE)])
    assert c.scale is None and [o.marker for o in c.operands] == [1, 1]


def test_resolve_replaces_tags_cites_the_sources_and_passes_the_citation_check() -> None:
    passages = [_passage(1, MEMO), _passage(2, TABLE)]
    r = resolve("Cloud revenue rose by <calc>12,345 - 11,000</calc> from 2018 to 2019.", passages)
    assert r.text == "Cloud revenue rose by 1,345 thousand (= 12,345 - 11,000) [2] from 2018 to 2019."
    assert {"1345", "12345", "11000"} <= r.computed and not r.failed
    growth = resolve("It grew by <calc>(12,345 - 11,000) / 11,000 * 100</calc> % [2].", passages)
    assert growth.text.startswith("It grew by 12.23% (= (12,345 - 11,000) / 11,000 * 100) [2]")
    assert "100" in growth.computed  # the constant, so the citation check does not ask a source for it
    # The checker: the computed result is exempt, the words and the years must be in the cited source.
    scorer = SupportScorer(Analyzer())
    report = check_citations(r.text, passages, {}, scorer, r.computed | {"2018", "2019"})
    assert report.coverage == 1.0 and report.sentences[0].cited == (2,)


def test_an_operand_no_source_states_is_left_for_the_citation_check_to_reject() -> None:
    passages = [_passage(1, TABLE)]
    r = resolve("Cloud revenue rose by <calc>12,345 - 10,500</calc> [1].", passages)
    assert "10500" not in r.computed and "1845" in r.computed
    report = check_citations(r.text, passages, {}, SupportScorer(Analyzer()), r.computed)
    assert report.coverage == 0.0  # 10,500 is in no source: the sentence is not supported


def test_a_bad_expression_is_left_as_written_and_reported() -> None:
    r = resolve("It is <calc>revenue - cost</calc> [1].", [_passage(1, TABLE)])
    assert r.text == "It is revenue - cost [1]." and r.failed == ("revenue - cost",) and not r.calculations


def test_the_prompt_rule_only_for_questions_that_need_arithmetic() -> None:
    assert A.needs_arithmetic("What was the change in cloud revenue from 2018 to 2019?")
    assert A.needs_arithmetic("What is the average hardware revenue?")
    assert A.needs_arithmetic("What percentage of revenue came from cloud?")
    assert A.needs_arithmetic("2019年营收增长了多少？")
    assert A.needs_arithmetic("What is the total amount of audit fees in both 2018 and 2019?")
    assert not A.needs_arithmetic("What were the total assets as reported?")  # a Total cell: read, not computed
    assert not A.needs_arithmetic("Who audited the 2019 accounts?")
    assert not A.needs_arithmetic("What does fault code E6 mean?")  # the verb
    assert A.needs_arithmetic("What is the mean of the quarterly revenues?")
    assert "<calc>" in A.prompt_hint("What was the difference in revenue?")
    assert A.prompt_hint("Who audited the accounts?") == ""


def test_the_unit_stated_elsewhere_in_the_document_is_carried() -> None:
    rows = _passage(1, "Cloud services: 2019 = 12,345; 2018 = 11,000.")
    caption = Chunk(chunk_id=9, doc_id="d1", collection="t", text="Revenue by segment (in thousands).", level=128,
                    position=1, section_id=None)
    other_doc = Chunk(chunk_id=8, doc_id="d7", collection="t", text="Costs (in millions).", level=128, position=0,
                      section_id=None)
    assert calculate("12,345 - 11,000", [rows]).scale is None
    assert calculate("12,345 - 11,000", [rows], documents=[other_doc, caption]).scale == "thousand"
    assert resolve("Up <calc>12,345 - 11,000</calc> [1].", [rows], [caption]).text.startswith("Up 1,345 thousand (=")
