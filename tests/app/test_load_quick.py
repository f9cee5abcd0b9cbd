"""A short run of bench/bench_load.py: mixed uploads, searches, asks (degraded: no LLM) and job look-ups against a real
server on 127.0.0.1, then the check that nothing was lost. About 30 s; the full run: docs/reliability.md.
"""

from __future__ import annotations

import pytest

from bench.bench_load import Options, run

pytestmark = pytest.mark.slow


def test_a_short_mixed_load_loses_nothing() -> None:
    res = run(Options(duration_s=15, clients=3, rate=4, drain_s=120))
    assert res["violations"] == [], res["violations"]
    assert res["uploads_accepted"] >= 3 and res["files"]["final versions found"] >= 3, res["files"]
    assert res["files"].get("final versions lost", 0) == 0 and res["files"].get("refused uploads found", 0) == 0
    assert {o["op"] for o in res["ops"]} >= {"upload", "search", "ask"}
    assert res["asks"] and set(res["asks"]) <= {"retrieval_only", "no_answer", "refused 429", "refused 503"}
