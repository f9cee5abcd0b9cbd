"""OCR with RapidOCR (PP-OCR detection + recognition, Chinese and English, ONNX models bundled in the wheel).

Loading the three ONNX sessions takes a few seconds, so one engine per settings serves the whole process (built on
first use); onnxruntime sessions are safe to call from several threads, so calls are not serialised.

Settings (issue 10, ingest throughput): `DEFAULT` runs onnxruntime on one thread and recognises one line per run;
`LEGACY` (the engine's defaults: a thread per core, 6 lines per run) stays for bench/bench_ocr.py. On the 14 files
that ingest OCRs in shared/datasets/docs and examples/corpus (2-vCPU AMD EPYC, load 4-6): 87 s of CPU against 203 s
(0.43x; small_ocr.pdf 38 s against 89 s), text similarity to the old output >= 0.989 on every file (identical on 6,
>= 0.990 with spaces removed), the differences mostly spaces between words (bench/results/ocr.json). Measured on top
of these and not taken (bench/results/ocr-levers.json): the angle classifier off, then also detection at a long side
of 1280 or 960 px, then also pages rendered at 1.5x (108 dpi) save 2-7 % more CPU but cost text (lowest similarity
0.954, 0.906, 0.880). text_score only filters lines after recognition: no CPU to save there.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class OcrSettings:
    render_scale: float = 2.0  # PDF pages without a text layer, pixels per point: 144 dpi, enough for ordinary print
    max_render_side: int = 2000  # pixels; poster-sized pages exhaust onnxruntime and gain nothing
    det_limit_side_len: int = 736  # detection input size: see det_limit_type
    det_limit_type: str = "min"  # "min": the short side is scaled up to the limit; "max": the long side down to it
    use_cls: bool = True  # the 0/180 degree line classifier
    rec_batch_num: int = 6  # text lines per recognition run
    threads: int = -1  # onnxruntime intra-op threads per session; -1: its default, one per core
    text_score: float = 0.5  # lines recognised with less confidence are dropped

    def engine_kwargs(self) -> dict[str, Any]:
        """RapidOCR's keyword arguments (rapidocr_onnxruntime/config.yaml names them)."""
        kw = asdict(self)
        del kw["render_scale"], kw["max_render_side"], kw["threads"]
        return kw | {"intra_op_num_threads": self.threads}


LEGACY = OcrSettings()  # before issue 10
# One thread: ingest runs a parser process per core, and onnxruntime's pool of a thread per core in each of them
# costs CPU beyond the work (its threads spin while they wait, by default): 0.78x CPU alone, identical text.
# One line per recognition run: PP-OCRv4's recogniser is slower per line in batches (one page of small_ocr.pdf,
# 26 lines: 2.4 s of CPU one by one, 4.6 s in 6s, 16.8 s in 16s); a line no longer padded to its batch's widest one
# reads with slightly different spacing.
DEFAULT = replace(LEGACY, threads=1, rec_batch_num=1)

_settings = DEFAULT
_engines: dict[OcrSettings, Any] = {}  # one per settings used: a benchmark switching back and forth loads each once
_lock = threading.Lock()


def settings() -> OcrSettings:
    return _settings


def configure(new: OcrSettings) -> None:
    """OCR with `new` from the next call on (benchmarks and tests)."""
    global _settings
    _settings = new


def get_engine() -> Any:
    cfg = _settings
    engine = _engines.get(cfg)
    if engine is None:
        with _lock:
            engine = _engines.get(cfg)
            if engine is None:
                from rapidocr_onnxruntime import RapidOCR

                engine = _engines[cfg] = RapidOCR(**cfg.engine_kwargs())
    return engine


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
