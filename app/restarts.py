"""What the two supervisors (the embedded LLM server's, the embedded ingest worker's) share: how a child process
ended, in words, and how many deaths within a minute they tolerate before giving up, with a backoff between tries."""

from __future__ import annotations

import signal
import time
from collections import deque


def describe_exit(code: int | None) -> str:
    """'exited with code 1', 'killed by signal SIGILL (illegal instruction)', ..."""
    if code is None:
        return "is still running"
    if code >= 0:
        return f"exited with code {code}"
    try:
        sig = signal.Signals(-code)
    except ValueError:
        return f"killed by signal {-code}"
    what = signal.strsignal(sig) or ""
    return f"killed by signal {sig.name} ({what.lower()})" if what else f"killed by signal {sig.name}"


class RestartBudget:
    """Deaths within the last minute: more than `per_minute` means something a restart cannot fix (a bad build,
    a corrupt file, memory). Between tries the wait doubles from 0.5 s up to `max_backoff_s`."""

    def __init__(self, per_minute: int, max_backoff_s: float = 10.0) -> None:
        if per_minute < 0 or max_backoff_s <= 0:
            raise ValueError(f"bad restart limits: per_minute={per_minute}, max_backoff_s={max_backoff_s}")
        self.per_minute = per_minute
        self.max_backoff_s = max_backoff_s
        self._recent: deque[float] = deque()

    def record_death(self) -> bool:
        """Count a death now; False when the budget is spent (do not restart)."""
        now = time.monotonic()
        self._recent.append(now)
        while self._recent and now - self._recent[0] > 60.0:
            self._recent.popleft()
        return len(self._recent) <= self.per_minute

    @property
    def recent(self) -> int:
        return len(self._recent)

    def backoff_s(self) -> float:
        return min(self.max_backoff_s, 0.5 * 2 ** max(0, len(self._recent) - 1))
