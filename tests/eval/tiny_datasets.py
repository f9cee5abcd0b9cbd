"""Tiny hand-made files in the format of each real data set: the adapters' unit tests and their LLM runs share them."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def squad2(tmp_path: Path) -> Path:
    return write_json(tmp_path / "dev.json", {"version": "v2.0", "data": [{"title": "Normans", "paragraphs": [
        {"context": "The Normans gave their name to Normandy, a region in France.", "qas": [
            {"question": "In what country is Normandy located?", "id": "q1", "is_impossible": False,
             "answers": [{"text": "France", "answer_start": 55}, {"text": "France", "answer_start": 55}]},
            {"question": "Who gave their name to France?", "id": "q2", "is_impossible": True, "answers": [],
             "plausible_answers": [{"text": "Normans", "answer_start": 4}]}]},
        {"context": "Rollo was their first ruler.", "qas": [
            {"question": "Who was the first Norman ruler?", "id": "q3", "is_impossible": False,
             "answers": [{"text": "Rollo", "answer_start": 0}]}]}]}]})


def cmrc(tmp_path: Path) -> Path:
    return write_json(tmp_path / "cmrc.json", {"version": "v1.0", "data": [{"id": "TRIAL_800", "title": "泡泡战士",
        "paragraphs": [{"id": "TRIAL_800", "context": "生命数耗完即算为踢爆。", "qas": [
            {"question": "生命数耗完即算为什么？", "id": "TRIAL_800_QUERY_0",
             "answers": [{"text": "踢爆", "answer_start": 8}]}]}]}]})


def rgb_line(i: int) -> dict[str, object]:
    return {"id": i, "query": f"question {i}", "answer": ["12人"],
            "positive": [f"pos {i} {k} 造成12人死亡。" for k in range(3)],
            "negative": [f"neg {i} {k} 其他新闻。" for k in range(4)]}


def rgb_zh(tmp_path: Path, lines: int = 2) -> Path:
    path = tmp_path / "zh_refine.json"
    path.write_text("\n".join(json.dumps(rgb_line(i), ensure_ascii=False) for i in range(lines)), encoding="utf-8")
    return path


def rgb_fact(tmp_path: Path) -> Path:
    return write_json(tmp_path / "en_fact.json", {
        "id": 0, "query": "Super Bowl 2021 location", "answer": "Tampa, Florida", "fakeanswer": "Glendale, Arizona",
        "positive": ["It was in Tampa, Florida."] * 3,
        "positive_wrong": [f"It was in Glendale, Arizona ({k})." for k in range(3)],
        "negative": ["Other news.", "More news."]})


def tatqa(tmp_path: Path) -> Path:
    return write_json(tmp_path / "tatqa_dev.json", [{
        "table": {"uid": "3ffd9053-a45d-491c-957a", "table": [
            ["", "", "Years Ended September 30,", ""], ["", "2019", "2018", "2017"],
            ["Fixed Price", "$  1,452.4", "$  1,146.2", "$  1,036.9"], ["Other", "44.1", "56.7", "70.8"]]},
        "paragraphs": [{"uid": "p2", "order": 2, "text": "The table below presents sales (in millions):"},
                       {"uid": "p1", "order": 1, "text": "Sales by Contract Type: mostly fixed-price."}],
        "questions": [
            {"uid": "a1", "question": "What is the change in Other in 2019 from 2018?", "answer": -12.6,
             "answer_type": "arithmetic", "answer_from": "table", "scale": "million", "derivation": "44.1-56.7"},
            {"uid": "a2", "question": "What are the contract types?", "answer": ["fixed-price", "other"],
             "answer_type": "multi-span", "answer_from": "text", "scale": ""},
            {"uid": "a3", "question": "What is the fixed price in 2019?", "answer": ["$  1,452.4"],
             "answer_type": "span", "answer_from": "table-text", "scale": "million"}]}])


def freshqa(tmp_path: Path) -> Path:
    """The CSV; its wiki pages go to tmp_path / "wiki_docs", where the adapter looks for them."""
    wiki = tmp_path / "wiki_docs"
    wiki.mkdir()
    (wiki / "Prime_Minister_of_Canada.txt").write_text("Title: Prime_Minister_of_Canada\nThe prime minister ...")
    (wiki / ".NET.txt").write_text("Title: .NET\n.NET is a framework.")
    csv_path = tmp_path / "freshqa_dev.csv"
    csv_path.write_text(
        "id,split,question,effective_year,next_review,false_premise,num_hops,fact_type,source,answer_0,answer_1,"
        "answer_2,note\n"
        "500,DEV,Who is the current Canadian president?,before 2022,occasionally,TRUE,one-hop,slow-changing,"
        "https://en.wikipedia.org/wiki/Prime_Minister_of_Canada#:~:text=x,Canada has no president.,,,\n"
        "543,DEV,How many Fields medalists from Princeton? ,2022,2026,FALSE,one-hop,fast-changing,"
        "\"https://www.princeton.edu/x\nhttps://en.wikipedia.org/wiki/Fields_Medal\",9,nine,,\n")
    return csv_path


def hotpotqa(tmp_path: Path) -> Path:
    q = write_json(tmp_path / "hotpotqa_train.json", [{"_id": "h1", "question": "If Gallu is a demon Lilu is what?",
        "answer": "a spirit", "type": "bridge", "level": "easy",
        "supporting_facts": [["Alû", 3], ["Lilu (mythology)", 0]], "context": []}])
    write_json(tmp_path / "hotpotqa_train_corpus.json", {"Alû": ["Alû is a demon.", " It is a Gallu."],
                                                        "Lilu (mythology)": ["A lilu is a spirit."], "Other": ["x"]})
    return q
