"""Spreadsheets: XLSX (openpyxl), XLS (xlrd), CSV/TSV (csv + ingest.encoding).

Each sheet is a heading (its name) followed by its table, split into pieces of at most MAX_TABLE_ROWS body
rows with the header (first non-empty row) repeated. Merged cells repeat their value in every cell they cover,
so a row read on its own still says which group it belongs to.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from ingest.elements import ParsedDocument
from ingest.encoding import decode_text
from ingest.errors import EncryptedFile
from ingest.parsers import detect
from ingest.parsers.builder import DocBuilder, Source

# openpyxl's full mode needs ~50x the file size in memory; past this, read-only mode (no merged-cell info).
_FULL_MODE_MAX_BYTES = 8 * 2**20


def format_value(v: Any, number_format: str = "") -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time(0) else v.isoformat(sep=" ")
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, float | int):
        if "%" in number_format:
            return f"{v * 100:.10g}%"
        if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.15g}" if isinstance(v, float) else str(v)
    return str(v)


def parse_xlsx(src: Source) -> ParsedDocument:
    import openpyxl

    full = len(src.data) <= _FULL_MODE_MAX_BYTES
    wb = openpyxl.load_workbook(io.BytesIO(src.data), data_only=True, read_only=not full)
    b = DocBuilder()
    props = wb.properties
    for key, value in (("created", props.created), ("modified", props.modified)):
        if value:
            b.metadata[key] = value.isoformat()
    if props.title:
        b.metadata["title"] = props.title
    if props.creator:
        b.metadata["author"] = props.creator
    if not full:
        b.warnings.append("large workbook read in streaming mode: merged cells are not repeated")
    try:
        for ws in wb.worksheets:
            if not hasattr(ws, "iter_rows"):  # chart sheets
                continue
            grid = [
                [format_value(c.value, getattr(c, "number_format", "") or "") for c in row]
                for row in ws.iter_rows()
            ]
            if full:
                for rng in ws.merged_cells.ranges:
                    _fill_merged(grid, rng.min_row - 1, rng.max_row - 1, rng.min_col - 1, rng.max_col - 1)
            _add_sheet(b, ws.title, grid)
    finally:
        wb.close()
    return b.build(src.stem, title_from_headings=False)  # a sheet name ("Sheet1") is no title


def parse_xls(src: Source) -> ParsedDocument:
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=src.data, formatting_info=True, on_demand=True)
    except xlrd.XLRDError as e:
        if "encrypted" in str(e).lower():
            raise EncryptedFile("password-protected XLS workbook") from None
        raise
    b = DocBuilder()
    if book.user_name:
        b.metadata["author"] = book.user_name
    for sheet in book.sheets():
        grid = []
        for r in range(sheet.nrows):
            row = []
            for c in range(sheet.ncols):
                cell = sheet.cell(r, c)
                if cell.ctype == xlrd.XL_CELL_DATE:
                    row.append(format_value(xlrd.xldate.xldate_as_datetime(cell.value, book.datemode)))
                elif cell.ctype == xlrd.XL_CELL_BOOLEAN:
                    row.append(format_value(bool(cell.value)))
                elif cell.ctype in (xlrd.XL_CELL_ERROR, xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                    row.append("")
                else:
                    row.append(format_value(cell.value))
            grid.append(row)
        for rlo, rhi, clo, chi in sheet.merged_cells:
            _fill_merged(grid, rlo, rhi - 1, clo, chi - 1)
        _add_sheet(b, sheet.name, grid)
    return b.build(src.stem, title_from_headings=False)  # a sheet name ("Sheet1") is no title


def parse_csv(src: Source) -> ParsedDocument:
    text, encoding = decode_text(src.data)
    b = DocBuilder()
    b.metadata["encoding"] = encoding
    if src.mime == detect.TSV:
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:16384], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    csv.field_size_limit(16 * 2**20)
    grid = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    b.add_table(grid)
    return b.build(src.stem, title_from_headings=False)  # a sheet name ("Sheet1") is no title


def _fill_merged(grid: list[list[str]], r0: int, r1: int, c0: int, c1: int) -> None:
    if r0 >= len(grid) or c0 >= len(grid[r0]):
        return
    value = grid[r0][c0]
    for r in range(r0, min(r1, len(grid) - 1) + 1):
        for c in range(c0, min(c1, len(grid[r]) - 1) + 1):
            grid[r][c] = value


def _add_sheet(b: DocBuilder, name: str, grid: list[list[str]]) -> None:
    if not any(any(cell for cell in row) for row in grid):
        return
    b.heading(name, 1)
    b.add_table(grid)
