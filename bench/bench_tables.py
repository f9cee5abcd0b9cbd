"""Tables that survive parsing, measured on the ICDAR 2013 table competition documents (issue 13).

    .venv/bin/python bench/bench_tables.py [--quick] [--only eu-001,us-003] [--methods today,ours,...]

For every PDF under `$RAGQA_DATASETS/icdar2013/{eu,us}` with its `-str.xml` ground truth (`*b-*` files are second
annotations: the `a`/plain one is used), each method's tables are scored against the truth:

- found: ground-truth tables with at least half their cells in one emitted table (on the table's pages);
- cell recall inside tables: a cell counts when its text (whitespace removed, case folded) is inside a cell of an
  emitted table on its pages (substring), or equal to one (whole cell);
- adjacency recall (the competition's structure measure): a cell and its right / lower neighbour (the nearest
  non-empty cell in that direction) kept as neighbours in one emitted table: the neighbour's cell is the nearest
  non-empty, different cell to the right in the same emitted row (below in the same column);
- tables emitted against the truth, and parse seconds per page, wall clock and CPU (methods run interleaved per
  document, so that other load on the machine hits them alike; CPU time is what that load does not inflate).

Methods: `today` (ingest.parsers.pdf with pdfplumber's ruled-table `find_tables()` only, as before issue 13),
`ours` (the parser as it is), `plumber-text` (pdfplumber's text strategy alone on each page), and camelot-py alone
on every page in its `camelot-stream`, `camelot-network` and `camelot-hybrid` flavours.
"""

from __future__ import annotations

import argparse
import sys
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, md_table, require, write_results  # noqa: E402
from ingest.elements import ParsedDocument  # noqa: E402
from ingest.parsers.builder import Source  # noqa: E402
from ingest.parsers.pdf import parse_pdf  # noqa: E402

Grid = list[list[str]]


@dataclass(frozen=True)
class Cell:
    text: str  # normalised
    r0: int
    r1: int
    c0: int
    c1: int


@dataclass(frozen=True)
class TruthTable:
    doc: str
    pages: frozenset[int]
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Emitted:
    pages: frozenset[int]
    grid: tuple[tuple[str, ...], ...]  # normalised cell texts


def norm(s: str) -> str:
    return "".join(unicodedata.normalize("NFKC", s).split()).casefold()


def load_truth(xml_path: Path, doc: str) -> list[TruthTable]:
    out = []
    for t in ET.parse(xml_path).getroot().findall("table"):
        pages: set[int] = set()
        cells: list[Cell] = []
        row_base = 0  # regions of a page-spanning table continue its rows
        for reg in t.findall("region"):
            pages.add(int(reg.get("page", "1")))
            top = row_base
            for c in reg.findall("cell"):
                text = norm(c.findtext("content") or "")
                if not text:
                    continue
                r0, c0 = int(c.get("start-row", "0")), int(c.get("start-col", "0"))
                r1, c1 = int(c.get("end-row", r0)), int(c.get("end-col", c0))
                cells.append(Cell(text, top + r0, top + r1, c0, c1))
                row_base = max(row_base, top + r1 + 1)
        if cells:
            out.append(TruthTable(doc, frozenset(pages), tuple(cells)))
    return out


def truth_pairs(cells: Sequence[Cell]) -> set[tuple[int, int, str]]:
    """(cell index, neighbour index, 'r'|'d'): the nearest occupied cell right of / below each cell."""
    at: dict[tuple[int, int], int] = {}
    for i, c in enumerate(cells):
        for r in range(c.r0, c.r1 + 1):
            for k in range(c.c0, c.c1 + 1):
                at.setdefault((r, k), i)
    max_r = max(c.r1 for c in cells)
    max_c = max(c.c1 for c in cells)
    pairs = set()
    for i, c in enumerate(cells):
        for r in range(c.r0, c.r1 + 1):
            for k in range(c.c1 + 1, max_c + 1):
                j = at.get((r, k))
                if j is not None and j != i:
                    pairs.add((i, j, "r"))
                    break
        for k in range(c.c0, c.c1 + 1):
            for r in range(c.r1 + 1, max_r + 1):
                j = at.get((r, k))
                if j is not None and j != i:
                    pairs.add((i, j, "d"))
                    break
    return pairs


def emitted_pairs(grid: Sequence[Sequence[str]]) -> set[tuple[tuple[int, int], tuple[int, int]]]:
    """Nearest non-empty cell with a different text to the right / below: a merged cell repeated over the
    columns it spans is one cell."""
    pairs = set()
    for r, row in enumerate(grid):
        for k, s in enumerate(row):
            if not s:
                continue
            for k2 in range(k + 1, len(row)):
                if row[k2] and row[k2] != s:
                    pairs.add(((r, k), (r, k2)))
                    break
            for r2 in range(r + 1, len(grid)):
                t = grid[r2][k] if k < len(grid[r2]) else ""
                if t and t != s:
                    pairs.add(((r, k), (r2, k)))
                    break
    return pairs


def score(truth: Sequence[TruthTable], emitted: Sequence[Emitted]) -> dict[str, float]:
    found = cells = sub = whole = adj_total = adj_kept = 0
    for t in truth:
        cands = [e for e in emitted if e.pages & t.pages]
        positions: list[list[list[tuple[int, int]]]] = []  # per candidate, per cell: matching emitted cells
        for e in cands:
            flat = [((r, k), s) for r, row in enumerate(e.grid) for k, s in enumerate(row) if s]
            per_cell = []
            for c in t.cells:
                exact = [p for p, s in flat if s == c.text]
                per_cell.append(exact or [p for p, s in flat if c.text in s])
            positions.append(per_cell)
        cells += len(t.cells)
        best = max((sum(1 for m in pc if m) for pc in positions), default=0)
        found += best * 2 >= len(t.cells)
        for i, c in enumerate(t.cells):
            sub += any(pc[i] for pc in positions)
            whole += any(s == c.text for e in cands for row in e.grid for s in row)
        pairs = truth_pairs(t.cells)
        adj_total += len(pairs)
        kept: set[tuple[int, int, str]] = set()
        for e, pc in zip(cands, positions, strict=True):
            ep = emitted_pairs(e.grid)
            for i, j, d in pairs - kept:
                if any(
                    (a, b) in ep and (a[0] == b[0]) == (d == "r") for a in pc[i] for b in pc[j]
                ):
                    kept.add((i, j, d))
        adj_kept += len(kept)
    return {
        "tables": len(truth),
        "emitted": len(emitted),
        "found": found / max(len(truth), 1),
        "cells": cells,
        "cell_recall": sub / max(cells, 1),
        "cell_recall_whole": whole / max(cells, 1),
        "adjacency": adj_kept / max(adj_total, 1),
    }


# ---- methods ------------------------------------------------------------------------------------------------------


def from_parsed(doc: ParsedDocument) -> list[Emitted]:
    """Table elements back into tables: consecutive pieces of one table (same header and caption) join."""
    out: list[tuple[set[int], list[tuple[str, ...]], Any]] = []
    prev_key = None
    for e in doc.elements:
        if e.kind != "table" or e.table is None:
            prev_key = None
            continue
        key = (e.table.header, e.table.caption)
        rows = [tuple(norm(c) for c in r) for r in e.table.rows]
        if key == prev_key and out:
            out[-1][0].add(e.page or 0)
            out[-1][1].extend(rows)
        else:
            out.append(({e.page or 0}, [tuple(norm(c) for c in e.table.header), *rows], key))
        prev_key = key
    return [Emitted(frozenset(p), tuple(g)) for p, g, _ in out]


def m_parser(strategy: str) -> Callable[[Path], list[Emitted]]:
    def run(pdf: Path) -> list[Emitted]:
        src = Source(path=pdf, data=pdf.read_bytes(), mime="application/pdf", ocr=False)
        return from_parsed(parse_pdf(src, tables=strategy))

    return run


def m_plumber_text(pdf: Path) -> list[Emitted]:
    import pdfplumber

    out = []
    settings = {"vertical_strategy": "text", "horizontal_strategy": "text"}
    with pdfplumber.open(pdf) as doc:
        for n, page in enumerate(doc.pages, start=1):
            for t in page.find_tables(settings):
                grid = tuple(tuple(norm(c or "") for c in row) for row in t.extract())
                out.append(Emitted(frozenset({n}), grid))
    return out


def m_camelot(flavor: str) -> Callable[[Path], list[Emitted]]:
    def run(pdf: Path) -> list[Emitted]:
        import camelot

        tables = camelot.read_pdf(str(pdf), flavor=flavor, pages="all", suppress_stdout=True)
        return [
            Emitted(frozenset({int(t.page)}), tuple(tuple(norm(str(c)) for c in r) for r in t.df.values.tolist()))
            for t in tables
        ]

    return run


METHODS: dict[str, Callable[[Path], list[Emitted]]] = {
    "today": m_parser("ruled"),
    "ours": m_parser("auto"),
    "plumber-text": m_plumber_text,
    "camelot-stream": m_camelot("stream"),
    "camelot-network": m_camelot("network"),
    "camelot-hybrid": m_camelot("hybrid"),
}


def documents(root: Path, only: set[str] | None) -> list[tuple[str, str, Path, Path]]:
    """(set, name, pdf, truth) for every document; `b` second annotations are skipped."""
    out = []
    for part in ("eu", "us"):
        for pdf in sorted((root / part).glob("*.pdf")):
            truth = pdf.with_name(f"{pdf.stem}-str.xml")
            if truth.exists() and (only is None or pdf.stem in only):
                out.append((part, pdf.stem, pdf, truth))
    return out


def page_count(pdf: Path) -> int:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    try:
        return len(doc)
    finally:
        doc.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated document names (eu-001,...)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default="tables")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 documents, today against ours")
    args = ap.parse_args(argv)
    if args.quick:
        args.only, args.methods, args.out = "eu-001,eu-002,us-001,us-003", "today,ours", "tables-quick"
    root = require("icdar2013")
    methods = [m for m in args.methods.split(",") if m]
    try:
        import camelot  # noqa: F401
    except ImportError:
        print("camelot-py is not installed: its methods are skipped", file=sys.stderr)
        methods = [m for m in methods if not m.startswith("camelot")]
    docs = documents(root, set(args.only.split(",")) if args.only else None)
    truth: dict[str, list[TruthTable]] = {}
    emitted: dict[tuple[str, str], list[Emitted]] = {}
    seconds: dict[tuple[str, str], float] = {}
    cpu: dict[tuple[str, str], float] = {}  # CPU seconds: what other load on the machine does not inflate
    pages: dict[str, int] = {}
    for n, (_, name, pdf, xml) in enumerate(docs):
        truth[name] = load_truth(xml, name)
        pages[name] = page_count(pdf)
        order = methods[n % len(methods) :] + methods[: n % len(methods)]  # interleaved: no method always first
        for m in order:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                emitted[(m, name)] = METHODS[m](pdf)
            except Exception as e:  # a baseline library failing on a document scores nothing there
                print(f"{m} failed on {name}: {type(e).__name__}: {e}", file=sys.stderr)
                emitted[(m, name)] = []
            seconds[(m, name)] = time.perf_counter() - t0
            cpu[(m, name)] = time.process_time() - c0
        print(f"{name}: {len(truth[name])} tables, " + ", ".join(
            f"{m} {len(emitted[(m, name)])}" for m in methods), file=sys.stderr)
    rows: list[dict[str, Any]] = []
    per_doc: dict[str, dict[str, dict[str, float]]] = {}
    for subset in ("eu", "us", "all"):
        names = [name for part, name, _, _ in docs if subset in (part, "all")]
        if not names:
            continue
        for m in methods:
            agg = score_many(truth, emitted, m, names)
            n_pages = sum(pages[x] for x in names)
            rows.append({
                "set": subset, "method": m, **agg,
                "s_per_page": sum(seconds[(m, x)] for x in names) / n_pages,
                "cpu_s_per_page": sum(cpu[(m, x)] for x in names) / n_pages,
            })
    for _, name, _, _ in docs:
        per_doc[name] = {m: score(truth[name], emitted[(m, name)]) for m in methods}
    cols = [
        ("set", "set", "s"), ("method", "method", "s"), ("tables", "truth tables", "d"),
        ("emitted", "emitted", "d"), ("found", "found", ".0%"), ("cell_recall", "cell recall", ".2f"),
        ("cell_recall_whole", "whole-cell", ".2f"), ("adjacency", "adjacency", ".2f"),
        ("s_per_page", "s/page", ".3f"), ("cpu_s_per_page", "CPU s/page", ".3f"),
    ]
    print(md_table(rows, cols))
    path = write_results(args.out, {
        "machine": machine(), "command": " ".join(["bench/bench_tables.py", *(argv or sys.argv[1:])]),
        "documents": len(docs), "pages": sum(pages.values()), "rows": rows, "per_document": per_doc,
    })
    print(f"wrote {path}")
    return 0


def score_many(
    truth: dict[str, list[TruthTable]], emitted: dict[tuple[str, str], list[Emitted]], m: str, names: list[str]
) -> dict[str, float]:
    """Pooled over documents: the counts add up, then the ratios are taken."""
    totals = {"tables": 0.0, "emitted": 0.0, "found": 0.0, "cells": 0.0, "sub": 0.0, "whole": 0.0,
              "adj": 0.0, "adj_n": 0.0}
    for x in names:
        s = score(truth[x], emitted[(m, x)])
        n_adj = sum(len(truth_pairs(t.cells)) for t in truth[x])
        totals["tables"] += s["tables"]
        totals["emitted"] += s["emitted"]
        totals["found"] += s["found"] * s["tables"]
        totals["cells"] += s["cells"]
        totals["sub"] += s["cell_recall"] * s["cells"]
        totals["whole"] += s["cell_recall_whole"] * s["cells"]
        totals["adj"] += s["adjacency"] * n_adj
        totals["adj_n"] += n_adj
    return {
        "tables": int(totals["tables"]),
        "emitted": int(totals["emitted"]),
        "found": totals["found"] / max(totals["tables"], 1),
        "cell_recall": totals["sub"] / max(totals["cells"], 1),
        "cell_recall_whole": totals["whole"] / max(totals["cells"], 1),
        "adjacency": totals["adj"] / max(totals["adj_n"], 1),
    }


if __name__ == "__main__":
    raise SystemExit(main())
