"""Parse every file under one or more folders and print what came out; check markitdown's expected strings.

    .venv/bin/python bench/check_parsers.py ../shared/datasets/docs [--no-ocr] [--timeout 120]

A file that cannot be parsed shows its IngestError reason; anything else (a crash, a timeout) shows as FAIL
with the exception, and the script goes on. For a folder holding markitdown's `expected_strings.json`, each
entry is checked twice: strictly (markitdown writes Markdown, e.g. "# Abstract" or "[Unix](/wiki/Unix)") and
loosely (Markdown syntax removed from the expected string), since our text is plain text without Markdown.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.errors import IngestError  # noqa: E402
from ingest.parsers import parse_file  # noqa: E402

_SKIP_NAMES = {"LICENSE", "LICENSE.md", "SOURCE.txt", "expected_strings.json", "README.md"}


class _Timeout(Exception):
    pass


def _alarm(_sig: int, _frame: FrameType | None) -> None:
    raise _Timeout()


def loose(s: str) -> str:
    """Markdown syntax out, whitespace collapsed: '**To:** [Bill](/wiki/B "B")' -> 'To: Bill'."""
    s = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", s)
    s = re.sub(r"\[([^\]]*)\](\([^)]*\)?)?", r"\1", s)
    s = re.sub(r"^\s*(#{1,6}|[*+-]|>)\s+", "", s, flags=re.MULTILINE)
    s = s.replace("**", "").replace("__", "").replace("```python", "").replace("```", "")
    s = re.sub(r"(?<!\w)\*([^*]+)\*(?!\w)", r"\1", s)
    s = re.sub(r"\|?\s*-{3,}\s*", " ", s).replace("|", " ")
    return " ".join(s.split())


def check_expected(folder: Path, texts: dict[str, str | None]) -> None:
    spec = folder / "expected_strings.json"
    if not spec.exists():
        return
    strict_ok = loose_ok = total = 0
    print(f"\nexpected_strings.json in {folder}:")
    for entry in json.loads(spec.read_text()):
        name = entry["filename"]
        if name not in texts:
            print(f"  {name:40} (file not here)")
            continue
        total += 1
        text = texts[name]
        if text is None:
            print(f"  {name:40} FAIL (not parsed)")
            continue
        loose_text = loose(text)
        strict_miss = [s for s in entry["must_include"] if s not in text]
        strict_bad = [s for s in entry["must_not_include"] if s in text]
        loose_miss = [s for s in entry["must_include"] if loose(s) not in loose_text]
        loose_bad = [s for s in entry["must_not_include"] if loose(s) and loose(s) in loose_text]
        strict_ok += not (strict_miss or strict_bad)
        loose_ok += not (loose_miss or loose_bad)
        verdict = "pass" if not (loose_miss or loose_bad) else "FAIL"
        detail = "; ".join(
            [f"missing {s[:50]!r}" for s in loose_miss] + [f"has {s[:40]!r}" for s in loose_bad]
        )
        print(
            f"  {name:40} loose {verdict}  strict {'pass' if not (strict_miss or strict_bad) else 'fail'}"
            f"  {detail[:150]}"
        )
    print(f"  => {loose_ok}/{total} pass (loose), {strict_ok}/{total} pass (strict Markdown)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--no-ocr", action="store_true", help="skip OCR of images and scanned pages")
    ap.add_argument("--timeout", type=int, default=180, help="seconds per file")
    args = ap.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    counts = {"ok": 0, "error": 0, "FAIL": 0}
    print(f"{'file':70} {'status':6} {'#el':>5} {'#tab':>4} {'sec':>6}  error / warnings")
    for folder in args.folders:
        texts: dict[str, str | None] = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.name in _SKIP_NAMES or path.suffix == ".md" and "expected_outputs" in path.parts:
                continue
            rel = str(path.relative_to(folder))
            t = time.perf_counter()
            signal.alarm(args.timeout)
            try:
                doc = parse_file(path, ocr=not args.no_ocr)
                status, n, tables = "ok", len(doc.elements), sum(e.kind == "table" for e in doc.elements)
                note = "; ".join(doc.warnings)[:90]
                texts[path.name] = doc.text
            except IngestError as e:
                status, n, tables, note = "error", 0, 0, f"{type(e).__name__}: {e}"[:120]
                texts[path.name] = None
            except (Exception, _Timeout) as e:  # the point of the script: never stop on one bad file
                status, n, tables = "FAIL", 0, 0
                note = f"{type(e).__name__}: {e}"[:120] if not isinstance(e, _Timeout) else "timeout"
                texts[path.name] = None
            finally:
                signal.alarm(0)
            counts[status] += 1
            print(
                f"{rel[-70:]:70} {status:6} {n:5} {tables:4} {time.perf_counter() - t:6.2f}  {note}",
                flush=True,
            )
        for spec in sorted(folder.rglob("expected_strings.json")):
            check_expected(spec.parent, texts)
    print(
        f"\n{counts['ok']} parsed, {counts['error']} rejected with a reason, "
        f"{counts['FAIL']} crashed or timed out"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
