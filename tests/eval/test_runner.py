"""`ragqa eval qa` mechanics end to end: the real ingest and answer pipelines and the real embedder, with the LLM
replaced by FakeLLMServer (these tests are about resuming, failures, fail-under, compare and --server; not quality)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragqa.cli import main
from tests.eval.fake_llm import FakeLLMServer, prompt_of, schema_of

pytestmark = pytest.mark.slow

QUESTIONS = [
    {"id": "p1", "question": "How often must the drain pump be cleaned?", "answers": ["3 months"],
     "documents": [{"title": "Drain pump maintenance",
                    "text": "The drain pump must be cleaned every 3 months. Use a soft brush and warm water."}]},
    {"id": "p2", "question": "How long does the compressor warranty last?", "answers": ["7 years"],
     "documents": [{"title": "Compressor warranty",
                    "text": "The compressor warranty lasts 7 years from the date of purchase. Other parts: 2 years."}]},
    # The gold is deliberately not what the source says: the fake answers from the source, so this one is wrong.
    {"id": "p3", "question": "Which batteries does the remote control use?", "answers": ["AA batteries"],
     "documents": [{"title": "Remote control", "text": "The remote control uses two AAA batteries."}]},
    {"id": "u1", "question": "What is the price of the premium model in euros?", "unanswerable": True},
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as f:
        yield f


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fake: FakeLLMServer) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("evalrun")
    qpath = root / "q.jsonl"
    qpath.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
    values = {"RAGQA_DATA_DIR": str(root / "data"), "RAGQA_EMBEDDER": "minilm-int8",
              "RAGQA_LLM_BASE_URL": fake.base_url, "RAGQA_CHUNK_LEVELS": "[64, 256]", "RAGQA_INGEST_WORKERS": "0",
              "DATASET": f"jsonl:{qpath}", "ROOT": str(root)}
    mp = pytest.MonkeyPatch()
    for k, v in values.items():
        mp.setenv(k, v)
    yield values
    mp.undo()


def _items(out: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    return {json.loads(x)["id"]: json.loads(x) for x in (out / "items.jsonl").read_text().splitlines() if x.strip()}


def test_run_scores_writes_the_folder_and_resumes_after_a_crash(env: dict[str, str], fake: FakeLLMServer,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(out)]) == 0
    items = _items(out)
    assert sorted(items) == ["p1", "p2", "p3", "u1"] and all(r["scored"] for r in items.values())
    assert items["p1"]["status"] == "answered" and "3 months" in items["p1"]["answer"]
    assert items["u1"]["status"] == "no_answer" and items["u1"]["verdicts"]["rule"]["label"] == "correct"
    assert items["p3"]["verdicts"]["rule"]["label"] == "wrong"
    assert items["p1"]["verdicts"]["judge"]["approximate"] is True and "faithfulness_approx" in items["p1"]["metrics"]
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["metrics"]["accuracy"]["value"] == 0.75 and agg["metrics"]["hallucination_rate"]["value"] == 0.25
    assert agg["meta"]["hardware"]["cpu_count"] >= 1 and agg["meta"]["timings_s"]["total"] > 0
    assert (out / "report.html").exists() and (out / "metrics.png").exists()
    assert "faithfulness (approximate)" in (out / "report.md").read_text()

    # A crash: p2's line never made it and a half-written line ends the file. Only p2 is asked again.
    lines = [x for x in (out / "items.jsonl").read_text().splitlines() if json.loads(x)["id"] != "p2"]
    (out / "items.jsonl").write_text("\n".join(lines) + '\n{"id": "p2", "quest')
    before = len(fake.requests)
    assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(out)]) == 0
    assert sorted(_items(out)) == ["p1", "p2", "p3", "u1"]
    asked = {q["id"] for q in QUESTIONS for r in fake.requests[before:] if q["question"] in prompt_of(r)}
    assert asked == {"p2"} and len(fake.requests) - before <= 2  # sufficiency + answer for that question only

    # Nothing left to ask: --fail-under is checked against the recomputed aggregate.
    n = len(fake.requests)
    assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(out), "--fail-under", "accuracy=0.8"]) == 1
    assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(out), "--fail-under", "accuracy=0.7"]) == 0
    assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(out), "--fail-under", "nope=1"]) == 2
    assert len(fake.requests) == n
    # Another configuration may not continue this folder.
    assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(out), "--top-k", "2"]) == 2


def test_llm_failure_is_recorded_and_retried(env: dict[str, str], fake: FakeLLMServer, tmp_path: Path) -> None:
    qpath = Path(env["ROOT"]) / "fail.jsonl"
    qpath.write_text(json.dumps(QUESTIONS[0]) + "\n" + json.dumps(
        {"id": "boom", "question": "FAIL: how often must the drain pump be cleaned?", "answers": ["3 months"]}) + "\n")
    out = tmp_path / "run"
    assert main(["eval", "qa", "--dataset", f"jsonl:{qpath}", "--out", str(out)]) == 0
    items = _items(out)
    assert items["p1"]["scored"] and not items["boom"]["scored"]
    assert "unavailable" in items["boom"]["errors"]["ask"].lower() and items["boom"]["metrics"] == {}
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["errors"]["count"] == 1 and agg["metrics"]["accuracy"]["n"] == 1
    before = len(fake.requests)
    assert main(["eval", "qa", "--dataset", f"jsonl:{qpath}", "--out", str(out)]) == 0
    retried = fake.requests[before:]
    assert retried and all("FAIL" in prompt_of(r) for r in retried)  # the failed item again, not the scored one


def test_compare_two_configurations(env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(a)]) == 0
    assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(b), "--max-rounds", "1",
                 "--config", str(_config(tmp_path))]) == 0
    capsys.readouterr()
    assert main(["eval", "qa", "--compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    text = capsys.readouterr().out
    assert "4 items in both" in text and "accuracy" in text and "delta" in text
    assert (tmp_path / "cmp" / "compare.html").exists()
    assert json.loads((b / "run.json").read_text())["config"] == {"mode": "sparse", "max_rounds": 1}


def _config(tmp_path: Path) -> Path:
    p = tmp_path / "sparse.toml"
    p.write_text('[search]\nmode = "sparse"\n')
    return p


def test_against_a_running_server(env: dict[str, str], fake: FakeLLMServer, tmp_path: Path) -> None:
    import uvicorn

    from app.api.server import create_app
    from app.llm.client import LLMClient
    from app.settings import Settings

    app = create_app(Settings(), llm=LLMClient(fake.base_url, "fake"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        n = len(fake.requests)
        out = tmp_path / "run"
        assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(out), "--scope", "doc",
                     "--server", f"http://127.0.0.1:{port}"]) == 0
        items = _items(out)
        assert all(r["scored"] for r in items.values()) and len(fake.requests) > n
        # Scoped to its own document, each answerable question only saw that document.
        assert {h["doc_id"] for h in items["p2"]["retrieved"]} == {items["p2"]["citations"][0]["doc_id"]}
        assert json.loads((out / "aggregate.json").read_text())["meta"]["model"].startswith("server:")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _judging(body: dict) -> str | tuple[int, str]:  # type: ignore[type-arg]
    schema = schema_of(body)
    if "verdict" in schema:
        return json.dumps({"verdict": "correct", "rationale": "matches the reference"})
    if "claims" in schema:
        return json.dumps({"claims": [{"claim": "it", "supported": True}]})
    return json.dumps({"entailed": True})


def test_llm_judge_failure_is_recorded_then_judged_again_without_asking_again(
        env: dict[str, str], fake: FakeLLMServer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with FakeLLMServer(lambda body: "no JSON here") as broken:
        assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(out), "--judge-url", broken.base_url,
                     "--judge-model", "judge", "--judge-style", "openai"]) == 0
    items = _items(out)
    answered = [i for i in items.values() if i["status"] == "answered"]
    assert answered and all("no usable JSON" in i["errors"]["judge"] and not i["scored"] for i in answered)
    asked = len(fake.requests)
    with FakeLLMServer(_judging) as judge:
        assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(out), "--judge-url", judge.base_url,
                     "--judge-model", "judge", "--judge-style", "openai"]) == 0
        assert judge.requests
    assert len(fake.requests) == asked  # the answers were kept; only the judge ran again
    items = _items(out)
    assert all(i["scored"] for i in items.values())
    p1 = items["p1"]
    assert p1["verdicts"]["judge"]["verdict"] == "correct" and p1["verdicts"]["judge"]["rationale"]
    assert p1["metrics"]["accuracy_llm"] == 1.0 and p1["metrics"]["faithfulness"] == 1.0
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["meta"]["judge"] == "llm:judge" and not agg["meta"]["judge_approximate"]
    assert "faithfulness_approx" not in agg["metrics"] and agg["metrics"]["accuracy_llm"]["value"] == 1.0


def test_rescore_scores_stored_answers_again_without_asking(env: dict[str, str], fake: FakeLLMServer,
                                                            tmp_path: Path) -> None:
    run, again = tmp_path / "run", tmp_path / "rescored"
    assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(run)]) == 0
    # An older run's items: no note metrics yet, and a stale BLEU.
    old = _items(run)
    for r in old.values():
        r["metrics"] = {k: v for k, v in r["metrics"].items() if "note" not in k} | {"bleu": 0.123}
    (run / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old.values()))
    n = len(fake.requests)
    assert main(["eval", "qa", "--rescore", str(run)]) == 2  # --out is required: the run itself is kept
    assert main(["eval", "qa", "--rescore", str(run), "--out", str(again)]) == 0
    assert len(fake.requests) == n  # nothing asked
    new = _items(again)
    assert {k: r["answer"] for k, r in new.items()} == {k: r["answer"] for k, r in old.items()}
    assert new["p1"]["metrics"]["note_false_rate"] == 0.0 and new["p1"]["metrics"]["bleu"] != 0.123
    assert new["p1"]["metrics"]["latency_s"] == old["p1"]["metrics"]["latency_s"]  # kept as measured
    agg = json.loads((again / "aggregate.json").read_text())
    assert agg["meta"]["rescored_from"] == str(run) and "note_false_rate" in agg["metrics"]
    assert _items(run)["p1"]["metrics"]["bleu"] == 0.123  # the original folder is untouched


def test_rescore_without_the_support_gate_gives_back_the_refused_answers(env: dict[str, str], fake: FakeLLMServer,
                                                                         tmp_path: Path) -> None:
    run, ungated = tmp_path / "run", tmp_path / "ungated"
    assert main(["eval", "qa", "--dataset", env["DATASET"], "--out", str(run)]) == 0
    items = _items(run)
    # As the pipeline records a refusal by the support gate (app/pipeline.py `_check`): the refused answer in the trace.
    p1 = items["p1"]
    refused_answer = p1["answer"]
    p1["raw"]["trace"]["refused_off_topic"] = {"share": 0.2, "threshold": 0.555, "missing": ["x"],
                                               "answer": refused_answer}
    p1["raw"]["answer"] = p1["answer"] = "The knowledge base does not contain the answer."
    p1["raw"]["status"] = p1["status"] = "no_answer"
    (run / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items.values()))
    assert main(["eval", "qa", "--rescore", str(run), "--out", str(tmp_path / "same")]) == 0
    assert _items(tmp_path / "same")["p1"]["status"] == "no_answer"
    assert main(["eval", "qa", "--rescore", str(run), "--out", str(ungated), "--without-support-gate"]) == 0
    back = _items(ungated)
    assert back["p1"]["answer"] == refused_answer and back["p1"]["status"] == "answered"
    assert back["p1"]["metrics"]["accuracy"] == 1.0 and _items(tmp_path / "same")["p1"]["metrics"]["accuracy"] == 0.0
    assert {k: r["answer"] for k, r in back.items() if k != "p1"} == {k: r["answer"] for k, r in items.items()
                                                                     if k != "p1"}
