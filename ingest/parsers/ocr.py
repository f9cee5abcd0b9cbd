"""OCR with RapidOCR (PP-OCR detection + recognition, Chinese and English, ONNX models bundled in the wheel).

Loading the three ONNX sessions takes a few seconds, so one engine serves the whole process (lazy singleton);
onnxruntime sessions are safe to call from several threads, so calls are not serialised.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

_engine: Any = None
_lock = threading.Lock()


def get_engine() -> Any:
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                from rapidocr_onnxruntime import RapidOCR

                _engine = RapidOCR()
    return _engine


def ocr_lines(image: Any) -> list[str]:
    """Text lines of a PIL image, top to bottom and left to right within a line."""
    return [text for _, _, text in _rows(image)]


def ocr_blocks(image: Any) -> list[str]:
    """OCR'd lines grouped into paragraphs: a vertical gap above 1.2 line heights starts a new one."""
    rows = _rows(image)
    if not rows:
        return []
    height = sorted(bottom - top for top, bottom, _ in rows)[len(rows) // 2]
    blocks: list[list[str]] = [[rows[0][2]]]
    for (_, prev_bottom, _), (top, _, text) in zip(rows, rows[1:], strict=False):
        if top - prev_bottom > 1.2 * height:
            blocks.append([])
        blocks[-1].append(text)
    return ["\n".join(b) for b in blocks]


def _rows(image: Any) -> list[tuple[float, float, str]]:
    import numpy as np

    rgb = image.convert("RGB")
    bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])  # RapidOCR follows OpenCV's BGR order
    result, _ = get_engine()(bgr)
    boxes = []
    for box, text, _score in result or []:
        ys = [p[1] for p in box]
        xs = [p[0] for p in box]
        if str(text).strip():
            boxes.append((min(ys), max(ys), min(xs), str(text).strip()))
    return order_rows(boxes)


def order_rows(boxes: list[tuple[float, float, float, str]]) -> list[tuple[float, float, str]]:
    """Groups (top, bottom, left, text) boxes into rows: a box joins a row when it overlaps the row vertically
    by more than half of the smaller height; rows are read top-down, boxes in a row left to right.
    Returns (top, bottom, text) per row."""
    rows: list[list[tuple[float, float, float, str]]] = []
    for box in sorted(boxes, key=lambda b: (b[0] + b[1]) / 2):
        top, bottom = box[0], box[1]
        if rows:
            row = rows[-1]
            r_top, r_bottom = min(b[0] for b in row), max(b[1] for b in row)
            overlap = min(bottom, r_bottom) - max(top, r_top)
            if overlap > 0.5 * min(bottom - top, r_bottom - r_top):
                row.append(box)
                continue
        rows.append([box])
    return [
        (
            min(b[0] for b in row),
            max(b[1] for b in row),
            " ".join(b[3] for b in sorted(row, key=lambda b: b[2])),
        )
        for row in rows
    ]


def ocr_file(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as img:
        return "\n".join(ocr_lines(img))
