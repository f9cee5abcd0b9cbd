"""Prompt-processing and generation speed of the bundled GGUF models behind the embedded llama.cpp server.

    .venv/bin/python bench/bench_llm.py [--models qwen2.5-0.5b qwen2.5-1.5b] [--threads 2]
    .venv/bin/python bench/bench_llm.py --models qwen2.5-1.5b --build portable= \
        --build avx512=.venv/llama-builds/avx512 --build native=/tmp/native-site --rounds 3
                                        # A/B llama.cpp builds, interleaved, medians of 3 rounds

A build is a folder that holds another `llama_cpp` package (an unpacked wheel), put first on the model server's
PYTHONPATH; `NAME=` (empty) is the one installed in the venv. Without --build: the build the server picks itself.

Speeds come from llama.cpp's own timing lines in the server log (llama_perf_context_print), so HTTP and
Python overhead are excluded; the wall time of the request is reported beside them. The machine's load
average is recorded too: on shared cores it moves the numbers a lot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.llm.assets import default_cache_dir, ensure_model  # noqa: E402
from app.llm.builds import PORTABLE, BuildChoice, LlamaBuild  # noqa: E402
from app.llm.embedded import EmbeddedLLMServer  # noqa: E402

_PERF = re.compile(
    r"llama_perf_context_print:\s+(prompt eval|eval) time =\s+([\d.]+) ms /\s+(\d+) (?:tokens|runs)"
)
_TEXT = (
    "The team keeps its design notes, meeting minutes and runbooks in a shared folder. "
    "Each document has a title, an owner, a date and a short summary. "
)


def _perf(log_text: str) -> dict[str, tuple[float, int]]:
    """The last prompt-eval and eval timings in the log: {"prompt eval": (ms, n), "eval": (ms, n)}."""
    out: dict[str, tuple[float, int]] = {}
    for kind, ms, n in _PERF.findall(log_text):
        out[kind] = (float(ms), int(n))
    return out


def bench_model(
    name: str, threads: int, cache: Path, prompt_repeats: int, gen_tokens: int, site: str | None = None
) -> dict[str, object]:
    # A .gguf path is benchmarked as it is (a requantised model: scripts/requantize_gguf.py).
    path = Path(name) if name.endswith(".gguf") else ensure_model(name, cache)  # type: ignore[arg-type]
    build: BuildChoice | list[LlamaBuild] = "auto"
    if site is not None:
        build = [LlamaBuild(f"site {site}", Path(site)) if site else PORTABLE]
    return _bench(name, path, threads, prompt_repeats, gen_tokens, build)


def _bench(name: str, path: Path, threads: int, prompt_repeats: int, gen_tokens: int,
           build: BuildChoice | list[LlamaBuild]) -> dict[str, object]:
    t0 = time.monotonic()
    with EmbeddedLLMServer(path, n_ctx=2048, n_threads=threads, build=build) as srv:
        load_s = time.monotonic() - t0
        client = srv.client(timeout=600.0)
        client.chat_sync([{"role": "user", "content": "Hi"}], max_tokens=2)  # warm-up
        # A prompt unlike the warm-up so the server's prefix cache cannot skip the work.
        prompt = f"Run {time.time_ns()}. " + _TEXT * prompt_repeats + "Summarise the folder's purpose."
        t1 = time.monotonic()
        res = client.chat_sync([{"role": "user", "content": prompt}], max_tokens=gen_tokens)
        wall = time.monotonic() - t1
        assert srv.log_path is not None
        perf = _perf(srv.log_path.read_text(encoding="utf-8", errors="replace"))
    pp_ms, pp_n = perf.get("prompt eval", (0.0, 0))
    tg_ms, tg_n = perf.get("eval", (0.0, 0))
    return {
        "model": name,
        "file": path.name,
        "threads": threads,
        "server_start_s": round(load_s, 2),
        "prompt_tokens": res.usage.prompt_tokens,
        "completion_tokens": res.usage.completion_tokens,
        "prompt_tokens_per_s": round(pp_n / (pp_ms / 1000), 2) if pp_ms else None,
        "generation_tokens_per_s": round(tg_n / (tg_ms / 1000), 2) if tg_ms else None,
        "request_wall_s": round(wall, 2),
        "llama_build": srv.build.name,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["qwen2.5-0.5b", "qwen2.5-1.5b"],
                    help="bundled model names or .gguf files")
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--cache", type=Path, default=default_cache_dir())
    ap.add_argument("--prompt-repeats", type=int, default=6, help="repeats of a ~30-token paragraph")
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "llm.json")
    ap.add_argument("--build", action="append", default=[], metavar="NAME=SITEDIR",
                    help="a llama.cpp build to compare (repeatable); NAME= is the venv's own")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds per build; medians are reported")
    args = ap.parse_args(argv)
    builds: list[tuple[str, str | None]] = [(b.split("=", 1)[0], b.split("=", 1)[1]) for b in args.build]
    builds = builds or [("auto", None)]

    load_before = os.getloadavg()
    rows = []
    runs: dict[tuple[str, int, str], list[dict[str, object]]] = {
        (m, t, b): [] for m in args.models for t in args.threads for b, _ in builds}
    for _ in range(args.rounds):  # models and builds interleaved round by round: the machine drifts
        for name in args.models:
            for threads in args.threads:
                for build, site in builds:
                    r = bench_model(name, threads, args.cache, args.prompt_repeats, args.gen_tokens, site)
                    runs[(name, threads, build)].append(r)
    for (name, threads, build), rs in runs.items():
        row = {**rs[0], "build": build, "rounds": len(rs)}
        for k in ("prompt_tokens_per_s", "generation_tokens_per_s", "request_wall_s"):
            row[k] = statistics.median(float(x[k]) for x in rs)  # type: ignore[arg-type]
            row[f"{k}_all"] = [x[k] for x in rs]
        print(
            f"{Path(name).name:14s} {build:10s} threads={threads}  prompt {row['prompt_tokens']:>4} tok @ "
            f"{row['prompt_tokens_per_s']} tok/s   generation {row['completion_tokens']:>3} tok @ "
            f"{row['generation_tokens_per_s']} tok/s   (request {row['request_wall_s']} s)",
            flush=True,
        )
        rows.append(row)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            # EmbeddedLLMServer sets PASSIVE unless the environment says otherwise; it matters on busy cores.
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
            "cpu_model": _cpu_model(),
        },
        "command": " ".join(["bench/bench_llm.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
