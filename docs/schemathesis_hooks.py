"""Schemathesis hooks for the fuzz run of docs/api-fuzz.md: uploads that reach the store, the worker and the parsers.

Left alone, schemathesis names each uploaded part after its form field ("files"): every upload was a 415 for its
missing extension, and nothing past the extension check was fuzzed. Here each part gets a name derived from its bytes:
one of the supported extensions, and in a third of them a path, odd characters or a name repeated in the request, so
the naming rules, the all-or-nothing staging, the job queue and the parsers all see generated input. The fuzz
server runs its embedded worker, so each accepted upload is parsed; `after_call` records the jobs, and
`docs/api-fuzz.md` says how to check that every one of them ended.

Load with `SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=docs`. Not a project module: schemathesis is not a
project dependency.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import schemathesis
from schemathesis.specs.openapi.adapter import formdata

EXTS = [".md", ".txt", ".csv", ".html", ".json", ".eml", ".pdf", ".docx", ".xlsx", ".pptx", ".epub", ".png"]
PREFIXES = ["", "", "", "", "", "", "../../", "..\\..\\x\\", "/etc/cron.d/", "sub/dir/", ".", " ", "报告 "]
JOBS_FILE = os.environ.get("RAGQA_FUZZ_JOBS", "fuzz-jobs.jsonl")
_original = formdata._filename
_count = [0]


def _filename(name: str, value: object) -> str:
    data = getattr(value, "data", value)
    if name != "files" or not isinstance(data, bytes | str):
        return _original(name, value)
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    h = hashlib.sha256(raw).digest()
    if h[3] % 8 == 0:
        return "fuzz-again.md"  # the same name twice in a request: 409
    _count[0] += 1  # a counter, not the bytes: hypothesis often repeats the same bytes in one request
    return f"{PREFIXES[h[0] % len(PREFIXES)]}fuzz-{_count[0] % 64}{EXTS[h[2] % len(EXTS)]}"  # later: updates


formdata._filename = _filename


def _is_upload(context: Any) -> bool:
    op = getattr(context, "operation", None)
    return op is not None and op.method.upper() == "POST" and op.path == "/collections/{name}/documents"


@schemathesis.hook
def map_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    # Collection names are fuzzed by the main run; here three in four uploads go to a real one, to reach the worker.
    if not path_parameters:
        return path_parameters
    name = str(path_parameters.get("name", ""))
    if _is_upload(context) and hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[0] % 4:
        return {**path_parameters, "name": "fz"}
    return path_parameters


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    # A form has no null: a field that is None is a field left out (schemathesis would send the text "null").
    # Hypothesis favours empty files, each a 400 that stops the request early: most become a few bytes of text.
    if _is_upload(context) and isinstance(body, dict):
        body = {k: v for k, v in body.items() if v is not None}
        files = body.get("files")
        if isinstance(files, list):
            body["files"] = [f or (b"" if i % 4 == 3 else f"fuzz {len(files)} {i}\n".encode())
                             for i, f in enumerate(files)]
    return body


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    if response.status_code == 202 and case.path.endswith("/documents"):
        with open(JOBS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(response.json()) + "\n")
