"""Latency of POST /ask on the sample corpus with the embedded model: per stage, sequential and concurrent.

Starts `ragqa serve` (which starts llama.cpp with the bundled model) over a collection of examples/corpus, asks the
answerable questions of examples/questions.jsonl (streamed: the time to the first word of the answer is measured as
a client sees it), and reports p50/p95 per stage from each answer's trace and the share of time spent outside the LLM
(the model's own tokens/s: bench/bench_llm.py). While each concurrency level
runs, a thread polls GET /healthz every 0.25 s: it must stay fast however many /ask requests are in flight.

    .venv/bin/python bench/bench_ask.py [--data DIR] [--concurrency 1 4 16] [--questions 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, write_results  # noqa: E402

LLM_STAGES = ("judge", "generate", "rewrite", "transforms")


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _serve(data: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAGQA_DATA_DIR=str(data), PYTHONPATH=str(REPO), RAGQA_LLM_TIMEOUT_S="1800",
               RAGQA_LLM_MAX_QUEUE="64")
    proc = subprocess.Popen([sys.executable, "-m", "ragqa.cli", "serve", "--port", str(port)], env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    base = f"http://127.0.0.1:{port}"
    for _ in range(900):
        if proc.poll() is not None:
            sys.exit(f"server died:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    sys.exit("server not ready in 900 s")


def _ask(base: str, q: str) -> dict[str, Any]:
    """One streamed /ask: the time to the first word of the answer (TTFT) and to the final event (wall)."""
    t = time.perf_counter()
    ttft, final, status, event = None, {"trace": {}}, 0, "message"
    with httpx.stream("POST", f"{base}/ask", json={"question": q, "stream": True}, timeout=3600) as r:
        status = r.status_code
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "message" and ttft is None:
                    ttft = time.perf_counter() - t
                elif event == "final":
                    final = json.loads(line[6:])
                elif event == "error":
                    status = 599
                event = "message"
    wall = time.perf_counter() - t
    return {"status": status, "wall": wall, "ttft": ttft if ttft is not None else wall,
            "answer_status": final.get("status"), "trace": final.get("trace", {})}


class _HealthPoller(threading.Thread):
    """GET /healthz every `every` seconds until stopped; keeps each latency (or the error)."""

    def __init__(self, base: str, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.base, self.every = base, every
        self.ms: list[float] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._halt.wait(self.every):
                t = time.perf_counter()
                try:
                    r = client.get(f"{self.base}/healthz")
                    if r.status_code != 200:
                        self.errors.append(f"HTTP {r.status_code}")
                    else:
                        self.ms.append((time.perf_counter() - t) * 1000)
                except httpx.HTTPError as e:
                    self.errors.append(repr(e))

    def stop(self) -> dict[str, Any]:
        self._halt.set()
        self.join()
        return {"polls": len(self.ms) + len(self.errors), "errors": len(self.errors),
                "p50_ms": round(_pct(self.ms, 0.5), 1), "p95_ms": round(_pct(self.ms, 0.95), 1),
                "max_ms": round(max(self.ms), 1) if self.ms else None}


def run(base: str, questions: list[str], concurrency: int) -> dict[str, Any]:
    poller = _HealthPoller(base)
    poller.start()
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda q: _ask(base, q), questions))
    elapsed = time.perf_counter() - t
    health = poller.stop()
    ok = [r for r in results if r["status"] == 200]
    stages: dict[str, list[float]] = {}
    for r in ok:
        for k, v in r["trace"].get("timings_ms", {}).items():
            stages.setdefault(k, []).append(v / 1000)
    llm = [sum(r["trace"].get("timings_ms", {}).get(s, 0) for s in LLM_STAGES) / 1000 for r in ok]
    totals = [r["trace"].get("timings_ms", {}).get("total", 0) / 1000 for r in ok]
    return {
        "concurrency": concurrency, "requests": len(results), "ok": len(ok),
        "codes": sorted({r["status"] for r in results}), "elapsed_s": round(elapsed, 1),
        "wall_p50_s": round(_pct([r["wall"] for r in ok], 0.5), 2),
        "wall_p95_s": round(_pct([r["wall"] for r in ok], 0.95), 2),
        "ttft_p50_s": round(_pct([r["ttft"] for r in ok], 0.5), 2),
        "ttft_p95_s": round(_pct([r["ttft"] for r in ok], 0.95), 2),
        "answer_status": {s: sum(1 for r in ok if r["answer_status"] == s) for s in {r["answer_status"] for r in ok}},
        "stages": {k: {"p50_ms": round(_pct(v, 0.5) * 1000, 1), "p95_ms": round(_pct(v, 0.95) * 1000, 1)}
                   for k, v in sorted(stages.items())},
        "outside_llm_share": round(1 - sum(llm) / sum(totals), 4) if sum(totals) else None,
        "outside_llm_p50_ms": round(_pct([tt - x for tt, x in zip(totals, llm, strict=True)], 0.5) * 1000, 1),
        "healthz": health,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("/tmp/ragqa-bench-ask"))
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--questions", type=int, default=8)
    args = ap.parse_args()
    if not (args.data / "collections" / "default").exists():
        subprocess.run([sys.executable, "-m", "ragqa.cli", "ingest", str(REPO / "examples" / "corpus")],
                       env=dict(os.environ, RAGQA_DATA_DIR=str(args.data), PYTHONPATH=str(REPO)), check=True)
    qs = [json.loads(x) for x in (REPO / "examples" / "questions.jsonl").read_text().splitlines() if x.strip()]
    questions = [q["question"] for q in qs if not q["unanswerable"] and not q.get("as_of")][: args.questions]
    proc, base = _serve(args.data, args.data / "serve.log")
    try:
        _ask(base, questions[0])  # warm-up: model load, first prompt
        out: dict[str, Any] = {"machine": machine(), "command": "bench/bench_ask.py " + " ".join(sys.argv[1:]),
                               "load_avg_start": os.getloadavg(), "runs": []}
        for c in args.concurrency:
            qset = (questions * ((c + len(questions) - 1) // len(questions)))[: max(c, len(questions))]
            out["runs"].append(run(base, qset, c))
        out["load_avg_end"] = os.getloadavg()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print("| concurrency | ok/requests | wall p50 s | wall p95 s | first token p50 s | retrieve p50 ms | judge p50 ms "
          "| generate p50 ms | outside LLM p50 ms | outside LLM share | /healthz p50 / max ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in out["runs"]:
        st, h = r["stages"], r["healthz"]
        share = f"{r['outside_llm_share']:.1%}" if r["outside_llm_share"] is not None else "-"
        print(f"| {r['concurrency']} | {r['ok']}/{r['requests']} | {r['wall_p50_s']} | {r['wall_p95_s']} | "
              f"{r['ttft_p50_s']} | "
              f"{st.get('retrieve', {}).get('p50_ms')} | {st.get('judge', {}).get('p50_ms')} | "
              f"{st.get('generate', {}).get('p50_ms')} | {r['outside_llm_p50_ms']} | {share} | "
              f"{h['p50_ms']} / {h['max_ms']} ({h['errors']} errors) |")
    print(f"wrote {write_results('ask', out)}")


if __name__ == "__main__":
    main()
