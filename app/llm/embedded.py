"""The embedded answering model: llama-cpp-python's OpenAI-compatible server as a supervised subprocess.

Used when no LLM server is configured. The server runs in its own process group (so a stop takes any child
with it) and exits by itself when its parent dies, even by SIGKILL, so test runs never leave orphans on the
shared cores. A background thread restarts it after a crash, with backoff, at most
`max_restarts_per_minute` times a minute.
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
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

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
        self.restarts = 0  # successful restarts by the supervisor
        self.failure: str | None = None  # why the supervisor gave up, if it did
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._recent: deque[float] = deque()  # crash times within the last minute

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
            if self.port == 0:
                self.port = _free_port(self.host)
            if self.log_path is None:
                fd, name = tempfile.mkstemp(prefix=f"ragqa-llama-{self.port}-", suffix=".log")
                os.close(fd)
                self.log_path = Path(name)
                self._own_log = True
            self._stopping.clear()
            self._launch_and_wait()
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
            *self.extra_args,
        ]

    def client(self, **kwargs: Any) -> LLMClient:
        """An LLMClient for this server, speaking llama-cpp-python's dialect of structured output."""
        from app.llm.client import LLMClient

        kwargs.setdefault("structured_style", "llamacpp")
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
        # ggml's OpenMP barriers spin by default; on shared cores a spinning thread waits for a
        # descheduled one: generation fell from ~7 to ~0.3 tokens/s (bench/bench_llm.py, 2 busy cores).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        with self.log_path.open("ab") as logf:
            logf.write(
                f"\n=== ragqa: llama_cpp.server starting at {time.strftime('%H:%M:%S')} ===\n".encode()
            )
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
                raise EmbeddedServerError(
                    f"llama.cpp server for {self.model_path.name} exited with code {code} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self._stopping.is_set():
                raise EmbeddedServerError("stopped while the llama.cpp server was starting")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"llama.cpp server did not answer {url} within {self.startup_timeout:.0f}s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.25)

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
                "embedded LLM server (pid %d) exited with code %s; log tail:\n%s",
                proc.pid,
                code,
                self.log_tail(10),
            )
            self._restart_with_backoff()

    def _restart_with_backoff(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            self._recent.append(now)
            while self._recent and now - self._recent[0] > 60.0:
                self._recent.popleft()
            if len(self._recent) > self.max_restarts_per_minute:
                self.failure = (
                    f"embedded LLM server crashed {len(self._recent)} times within a minute; not restarting. "
                    f"Log {self.log_path}:\n{self.log_tail()}"
                )
                log.error("%s", self.failure)
                with self._lock:
                    self._proc = None
                return
            delay = min(10.0, 0.5 * 2 ** (len(self._recent) - 1))
            if self._stopping.wait(delay):
                return
            try:
                self._launch_and_wait()
            except EmbeddedServerError as e:
                log.warning("restart of the embedded LLM server failed: %s", e)
                continue
            self.restarts += 1
            log.warning("embedded LLM server restarted (pid %s, restart #%d)", self.pid, self.restarts)
            return


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
