"""OCR cost at equal text (issue 10, item 5: ingest throughput).

    .venv/bin/python bench/bench_ocr.py [--configs legacy,default,...] [--only small_ocr,DA-1p.png]

Every file that ingest OCRs under `$RAGQA_DATASETS/docs` and examples/corpus (the bundled sample, with a Chinese
photo): pictures, and PDFs with pages lacking a text layer (found by parsing with OCR off). Each is OCR'd under each
configuration of ingest.parsers.ocr.OcrSettings through the code ingest uses (ingest.parsers.pdf.ocr_pdf_pages
renders and OCRs the pages, ocr.ocr_lines reads pictures). Per file and configuration: process CPU time (all
onnxruntime threads together; what other load on the machine inflates least) and wall time, and the text compared
with the first configuration's (the reference, `legacy` unless told):

- similarity: rapidfuzz's Indel ratio (difflib's ratio, computed exactly) over the whole text, whitespace collapsed;
- similarity without spaces: the same with all whitespace removed (PP-OCR's spacing between words is what varies
  most between configurations; CJK text has none);
- words: the share of the reference's words (as a multiset) found in the text.

Each configuration's engine is loaded and run once on a small picture before any timing (loading is once per
ingest process, not per file). Configurations run interleaved per file, their order reversed on every other file,
so that drifting load on the machine falls on all alike. Writes bench/results/ocr.json.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, machine, md_table, require, write_results  # noqa: E402
from ingest.parsers import ocr, parse_file  # noqa: E402
from ingest.parsers.pdf import ocr_pdf_pages  # noqa: E402

_PICTURES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}  # HEIC: ingest refuses it
_SKIPPED = re.compile(r"pages without a text layer were skipped \(OCR is off\): \[([\d, ]*)\]")

L = ocr.LEGACY
T1 = replace(L, threads=1)
T1B1 = replace(T1, rec_batch_num=1)
T1B1C = replace(T1B1, use_cls=False)
CONFIGS: dict[str, ocr.OcrSettings] = {
    "legacy": L,
    "default": ocr.DEFAULT,
    "threads1": T1,
    "batch1": replace(L, rec_batch_num=1),
    "batch3": replace(L, rec_batch_num=3),
    "no-cls": replace(L, use_cls=False),
    "det-max960": replace(L, det_limit_type="max", det_limit_side_len=960),
    "scale1.5": replace(L, render_scale=1.5),
    "t1-b1": T1B1,
    "t1-b1-nocls": T1B1C,
    "t1-b1-nocls-det1280": replace(T1B1C, det_limit_type="max", det_limit_side_len=1280),
    "t1-b1-nocls-det960": replace(T1B1C, det_limit_type="max", det_limit_side_len=960),
    "t1-b1-nocls-det960-scale1.5": replace(T1B1C, det_limit_type="max", det_limit_side_len=960, render_scale=1.5),
}


def targets(root: Path, only: list[str]) -> list[tuple[Path, list[int]]]:
    """(file, scanned page numbers) per file to OCR; pictures have no pages ([])."""
    out: list[tuple[Path, list[int]]] = []
    for path in sorted(root.rglob("*")):
        if only and not any(o in path.name for o in only):
            continue
        if path.suffix.lower() in _PICTURES:
            out.append((path, []))
        elif path.suffix.lower() == ".pdf":
            for w in parse_file(path, ocr=False).warnings:
                if m := _SKIPPED.search(w):
                    out.append((path, [int(n) for n in m.group(1).split(",")]))
    return out


def read(path: Path, pages: list[int]) -> str:
    if pages:
        return "\n\n".join("\n\n".join(blocks) for blocks in ocr_pdf_pages(path.read_bytes(), pages).values())
    from PIL import Image

    with Image.open(path) as img:
        return "\n".join(ocr.ocr_lines(img))


def warm_up() -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (400, 120), "white")
    ImageDraw.Draw(img).text((20, 40), "warm up 123", fill="black")
    ocr.ocr_lines(img)


def similarity(ref: str, text: str, sep: str = " ") -> float:
    from rapidfuzz import fuzz  # installed with unstructured

    a, b = sep.join(ref.split()), sep.join(text.split())
    return 1.0 if a == b else fuzz.ratio(a, b) / 100


def words_recovered(ref: str, text: str) -> float:
    want = Counter(ref.split())
    got = Counter(text.split())
    return sum((want & got).values()) / max(1, sum(want.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="legacy,default",
                    help=f"comma-separated, the first is the reference; of {', '.join(CONFIGS)}")
    ap.add_argument("--only", default="", help="comma-separated parts of file names")
    ap.add_argument("--out", default="ocr", help="bench/results/<out>.json")
    args = ap.parse_args()
    names = list(dict.fromkeys(args.configs.split(",")))
    if unknown := [n for n in names if n not in CONFIGS]:
        sys.exit(f"unknown configuration(s) {unknown}; known: {list(CONFIGS)}")
    only = [o for o in args.only.split(",") if o]
    files = targets(require("docs"), only) + targets(ROOT / "examples" / "corpus", only)
    print(f"{len(files)} files to OCR: {[p.name for p, _ in files]}", flush=True)
    for name in names:
        ocr.configure(CONFIGS[name])
        warm_up()
    texts: dict[tuple[int, str], str] = {}  # (file's index, configuration): text
    rows: list[dict[str, Any]] = []
    keys: list[int] = []  # rows' file indexes
    for i, (path, pages) in enumerate(files):
        for name in names if i % 2 == 0 else names[::-1]:
            ocr.configure(CONFIGS[name])
            cpu, wall = time.process_time(), time.perf_counter()
            text = read(path, pages)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            texts[i, name] = text
            keys.append(i)
            rows.append({"file": path.name, "pages": len(pages) or None, "config": name, "cpu_s": cpu,
                         "wall_s": wall, "chars": len(text)})
        print(f"{path.name}: " + ", ".join(f"{r['config']} {r['cpu_s']:.1f}" for r in rows[-len(names):]),
              flush=True)
    ref_name = names[0]
    for i, r in zip(keys, rows, strict=True):
        ref, text = texts[i, ref_name], texts[i, r["config"]]
        r["similarity"], r["words"] = similarity(ref, text), words_recovered(ref, text)
        r["similarity_nospace"] = similarity(ref, text, sep="")
    totals = []
    for name in names:
        mine = [r for r in rows if r["config"] == name]
        totals.append({
            "config": name, "cpu_s": sum(r["cpu_s"] for r in mine), "wall_s": sum(r["wall_s"] for r in mine),
            "min_similarity": min(r["similarity"] for r in mine),
            "min_similarity_nospace": min(r["similarity_nospace"] for r in mine),
            "min_words": min(r["words"] for r in mine),
        })
    ref_cpu = totals[0]["cpu_s"]
    for t in totals:
        t["cpu_vs_ref"] = t["cpu_s"] / ref_cpu if ref_cpu else None
    print(md_table(totals, [("config", "config", "s"), ("cpu_s", "CPU s", ".1f"), ("cpu_vs_ref", "x ref", ".2f"),
                            ("wall_s", "wall s", ".1f"), ("min_similarity", "min similarity", ".3f"),
                            ("min_similarity_nospace", "w/o spaces", ".3f"), ("min_words", "min words", ".3f")]))
    print()
    print(md_table(rows, [("file", "file", "s"), ("config", "config", "s"), ("cpu_s", "CPU s", ".2f"),
                          ("wall_s", "wall s", ".2f"), ("chars", "chars", "d"), ("similarity", "similarity", ".3f"),
                          ("similarity_nospace", "w/o spaces", ".3f"), ("words", "words", ".3f")]))
    path = write_results(args.out, {
        "machine": machine(), "reference": ref_name,
        "configs": {n: asdict(CONFIGS[n]) for n in names}, "totals": totals, "rows": rows,
        "texts": {  # where a configuration's text differs from the reference's: both, to read the difference
            files[i][0].name: {n: texts[i, n] for n in names}
            for i in range(len(files))
            if any(texts[i, n] != texts[i, ref_name] for n in names)
        },
    })
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
