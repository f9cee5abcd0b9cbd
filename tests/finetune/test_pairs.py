"""RAFT examples from given QA pairs (app/finetune/pairs.py) and the SQuAD glue that feeds it (eval/finetune_pairs.py).

No model: the evidence is written here as the pipeline's `gather` + `select` would hand it over (Passages whose text
is the selected sentences), so the tests are about what becomes of a question: the oracle found and cited, the
distractors, refusals for unanswerable questions, the drop reasons, the sampling, and the split by article.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from app.citations import SupportScorer
from app.finetune.pairs import GivenQA, PairOptions, gold_sentence, pair_example, read_pairs, sample_pairs, write_pairs
from app.finetune.raft import as_passage
from app.routing import NO_ANSWER
from eval.datasets import DatasetOptions, load_dataset
from eval.finetune_pairs import split_articles, squad_pairs
from retrieval.analyzer import Analyzer
from retrieval.expand import Passage
from retrieval.types import Chunk

AN = Analyzer()
SCORER = SupportScorer(AN)
OPTS = PairOptions(distractors=2)


def _chunk(cid: int, doc: str, text: str) -> Chunk:
    return Chunk(chunk_id=cid, doc_id=doc, collection="t", text=text, level=128, position=0, section_id=None,
                 title="Normans", source_path=f"squad2:Normans#{cid}")


NORMANDY = _chunk(1, "d1", "The Normans gave their name to Normandy, a region in France. They were descended from "
                           "Norse raiders. Rollo swore fealty to King Charles III of West Francia in 911.")
DUKES = _chunk(2, "d2", "Richard I was Duke of Normandy from 942. His rule was long.")
CASTLES = _chunk(3, "d3", "Norman castles were built of stone after 1066.")
SICILY = _chunk(4, "d4", "The Normans conquered Sicily in the eleventh century.")
RAIDERS = GivenQA("q1", "Who did Rollo swear fealty to?", ("King Charles III",), False, "squad2:Normans#1")


def _selected(chunk: Chunk, *sentences: str) -> Passage:
    """A passage as `select` returns it: only the kept sentences, one a line."""
    text = "\n".join(sentences)
    return Passage(as_passage(chunk).hit, text, (chunk.chunk_id,), len(text.split()), "selected")


def _sources(prompt: str) -> dict[int, str]:
    return {int(n): body for n, body in re.findall(r"\[(\d+)\] [^\n]*\n<<<\n(.*?)\n>>>", prompt, re.S)}


def test_answerable_pair_cites_the_gold_sentence_of_its_own_document() -> None:
    gold = "Rollo swore fealty to King Charles III of West Francia in 911."
    chosen = [_selected(DUKES, "Richard I was Duke of Normandy from 942."), _selected(NORMANDY, gold),
              _selected(CASTLES, "Norman castles were built of stone after 1066."),
              _selected(SICILY, "The Normans conquered Sicily in the eleventh century.")]
    ex = pair_example(RAIDERS, chosen, chosen, [NORMANDY], AN, SCORER, OPTS, random.Random(0))
    assert not isinstance(ex, str)
    src = _sources(ex.prompt)
    assert ex.kind == "oracle" and len(src) == 3  # the oracle and 2 distractors: the best-ranked others
    assert ex.oracle_marker is not None and src[ex.oracle_marker] == gold
    assert "Norman castles" in ex.prompt and "Sicily" not in ex.prompt
    assert ex.target == f"Rollo swore fealty to King Charles III of West Francia in 911 [{ex.oracle_marker}]."
    assert ex.doc_id == "d1" and ex.answer_keys == ("King Charles III",)
    assert ex.prompt.rstrip().endswith("Question: Who did Rollo swear fealty to?\nAnswer:")


def test_unanswerable_pair_refuses_over_its_near_misses() -> None:
    q = GivenQA("q2", "Who did Richard II swear fealty to?", (), True, "squad2:Normans#2")
    chosen = [_selected(DUKES, "Richard I was Duke of Normandy from 942."),
              _selected(NORMANDY, "Rollo swore fealty to King Charles III of West Francia in 911.")]
    ex = pair_example(q, chosen, chosen, [], AN, SCORER, OPTS, random.Random(0))
    assert not isinstance(ex, str)
    assert ex.kind == "refusal" and ex.target == NO_ANSWER["en"] and ex.oracle_marker is None
    assert len(_sources(ex.prompt)) == 2
    assert pair_example(q, [], [], [], AN, SCORER, OPTS, random.Random(0)) == "no_evidence"


def test_drop_reasons() -> None:
    gold = "Rollo swore fealty to King Charles III of West Francia in 911."
    other = [_selected(DUKES, "Richard I was Duke of Normandy from 942.")]
    # the retriever never reached the question's document
    assert pair_example(RAIDERS, other, other, [NORMANDY], AN, SCORER, OPTS, random.Random(0)) == "not_retrieved"
    # it did, but the selection kept another sentence of it: serving would not show the answer either
    gathered = [*other, as_passage(NORMANDY)]
    chosen = [*other, _selected(NORMANDY, "They were descended from Norse raiders.")]
    assert pair_example(RAIDERS, gathered, chosen, [NORMANDY], AN, SCORER, OPTS, random.Random(0)) \
        == "answer_not_selected"
    wrong = GivenQA("q3", "Who did Rollo swear fealty to?", ("Louis IX",), False, "squad2:Normans#1")
    chosen = [_selected(NORMANDY, gold)]
    assert pair_example(wrong, chosen, chosen, [NORMANDY], AN, SCORER, OPTS, random.Random(0)) \
        == "answer_not_in_document"
    short = PairOptions(max_answer_tokens=5)
    assert pair_example(RAIDERS, chosen, chosen, [NORMANDY], AN, SCORER, short, random.Random(0)) == "answer_too_long"


def test_gold_sentence_prefers_the_one_sharing_the_question_terms() -> None:
    c = _chunk(9, "d9", "Paris is large. The capital of France is Paris, on the Seine.")
    got = gold_sentence("What is the capital of France?", ("Paris",), [c], AN)
    assert got == (c, "The capital of France is Paris, on the Seine.")
    assert gold_sentence("What is the capital?", ("Lyon",), [c], AN) is None


def test_sampling_keeps_the_refusal_share_and_pairs_round_trip(tmp_path: Path) -> None:
    pairs = [GivenQA(f"a{i}", f"question {i}?", ("x",), False, f"d{i % 7}") for i in range(40)] + \
            [GivenQA(f"u{i}", f"unanswerable {i}?", (), True, f"d{i % 7}") for i in range(40)]
    got = sample_pairs(pairs, 20, 0.25, random.Random(0))
    assert sum(p.unanswerable for p in got) == 5 and len(got) == 20
    assert got == [p for p in pairs if p in got]  # input order kept
    write_pairs(tmp_path / "qa.jsonl", pairs[:2] + pairs[-1:])
    assert read_pairs(tmp_path / "qa.jsonl") == pairs[:2] + pairs[-1:]


def test_squad_glue_splits_by_article_and_keys_each_paragraph(tmp_path: Path) -> None:
    def article(title: str) -> dict[str, object]:
        return {"title": title, "paragraphs": [
            {"context": f"{title} paragraph one.", "qas": [
                {"id": f"{title}-1", "question": "What?", "answers": [{"text": "one", "answer_start": 0}],
                 "is_impossible": False}]},
            {"context": f"{title} paragraph two.", "qas": [
                {"id": f"{title}-2", "question": "Why not?", "answers": [], "is_impossible": True}]}]}

    titles = ["Normans", "Huguenot", "1973_oil_crisis", "Packet_switching", "Yuan_dynasty"]
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": [article(t) for t in titles]}), encoding="utf-8")
    train, test = split_articles(titles, 2, seed=0)
    assert len(test) == 2 and set(train) | set(test) == set(titles) and not set(train) & set(test)
    assert split_articles(titles, 2, seed=0) == (train, test)
    records, pairs = squad_pairs(path, "squad2", train)
    assert {r.key for r in records} == {f"squad2:{t}#{i}" for t in train for i in (0, 1)}
    assert all(p.doc_key.split(":")[1].split("#")[0] in train for p in pairs)
    first = next(p for p in pairs if p.id == f"{train[0]}-1")
    assert first.answers == ("one",) and not first.unanswerable and first.doc_key == f"squad2:{train[0]}#0"
    assert next(p for p in pairs if p.id == f"{train[0]}-2").unanswerable
    # the held-out articles are then asked with `ragqa eval qa --articles`: only their documents and questions
    whole = load_dataset(f"squad2:{path}")
    held = load_dataset(f"squad2:{path}", DatasetOptions(articles=tuple(t.replace("_", " ") for t in test)))
    assert {i.id.rsplit("-", 1)[0] for i in held.items} == set(test) and len(held.records) == 2
    assert held.name != whole.name  # its own collection: ingesting into the whole set's would keep every article
    with pytest.raises(ValueError, match="not in the data set"):
        load_dataset(f"squad2:{path}", DatasetOptions(articles=("Atlantis",)))
