"""The bundled sample corpus ingests completely with the network cut off, and every format is searchable."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.service import SearchService
from retrieval.search import SearchParams

pytestmark = pytest.mark.slow


def test_every_format_of_the_sample_corpus_is_ingested_offline(sample_data_dir: Path) -> None:
    if (sample_data_dir / "ingested-offline").read_text() != "yes":
        pytest.skip("unshare -n is not available here: ingested with the network up")
    svc = SearchService(sample_data_dir)
    docs = svc.documents("default")
    exts = {Path(d.source_path).suffix for d in docs}
    assert {".pdf", ".docx", ".html", ".png", ".md", ".txt"} <= exts
    checks = {
        "What does fault code E6 mean?": "fault-codes.pdf",  # table in a text PDF
        "drain pump bulletin SB-2024-07": "service-bulletin-SB-2024-07-scan.pdf",  # OCR of a scanned page
        "室外冷凝器翅片 清洗周期": "maintenance-schedule.docx",  # table in a DOCX
        "保修登记 30天": "warranty-registration-notice-photo.png",  # OCR of a Chinese photo
        "clearance in front of the outdoor unit": "installation-guide.html",
    }
    for query, expected in checks.items():
        hits = svc.search("default", query, 5, SearchParams())
        assert expected in {Path(h.chunk.source_path).name for h in hits}, (query, [h.chunk.source_path for h in hits])
