"""What the answer must say about time and disagreement, decided in code and written in the answer's language.

A small model reading two policy versions tends to pick one and not notice the other, and does not know that the
newest source predates the year asked about. Both facts are found in code (app/conflicts.py, `later_than_cutoff`);
the model gets a note in its prompt, and the answer gets a sentence appended after the citation check.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.conflicts import Disagreement
from retrieval.expand import Passage
from retrieval.text import YEAR
from retrieval.types import Conflict


def later_than_cutoff(question: str, passages: Sequence[Passage]) -> tuple[str, str] | None:
    """(asked year, newest source date) when the question asks about a year after every source.

    Dates taken from a file's modification time are not evidence of what a document covers, so they do not count."""
    years = [int(y) for y in YEAR.findall(question)]
    dates = [p.hit.chunk.effective_date for p in passages
             if p.hit.chunk.effective_date and p.hit.chunk.date_source != "mtime"]
    if not years or not dates:
        return None
    newest = max(d for d in dates if d)
    if max(years) > int(newest[:4]):
        return str(max(years)), newest
    return None


def prompt_notes(disagreements: Sequence[Disagreement], later: tuple[str, str] | None) -> str:
    lines = []
    for d in disagreements[:2]:
        a, b = d.preferred.passage_index + 1, d.other.passage_index + 1
        lines.append(f"Note: sources [{a}] and [{b}] disagree; [{a}] is {d.reason} and takes precedence.")
    if later:
        lines.append(f"Note: the question asks about {later[0]}, but the newest source is dated {later[1]}; say what "
                     f"the sources state as of {later[1]}.")
    return "\n".join(lines) + "\n" if lines else ""


def cutoff_sentence(lang: str, later: tuple[str, str]) -> str:
    year, newest = later
    if lang == "zh":
        return f"注意：知识库中最新的相关文档日期为 {newest}，没有关于 {year} 年的信息；以上为截至 {newest} 的情况。"
    return (f"Note: the newest relevant document in the knowledge base is dated {newest}; it has no information "
            f"about {year}, so this is what it says as of {newest}.")


def conflict_sentence(lang: str, c: Conflict) -> str:
    a, b = c.preferred, c.other
    if lang == "zh":
        return (f"注意：来源之间存在不一致：[{a.marker}]（{a.effective_date or '无日期'}）与 [{b.marker}]"
                f"（{b.effective_date or '无日期'}）说法不同，本回答以 [{a.marker}] 为准（{c.reason}）。")
    return (f"Note: the sources disagree: [{a.marker}] ({a.effective_date or 'undated'}) and [{b.marker}] "
            f"({b.effective_date or 'undated'}) differ; this answer follows [{a.marker}], which is {c.reason}.")
