"""The embedded ingest worker of `ragqa serve`: a `ragqa worker` subprocess, restarted when it dies.

A background thread waits on the process, which also reaps it (no zombie), logs each death with the pid and the
exit code or signal, hands the jobs the dead worker held back to the queue at once rather than after their lease,
and starts a new worker after a backoff. More than `max_restarts_per_minute` deaths within a minute mean something a
restart will not fix (a poisoned install, no memory): it stops trying, and /readyz answers 503 with the reason.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Sequence
from typing import Any, Literal

from app.restarts import RestartBudget, describe_exit
from ingest.jobs import worker_prefix
from ingest.pg_jobs import Queue

log = logging.getLogger("ragqa.supervisor")

State = Literal["running", "restarting", "failed", "stopped"]


class WorkerSupervisor:
    def __init__(
        self, command: Sequence[str], env: dict[str, str], queue: Queue | None = None, *,
        max_restarts_per_minute: int = 3, max_backoff_s: float = 10.0,
    ) -> None:
        self.command = list(command)
        self.env = env
        self.queue = queue
        self.max_restarts_per_minute = max_restarts_per_minute
        self.max_backoff_s = max_backoff_s
        self.state: State = "stopped"
        self.restarts = 0  # new workers started after a death
        self.deaths = 0
        self.last_death: str | None = None
        self.failure: str | None = None  # why supervision gave up, if it did
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._budget = RestartBudget(max_restarts_per_minute, max_backoff_s)

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> WorkerSupervisor:
        self._stopping.clear()
        self._launch()
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: the worker finishes the file in progress and gives its job back; SIGKILL if it takes too long."""
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.state = "stopped" if self.failure is None else "failed"

    def status(self) -> dict[str, Any]:
        """What /readyz shows: state, restarts so far and, after a death, how the last one ended."""
        return {"state": self.state, "restarts": self.restarts, "deaths": self.deaths, "last_death": self.last_death}

    # ---- internals ---------------------------------------------------------------------------------------------

    def _launch(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._proc = subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL)
            self.state = "running"
        log.info("embedded ingest worker started (pid %d)", self._proc.pid, extra={"pid": self._proc.pid})

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
            if not self._on_death(proc.pid, code) or not self._backoff():
                return
            try:
                self._launch()
            except OSError as e:
                self._give_up(f"embedded ingest worker could not be restarted: {e}")
                return
            self.restarts += 1
            log.warning("embedded ingest worker restarted (pid %s, restart #%d)", self.pid, self.restarts,
                        extra={"pid": self.pid, "restarts": self.restarts})

    def _on_death(self, pid: int, code: int) -> bool:
        """Log it, free its jobs; False when it died too often to try again."""
        self.deaths += 1
        how = describe_exit(code)
        self.last_death = f"pid {pid} {how}"
        self.state = "restarting"
        freed = self._free_jobs(pid)
        log.error("embedded ingest worker (pid %d) %s%s", pid, how,
                  f"; job(s) {freed} handed back to the queue" if freed else "",
                  extra={"pid": pid, "exit_code": code, "jobs": freed})
        if not self._budget.record_death():
            self._give_up(
                f"embedded ingest worker died {self._budget.recent} times within a minute (last: {self.last_death}); "
                f"not restarting it: uploads stay queued until a `ragqa worker` runs or the server is restarted"
            )
            return False
        return True

    def _backoff(self) -> bool:
        return not self._stopping.wait(self._budget.backoff_s())

    def _give_up(self, why: str) -> None:
        self.failure = why
        self.state = "failed"
        log.error("%s", why)

    def _free_jobs(self, pid: int) -> list[int]:
        if self.queue is None:
            return []
        try:
            return self.queue.abandon_worker(worker_prefix(pid))
        except Exception:  # the queue busy or gone: the lease runs out on its own
            log.warning("could not hand back the jobs of dead worker %d", pid, exc_info=True)
            return []
