"""RAFT data: the example format, the filters, the split by document, and a whole run over the sample corpus.

The whole run uses `FakeExtractiveGenerator` in place of the LLM: the test is about what happens to generated
questions (filters, distractors from our real retriever, refusals, splits, resuming), not about their quality.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from app.citations import SupportScorer
from app.finetune.data import DataOptions, build, grounded, near_duplicates, split_documents
from app.finetune.raft import QA, build_example, cite
from app.routing import NO_ANSWER
from app.service import SearchService
from retrieval.analyzer import Analyzer
from retrieval.evidence import rows_as_records
from retrieval.text import split_sentences
from retrieval.types import Chunk


def _chunk(cid: int, doc: str, text: str, **kw: object) -> Chunk:
    return Chunk(chunk_id=cid, doc_id=doc, collection="t", text=text, level=128, position=0, section_id=None,
                 title=f"{doc} title", source_path=f"/docs/{doc}.md", **kw)  # type: ignore[arg-type]


ORACLE = _chunk(1, "ac", "Fault code E4 means the outdoor fan has failed. Turn the unit off and call service.")
NEG = [_chunk(2, "heater", "The heater filter is cleaned every 2 weeks."), _chunk(3, "tv", "The TV has 3 inputs.")]
QA1 = QA(1, "What does fault code E4 mean?", "Fault code E4 means the outdoor fan has failed.",
         "Fault code E4 means the outdoor fan has failed")


def _sources(prompt: str) -> dict[int, str]:
    return {int(n): body for n, body in re.findall(r"\[(\d+)\] [^\n]*\n<<<\n(.*?)\n>>>", prompt, re.S)}


def test_oracle_example_cites_the_oracle_in_the_pipeline_prompt_format() -> None:
    ex = build_example(QA1, ORACLE, NEG, language="en", refusal=False, rng=random.Random(1))
    src = _sources(ex.prompt)
    assert ex.kind == "oracle" and len(src) == 3 and ex.oracle_marker is not None
    assert src[ex.oracle_marker] == ORACLE.text
    assert ex.target == f"Fault code E4 means the outdoor fan has failed [{ex.oracle_marker}]."
    assert ex.prompt.rstrip().endswith("Question: What does fault code E4 mean?\nAnswer:")
    rec = ex.record("train")
    assert rec["messages"][0]["content"] == ex.prompt and rec["messages"][1]["content"] == ex.target


def test_oracle_position_is_random() -> None:
    rng = random.Random(0)
    markers = {build_example(QA1, ORACLE, NEG, language="en", refusal=False, rng=rng).oracle_marker
               for _ in range(30)}
    assert markers == {1, 2, 3}


def test_refusal_example_leaves_the_oracle_out_and_refuses() -> None:
    ex = build_example(QA1, ORACLE, NEG, language="zh", refusal=True, rng=random.Random(0))
    assert ex.kind == "refusal" and ex.target == NO_ANSWER["zh"] and ex.oracle_marker is None
    assert ORACLE.text not in ex.prompt and len(_sources(ex.prompt)) == 2
    assert "answer from the sources in Chinese" in ex.prompt


def test_conflict_example_notes_the_newer_source() -> None:
    new = _chunk(1, "w24", "The compressor warranty is 7 years.", effective_date="2024-03-01")
    old = _chunk(5, "w23", "The compressor warranty is 5 years.", effective_date="2023-01-01")
    qa = QA(1, "How long is the compressor warranty?", "The compressor warranty is 7 years.", "7 years")
    ex = build_example(qa, new, NEG[:1], language="en", refusal=False, rng=random.Random(0), older=old)
    src = {body: n for n, body in _sources(ex.prompt).items()}
    a, b = src[new.text], src[old.text]
    assert ex.kind == "conflict" and ex.target == f"The compressor warranty is 7 years [{a}]."
    assert f"Note: sources [{a}] and [{b}] disagree; [{a}] is newer" in ex.prompt


def test_cite_keeps_the_sentence_end() -> None:
    assert cite("故障代码 E4 表示室外风扇故障。", 2) == "故障代码 E4 表示室外风扇故障 [2]。"
    assert cite("It is 7 years", 1) == "It is 7 years [1]."


def test_grounding_filter() -> None:
    assert grounded(QA1, ORACLE) is None
    assert grounded(QA(1, "q?", "It is E4.", "the indoor fan"), ORACLE) == "quote_not_in_chunk"
    assert grounded(QA(1, "q?", "Wait 30 minutes.", "Fault code E4"), ORACLE) == "value_not_in_chunk"
    scorer = SupportScorer(Analyzer())
    assert grounded(QA1, ORACLE, scorer) is None
    made_up = QA(1, "What does E4 mean?", "E4 means the compressor overheated and leaked gas.", "Fault code E4")
    assert grounded(made_up, ORACLE) is None and grounded(made_up, ORACLE, scorer) == "answer_not_supported"


def test_near_duplicates_are_dropped_in_order() -> None:
    v = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.6, 0.8]])
    assert near_duplicates(v, 0.85) == [False, True, False, False]


def test_split_is_by_document_and_deterministic() -> None:
    docs = [f"d{i}" for i in range(20)]
    a = split_documents(docs * 3, (0.8, 0.1, 0.1), seed=3)
    assert a == split_documents(list(reversed(docs)), (0.8, 0.1, 0.1), seed=3)
    assert set(a) == set(docs) and sorted(a.values()).count("test") == 2 and sorted(a.values()).count("val") == 2


class FakeExtractiveGenerator:
    """A stand-in for the LLM: asks about the chunk's longest sentence and answers with it; every third answer
    carries an invented number, which the grounding filter must drop. Counts its calls (for resuming)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, chunk: Chunk) -> QA | None:
        self.calls += 1
        sentence = max(split_sentences(chunk.text), key=len).strip()
        answer = sentence if self.calls % 3 else f"{sentence} It takes 987654 days."
        return QA(chunk.chunk_id, f"{sentence.rstrip('.。')}?", answer, sentence)


@pytest.mark.slow
def test_build_over_the_sample_corpus(sample_data_dir: Path, tmp_path: Path) -> None:
    svc = SearchService(sample_data_dir)
    gen = FakeExtractiveGenerator()
    opts = DataOptions(n_chunks=40, refusal_share=0.3, seed=1)
    s = build(svc, "default", gen, tmp_path, opts)
    assert gen.calls == s.sampled == 40 and s.dropped.get("value_not_in_chunk", 0) >= 10
    rows = {sp: [json.loads(x) for x in (tmp_path / f"{sp}.jsonl").read_text().splitlines()]
            for sp in ("train", "val", "test")}
    docs = {sp: {r["doc_id"] for r in rs} for sp, rs in rows.items()}
    assert docs["train"] and docs["test"] and not docs["train"] & docs["test"] and not docs["train"] & docs["val"]
    every = [r for rs in rows.values() for r in rs]
    assert sum(s.examples.values()) == len(every) >= 10
    refusals = [r for r in every if r["kind"] == "refusal"]
    assert 0.1 <= len(refusals) / len(every) <= 0.5
    assert all(r["target"] in NO_ANSWER.values() for r in refusals)
    chunk_text = {c.chunk_id: c.text for c in svc.retriever("default").collection.store.chunks(
        [r["chunk_id"] for r in every])}
    for r in every:
        src = _sources(r["prompt"])
        assert 2 <= len(src) <= 5
        if r["kind"] != "refusal":
            # as the pipeline shows it: table rows as records, delimiters defused
            shown = rows_as_records(chunk_text[r["chunk_id"]]).replace("<<<", "< < <").replace(">>>", "> > >")
            assert src[r["oracle_marker"]] == shown
            assert r["target"].rstrip(".。").endswith(f"[{r['oracle_marker']}]")
    assert {"zh", "en"} <= set(s.languages)
    assert json.loads((tmp_path / "stats.json").read_text())["examples"] == s.examples
    # Resuming: the generated questions are cached, so a second run asks for none again.
    again = FakeExtractiveGenerator()
    assert build(svc, "default", again, tmp_path, opts).examples == s.examples and again.calls == 0
    # ...and a smaller --chunks takes chunks already asked about first.
    fewer = build(svc, "default", again, tmp_path, DataOptions(n_chunks=20, refusal_share=0.3, seed=1))
    assert fewer.sampled == 20 and again.calls == 0


def test_cli_bad_paths_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ragqa.cli import main

    assert main(["finetune", "train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "a")]) == 2
    assert "train.jsonl not found" in capsys.readouterr().err
    assert main(["finetune", "export", str(tmp_path), "--to", "gguf"]) == 2
    assert "not a PEFT adapter folder" in capsys.readouterr().err
    assert main(["finetune", "data", "--out", str(tmp_path), "--refusal-share", "1.5"]) == 2
    assert "--refusal-share must be in [0, 1]" in capsys.readouterr().err
