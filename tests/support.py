"""Helpers shared by the tests that run real processes: ports, a real `ragqa serve`, reading a store mid-run."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: Path, port: int, extra_env: dict[str, str], wait_s: float = 120) -> subprocess.Popen[bytes]:
    """`ragqa serve` over `data` (default collection "kb"), returned once /healthz answers (with the embedded model,
    after it started: give it `wait_s` of several minutes)."""
    env = dict(os.environ, RAGQA_DATA_DIR=str(data), RAGQA_COLLECTION="kb", PYTHONPATH=str(REPO), **extra_env)
    # The log goes to a file, not a pipe: a server logging many tracebacks would fill an unread pipe and freeze.
    log = data.parent / f"server-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ragqa.cli", "serve", "--port", str(port)], env=env,
            stdout=subprocess.DEVNULL, stderr=sink,
        )
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start in {wait_s:g} s")


def committed_sources(db: Path) -> int:
    """Sources committed so far to a collection's store.sqlite, read while another process writes (0 if none yet)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM sources").fetchone()[0])
    except sqlite3.Error:
        return 0
