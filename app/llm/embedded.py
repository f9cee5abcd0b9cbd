"""The embedded answering model: llama-cpp-python's OpenAI-compatible server as a supervised subprocess.

Used when no LLM server is configured. The server runs in its own process group (so a stop takes any child
with it) and exits by itself when its parent dies, even by SIGKILL, so test runs never leave orphans on the
shared cores. A background thread restarts it after a crash, with backoff, at most
`max_restarts_per_minute` times a minute.

Ready means answered, not listening: the server must complete a real prompt of `self_test_tokens` tokens before
it counts as started, because a build for the wrong CPU (ggml's AMX or AVX-512 kernels on a VM that advertises but
does not allow them) lists its model fine and dies with SIGILL on the first long prompt. A crash there, or a fatal
signal later, ends the restart loop: `failure` then says what died, with which signal, and what to do. Before
that, the server moves down its list of llama.cpp builds (app/llm/builds.py: the AVX-512 one where the CPU flags
allow it, the portable one last), so a CPU that advertises more than it runs still gets a working model.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from app.llm.builds import PORTABLE, BuildChoice, LlamaBuild, candidates
from app.restarts import RestartBudget, describe_exit

if TYPE_CHECKING:
    from app.llm.client import LLMClient

log = logging.getLogger(__name__)

# Environment variables the server's pydantic settings would read (case-insensitively) and that would override
# our flags: HOST/PORT in particular win over --host/--port in llama_cpp.server.__main__.
_SERVER_ENV = frozenset(
    """model model_alias n_gpu_layers n_ctx n_batch n_ubatch n_threads n_threads_batch chat_format verbose
    host port ssl_keyfile ssl_certfile api_key interrupt_requests disable_ping_events root_path models
    config_file cache cache_type cache_size lora_base lora_path logits_all embedding""".split()  # noqa: SIM905
)

# `python -m llama_cpp.server ARGS`, plus a thread that ends the process once its parent is gone.
_BOOTSTRAP = """\
import os, runpy, sys, threading, time
parent = int(sys.argv.pop(1))
def _watch():
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


class EmbeddedServerError(RuntimeError):
    """The embedded server did not start or cannot be kept running; the message ends with its log tail."""

    def __init__(self, message: str, exit_code: int | None = None, summary: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # the process's return code when it died (negative: the signal)
        self.summary = summary or message  # what died and what to do, without the log: fit for a client


# Signals after which a restart cannot help: the same binary on the same CPU fails the same way.
_FATAL_SIGNALS = {signal.SIGILL: "illegal instruction", signal.SIGBUS: "bus error"}
REBUILD_HINT = (
    "the CPU lacks an instruction this llama.cpp build uses (for example AMX or AVX-512 kernels compiled for the "
    "build machine). Rebuild it portably (AVX2 baseline) and restart: "
    "`rm -rf ~/.cache/ragqa/wheels/llama-cpp-python-* && scripts/build_llama.sh .venv/bin/pip`; "
    "RAGQA_LLAMA_BUILD=portable keeps the server off the extra AVX-512 build"
)


def is_fatal(code: int | None) -> bool:
    return code is not None and code < 0 and -code in {int(s) for s in _FATAL_SIGNALS}


def _remedy(code: int | None) -> str:
    if code is not None and code == -int(signal.SIGILL):
        return REBUILD_HINT
    return "see the log for the cause"


# About 300 tokens of plain prose: long enough that llama.cpp runs its batched matrix kernels, as a real prompt does.
_SELF_TEST_PROMPT = " ".join(
    ["The service checks that the model can read a long prompt before it accepts questions."] * 20
) + "\nIn one word, what does the service check?"


class EmbeddedLLMServer:
    """Start with `start()` or `with EmbeddedLLMServer(path) as srv:`; point an LLMClient at `base_url`."""

    def __init__(
        self,
        model_path: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        n_ctx: int = 4096,
        n_threads: int = 2,
        model_alias: str = "ragqa",
        *,
        startup_timeout: float = 180.0,
        max_restarts_per_minute: int = 3,
        log_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
        self_test_tokens: int = 256,
        lora_path: Path | None = None,
        build: BuildChoice | Sequence[LlamaBuild] = "auto",
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535 (0 = pick a free one), got {port}")
        if n_ctx < 256:
            raise ValueError(f"n_ctx must be >= 256, got {n_ctx}")
        if n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")
        if not model_alias:
            raise ValueError(f"model_alias must be non-empty, got {model_alias!r}")
        if startup_timeout <= 0 or max_restarts_per_minute < 0:
            raise ValueError(
                f"bad supervision limits: startup_timeout={startup_timeout}, "
                f"max_restarts_per_minute={max_restarts_per_minute}"
            )
        self.model_path = Path(model_path)
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.model_alias = model_alias
        self.startup_timeout = startup_timeout
        self.max_restarts_per_minute = max_restarts_per_minute
        self.log_path = log_path
        self._own_log = False  # a temp log we made: removed on a clean stop
        self.extra_args = tuple(extra_args)
        self.self_test_tokens = self_test_tokens
        # A fine-tuned GGUF LoRA adapter (`ragqa finetune export --to gguf`); its sha256 is taken at start, so the
        # log and `lora_sha256` say exactly which adapter answered.
        self.lora_path = Path(lora_path) if lora_path is not None else None
        self.lora_sha256: str | None = None
        # "auto" is resolved at start (it reads the CPU flags and the installed builds); a list is used as given.
        self._build_choice = build
        self._builds: list[LlamaBuild] = [PORTABLE]
        self.build: LlamaBuild = PORTABLE  # the build running now
        self.restarts = 0  # successful restarts by the supervisor
        self.failure: str | None = None  # why the server cannot be kept running, with the log tail
        self.failure_summary: str | None = None  # the same without the log: what /readyz and /ask may say
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._budget = RestartBudget(max_restarts_per_minute)

    # ---- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> EmbeddedLLMServer:
        """Start the server and wait until it answers /v1/models; a no-op when already started."""
        with self._lock:
            if self._supervisor is not None:
                return self
            if not self.model_path.is_file():
                raise FileNotFoundError(
                    f"model file {self.model_path} does not exist (see `ragqa models prepare`)"
                )
            if self.lora_path is not None:
                if not self.lora_path.is_file():
                    raise FileNotFoundError(f"LoRA adapter {self.lora_path} does not exist (RAGQA_LLM_LORA; "
                                            "see `ragqa finetune export --to gguf`)")
                self.lora_sha256 = sha256_file(self.lora_path)
                log.info("embedded model %s with LoRA adapter %s (sha256 %s)", self.model_path.name,
                         self.lora_path, self.lora_sha256)
            if self.port == 0:
                self.port = _free_port(self.host)
            if self.log_path is None:
                fd, name = tempfile.mkstemp(prefix=f"ragqa-llama-{self.port}-", suffix=".log")
                os.close(fd)
                self.log_path = Path(name)
                self._own_log = True
            self._stopping.clear()
            self.failure = self.failure_summary = None
            choice = self._build_choice
            self._builds = candidates(choice) if isinstance(choice, str) else list(choice)
            self.build = self._builds[0]
            while True:
                try:
                    self._launch_and_wait()
                    break
                except EmbeddedServerError as e:
                    if self._fall_back(e):
                        continue
                    self.failure, self.failure_summary = str(e), e.summary
                    raise
            log.info("embedded model %s runs on the %s llama.cpp build", self.model_path.name, self.build.name)
            atexit.register(self.stop)
            self._supervisor = threading.Thread(target=self._supervise, name="llm-supervisor", daemon=True)
            self._supervisor.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop supervising and end the server's process group (SIGTERM, then SIGKILL after `timeout`)."""
        self._stopping.set()
        with self._lock:
            proc, self._proc = self._proc, None
            sup, self._supervisor = self._supervisor, None
        if proc is not None:
            _kill_group(proc, timeout)
        if sup is not None and sup is not threading.current_thread():
            sup.join(timeout=timeout)
        atexit.unregister(self.stop)
        if self._own_log and self.failure is None and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path, self._own_log = None, False

    def __enter__(self) -> EmbeddedLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- inspection -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1 (the port is fixed across restarts)."""
        if self.port == 0:
            raise RuntimeError("base_url is known once the server is started (port=0 picks one at start)")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The server's command line (the bootstrap wraps `python -m llama_cpp.server` with these args)."""
        return [
            sys.executable,
            "-c",
            _BOOTSTRAP,
            str(os.getpid()),
            "--model",
            str(self.model_path),
            "--model_alias",
            self.model_alias,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            # Defaults would take every core for prompt processing; the machine is shared.
            "--n_threads_batch",
            str(self.n_threads),
            # The default lets each new request abort the one in progress; we queue instead.
            "--interrupt_requests",
            "false",
            # Logits for every prompt token are only needed for prompt logprobs, and cost prompt speed.
            "--logits_all",
            "false",
            *(("--lora_path", str(self.lora_path)) if self.lora_path is not None else ()),
            *self.extra_args,
        ]

    def client(self, **kwargs: Any) -> LLMClient:
        """An LLMClient for this server, speaking llama-cpp-python's dialect of structured output; its errors say
        why the server is down when the supervisor gave up on it."""
        from app.llm.client import LLMClient

        kwargs.setdefault("structured_style", "llamacpp")
        kwargs.setdefault("diagnose", lambda: self.failure_summary)
        return LLMClient(self.base_url, self.model_alias, **kwargs)

    def log_tail(self, n_lines: int = 30) -> str:
        if self.log_path is None:
            return ""
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n_lines:])

    # ---- internals --------------------------------------------------------------------------------------

    def _launch_and_wait(self) -> None:
        assert self.log_path is not None
        env = {k: v for k, v in os.environ.items() if k.lower() not in _SERVER_ENV}
        if self.build.site is not None:
            env["PYTHONPATH"] = os.pathsep.join(x for x in (str(self.build.site), env.get("PYTHONPATH")) if x)
        # ggml's OpenMP barriers spin by default; on shared cores a spinning thread waits for a
        # descheduled one: generation fell from ~7 to ~0.3 tokens/s (bench/bench_llm.py, 2 busy cores).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        lora = f", LoRA {self.lora_path} sha256 {self.lora_sha256}" if self.lora_path is not None else ""
        with self.log_path.open("ab") as logf:
            logf.write(f"\n=== ragqa: llama_cpp.server starting at {time.strftime('%H:%M:%S')}, {self.build.name} "
                       f"build{lora} ===\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        with self._lock:
            self._proc = proc
        try:
            self._wait_ready(proc)
        except BaseException:
            _kill_group(proc, 5.0)
            with self._lock:
                if self._proc is proc:
                    self._proc = None
            raise

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        import httpx

        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.base_url}/models"
        while True:
            code = proc.poll()
            if code is not None:
                raise self._died(code, "while starting")
            if self._stopping.is_set():
                raise EmbeddedServerError("stopped while the llama.cpp server was starting")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise self._error(f"embedded LLM server did not answer {url} within {self.startup_timeout:.0f}s.")
            time.sleep(0.25)
        self._self_test(proc, deadline)

    def _self_test(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        """Complete a real prompt of at least `self_test_tokens` tokens; a crash here is the build, not bad luck."""
        import httpx

        if self.self_test_tokens <= 0:
            return
        # About 1.1 tokens a word here: enough words for the count asked, and never more than the context holds.
        want = min(self.self_test_tokens, self.n_ctx - 64)
        words = _SELF_TEST_PROMPT.split(" ")
        prompt = " ".join((words * (2 + want // len(words)))[: int(want / 1.05) + 8])
        body = {"model": self.model_alias, "prompt": prompt, "max_tokens": 2, "temperature": 0.0}
        t = time.monotonic()
        try:
            r = httpx.post(f"{self.base_url}/completions", json=body, timeout=max(5.0, deadline - time.monotonic()))
        except httpx.TransportError as e:
            code = _wait_exit(proc, 5.0)
            if code is not None:
                raise self._died(code, f"while answering its start-up self-test (a {self.self_test_tokens}-token "
                                       "prompt)") from e
            raise self._error(f"embedded LLM server did not answer its start-up self-test within "
                              f"{self.startup_timeout:.0f}s ({type(e).__name__}).") from e
        if r.status_code != 200:
            raise self._error(f"embedded LLM server failed its start-up self-test: HTTP {r.status_code}: "
                              f"{r.text[:300]}.")
        n = int((r.json().get("usage") or {}).get("prompt_tokens") or 0)
        if n < want:  # the check must not quietly test less than it claims
            raise EmbeddedServerError(f"start-up self-test read only {n} prompt tokens, wanted {want}")
        log.info("embedded LLM self-test passed: %d prompt tokens in %.1fs", n, time.monotonic() - t)

    def _died(self, code: int, when: str) -> EmbeddedServerError:
        return self._error(f"embedded LLM server (llama.cpp, {self.model_path.name}) {describe_exit(code)} {when}: "
                           f"{_remedy(code)}.", code)

    def _error(self, summary: str, exit_code: int | None = None) -> EmbeddedServerError:
        """The error for `summary`, its message ending with the server's log tail."""
        return EmbeddedServerError(f"{summary} Log {self.log_path}:\n{self.log_tail()}", exit_code, summary)

    def _fall_back(self, e: EmbeddedServerError) -> bool:
        """After a fatal signal, move to the next build if there is one (True): the CPU lacks what this one uses."""
        i = self._builds.index(self.build)
        if not is_fatal(e.exit_code) or i + 1 >= len(self._builds):
            return False
        log.warning("the %s llama.cpp build died (%s); falling back to the %s build. %s", self.build.name,
                    describe_exit(e.exit_code or 0), self._builds[i + 1].name, e.summary)
        self.build = self._builds[i + 1]
        return True

    def _fail(self, e: EmbeddedServerError) -> None:
        """Give up on the server: `failure` for the log, `failure_summary` for clients."""
        self.failure, self.failure_summary = str(e), e.summary
        log.error("not restarting: %s", self.failure)

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                proc = self._proc
            if proc is None:
                return
            try:
                code = proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            if self._stopping.is_set():
                return
            log.warning(
                "embedded LLM server (pid %d) %s; log tail:\n%s", proc.pid, describe_exit(code), self.log_tail(10)
            )
            died = self._died(code, "while serving") if is_fatal(code) else None  # reads the log tail once
            if died is not None and not self._fall_back(died):
                self._fail(died)
                with self._lock:
                    self._proc = None
                return
            self._restart_with_backoff()

    def _restart_with_backoff(self) -> None:
        while not self._stopping.is_set():
            if not self._budget.record_death():
                self._fail(self._error(f"embedded LLM server crashed {self._budget.recent} times within a minute; "
                                       "not restarting."))
                with self._lock:
                    self._proc = None
                return
            if self._stopping.wait(self._budget.backoff_s()):
                return
            try:
                self._launch_and_wait()
            except EmbeddedServerError as e:
                log.warning("restart of the embedded LLM server failed: %s", e)
                if is_fatal(e.exit_code) and not self._fall_back(e):
                    self._fail(e)
                    return
                continue
            self.restarts += 1
            log.warning("embedded LLM server restarted (pid %s, restart #%d)", self.pid, self.restarts)
            return


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * 2**20):
            h.update(block)
    return h.hexdigest()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _kill_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(timeout=timeout)
