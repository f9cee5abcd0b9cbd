"""OCR settings chosen for ingest throughput (issue 10; measured in bench/bench_ocr.py): the engine is built with
them, the old ones stay reachable, and OCR still reads text under them. Loading an engine takes well under a second;
reading text takes seconds (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from ingest.parsers import ocr, parse_file
from tests.ingest.test_parse_ocr import _picture
from tests.ingest.test_parse_pdf import _scanned_pdf


@pytest.fixture
def restore_settings() -> Iterator[None]:
    before = ocr.settings()
    yield
    ocr.configure(before)


def test_default_settings_and_their_engine_arguments() -> None:
    assert ocr.settings() == ocr.DEFAULT
    assert asdict(ocr.DEFAULT) == {
        "render_scale": 2.0, "max_render_side": 2000, "det_limit_side_len": 736, "det_limit_type": "min",
        "use_cls": True, "rec_batch_num": 1, "threads": 1, "text_score": 0.5,
    }
    assert asdict(ocr.LEGACY) == {
        "render_scale": 2.0, "max_render_side": 2000, "det_limit_side_len": 736, "det_limit_type": "min",
        "use_cls": True, "rec_batch_num": 6, "threads": -1, "text_score": 0.5,
    }
    assert ocr.DEFAULT.engine_kwargs() == {
        "det_limit_side_len": 736, "det_limit_type": "min", "use_cls": True, "rec_batch_num": 1,
        "intra_op_num_threads": 1, "text_score": 0.5,
    }


def test_engine_is_built_with_the_default_settings() -> None:
    engine = ocr.get_engine()
    cfg = ocr.DEFAULT
    assert engine.text_det.limit_side_len == cfg.det_limit_side_len
    assert engine.text_det.limit_type == cfg.det_limit_type
    assert engine.use_cls is cfg.use_cls
    assert engine.text_rec.rec_batch_num == cfg.rec_batch_num
    assert engine.text_score == cfg.text_score
    for session in (engine.text_det.infer, engine.text_cls.infer, engine.text_rec.session):
        assert session.session.get_session_options().intra_op_num_threads == cfg.threads


def test_legacy_settings_get_their_own_engine(restore_settings: None) -> None:
    default_engine = ocr.get_engine()
    ocr.configure(ocr.LEGACY)
    legacy_engine = ocr.get_engine()
    assert legacy_engine is not default_engine and ocr.get_engine() is legacy_engine
    assert legacy_engine.text_rec.rec_batch_num == 6
    ocr.configure(ocr.DEFAULT)
    assert ocr.get_engine() is default_engine  # loaded once per settings and process


@pytest.mark.slow
def test_default_settings_read_a_picture_and_a_scanned_page(tmp_path: Path) -> None:
    path = _picture(tmp_path / "notice.png", [(60, 80, "FIRE EXIT 3"), (800, 80, "LEVEL 12"), (60, 400, "ROOM B")])
    assert parse_file(path).elements[0].text.split("\n") == ["FIRE EXIT 3 LEVEL 12", "ROOM B"]
    texts = [e.text.replace(" ", "") for e in parse_file(_scanned_pdf(tmp_path)).elements]
    assert texts == ["INVOICENUMBER4471", "TOTALDUE980EUR"]  # PP-OCR's spaces come and go (the old settings too)
