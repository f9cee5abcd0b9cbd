"""PDF table detection and structure beyond pdfplumber's ruled tables (issue 13).

Measured on the ICDAR 2013 dev documents (`bench/bench_tables.py`, docs/benchmarks.md#pdf-tables): pdfplumber's
line-based `find_tables()` misses tables ruled with horizontal lines only or not at all (40 % of the US tables
found); camelot's stream mode (text-edge detection of table areas, columns from word alignment) finds them and
keeps rows and columns together, at a third of pdfplumber's cost per page (camelot 2 reads with playa). Its
false positives are paragraphs of prose cut into columns, which `_looks_tabular` drops by cell length.

A ruled table wins its area where its grid is the fuller one (`prefer_ruled`). Merged cells repeat their text
over the rows they span, and in the header over the columns too (`ruled_grid`; for borderless tables
`spread_header`), so each row still says what its columns mean; camelot's one-row-per-text-line grid gets its
multi-line cells joined back (`merge_wrapped`); a caption or units line that camelot took in as the table's first
row moves to the caption.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Cells of a real table are short (numbers, labels); prose cut into columns has long ones.
_MAX_MEAN_CELL = 30
_MAX_MEAN_CELL_DENSE = 40  # allowed when the grid is dense (little empty space): text tables exist
_DENSE_WHITESPACE = 25.0  # camelot's parsing report: percent of empty cells
_RULED_SHARE = 0.7  # a ruled grid with at least this share of camelot's cell count wins the area
_MERGED_ROWS = 2  # a cell with this many line breaks is probably several rows merged
_MAX_MULTILINE = 0.2  # share of such cells above which the ruled grid loses
_NUMBER = re.compile(r"[-–+(]?[$€£]?\s?[\d.,]+\s?[%)]?[a-z*]?|[-–—.]+|n/?a", re.IGNORECASE)
_YEAR = re.compile(r"(19|20)\d\d")
_MAX_CAPTION = 200  # characters
_CAPTION = re.compile(
    r"^(table|tab\.|exhibit|schedule|appendix table)\s*[\w.\-–:]*|^\(?\s*(in|amounts in|figures in)\s+"
    r"(thousands|millions|billions|percent|per cent|%|eur|usd|\$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PageTable:
    page: int  # 1-based
    bbox: tuple[float, float, float, float]  # x0, top, x1, bottom: pdfplumber's page coordinates (top-down)
    grid: tuple[tuple[str, ...], ...]
    caption: str = ""


def stream_tables(data: bytes, heights: Sequence[float]) -> dict[int, list[PageTable]]:
    """Tables camelot's stream mode finds on every page, prose-like ones dropped; keyed by page number."""
    import camelot

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No tables found in table area": a page without tables
        found = camelot.read_pdf(data, flavor="stream", pages="all", suppress_stdout=True)
    out: dict[int, list[PageTable]] = {}
    for t in found:
        page = int(t.page)
        grid = [[" ".join(str(c).split()) for c in row] for row in t.df.values.tolist()]
        x0, y0, x1, y1 = (float(v) for v in t._bbox)  # PDF coordinates, origin bottom left
        lo, hi = _trim(grid)
        if (lo, hi) != (0, len(grid)) and len(t.rows) == len(grid) and hi > lo:
            # The table's box shrinks to its kept rows, so that the prose around it stays a paragraph.
            y1, y0 = min(y1, float(t.rows[lo][0])), max(y0, float(t.rows[hi - 1][1]))
        grid = grid[lo:hi]
        if not _looks_tabular(grid, float(t.parsing_report.get("whitespace", 100.0))):
            continue
        caption, grid = _split_caption(grid)
        grid = spread_header(merge_wrapped(grid))
        height = heights[page - 1] if 0 < page <= len(heights) else y1
        out.setdefault(page, []).append(
            PageTable(page, (x0, height - y1, x1, height - y0), tuple(tuple(r) for r in grid), caption)
        )
    return out


def _trim(grid: Sequence[Sequence[str]]) -> tuple[int, int]:
    """Rows [lo, hi) without the lines of prose camelot takes in above and below a table: rows of long text
    that do not read like a caption."""

    def prose(row: Sequence[str]) -> bool:
        filled = [c for c in row if c]
        return bool(filled) and not is_caption(" ".join(filled)) and (
            sum(len(c) for c in filled) / len(filled) > _MAX_MEAN_CELL_DENSE
        )

    lo, hi = 0, len(grid)
    while lo < hi and (prose(grid[lo]) or not any(grid[lo])):
        lo += 1
    while hi > lo and (prose(grid[hi - 1]) or not any(grid[hi - 1])):
        hi -= 1
    return lo, hi


def _looks_tabular(grid: Sequence[Sequence[str]], whitespace: float) -> bool:
    cells = [c for row in grid for c in row if c]
    if len(grid) < 2 or max((len(r) for r in grid), default=0) < 2 or not cells:
        return False
    if sum(1 for row in grid if sum(1 for c in row if c) >= 2) < 2:
        return False  # a column of lines (a heading over prose over a caption) with one real row under it
    mean = sum(len(c) for c in cells) / len(cells)
    return mean <= _MAX_MEAN_CELL or (mean <= _MAX_MEAN_CELL_DENSE and whitespace <= _DENSE_WHITESPACE)


def merge_wrapped(grid: Sequence[Sequence[str]]) -> list[list[str]]:
    """Rows that are the second line of multi-line cells, joined to the row they continue (camelot makes a row
    of every text line):

    - in the header (the rows above the first row of numbers), a row whose filled columns are all filled in the
      row above: "to air" over "kg/year" is one cell; a spanning title over its sub-headers is not merged;
    - in the body, a label alone in the first column that starts in lower case (or with a bracket) continues
      the label above it; a row of values under a row holding only a label belongs to that label (values set
      against the second line of a two-line label, or centred between its lines).
    """
    rows = [list(r) for r in grid]
    first_data = next((i for i, r in enumerate(rows) if _numeric_row(r)), len(rows))
    out: list[list[str]] = []
    for i, row in enumerate(rows):
        filled = {j for j, c in enumerate(row) if c}
        prev = out[-1] if out else None
        if prev is not None and filled:
            prev_filled = {j for j, c in enumerate(prev) if c}
            if i < first_data and prev_filled and filled <= prev_filled and len(filled) > 1:
                out[-1] = [f"{a} {b}".strip() for a, b in zip(prev, row, strict=False)]
                continue
            if i > first_data and filled == {0} and _continues(row[0]):
                prev[0] = f"{prev[0]} {row[0]}".strip()
                continue
            if i >= first_data and prev_filled == {0} and (0 not in filled or _continues(row[0])):
                out[-1] = [f"{prev[0]} {row[0]}".strip(), *row[1:]]  # values set against a label's 2nd line
                continue
        out.append(row)
    return out


def spread_header(grid: Sequence[Sequence[str]]) -> list[list[str]]:
    """A borderless table's spanning header ("Population" centred over "2009" and "2010") sits in one column of
    camelot's grid: repeat it over the sub-headers under it, each sub-header taking the nearest spanning cell.
    Only in header rows (above the first row of numbers), only into empty cells, never into the label column."""
    rows = [list(r) for r in grid]
    for i in range(_header_rows(rows) - 1):
        spans = [j for j, c in enumerate(rows[i]) if c and j > 0]
        below = [j for j, c in enumerate(rows[i + 1]) if c and j > 0 and not rows[i][j]]
        if not spans:
            continue
        texts = {j: rows[i][j] for j in spans}
        for j in below:
            nearest = min(spans, key=lambda f: (abs(f - j), f))
            rows[i][j] = texts[nearest]
    return rows


def _header_rows(grid: Sequence[Sequence[str]]) -> int:
    """How many rows head the table: those above the first row of numbers; a table of words (no such row) has
    one, so that a wide cell in its body is not taken for a spanning header."""
    first_data = next((i for i, r in enumerate(grid) if _numeric_row(r)), len(grid))
    return first_data if first_data < len(grid) else 1


def _continues(label: str) -> bool:
    return label[:1].islower() or label[:1] in "(-–&/"


def _numeric_row(row: Sequence[str]) -> bool:
    filled = [c for c in row if c]
    nums = sum(1 for c in filled if _NUMBER.fullmatch(c) and not _YEAR.fullmatch(c))  # years head columns
    return nums >= 1 and nums * 2 >= len(filled)


def is_caption(text: str) -> bool:
    """A short line that names a table or gives its units: "Table 3. Population", "(in thousands)"."""
    return len(text) <= _MAX_CAPTION and bool(_CAPTION.match(text.strip()))


def _split_caption(grid: list[list[str]]) -> tuple[str, list[list[str]]]:
    """Leading one-cell rows that read like a caption ("Table 3 - ...", "(in thousands)") become the caption."""
    caption: list[str] = []
    while len(grid) > 2:
        filled = [c for c in grid[0] if c]
        if len(filled) == 1 and is_caption(filled[0]):
            caption.append(filled[0])
            grid = grid[1:]
        else:
            break
    return continue_caption(" ".join(caption), grid) if caption else ("", grid)


def continue_caption(caption: str, grid: Sequence[Sequence[str]]) -> tuple[str, list[list[str]]]:
    """A caption's next line, taken in as the table's first row, back into the caption: a one-cell row in lower
    case ("Table 7: Participation in ... educational" over "institutions in 2004")."""
    rows = [list(r) for r in grid]
    while len(rows) > 2:
        filled = [c for c in rows[0] if c]
        if len(filled) != 1 or not filled[0][:1].islower():
            break
        caption = f"{caption} {filled[0]}"
        rows = rows[1:]
    return caption, rows


def ruled_grid(table: Any) -> list[list[str]]:
    """A pdfplumber table as a grid in which a merged cell's text repeats over the rows it spans, and in the
    header (the rows above the first row of numbers) over the columns too; pdfplumber's `extract()` leaves the
    covered positions None. A body row that is one wide cell (a section title, or a row whose columns have no
    rules) keeps its text in its first column."""
    texts = table.extract()
    cells: list[tuple[tuple[float, float, float, float], str]] = []
    for row, row_texts in zip(table.rows, texts, strict=False):
        for bbox, text in zip(row.cells, row_texts, strict=False):
            if bbox is not None:
                cells.append((bbox, text or ""))
    if not cells:
        return [[c or "" for c in r] for r in texts]
    xs = sorted({round(b[0], 1) for b, _ in cells})
    tops = sorted({round(b[1], 1) for b, _ in cells})
    spans = []
    for (x0, top, x1, bottom), text in cells:
        rows = [i for i, t in enumerate(tops) if top - 0.5 <= t < bottom - 0.5]
        cols = [j for j, x in enumerate(xs) if x0 - 0.5 <= x < x1 - 0.5]
        if rows and cols:
            spans.append((rows, cols, text))
    grid = [[""] * len(xs) for _ in tops]
    for rows, cols, text in spans:
        for i in rows:
            grid[i][cols[0]] = text
    head = _header_rows(grid)
    for rows, cols, text in spans:
        if rows[0] < head:
            for i in rows:
                for j in cols:
                    grid[i][j] = text
    return grid


def prefer_ruled(ruled: Sequence[Sequence[str | None]], stream: Sequence[Sequence[Sequence[str]]]) -> bool:
    """The ruled grid where it holds about as many cells as camelot's for the same area with few cells of
    several lines: a table ruled with horizontal lines only comes out of pdfplumber as a few tall cells of
    merged rows, and then camelot's alignment-based grid is the better one. `ruled`: pdfplumber's `extract()`,
    merged cells counted once."""
    cells = [c for row in ruled for c in row if c]
    if not cells:
        return False
    rival = sum(1 for g in stream for row in g for c in row if c)
    multiline = sum(1 for c in cells if c.count("\n") >= _MERGED_ROWS) / len(cells)
    return len(cells) >= _RULED_SHARE * rival and multiline <= _MAX_MULTILINE


def overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """True when the boxes share at least half of the smaller one's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return False
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h >= 0.5 * max(small, 1e-6)


def joinable(prev: Sequence[Sequence[str]], nxt: Sequence[Sequence[str]]) -> bool:
    """A table continued on the next page: as many columns (a repeated header row is dropped by `join`)."""
    return bool(prev) and bool(nxt) and len(prev[0]) == len(nxt[0])


def join(prev: Sequence[Sequence[str]], nxt: Sequence[Sequence[str]]) -> list[list[str]]:
    rows = [list(r) for r in nxt]
    if rows and [c.casefold() for c in rows[0]] == [c.casefold() for c in prev[0]]:
        rows = rows[1:]  # the header repeated at the top of the continuation
    return [list(r) for r in prev] + rows
