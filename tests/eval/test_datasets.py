"""Each adapter on a tiny hand-made fixture in the format of the real data set (no models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.datasets import DatasetOptions, load_beir, load_dataset, select, tatqa_html
from tests.eval import tiny_datasets as tiny

REPO = Path(__file__).resolve().parents[2]


def test_squad2(tmp_path: Path) -> None:
    ds = load_dataset(f"squad2:{tiny.squad2(tmp_path)}")
    assert ds.name == "squad2-dev" and len(ds.records) == 1
    assert ds.records[0].key == "squad2:Normans" and "Rollo was" in ds.records[0].text
    q1, q2, q3 = ds.items
    assert q1.answers == ("France",) and not q1.unanswerable and q1.gold_sources == ("squad2:Normans",)
    assert q2.unanswerable and q2.answers == () and q2.categories["answerable"] == "no" and q2.gold_sources == ()
    assert q1.scope == () and q3.rule == "span" and q3.lang == "en"
    scoped = load_dataset(f"squad2:{tiny.squad2(tmp_path)}", DatasetOptions(scope="doc"))
    assert scoped.items[0].scope == ("squad2:Normans",)


def test_cmrc_is_chinese_squad(tmp_path: Path) -> None:
    path = tiny.cmrc(tmp_path)
    ds = load_dataset(f"cmrc:{path}")
    assert ds.records[0].key == "cmrc:TRIAL_800" and ds.records[0].title == "泡泡战士"
    assert ds.items[0].lang == "zh" and ds.items[0].answers == ("踢爆",) and not ds.items[0].unanswerable


def test_rgb_noise_and_rejection(tmp_path: Path) -> None:
    path = tiny.rgb_zh(tmp_path)
    ds = load_dataset(f"rgb:{path}", DatasetOptions(noise_ratios=(0.4, 1.0), passages=5))
    by_id = {i.id: i for i in ds.items}
    noisy, reject = by_id["0@0.4"], by_id["0@1"]
    texts = {r.key: r.text for r in ds.records}
    # ceil(5 * 0.4) = 2 noise passages and 3 positive ones; noise 1.0: only noise (4 exist).
    assert sorted(texts[k].split()[0] for k in noisy.scope) == ["neg", "neg", "pos", "pos", "pos"]
    assert [texts[k].split()[0] for k in reject.scope] == ["neg"] * 4
    assert reject.unanswerable and not noisy.unanswerable
    assert (noisy.categories, reject.categories["set"]) == ({"noise_ratio": "0.4", "set": "noise"}, "rejection")
    assert noisy.lang == "zh" and noisy.rule == "rgb" and noisy.extra["rgb_answer"] == ["12人"]
    # Keys and titles must not give away which passages are positive.
    assert all(k.startswith("rgb:") and "pos" not in k and "neg" not in k for k in texts)
    sub = ds.for_items([noisy])
    assert {r.key for r in sub.records} == set(noisy.scope)
    again = load_dataset(f"rgb:{path}", DatasetOptions(noise_ratios=(0.4, 1.0), passages=5))
    assert [i.scope for i in again.items] == [i.scope for i in ds.items]  # seeded


def test_rgb_counterfactual_and_integration(tmp_path: Path) -> None:
    fact = tiny.rgb_fact(tmp_path)
    ds = load_dataset(f"rgb:{fact}", DatasetOptions(noise_ratios=(0.4,), passages=5))
    item = ds.items[0]
    texts = [r.text for r in ds.records]
    assert item.categories["set"] == "counterfactual" and item.extra["fakeanswer"] == "Glendale, Arizona"
    assert sum("Glendale" in t for t in texts) == 3 and not any("Tampa" in t for t in texts)
    assert not item.unanswerable and item.lang == "en"
    integ = tmp_path / "en_int.json"
    integ.write_text(json.dumps({"id": 1, "query": "Who won A and B?", "answer": [["Ann"], ["Bob", "Robert"]],
                                 "positive": [["Ann won A."], ["Bob won B.", "Robert took B."]],
                                 "negative": ["n1", "n2", "n3"]}), encoding="utf-8")
    it = load_dataset(f"rgb:{integ}", DatasetOptions(noise_ratios=(0.4,), passages=5)).items[0]
    assert it.categories["set"] == "integration" and it.answers == ("Ann", "Bob") and len(it.scope) == 5


def test_tatqa_renders_real_documents(tmp_path: Path) -> None:
    ds = load_dataset(f"tatqa:{tiny.tatqa(tmp_path)}")
    assert [f.name for f in ds.files] == ["tatqa-3ffd9053-a45d.html"] and not ds.records
    page = ds.files[0].data.decode()
    assert "<th>2019</th>" in page and "<td>Fixed Price</td>" in page and "<th>Years Ended September 30,</th>" in page
    assert page.index("Sales by Contract Type") < page.index("table below") < page.index("<table>")
    a1, a2, a3 = ds.items
    assert (a1.rule, a1.answers, a1.extra["scale"]) == ("numeric", ("-12.6",), "million")
    assert a2.rule == "keys" and a2.answers == ("fixed-price", "other") and a3.rule == "numeric"
    assert a1.categories == {"answer_from": "table", "scale": "million", "answer_type": "arithmetic"}
    assert a2.categories["scale"] == "none"
    assert a1.scope == a1.gold_sources == ("tatqa-3ffd9053-a45d.html",)  # reading the question's own report
    assert load_dataset(f"tatqa:{tiny.tatqa(tmp_path)}", DatasetOptions(scope="corpus")).items[0].scope == ()


@pytest.mark.slow  # imports the parsers
def test_tatqa_html_goes_through_our_table_parser(tmp_path: Path) -> None:
    from ingest.parsers import parse_file

    f = tmp_path / "t.html"
    f.write_text(tatqa_html("Report", ["Intro."], [["", "2019", "2018"], ["Revenue", "1,000", "900"]]))
    tables = [e.table for e in parse_file(f).elements if e.kind == "table"]
    assert len(tables) == 1 and tables[0] is not None
    assert tables[0].header == ("", "2019", "2018") and tables[0].rows == (("Revenue", "1,000", "900"),)


def test_freshqa_reads_csv_and_every_wiki_page(tmp_path: Path) -> None:
    csv_path = tiny.freshqa(tmp_path)
    ds = load_dataset(f"freshqa:{csv_path}", DatasetOptions(as_of="2024-01-01"))
    assert sorted(r.key for r in ds.records) == ["freshqa:.NET.txt", "freshqa:Prime_Minister_of_Canada.txt"]
    pm = next(r for r in ds.records if "Prime" in r.key)
    assert pm.title == "Prime Minister of Canada" and pm.text.startswith("The prime") and pm.effective_date
    a, b = ds.items
    assert a.categories == {"fact_type": "slow-changing", "false_premise": "true", "num_hops": "one-hop",
                            "effective_year": "before 2022"}
    assert a.gold_sources == ("freshqa:Prime_Minister_of_Canada.txt",) and a.as_of == "2024-01-01"
    assert b.answers == ("9", "nine") and b.gold_sources == () and b.question.endswith("Princeton?")


def test_hotpotqa(tmp_path: Path) -> None:
    q = tiny.hotpotqa(tmp_path)
    ds = load_dataset(f"hotpotqa:{q}")
    assert len(ds.records) == 3 and ds.records[0].text == "Alû is a demon. It is a Gallu."
    item = ds.items[0]
    assert item.gold_sources == ("hotpot:Alû", "hotpot:Lilu (mythology)") and item.scope == ()
    assert item.categories == {"type": "bridge", "level": "easy"} and item.answers == ("a spirit",)


def test_jsonl_with_documents_paths_and_corpus(tmp_path: Path) -> None:
    (tmp_path / "manual.txt").write_text("The pump is cleaned every 3 months.")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = [
        {"id": "a", "question": "How often is the pump cleaned?", "answers": ["3 months"], "documents": ["manual.txt"]},
        {"question": "保修多久？", "answers": ["7年"], "documents": [{"title": "保修", "text": "保修期为7年。"}],
         "kind": "zh", "match": "any"},
        {"question": "What does it cost?", "unanswerable": True, "forbidden": ["PWNED"]},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    ds = load_dataset(f"jsonl:{path}", DatasetOptions(corpus=corpus))
    a, b, c = ds.items
    assert ds.folders == (corpus, (tmp_path / "manual.txt").resolve())
    assert a.gold_sources == ("manual.txt",) and a.rule == "keys" and a.categories == {"kind": "answerable"}
    assert b.id == "2" and b.lang == "zh" and b.rule == "span" and b.gold_sources == (ds.records[0].key,)
    assert c.unanswerable and c.extra["forbidden"] == ["PWNED"] and c.gold_sources == ()
    path.write_text('{"answers": ["x"]}\n')
    with pytest.raises(ValueError, match="q.jsonl:1"):
        load_dataset(f"jsonl:{path}")


def test_jsonl_sample_questions_with_corpus_folder() -> None:
    ds = load_dataset(f"jsonl:{REPO / 'examples/questions.jsonl'}", DatasetOptions(corpus=REPO / "examples/corpus"))
    assert len(ds.items) == 20 and ds.folders == (REPO / "examples" / "corpus",) and not ds.records
    q = {i.id: i for i in ds.items}
    assert q["q04"].answers == ("风速", "5秒") and q["q04"].lang == "zh" and q["q04"].rule == "keys"
    assert q["q18"].unanswerable and q["q16"].as_of == "2023-06-30" and q["q20"].extra["forbidden"] == ["PWNED"]


def test_select_samples_per_category_and_limits_reproducibly(tmp_path: Path) -> None:
    ds = load_dataset(f"tatqa:{tiny.tatqa(tmp_path)}")
    assert [i.id for i in select(ds.items, sample=[("answer_from", 1)])] == ["a1", "a2", "a3"]
    assert [i.id for i in select(ds.items, sample=[("answer_from:text", 5)])] == ["a2"]
    picked = select(ds.items, limit=2, seed=7)
    assert len(picked) == 2 and picked == select(ds.items, limit=2, seed=7)
    with pytest.raises(ValueError, match="'fact_type'"):
        select(ds.items, sample=[("fact_type", 2)])


def test_bad_specs_name_the_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'nope:x'"):
        load_dataset("nope:x")
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(f"squad2:{tmp_path / 'missing.json'}")
    with pytest.raises(ValueError, match=r"\(1.5,\)"):
        DatasetOptions(noise_ratios=(1.5,))


def test_beir_folder(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "Cats", "text": "Cats purr."}\n'
        '{"_id": "d2", "title": "", "text": "Dogs bark. Loudly."}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "purring"}\n{"_id": "2", "text": "unjudged"}\n')
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t0\n")
    data = load_beir(tmp_path, "train")
    assert data.queries == {"1": "purring"} and data.qrels == {"1": {"d1": 1, "d2": 0}}
    assert [r.key for r in data.corpus] == ["beir:d1", "beir:d2"] and data.corpus[1].title == "Dogs bark."
    with pytest.raises(ValueError, match=r"qrels/test.tsv.*\['train'\]"):
        load_beir(tmp_path, "test")
