"""Load test: uploads, searches, asks and job look-ups mixed against a real `ragqa serve`, then a check that nothing
was lost (issue 11, "also measure").

It starts its own server (127.0.0.1 only: no other address is ever contacted) over a fresh data folder, with the
embedded ingest worker, drives it from a few client threads at a fixed rate for `--duration` seconds, waits for the
job queue to drain, and checks:

- every accepted upload (202) ends in a finished job whose report lists each of its files, as indexed or as failed
  with a reason; for each stored name, the last version's unique token is found by /search and no earlier version's
  is (an update replaces its document); no token of a refused upload is ever found (all or nothing); the upload
  folder holds only files of accepted uploads, and no staging leftovers;
- every /ask answer is a refusal (no_answer, retrieval_only, 429, 503) or has citations whose markers appear in the
  answer and whose documents were retrieved;
- no 5xx other than a documented 503, and the server's memory (API process + worker) does not keep growing.

Names are drawn from a small pool, so the same name is uploaded again (an update), and client names that reduce to
the same safe name (`../x/note-3.md`, `/etc/note-3.md`) are mixed in; one upload in ten carries a bad file (empty or
`.exe`), so the whole request must be refused.

    .venv/bin/python bench/bench_load.py                       # 180 s, asks degrade: the LLM URL points at nothing
    .venv/bin/python bench/bench_load.py --duration 30 --quick  # short; results in bench/results/load-quick.json
    .venv/bin/python bench/bench_load.py --llm-url http://127.0.0.1:8001/v1   # a real OpenAI-compatible server
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import machine, md_table, write_results  # noqa: E402

HOST = "127.0.0.1"  # the only address this test ever talks to
COLLECTION = "load"
DEAD_LLM = f"http://{HOST}:9/v1"  # nothing listens there: asks degrade to retrieval
MIX = {"upload": 0.2, "search": 0.5, "ask": 0.2, "job": 0.1}


@dataclass
class Options:
    duration_s: float = 180.0
    clients: int = 4
    rate: float = 6.0  # requests per second, all clients together
    llm_url: str = DEAD_LLM
    seed: int = 11
    drain_s: float = 300.0
    names: int = 12  # size of the name pool: smaller means more updates


@dataclass
class Upload:
    job_id: int
    files: list[tuple[str, str, str]]  # (stored name, client name, token)


@dataclass
class State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: list[Upload] = field(default_factory=list)
    refused_tokens: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    asks: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)

    def violate(self, what: str) -> None:
        with self.lock:
            if len(self.violations) < 200:
                self.violations.append(what)


def start_server(data: Path, port: int, llm_url: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ, RAGQA_DATA_DIR=str(data), RAGQA_COLLECTION=COLLECTION, RAGQA_EMBEDDER="minilm-int8",
        RAGQA_CHUNK_LEVELS="[64, 256]", RAGQA_JOB_POLL_S="0.2", RAGQA_LLM_BASE_URL=llm_url, RAGQA_HOST=HOST,
        RAGQA_LLM_QUEUE_TIMEOUT_S="20", RAGQA_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
    )
    log = (data.parent / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ragqa.cli", "serve", "--host", HOST, "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((data.parent / "serve.log").read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 180 s")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _token(rng: random.Random) -> str:
    return "zq" + "".join(rng.choice("bcdfghjkmnpqrstvwxz") for _ in range(8))


class Client:
    def __init__(self, base: str, st: State, opts: Options, seed: int) -> None:
        self.base, self.st, self.opts = base, st, opts
        self.rng = random.Random(seed)
        self.http = httpx.Client(base_url=base, timeout=120)

    def _timed(self, op: str, method: str, url: str, **kw: Any) -> httpx.Response | None:
        t = time.perf_counter()
        try:
            r = self.http.request(method, url, **kw)
        except httpx.HTTPError as e:
            self.st.violate(f"{op}: {type(e).__name__}: {e}")
            return None
        with self.st.lock:
            self.st.latencies[op].append(time.perf_counter() - t)
            self.st.statuses[op][r.status_code] += 1
        if r.status_code >= 500 and not (op == "ask" and r.status_code == 503):
            self.st.violate(f"{op}: {r.status_code} {r.text[:200]}")
        return r

    def upload(self) -> None:
        rng, files, tokens = self.rng, [], []
        for _ in range(rng.choice((1, 1, 2, 3))):
            k = rng.randrange(self.opts.names)
            name = rng.choice((f"note-{k}.md", f"note-{k}.md", f"../x/note-{k}.md", f"/etc/note-{k}.md"))
            if any(n == name for n, _ in files):
                continue  # the same name twice in one request is a 409, tested elsewhere
            tok = _token(rng)
            files.append((name, f"# Note {k}\n\nThe {tok} setting of unit {k} is {rng.randrange(1000)}.\n".encode()))
            tokens.append(tok)
        bad = rng.random() < 0.1
        if bad:
            files.append(rng.choice((("empty.md", b""), ("tool.exe", b"MZ\x90\x00"))))
        r = self._timed("upload", "POST", f"/collections/{COLLECTION}/documents",
                        files=[("files", (n, b, "application/octet-stream")) for n, b in files])
        if r is None:
            return
        if r.status_code == 202:
            if bad:
                self.st.violate(f"upload with a bad file accepted: {r.text[:200]}")
            body = r.json()
            stored = body["files"]
            with self.st.lock:
                self.st.accepted.append(Upload(body["job_id"], [
                    (s, n, t) for s, (n, _), t in zip(stored, files, tokens, strict=False)]))
        elif r.status_code in (400, 415) and bad:
            with self.st.lock:
                self.st.refused_tokens.extend(tokens)
        else:
            self.st.violate(f"upload: unexpected {r.status_code} {r.text[:200]}")

    def _known_token(self) -> str:
        with self.st.lock:
            ups = self.st.accepted[-50:]
        return self.rng.choice(ups).files[0][2] if ups else _token(self.rng)

    def search(self) -> None:
        r = self._timed("search", "POST", "/search", json={"query": f"{self._known_token()} setting", "top_k": 5})
        if r is not None and r.status_code != 200:
            self.st.violate(f"search: {r.status_code} {r.text[:200]}")

    def ask(self) -> None:
        body = {"question": f"What is the {self._known_token()} setting of the unit?", "degrade_to_retrieval": True}
        r = self._timed("ask", "POST", "/ask", json=body)
        if r is None:
            return
        if r.status_code in (429, 503):
            with self.st.lock:
                self.st.asks[f"refused {r.status_code}"] += 1
            return
        if r.status_code != 200:
            self.st.violate(f"ask: {r.status_code} {r.text[:200]}")
            return
        a = r.json()
        with self.st.lock:
            self.st.asks[a["status"]] += 1
        if a["status"] in ("answered", "partial"):
            docs = {h["doc_id"] for h in a["retrieved"]}
            if not a["citations"]:
                self.st.violate(f"ask: {a['status']} without citations: {a['answer'][:200]}")
            for c in a["citations"]:
                if f"[{c['marker']}]" not in a["answer"] or c["doc_id"] not in docs:
                    self.st.violate(f"ask: citation {c['marker']} not in the answer or not retrieved")

    def job(self) -> None:
        with self.st.lock:
            ids = [u.job_id for u in self.st.accepted[-20:]]
        if ids:
            r = self._timed("job", "GET", f"/jobs/{self.rng.choice(ids)}")
            if r is not None and r.status_code != 200:
                self.st.violate(f"job: {r.status_code} {r.text[:200]}")

    def run(self, deadline: float, interval: float) -> None:
        ops, weights = list(MIX), list(MIX.values())
        next_at = time.monotonic() + self.rng.random() * interval
        while next_at < deadline:
            time.sleep(max(0.0, next_at - time.monotonic()))
            getattr(self, self.rng.choices(ops, weights)[0])()
            next_at += interval
        self.http.close()


def _tree_rss_mb(pid: int) -> float:
    """RSS of `pid` and all its descendants (the API process and its ingest worker), from /proc."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            status = (d / "status").read_text()
        except OSError:  # gone meanwhile
            continue
        parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        rss[int(d.name)] = next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:")), 0)
    tree, frontier = {pid}, [pid]
    while frontier:
        kids = [c for c, p in parent.items() if p in frontier and c not in tree]
        tree.update(kids)
        frontier = kids
    return sum(rss.get(p, 0) for p in tree) / 1024


def _sample_memory(pid: int, st: State, stop: threading.Event, t0: float) -> None:
    while not stop.wait(1.0):
        mb = _tree_rss_mb(pid)
        with st.lock:
            st.rss_mb.append((round(time.monotonic() - t0, 1), round(mb, 1)))


def _warm_up(base: str) -> None:
    """One upload first, waited for: the collection exists and the worker has loaded its model before the clock runs."""
    r = httpx.post(f"{base}/collections/{COLLECTION}/documents", timeout=60,
                   files=[("files", ("seed.md", b"# Seed\n\nThe seed setting of unit 0 is 1.\n", "text/markdown"))])
    r.raise_for_status()
    deadline = time.monotonic() + 300
    while httpx.get(f"{base}/jobs/{r.json()['job_id']}", timeout=30).json()["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            raise RuntimeError("the warm-up upload was not ingested in 300 s")
        time.sleep(0.3)


def _drain(base: str, st: State, timeout: float) -> tuple[float, dict[int, dict[str, Any]]]:
    t = time.monotonic()
    jobs: dict[int, dict[str, Any]] = {}
    pending = [u.job_id for u in st.accepted]
    while pending and time.monotonic() - t < timeout:
        still = []
        for jid in pending:
            j = httpx.get(f"{base}/jobs/{jid}", timeout=30).json()
            (still.append(jid) if j["status"] in ("queued", "running") else jobs.__setitem__(jid, j))
        pending = still
        if pending:
            time.sleep(1.0)
    for jid in pending:
        st.violate(f"job {jid} not finished {timeout:.0f} s after the load stopped")
    return time.monotonic() - t, jobs


def _found(base: str, token: str) -> bool:
    r = httpx.post(f"{base}/search", json={"query": token, "top_k": 5, "mode": "sparse"}, timeout=60)
    return r.status_code == 200 and any(token in h["text"] for h in r.json()["results"])


def _verify(base: str, data: Path, st: State, jobs: dict[int, dict[str, Any]]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    final: dict[str, tuple[int, str]] = {}  # stored name -> (job id, token) of its last accepted version
    superseded: list[str] = []
    for up in sorted(st.accepted, key=lambda u: u.job_id):
        job = jobs.get(up.job_id)
        if job is None:
            continue
        if job["status"] not in ("done", "failed"):
            st.violate(f"job {up.job_id} ended {job['status']}")
        report = {Path(f["path"]).name: f for f in (job.get("report") or {}).get("files", [])}
        for stored, _client, tok in up.files:
            counts["files accepted"] += 1
            entry = report.get(stored)
            if entry is None:
                st.violate(f"job {up.job_id} does not report {stored}")
                continue
            if entry["status"] == "failed":
                counts["files reported failed"] += 1
                if not entry.get("reason"):
                    st.violate(f"job {up.job_id}: {stored} failed without a reason")
            if stored in final:
                superseded.append(final[stored][1])
            final[stored] = (up.job_id, tok)
    for stored, (jid, tok) in final.items():
        if _found(base, tok):
            counts["final versions found"] += 1
        elif jobs[jid]["report"] and any(
            Path(f["path"]).name == stored and f["status"] == "failed" for f in jobs[jid]["report"]["files"]
        ):
            counts["final versions reported failed"] += 1
        else:
            counts["final versions lost"] += 1
            st.violate(f"{stored}: its last version (job {jid}, {tok}) is not found by /search")
    for tok in superseded:
        if _found(base, tok):
            counts["superseded versions still found"] += 1
            st.violate(f"an updated file's old version ({tok}) is still found")
    for tok in st.refused_tokens:
        if _found(base, tok):
            counts["refused uploads found"] += 1
            st.violate(f"a refused upload's file ({tok}) was indexed")
    folder = data / "uploads" / COLLECTION
    on_disk = {p.name for p in folder.iterdir()} - {"seed.md"} if folder.exists() else set()
    leftovers = {n for n in on_disk if n.startswith(".upload-")}
    orphans = {n for n in on_disk - leftovers if not n.endswith(".meta.json")} - set(final)
    for what, names in (("staging leftovers", leftovers), ("files of no accepted upload", orphans)):
        if names:
            st.violate(f"uploads/{COLLECTION}: {what}: {sorted(names)[:5]}")
    counts["stored names"] = len(final)
    counts["superseded versions"] = len(superseded)
    counts["refused uploads' files"] = len(st.refused_tokens)
    return dict(counts)


def _memory(st: State) -> dict[str, float]:
    mbs = [mb for _, mb in st.rss_mb]
    if len(mbs) < 6:
        return {"samples": len(mbs)}
    third = len(mbs) // 3
    first, last = mbs[:third], mbs[-third:]
    return {"samples": len(mbs), "start_mb": mbs[0], "peak_mb": max(mbs), "end_mb": mbs[-1],
            "first_third_median_mb": statistics.median(first), "last_third_median_mb": statistics.median(last),
            "growth_mb": round(statistics.median(last) - statistics.median(first), 1)}


def run(opts: Options, workdir: Path | None = None) -> dict[str, Any]:
    """Start a server, drive the load, drain, verify; return the results (violations included)."""
    if not opts.llm_url.startswith((f"http://{HOST}:", f"https://{HOST}:")):
        raise SystemExit(f"--llm-url must be on {HOST}: this test contacts no other address")
    tmp = tempfile.TemporaryDirectory(prefix="ragqa-load-") if workdir is None else None
    root = Path(tmp.name) if tmp else workdir
    assert root is not None
    data, port = root / "data", _free_port()
    base = f"http://{HOST}:{port}"
    proc = start_server(data, port, opts.llm_url)
    st, stop = State(), threading.Event()
    try:
        _warm_up(base)
        t0 = time.monotonic()
        sampler = threading.Thread(target=_sample_memory, args=(proc.pid, st, stop, t0), daemon=True)
        sampler.start()
        deadline = t0 + opts.duration_s
        interval = opts.clients / opts.rate
        threads = [threading.Thread(target=Client(base, st, opts, opts.seed * 1000 + i).run,
                                    args=(deadline, interval)) for i in range(opts.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        load_s = time.monotonic() - t0
        drain_s, jobs = _drain(base, st, opts.drain_s)
        stop.set()
        sampler.join()
        counts = _verify(base, data, st, jobs)
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if tmp:
            tmp.cleanup()
    ops = []
    for op in MIX:
        lat = sorted(st.latencies.get(op, []))
        if lat:
            ops.append({"op": op, "n": len(lat), "p50_ms": 1000 * lat[len(lat) // 2],
                        "p95_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.95))],
                        "statuses": " ".join(f"{k}:{v}" for k, v in sorted(st.statuses[op].items()))})
    return {
        "options": opts.__dict__ | {"llm_url": "none (degraded)" if opts.llm_url == DEAD_LLM else "given"},
        "machine": machine(), "load_s": round(load_s, 1), "drain_s": round(drain_s, 1),
        "uploads_accepted": len(st.accepted), "jobs": dict(Counter(j["status"] for j in jobs.values())),
        "files": counts, "asks": dict(st.asks), "ops": ops, "memory": _memory(st),
        "violations": st.violations,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=180.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rate", type=float, default=6.0, help="requests per second, all clients together")
    ap.add_argument("--llm-url", default=DEAD_LLM, help=f"an OpenAI-compatible server on {HOST} (default: none)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--quick", action="store_true", help="write bench/results/load-quick.json")
    a = ap.parse_args()
    res = run(Options(duration_s=a.duration, clients=a.clients, rate=a.rate, llm_url=a.llm_url, seed=a.seed))
    print(md_table(res["ops"], [("op", "op", "s"), ("n", "n", "d"), ("p50_ms", "p50 ms", ".0f"),
                                ("p95_ms", "p95 ms", ".0f"), ("statuses", "statuses", "s")]))
    print(json.dumps({k: res[k] for k in ("load_s", "drain_s", "uploads_accepted", "jobs", "files", "asks",
                                          "memory")}, indent=1))
    print(f"violations: {len(res['violations'])}")
    for v in res["violations"][:20]:
        print("  -", v)
    path = write_results("load-quick" if a.quick else "load", res)
    print(f"wrote {path}")
    sys.exit(1 if res["violations"] else 0)


if __name__ == "__main__":
    main()
