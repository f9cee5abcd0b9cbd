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


def later_than_cutoff(question: str, passages: Sequence[Passage], newest: str | None = None
                      ) -> tuple[str, str] | None:
    """(asked year, newest date) when the question names a year after the newest document: `newest`, the
    collection's newest effective date under the request's filter (store.newest_date), else the passages' newest.

    A later document the selection left out still counts: then the knowledge base is not out of date, the note
    would be false. Dates taken from a file's modification time are not evidence of what a document covers, so
    they do not count (newest_date leaves them out too)."""
    years = [int(y) for y in YEAR.findall(question)]
    dates = [d for p in passages if (d := p.hit.chunk.document_date)]
    if newest:
        dates.append(newest)
    if not years or not dates:
        return None
    newest = max(d for d in dates if d)
    # A year the sources themselves write about is not beyond them ("the 2022 championship will be held in ..."
    # in a 2021 article): the note would say they have no information about it, which is false.
    later = [y for y in years if y > int(newest[:4]) and not any(str(y) in p.text for p in passages)]
    return (str(max(later)), newest) if later else None


def prompt_notes(disagreements: Sequence[Disagreement], later: tuple[str, str] | None) -> str:
    lines = []
    for d in disagreements[:2]:
        a, b = d.preferred.passage_index + 1, d.other.passage_index + 1
        lines.append(f"Note: sources [{a}] and [{b}] disagree; [{a}] is {d.reason} and takes precedence.")
    if later:
        lines.append(f"Note: the question asks about {later[0]}, but the newest source is dated {later[1]}; say what "
                     f"the sources state as of {later[1]}.")
    return "\n".join(lines) + "\n" if lines else ""


# How each note starts, per language: written once, for the sentences and for recognising them.
_CUTOFF = {"zh": "注意：知识库中最新的相关文档日期为",
           "en": "Note: the newest relevant document in the knowledge base is dated"}
_CONFLICT = {"zh": "注意：来源之间存在不一致", "en": "Note: the sources disagree"}


def cutoff_sentence(lang: str, later: tuple[str, str]) -> str:
    year, newest = later
    if lang == "zh":
        return f"{_CUTOFF['zh']} {newest}，没有关于 {year} 年的信息；以上为截至 {newest} 的情况。"
    return f"{_CUTOFF['en']} {newest}; it has no information about {year}, so this is what it says as of {newest}."


def has_cutoff_note(answer: str) -> bool:
    """Does an answer carry the cut-off note (either language)? The evaluation counts how often notes are true."""
    return any(s in answer for s in _CUTOFF.values())


def has_conflict_note(answer: str) -> bool:
    """Does an answer carry a sources-disagree note (either language)?"""
    return any(s in answer for s in _CONFLICT.values())


def without_notes(answer: str) -> str:
    """An answer without the notes appended to it (they come last). An earlier answer shown to the model as history
    keeps only its words: a model shown "this answer follows [1], which is newer" copied it into the next answer."""
    cuts = [i for s in (*_CUTOFF.values(), *_CONFLICT.values()) if (i := answer.find(s)) >= 0]
    return answer[:min(cuts)].rstrip() if cuts else answer


def conflict_sentence(lang: str, c: Conflict) -> str:
    a, b = c.preferred, c.other
    if lang == "zh":
        return (f"{_CONFLICT['zh']}：[{a.marker}]（{a.effective_date or '无日期'}）与 [{b.marker}]"
                f"（{b.effective_date or '无日期'}）说法不同，本回答以 [{a.marker}] 为准（{c.reason}）。")
    return (f"{_CONFLICT['en']}: [{a.marker}] ({a.effective_date or 'undated'}) and [{b.marker}] "
            f"({b.effective_date or 'undated'}) differ; this answer follows [{a.marker}], which is {c.reason}.")
