"""Uploads are all or nothing, and two different files never overwrite each other (issue 11, finding 3).

On a real `ragqa serve` with its embedded worker; the rollback of a failed queueing on real files.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("uploads-atomic") / "data"
    port = free_port()
    proc = start_server(data, port, {
        "RAGQA_EMBEDDER": "minilm-int8", "RAGQA_CHUNK_LEVELS": "[64, 256]", "RAGQA_MAX_FILE_MB": "1",
        "RAGQA_JOB_POLL_S": "0.2",
        # Nothing listens there: uploads and searches never reach the LLM.
        "RAGQA_LLM_BASE_URL": "http://127.0.0.1:9/v1",
    })
    yield {"base": f"http://127.0.0.1:{port}", "uploads": data / "uploads" / "kb"}
    proc.terminate()
    proc.wait(timeout=60)


def _upload(base: str, files: list[tuple[str, bytes]]) -> httpx.Response:
    return httpx.post(f"{base}/collections/kb/documents",
                      files=[("files", (n, b, "application/octet-stream")) for n, b in files], timeout=60)


def _wait(base: str, job_id: int, timeout: float = 180) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished in {timeout} s")


def _job_count(base: str) -> int:
    return len(httpx.get(f"{base}/jobs", params={"limit": 500}, timeout=10).json())


def _found(base: str, query: str, text: str) -> bool:
    hits = httpx.post(f"{base}/search", json={"query": query, "top_k": 5}, timeout=60).json()["results"]
    return any(text in h["text"] for h in hits)


def test_names_that_reduce_to_the_same_safe_name_do_not_overwrite(server: dict[str, Any]) -> None:
    base = server["base"]
    first = "The amber lever opens the north sluice gate."
    second = "The cobalt dial sets the furnace pilot flame."
    r1 = _upload(base, [("..\\..\\x\\evil.txt", first.encode())])
    r2 = _upload(base, [("/etc/cron.d/evil.txt", second.encode())])
    assert r1.status_code == 202 and r2.status_code == 202, (r1.text, r2.text)
    name1, name2 = r1.json()["files"][0], r2.json()["files"][0]
    assert name1 != name2, "two different client names were stored under one name: the second overwrote the first"
    assert r1.json()["renamed"] == {name1: "..\\..\\x\\evil.txt"} and name1.startswith("evil~")
    for r in (r1, r2):
        job = _wait(base, r.json()["job_id"])
        assert job["status"] == "done" and job["report"]["summary"]["added"] == 1, job["report"]
    assert _found(base, "amber lever north sluice gate", first) and _found(base, "cobalt dial furnace pilot", second)
    docs = httpx.get(f"{base}/collections/kb/documents", timeout=10).json()
    names = {d["metadata"].get("upload_name") for d in docs}
    assert {"..\\..\\x\\evil.txt", "/etc/cron.d/evil.txt"} <= names  # the client's name stays visible


def test_the_same_name_again_updates_its_document(server: dict[str, Any]) -> None:
    base = server["base"]
    for name in ("manual.md", "site/a/manual.md"):  # a safe name, and one stored under a tagged name
        r1 = _upload(base, [(name, f"# Manual\n\nThe old procedure for {name} uses the brass key.\n".encode())])
        assert _wait(base, r1.json()["job_id"])["report"]["summary"]["added"] == 1
        r2 = _upload(base, [(name, f"# Manual\n\nThe new procedure for {name} uses the steel card.\n".encode())])
        assert r2.json()["files"] == r1.json()["files"]
        report = _wait(base, r2.json()["job_id"])["report"]
        assert report["summary"]["updated"] == 1, report


@pytest.mark.parametrize("names", [("twice.md", "twice.md"), ("dir/twice.md", "dir/twice.md")])
def test_two_files_of_one_request_stored_alike_are_409_and_nothing_is_stored(
    server: dict[str, Any], names: tuple[str, str]
) -> None:
    base, before = server["base"], _job_count(server["base"])
    r = _upload(base, [(names[0], b"# One\n\nfirst file\n"), (names[1], b"# Two\n\nsecond file\n")])
    assert r.status_code == 409, r.text
    assert "overwrite" in r.json()["detail"] and names[1] in r.json()["detail"]
    assert not list(server["uploads"].glob("twice*"))
    assert _job_count(base) == before


@pytest.mark.parametrize(("second", "status"), [
    (("big.md", b"# big\n\n" + b"x" * 1_100_000), 413),  # over RAGQA_MAX_FILE_MB=1
    (("empty.md", b""), 400),
    (("tool.exe", b"MZ\x90\x00"), 415),
])
def test_a_request_with_one_bad_file_stores_nothing(
    server: dict[str, Any], second: tuple[str, bytes], status: int
) -> None:
    base, before = server["base"], _job_count(server["base"])
    r = _upload(base, [("small-ok.md", b"# Small\n\nfine on its own\n"), second])
    assert r.status_code == status, r.text
    leftovers = [p.name for p in server["uploads"].iterdir()] if server["uploads"].exists() else []
    assert "small-ok.md" not in leftovers, "the good file of a refused request was left in uploads/ with no job"
    assert not [n for n in leftovers if n.startswith(".upload-")]
    assert _job_count(base) == before


def test_a_failed_queueing_puts_every_file_back(tmp_path: Path) -> None:
    from app.uploads import store_uploads

    folder = tmp_path / "uploads" / "kb"
    folder.mkdir(parents=True)
    (folder / "kept.md").write_bytes(b"old version")

    def failing_queue(paths: list[Path]) -> int:  # a fake queue: the database refusing the job
        assert (folder / "kept.md").read_bytes() == b"new version"  # the files are in place when it is called
        raise OSError("database is locked")

    with pytest.raises(OSError, match="locked"):
        store_uploads(folder, [("kept.md", io.BytesIO(b"new version")), ("../new.md", io.BytesIO(b"new file"))],
                      2**20, failing_queue)
    assert (folder / "kept.md").read_bytes() == b"old version"
    assert sorted(p.name for p in folder.iterdir()) == ["kept.md"]


def test_stored_names() -> None:
    from app.uploads import UploadConflict, store_uploads, stored_name

    assert stored_name("report 2024 (v2).pdf") == "report 2024 (v2).pdf"  # a safe name is kept as it is
    assert stored_name("报告.docx") == "报告.docx"
    tagged = {stored_name(n) for n in ("../evil.txt", "..\\evil.txt", "/etc/evil.txt", "evil~x.txt", ".evil.txt")}
    assert len(tagged) == 5 and "evil.txt" not in tagged and all("/" not in n for n in tagged)
    assert stored_name("../evil.txt") == stored_name("../evil.txt")  # the same name, the same file: an update
    long = stored_name("/a/" + "x" * 400 + ".md")
    assert len(long.encode()) <= 200 and long.endswith(".md")
    with pytest.raises(UploadConflict):
        store_uploads(Path("/nonexistent"), [("a.md", io.BytesIO(b"1")), ("a.md", io.BytesIO(b"2"))], 10, len)
