"""Zip bombs in Office and EPUB clothing: refused from the zip directory, before anything is inflated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ingest.parsers import parse_file
from ingest.parsers.archive import ArchiveBomb, ArchiveLimits
from ingest.pipeline import IngestOptions, Ingestor
from retrieval.collection import Collection

REPO = Path(__file__).resolve().parents[2]
MiB = 2**20
# Just enough of each format's skeleton for detection to say what it is; `big` is the member that inflates.
_FORMATS = {
    "docx": ({"[Content_Types].xml": "<Types/>"}, "word/document.xml"),
    "xlsx": ({"[Content_Types].xml": "<Types/>"}, "xl/sharedStrings.xml"),
    "pptx": ({"[Content_Types].xml": "<Types/>"}, "ppt/slides/slide1.xml"),
    "epub": ({}, "OEBPS/chapter1.xhtml"),
}
_DOCX_BODY = ('<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>', "</w:body>"
              "</w:document>")


def _real_docx() -> dict[str, bytes]:
    """The members of a real DOCX written by python-docx, so that its reader gets as far as the main part."""
    import io

    import docx

    buf = io.BytesIO()
    docx.Document().save(buf)
    with zipfile.ZipFile(buf) as z:
        return {n: z.read(n) for n in z.namelist()}


def _bomb(path: Path, fmt: str, mib: int, member: str | None = None, fill: bytes = b" ") -> Path:
    """A file of format `fmt` whose member `member` (the format's main part by default) inflates to `mib` MiB."""
    small, main = _FORMATS[fmt]
    member = member or main
    members: dict[str, str | bytes] = {**small, **_real_docx()} if fmt == "docx" else dict(small)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        if fmt == "epub" and member != "mimetype":
            z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for name, text in members.items():
            if name != member:
                z.writestr(name, text)
        head, tail = (_DOCX_BODY if member == "word/document.xml" else
                      ("application/epub+zip" if member == "mimetype" else "", ""))
        with z.open(member, "w", force_zip64=True) as f:
            f.write(head.encode())
            block = fill * MiB if len(fill) == 1 else fill
            for _ in range(mib):
                f.write(block)
            f.write(tail.encode())
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "member"), [("docx", None), ("epub", "mimetype")])
def test_a_1_gib_member_is_refused_without_inflating_it(tmp_path: Path, fmt: str, member: str | None) -> None:
    """The probe's file: 1 GiB deflated into a few MB. The check reads sizes only: memory stays near the baseline.

    An EPUB's `mimetype` member is read to tell EPUB from other zips: that read must not inflate it either.
    """
    path = _bomb(tmp_path / f"bomb.{fmt}", fmt, 1024, member)
    assert path.stat().st_size < 8 * MiB
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from ingest.parsers import parse_file\n"
        "try:\n"
        "    parse_file(Path(sys.argv[1])); why = None\n"
        "except Exception as e:\n"
        "    why = f'{type(e).__name__}: {e}'\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec, so a child of a
        # test process that holds models would report the parent's peak.
        "hwm = next(ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:'))\n"
        "print(json.dumps({'why': why, 'peak_mib': int(hwm.split()[1]) / 1024}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["why"] and result["why"].startswith("ArchiveBomb"), result
    assert "1,024.0 MiB" in result["why"] and "RAGQA_ARCHIVE_MAX_UNPACKED_MB" in result["why"], result
    assert result["peak_mib"] < 400, result  # inflating the member alone would take 1024


@pytest.mark.parametrize("fmt", sorted(_FORMATS))
def test_every_zip_based_format_is_held_to_the_ratio(tmp_path: Path, fmt: str) -> None:
    path = _bomb(tmp_path / f"small-bomb.{fmt}", fmt, 8)  # 8 MiB of spaces: some 200x, far under the size limit
    with pytest.raises(ArchiveBomb, match=r"inflate [\d,]+x .* over the 100x limit \(RAGQA_ARCHIVE_MAX_RATIO\)"):
        parse_file(path)


@pytest.mark.slow  # the first DOCX parse imports unstructured and spaCy
def test_limits_are_arguments_and_real_documents_pass(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_heading("Seals", level=1)
    d.add_paragraph("Replace the feed pump seals every 18 months. " * 200)
    d.save(str(tmp_path / "real.docx"))
    assert "feed pump seals" in parse_file(tmp_path / "real.docx").text  # the default limits let it through
    # Incompressible bytes: only the total can catch them, here under a limit of 2 MiB.
    noisy = _bomb(tmp_path / "noisy.docx", "docx", 3, "word/media/noise.bin", fill=os.urandom(MiB))
    limits = ArchiveLimits(max_unpacked_bytes=2 * MiB)
    too_big = r"unpack to 3\.\d MiB .*'word/media/noise.bin': 3\.0 MiB\), over the 2\.0 MiB limit"
    with pytest.raises(ArchiveBomb, match=too_big):
        parse_file(noisy, archive=limits)
    lax = ArchiveLimits(max_ratio=1000.0)
    assert parse_file(_bomb(tmp_path / "spaces.docx", "docx", 2), archive=lax).text == ""  # under 1000x: parsed


@pytest.mark.slow
def test_a_bomb_fails_alone_and_the_rest_of_the_batch_is_indexed(tmp_path: Path, embedder, chunking) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    folder.mkdir()
    _bomb(folder / "bomb.docx", "docx", 8)
    (folder / "pumps.md").write_text("# Pumps\n\nThe feed pump needs new seals every 18 months.\n", encoding="utf-8")
    col = Collection(tmp_path / "data", "kb").open(embedder=embedder.name, dim=embedder.dim,
                                                   chunking=chunking.to_manifest(), create=True)
    report = Ingestor(col, embedder, chunking, IngestOptions(workers=0)).ingest_paths([folder])
    by_name = {Path(r.path).name: r for r in report.results}
    assert by_name["pumps.md"].status == "added"
    assert by_name["bomb.docx"].status == "failed" and "RAGQA_ARCHIVE_MAX_RATIO" in by_name["bomb.docx"].reason
    assert [Path(d.source_path).name for d in col.store.documents()] == ["pumps.md"]
    col.close()
