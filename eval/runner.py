"""Running an evaluation: build the collection through the real ingest pipeline, ask every question through the real
answer pipeline (in-process, or POST /ask on --server), judge, score, and write the run folder.

The run folder holds run.json (the configuration: a re-run with another one is refused), items.jsonl (one line per
question, appended as each finishes, so an interrupted run resumes where it stopped), aggregate.json and the reports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.pipeline import PipelineConfig
from app.service import SearchService
from eval import metrics as M
from eval.datasets import BeirData, DatasetOptions, QADataset, QAItem, load_beir, load_dataset, select
from eval.judge import ApproxJudge, Judge, JudgeInput, LLMJudge, label_metrics, rule_verdict
from ingest.chunking import ChunkingSettings
from ingest.pipeline import IngestOptions, Ingestor
from retrieval.search import HybridRetriever, SearchParams
from retrieval.store import SearchFilter
from retrieval.types import ScoredChunk

if TYPE_CHECKING:
    from retrieval.embedders import Embedder

SEARCH_KEYS = ("mode", "fusion", "rrf_k", "weights", "level", "candidates")
ASK_KEYS = ("top_k", "max_rounds", "hyde", "multi_query")
PIPELINE_KEYS = tuple(f.name for f in fields(PipelineConfig))
RETRIEVAL_KS = (1, 5, 10, 100)


def load_config(path: Path | None) -> dict[str, Any]:
    """A JSON or TOML file of SearchParams fields, `embedder`, ask options and PipelineConfig fields (flat, or under
    [search] / [ask] / [pipeline])."""
    if path is None:
        return {}
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        import tomllib

        raw = tomllib.loads(text)
    else:
        raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError(f"config {path} must hold an object, got {type(raw).__name__}")
    flat: dict[str, Any] = {}
    for k, v in raw.items():
        if k in ("search", "ask", "pipeline") and isinstance(v, dict):
            flat.update(v)
        else:
            flat[k] = v
    known = set(SEARCH_KEYS) | set(ASK_KEYS) | set(PIPELINE_KEYS) | {"embedder"}
    unknown = sorted(set(flat) - known)
    if unknown:
        raise ValueError(f"config {path}: unknown keys {unknown}; known: {sorted(known)}")
    if "weights" in flat:
        flat["weights"] = tuple(flat["weights"])
    search_params(flat)  # fail now on a bad value, not after ingesting
    return flat


def search_params(cfg: dict[str, Any]) -> SearchParams:
    return SearchParams(**{k: cfg[k] for k in SEARCH_KEYS if k in cfg})


def collection_name(dataset: str, embedder: str) -> str:
    emb = "".join(c if c.isalnum() or c in "-_." else "-" for c in embedder.split("/")[-1])
    return f"eval-{dataset}-{emb}"[:64].rstrip("-.")


def hardware() -> dict[str, Any]:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version(), "load_avg": list(os.getloadavg())}


# ---- building the collection -------------------------------------------------------------------------------------


@dataclass
class Built:
    name: str
    embedder: str
    summary: dict[str, int]
    seconds: float
    sources: dict[str, str] = field(default_factory=dict)  # stored source path -> doc_id
    encoder: Embedder | None = None  # the loaded model, for searching the collection without loading it again

    def resolve(self, refs: Sequence[str]) -> list[str]:
        """doc_ids for source references: record keys exactly, file names by their last path component(s)."""
        out = []
        for ref in refs:
            if ref in self.sources:
                out.append(self.sources[ref])
                continue
            out += [d for s, d in self.sources.items() if s.endswith("/" + ref)]
        return list(dict.fromkeys(out))


def build_collection(ds: QADataset | BeirData, data_dir: Path, name: str, embedder_spec: str,
                     chunking: ChunkingSettings, corpus_dir: Path | None = None, workers: int = 1) -> Built:
    """Ingest the data set's documents (incremental: unchanged documents cost a hash) and map sources to doc_ids."""
    from ingest.cli import open_collection, resolve_chunking
    from ingest.language import resolve_embedder
    from retrieval.collection import Collection
    from retrieval.embedders import get_embedder

    t = time.perf_counter()
    summary: dict[str, int] = {}
    col = Collection(data_dir, name)
    records = ds.corpus if isinstance(ds, BeirData) else ds.records
    with col.write_lock():
        # A generator: read only if "auto" has a new collection to decide for.
        files = ds.files[:50] if isinstance(ds, QADataset) else ()
        texts = chain((r.text[:2000] for r in islice(records, 200)),
                      (f.data[:2000].decode("utf-8", "ignore") for f in files))
        folders = list(ds.folders) if isinstance(ds, QADataset) else []
        emb = get_embedder(resolve_embedder(data_dir, name, embedder_spec, folders, texts))
        chunking = resolve_chunking(data_dir, name, chunking)  # a collection built before keeps its chunk levels
        col = open_collection(data_dir, name, emb, chunking, create=True)
        ingestor = Ingestor(col, emb, chunking, IngestOptions(workers=workers))
        reports = []
        if records:
            reports.append(ingestor.ingest_records(_progress(records, "ingest")))
        if isinstance(ds, QADataset):
            paths = list(ds.folders)
            if ds.files:
                if corpus_dir is None:
                    raise ValueError("this data set renders files: a corpus folder is needed")
                for f in ds.files:
                    p = corpus_dir / f.name
                    p.parent.mkdir(parents=True, exist_ok=True)
                    if not p.exists() or p.read_bytes() != f.data:  # rewriting would change mtime: a re-read
                        p.write_bytes(f.data)
                paths.append(corpus_dir)
            if paths:
                reports.append(ingestor.ingest_paths(paths))
        for r in reports:
            for k, v in r.summary().items():
                summary[k] = summary.get(k, 0) + v
        sources = {s: d.doc_id for d in col.store.documents() for s in (d.sources or (d.source_path,))}
        failed = [f"{r.path}: {r.reason}" for rep in reports for r in rep.failed]
        col.close()
    if failed:
        print(f"warning: {len(failed)} documents failed to ingest, e.g. {failed[0]}", file=sys.stderr)
    return Built(name, emb.name, summary, time.perf_counter() - t, sources, emb)


def _progress(seq: Sequence[Any], desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(seq, desc=desc, unit="doc", file=sys.stderr, disable=len(seq) < 50, mininterval=2.0)


# ---- in-process search with the run's SearchParams ---------------------------------------------------------------


class _ConfiguredRetriever(HybridRetriever):
    """The pipeline builds SearchParams with defaults; this applies the run's configuration, keeping the pipeline's
    filter and any mode it chose itself (HyDE searches dense)."""

    def search(self, query: str, top_k: int = 10, params: SearchParams | None = None,
               query_vector: np.ndarray | None = None) -> list[ScoredChunk]:
        p = params or SearchParams()
        merged = replace(self.params, filter=p.filter, mode=p.mode if p.mode != "hybrid" else self.params.mode)
        return super().search(query, top_k=top_k, params=merged, query_vector=query_vector)


class _ConfiguredService(SearchService):
    def __init__(self, data_dir: Path, params: SearchParams) -> None:
        super().__init__(data_dir)
        self._params = params
        self._configured: dict[str, HybridRetriever] = {}

    def retriever(self, name: str) -> HybridRetriever:
        base = super().retriever(name)
        if name not in self._configured:
            self._configured[name] = _ConfiguredRetriever(base.collection, base.embedder, base.analyzer, self._params)
        return self._configured[name]


# ---- QA runs -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QARun:
    dataset: str
    out: Path
    options: DatasetOptions = DatasetOptions()
    limit: int | None = None
    seed: int = 0
    sample: tuple[tuple[str, int], ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    collection: str | None = None
    server: str | None = None
    judge_url: str | None = None
    judge_model: str | None = None
    judge_style: str = "both"
    concurrency: int = 1
    fail_under: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if bool(self.judge_url) != bool(self.judge_model):
            raise ValueError(f"--judge-url and --judge-model go together, got {self.judge_url!r}, {self.judge_model!r}")

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a re-run to continue this run folder."""
        opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.options).items()}
        return {"dataset": self.dataset, "options": opts, "limit": self.limit, "seed": self.seed,
                "sample": [list(s) for s in self.sample], "config": self.config, "collection": self.collection,
                "server": self.server, "judge": self.judge_model}


def read_items(path: Path) -> dict[str, dict[str, Any]]:
    """The last record of each item id (a retried item appends a newer line)."""
    out: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash: that item is asked again
                out[str(rec["id"])] = rec
    return out


def repair_tail(path: Path) -> None:
    """Drop a last line cut short by a crash, so the next record starts on a line of its own."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _check_run_folder(run: QARun) -> None:
    run.out.mkdir(parents=True, exist_ok=True)
    path = run.out / "run.json"
    fp = json.loads(json.dumps(run.fingerprint()))
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != fp:
            diff = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
            raise ValueError(f"{run.out} holds a run with another configuration (differs in {diff}); "
                             "use another --out")
    else:
        path.write_text(json.dumps(fp, indent=2, ensure_ascii=False), encoding="utf-8")


class _Asker:
    """One question to the answer pipeline, in-process or over HTTP; returns answer_json's dict."""

    def __init__(self, run: QARun, settings: Any, service: SearchService) -> None:
        self.run, self.settings, self.service = run, settings, service
        self.embedded: Any = None
        self.pipeline: Any = None
        self.http: Any = None
        self.model = ""
        self.reranker: str | None = None

    def start(self) -> None:
        if self.run.server:
            import httpx

            key = os.environ.get("RAGQA_EVAL_SERVER_KEY")  # the server's API key, when it has RAGQA_API_KEYS
            self.http = httpx.AsyncClient(base_url=self.run.server.rstrip("/"), timeout=self.settings.llm_timeout_s * 4,
                                          headers={"Authorization": f"Bearer {key}"} if key else None)
            self.model = f"server:{self.run.server}"
            return
        from app.components import build_llm, build_reranker, pipeline_config
        from app.pipeline import AnswerPipeline

        client, self.embedded = build_llm(self.settings)
        cfg = pipeline_config(self.settings, **{k: v for k, v in self.run.config.items() if k in PIPELINE_KEYS})
        # The same re-ranker the server would build from these settings: in-process must measure the same system.
        reranker = build_reranker(self.settings, client)
        self.pipeline = AnswerPipeline(self.service, client, cfg, reranker=reranker)
        self.reranker = type(reranker).__name__ if reranker is not None else None
        self.model = (f"{self.settings.llm_model} at {self.settings.llm_base_url}" if self.settings.llm_base_url
                      else f"embedded {self.settings.llm_embedded_model}")

    async def ask(self, item: QAItem, collection: str, doc_ids: list[str]) -> dict[str, Any]:
        c = self.run.config
        opts = {"top_k": c.get("top_k", 6), "max_rounds": c.get("max_rounds", 3), "hyde": c.get("hyde", False),
                "multi_query": c.get("multi_query", False), "as_of": item.as_of}
        if self.http is not None:
            body: dict[str, Any] = {"question": item.question, "collection": collection, **opts}
            if doc_ids:
                body["filters"] = {"doc_ids": doc_ids}
            r = await self.http.post("/ask", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"POST /ask: HTTP {r.status_code}: {r.text[:300]}")
            out: dict[str, Any] = r.json()
            return out
        from app.pipeline import AskRequest
        from retrieval.types import answer_dict

        req = AskRequest(question=item.question, collection=collection, filter=SearchFilter(doc_ids=tuple(doc_ids)),
                         **opts)
        return answer_dict(await self.pipeline.answer(req))

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.pipeline is not None:
            await self.pipeline.llm.aclose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


def _context(service: SearchService, collection: str, ans: dict[str, Any], cfg: PipelineConfig
             ) -> tuple[list[str], dict[int, str]]:
    """The passages the model read and the text of each cited passage by marker: from the answer's trace, or for an
    answer that has none (a server of an older version), rebuilt from the retrieved hits (small-to-big is
    deterministic)."""
    from retrieval.expand import expand

    read = ((ans.get("trace") or {}).get("evidence") or {}).get("passages")
    if isinstance(read, list):
        texts = {int(p["marker"]): str(p["text"]) for p in read}
        return [texts[m] for m in sorted(texts)], {
            int(c["marker"]): texts.get(int(c["marker"])) or str(c.get("quote", "")) for c in ans.get("citations", [])}
    store = service.retriever(collection).collection.store
    by_id = {c.chunk_id: c for c in store.chunks([h["chunk_id"] for h in ans.get("retrieved", [])])}
    hits = [ScoredChunk(by_id[h["chunk_id"]], float(h["score"])) for h in ans.get("retrieved", [])
            if h["chunk_id"] in by_id]
    passages = expand(store, hits, cfg.context_tokens, cfg.max_passage_tokens) if hits else []
    cited: dict[int, str] = {}
    for c in ans.get("citations", []):
        m = int(c["marker"])
        if 1 <= m <= len(passages) and c["chunk_id"] in passages[m - 1].chunk_ids:
            cited[m] = passages[m - 1].text
        else:  # a conflict note's citation, or a passage re-expanded differently: the chunk itself
            chunk = store.chunks([c["chunk_id"]])
            cited[m] = chunk[0].text if chunk else str(c.get("quote", ""))
    return [p.text for p in passages], cited


async def _judge_item(judge: Judge, item: QAItem, rec: dict[str, Any], service: SearchService, collection: str,
                      cfg: PipelineConfig) -> None:
    ans = rec["raw"]
    try:
        context, cited = await asyncio.to_thread(_context, service, collection, ans, cfg)
        v = await judge.judge(JudgeInput(item.question, item.answers, item.unanswerable, ans.get("answer", ""),
                                         ans.get("status", ""), tuple(context), cited))
    except Exception as e:  # a judge failure (JudgeError or other) costs this item's judged metrics, not the run
        rec["errors"]["judge"] = f"{type(e).__name__}: {e}"
        return
    rec["errors"]["judge"] = None
    rec["verdicts"]["judge"] = v
    suffix = "_approx" if judge.approximate else ""
    for k in ("faithfulness", "citation_recall", "citation_precision"):
        if v.get(k) is not None:
            rec["metrics"][k + suffix] = float(v[k])
    if "verdict" in v:
        label = M.crag_label(v["verdict"] == "correct", v["verdict"] == "missing", False) if not item.unanswerable \
            else ("correct" if v["verdict"] in ("correct", "missing") else "wrong")
        rec["verdicts"]["judge"]["label"] = label
        rec["metrics"].update(label_metrics(label, "_llm"))


def _score(item: QAItem, ans: dict[str, Any], gold_docs: list[str]) -> tuple[dict[str, float], dict[str, Any]]:
    r = rule_verdict(item, ans.get("answer", ""), ans.get("status", ""))
    m = dict(r.metrics)
    if gold_docs:
        got = {h["doc_id"] for h in ans.get("retrieved", [])}
        m["evidence_recall"] = len(got & set(gold_docs)) / len(set(gold_docs))
        if ans.get("status") != "no_answer" and not item.unanswerable:
            m["cited_gold"] = float(any(c["doc_id"] in gold_docs for c in ans.get("citations", [])))
    return m, {"label": r.label, "rationale": r.rationale}


def _record(item: QAItem, ans: dict[str, Any] | None, error: str | None, latency: float) -> dict[str, Any]:
    a = ans or {}
    return {
        "id": item.id, "question": item.question, "lang": item.lang, "categories": item.categories,
        "gold": {"answers": list(item.answers), "unanswerable": item.unanswerable, "sources": list(item.gold_sources)},
        "answer": a.get("answer"), "status": a.get("status"),
        "citations": [{k: c.get(k) for k in ("marker", "doc_id", "source_path", "page", "quote", "support_score")}
                      for c in a.get("citations", [])],
        "retrieved": [{k: h.get(k) for k in ("doc_id", "source_path", "score")} for h in a.get("retrieved", [])],
        "conflicts": len(a.get("conflicts", [])), "knowledge_cutoff": a.get("knowledge_cutoff"),
        "verdicts": {}, "metrics": {}, "latency_s": round(latency, 3),
        "timings_ms": (a.get("trace") or {}).get("timings_ms", {}), "usage": a.get("usage", {}),
        "errors": {"ask": error, "judge": None}, "scored": False,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "raw": ans,
    }


async def _run_items(run: QARun, todo: list[tuple[QAItem, dict[str, Any] | None]], built: Built, asker: _Asker,
                     judge: Judge, service: SearchService, items_path: Path) -> None:
    from tqdm import tqdm

    cfg = PipelineConfig(**{k: run.config[k] for k in PIPELINE_KEYS if k in run.config})
    sem = asyncio.Semaphore(run.concurrency)
    bar = tqdm(total=len(todo), desc="questions", unit="q", file=sys.stderr, dynamic_ncols=True)
    errors = 0

    async def one(item: QAItem, prev: dict[str, Any] | None) -> None:
        nonlocal errors
        async with sem:
            if prev is not None and prev.get("raw") and not prev["errors"].get("ask"):
                rec = prev  # answered before, only the judge failed: judge again, don't ask again
            else:
                doc_ids = built.resolve(item.scope)
                t = time.perf_counter()
                ans, err = None, None
                if item.scope and not doc_ids:
                    err = f"none of the scoped documents were ingested: {list(item.scope)[:3]}"
                else:
                    try:
                        ans = await asker.ask(item, built.name, doc_ids)
                    except Exception as e:  # an LLM or server failure costs this item, not the run
                        err = f"{type(e).__name__}: {e}"
                rec = _record(item, ans, err, time.perf_counter() - t)
            if rec["raw"] is not None:
                rec["metrics"], rec["verdicts"]["rule"] = _score(item, rec["raw"], built.resolve(item.gold_sources))
                rec["metrics"]["latency_s"] = rec["latency_s"]
                await _judge_item(judge, item, rec, service, built.name, cfg)
            rec["scored"] = not rec["errors"]["ask"] and not rec["errors"]["judge"]
            errors += not rec["scored"]
            with items_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())
            bar.update(1)
            bar.set_postfix_str(f"errors={errors}")

    try:
        await asyncio.gather(*(one(i, p) for i, p in todo))
    finally:
        bar.close()


def run_qa(run: QARun, settings: Any) -> int:
    from eval import report

    t0 = time.perf_counter()
    _check_run_folder(run)
    dataset = load_dataset(run.dataset, run.options)
    items = select(dataset.items, run.limit, run.seed, run.sample)
    ds = dataset.for_items(items)
    embedder = str(run.config.get("embedder") or settings.embedder)
    name = run.collection or collection_name(ds.name, embedder)
    chunking = ChunkingSettings(levels=settings.chunk_levels, overlap=settings.chunk_overlap)
    print(f"{ds.name}: {len(items)} of {len(dataset.items)} questions; collection {name!r}", file=sys.stderr)
    # Rendered documents (TAT-QA tables) go beside the collection, not into the run folder: run folders are
    # committed, and the data sets' text must not be copied into the repository wholesale.
    built = build_collection(ds, settings.data_dir, name, embedder, chunking, settings.data_dir / "eval-corpus" / name,
                             settings.ingest_workers)
    print(f"ingest: {built.summary} in {built.seconds:.1f}s", file=sys.stderr)
    items_path = run.out / "items.jsonl"
    repair_tail(items_path)
    done = read_items(items_path)
    todo = [(i, done.get(i.id)) for i in items if not done.get(i.id, {}).get("scored")]
    params = search_params(run.config)
    if run.server and any(k in run.config for k in SEARCH_KEYS + PIPELINE_KEYS):
        print("warning: with --server, search and pipeline settings are the server's; the config's are ignored",
              file=sys.stderr)
    service = _ConfiguredService(settings.data_dir, params) if not run.server and any(
        k in run.config for k in SEARCH_KEYS) else SearchService(settings.data_dir)
    asker = _Asker(run, settings, service)
    judge: Judge
    if run.judge_url and run.judge_model:
        from app.llm.client import LLMClient

        key = os.environ.get("RAGQA_JUDGE_API_KEY")
        judge = LLMJudge(LLMClient(run.judge_url, run.judge_model, api_key=key, timeout=settings.llm_timeout_s,
                                   structured_style=run.judge_style))  # type: ignore[arg-type]
    else:
        from app.citations import SupportScorer

        judge = ApproxJudge(SupportScorer(service.analyzer), service.retriever(name).embedder)
    t_ask = time.perf_counter()
    if todo:
        print(f"{len(items) - len(todo)} already scored; asking {len(todo)}", file=sys.stderr)
        asker.start()

        async def main() -> None:
            try:
                await _run_items(run, todo, built, asker, judge, service, items_path)
            finally:
                await asker.close()
                if isinstance(judge, LLMJudge):
                    await judge.client.aclose()

        asyncio.run(main())
    records = read_items(items_path)
    selected = [records[i.id] for i in items if i.id in records]
    meta = {
        "dataset": run.dataset, "name": ds.name, "run": run.fingerprint(), "collection": name,
        "embedder": built.embedder, "model": asker.model or "(all items resumed)",
        "reranker": asker.reranker, "judge": judge.name,
        "judge_approximate": judge.approximate, "hardware": hardware(),
        "timings_s": {"ingest": round(built.seconds, 1), "answer_and_judge": round(time.perf_counter() - t_ask, 1),
                      "total": round(time.perf_counter() - t0, 1)},
        "ingest": built.summary, "questions": len(items),
    }
    agg = report.aggregate(selected, meta, seed=run.seed)
    report.write_run(run.out, agg, selected)
    print(report.summary_text(agg))
    return check_fail_under(agg, run.fail_under)


def rescore(run_dir: Path, out: Path, seed: int = 0, without_support_gate: bool = False) -> dict[str, Any]:
    """Score a run's stored answers again with today's rule metrics (BLEU, ROUGE-L, the note rates...) into `out`,
    without asking anything: the answers, judge verdicts, retrieval figures and latencies stay as they were. The
    items come from the data set named in the run's run.json, matched by id.

    `without_support_gate`: the run as it would have been with the support gate after generation off
    (app/support_gate.py; PipelineConfig.min_cited_share = 0): each answer it refused gets back the answer it refused,
    which its trace keeps. The stages before the gate do not depend on it, so this is the gate-off run, paired item by
    item with the gate-on one for `--compare`; the refused answers' citations are not kept, so their judge figures are
    not restored."""
    from eval import report

    fp = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    opts: dict[str, Any] = dict(fp.get("options") or {})  # as run.json stores them: a path as text, tuples as lists
    if opts.get("corpus"):
        opts["corpus"] = Path(opts["corpus"])
    if "noise_ratios" in opts:
        opts["noise_ratios"] = tuple(opts["noise_ratios"])
    options = DatasetOptions(**opts)
    by_id = {i.id: i for i in load_dataset(fp["dataset"], options).items}
    records = list(read_items(run_dir / "items.jsonl").values())
    missing = [r["id"] for r in records if r["id"] not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} items of {run_dir} are not in {fp['dataset']}, e.g. {missing[0]!r}")
    for r in records:
        gated = ((r.get("raw") or {}).get("trace") or {}).get("refused_off_topic")
        if without_support_gate and gated and "answer" in gated:
            r["raw"] = {**r["raw"], "answer": gated["answer"], "status": "answered"}
            r["answer"], r["status"] = gated["answer"], "answered"
        if r.get("raw") is not None:
            v = rule_verdict(by_id[r["id"]], r["raw"].get("answer", ""), r["raw"].get("status", ""))
            r["metrics"] = {**r["metrics"], **v.metrics}
            r["verdicts"]["rule"] = {"label": v.label, "rationale": v.rationale}
    agg_path = run_dir / "aggregate.json"  # absent while a run is unfinished: its items so far are rescored
    old = json.loads(agg_path.read_text(encoding="utf-8")) if agg_path.exists() else {}
    meta = {**old.get("meta", {}), "rescored_from": str(run_dir),
            "rescored_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(fp, indent=2, ensure_ascii=False), encoding="utf-8")
    with (out / "items.jsonl").open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    agg = report.aggregate(records, meta, seed=seed)
    report.write_run(out, agg, records)
    return agg


def check_fail_under(agg: dict[str, Any], thresholds: Sequence[tuple[str, float]]) -> int:
    rc = 0
    for name, value in thresholds:
        m = agg["metrics"].get(name)
        if m is None:
            raise ValueError(f"--fail-under: no metric {name!r} in this run; metrics: {sorted(agg['metrics'])}")
        if m["value"] is None or m["value"] < value:
            print(f"FAIL: {name} = {m['value']} < {value}", file=sys.stderr)
            rc = 1
    return rc


# ---- retrieval runs ------------------------------------------------------------------------------------------------


def doc_ranking(hits: Sequence[ScoredChunk], doc_keys: dict[str, list[str]], depth: int = 100) -> list[str]:
    """Chunk hits collapsed to their documents, each at its best chunk's rank (hits come best first)."""
    out: list[str] = []
    seen: set[str] = set()
    for h in hits:
        for key in doc_keys.get(h.chunk.doc_id, [h.chunk.source_path]):
            if key not in seen:
                seen.add(key)
                out.append(key)
        if len(out) >= depth:
            break
    return out[:depth]


def run_retrieval(folder: Path, settings: Any, *, split: str = "test", config: dict[str, Any] | None = None,
                  collection: str | None = None, limit: int | None = None, seed: int = 0,
                  out: Path | None = None, fail_under: Sequence[tuple[str, float]] = ()) -> int:
    from tqdm import tqdm

    from eval import report
    from retrieval.analyzer import Analyzer
    from retrieval.collection import Collection

    t0 = time.perf_counter()
    cfg = config or {}
    data = load_beir(folder, split)
    qids = sorted(data.queries)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        rng = np.random.default_rng(seed)
        qids = sorted(rng.choice(qids, size=min(limit, len(qids)), replace=False).tolist())
    embedder = str(cfg.get("embedder") or settings.embedder)
    name = collection or collection_name(data.name, embedder)
    chunking = ChunkingSettings(levels=settings.chunk_levels, overlap=settings.chunk_overlap)
    print(f"{data.name}: {len(data.corpus)} documents, {len(qids)} queries ({split}); collection {name!r}",
          file=sys.stderr)
    built = build_collection(data, settings.data_dir, name, embedder, chunking)
    print(f"ingest: {built.summary} in {built.seconds:.1f}s", file=sys.stderr)
    col = Collection(settings.data_dir, name).open()
    assert built.encoder is not None
    retriever = HybridRetriever(col, built.encoder, Analyzer())
    doc_keys: dict[str, list[str]] = {}
    for src, doc_id in built.sources.items():
        doc_keys.setdefault(doc_id, []).append(src.removeprefix("beir:"))
    params = search_params(cfg)
    # A top-100 document ranking needs many more chunks than documents: search that deep in both retrievers.
    chunk_k = 1000
    params = replace(params, candidates=max(params.candidates, chunk_k))
    records = []
    t_q = time.perf_counter()
    for qid in tqdm(qids, desc="queries", unit="q", file=sys.stderr, dynamic_ncols=True):
        t = time.perf_counter()
        hits = retriever.search(data.queries[qid], top_k=chunk_k, params=params)
        ranking = doc_ranking(hits, doc_keys)
        qrels = data.qrels[qid]
        m = {"ndcg@10": M.ndcg_at_k(ranking, qrels, 10), "mrr@10": M.mrr_at_k(ranking, qrels, 10),
             "map": M.average_precision(ranking, qrels),
             **{f"recall@{k}": M.recall_at_k(ranking, qrels, k) for k in RETRIEVAL_KS},
             "latency_s": time.perf_counter() - t}
        records.append({"id": qid, "question": data.queries[qid], "categories": {}, "metrics": m,
                        "ranking": ranking[:10], "gold": {"qrels": qrels}, "scored": True, "errors": {},
                        "latency_s": m["latency_s"]})
    col.close()
    meta = {"dataset": f"beir:{folder}", "name": data.name, "split": split, "collection": name,
            "embedder": built.embedder, "search": {**asdict(params), "filter": None}, "config": cfg,
            "hardware": hardware(), "questions": len(qids), "ingest": built.summary, "judge": None,
            "timings_s": {"ingest": round(built.seconds, 1), "queries": round(time.perf_counter() - t_q, 1),
                          "total": round(time.perf_counter() - t0, 1)}}
    agg = report.aggregate(records, meta, seed=seed, kind="retrieval")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with (out / "items.jsonl").open("w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        report.write_run(out, agg, records)
    print(report.summary_text(agg))
    return check_fail_under(agg, fail_under)
