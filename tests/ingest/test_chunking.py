"""Chunking with the real bundled WordPiece tokenizer, on documents built in the test."""

from __future__ import annotations

import re

import pytest

from ingest.chunking import ChunkDraft, ChunkingSettings, SectionDraft, TokenCounter, chunk_document
from ingest.elements import Element, ImageRef, ParsedDocument, Table
from retrieval.sentences import split_sentences, table_lines

SETTINGS = ChunkingSettings(levels=(128, 256, 512))  # several levels: every one must obey the rules


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter().load()


def english(n: int, seed: int = 0) -> str:
    return " ".join(
        f"Sentence {seed}-{i} says that the policy number {i} applies to team {i % 7} from January."
        for i in range(n)
    )


def chinese(n: int) -> str:
    return "".join(f"第{i}条规定，员工在第{i}个季度可以申请{i % 5 + 1}天带薪休假。" for i in range(n))


def table(rows: int, caption: str = "Table 1: leave days") -> Table:
    return Table(
        ("Region", "Days", "Note"),
        tuple((f"Region {i}", str(i), f"applies to offices opened after {2000 + i}") for i in range(rows)),
        caption=caption,
    )


def mixed_document() -> ParsedDocument:
    t = table(30)
    return ParsedDocument(
        (
            Element("title", "Employee Handbook"),
            Element("paragraph", english(20, 1), page=1),
            Element("heading", "Leave", ("Leave",), page=2),
            Element("paragraph", chinese(25), ("Leave",), page=2),
            Element("table", t.to_markdown(), ("Leave",), page=3, table=t),
            Element("paragraph", english(12, 2), ("Leave",), page=3),
            Element(
                "image",
                "Figure 2: the leave request form. " + english(3, 3),
                ("Leave",),
                page=4,
                image=ImageRef("page 4", ocr_text="..."),
            ),
            Element("heading", "Travel", ("Travel",), page=5),
            Element("list_item", "- Book trains through the portal.", ("Travel",), page=5),
            Element("list_item", "- Keep every receipt.", ("Travel",), page=5),
            Element("paragraph", "word " * 600, ("Travel",), page=6),
        )
    )


def by_level(chunks: list[ChunkDraft], level: int) -> list[ChunkDraft]:
    return [c for c in chunks if c.level == level]


def test_sizes_within_level_and_counts_true(counter: TokenCounter) -> None:
    doc = mixed_document()
    _, chunks = chunk_document(doc, SETTINGS, counter)
    for level in SETTINGS.levels:
        level_chunks = by_level(chunks, level)
        assert [c.position for c in level_chunks] == list(range(len(level_chunks)))
        for c in level_chunks:
            assert c.token_count <= level, (level, c.kind, c.token_count, c.text[:80])
            assert counter.count(c.text) == c.token_count, c.text[:80]
    # More, smaller chunks at the small level.
    assert len(by_level(chunks, 128)) > len(by_level(chunks, 256)) > len(by_level(chunks, 512))


def test_offsets_slice_the_document_text(counter: TokenCounter) -> None:
    doc = mixed_document()
    text = doc.text
    _, chunks = chunk_document(doc, SETTINGS, counter)
    kinds = {c.kind for c in chunks}
    assert kinds == {"text", "table", "image"}
    for c in chunks:
        assert c.char_start is not None and c.char_end is not None
        span = text[c.char_start : c.char_end]
        if c.kind == "table":
            assert c.text == span or (
                c.text.endswith("\n" + span) and c.text.startswith("Table 1: leave days\n")
            )
        else:
            assert c.text == span


def test_overlap_between_consecutive_text_chunks(counter: TokenCounter) -> None:
    doc = ParsedDocument((Element("paragraph", english(60)),))
    _, chunks = chunk_document(doc, SETTINGS, counter)
    for level in SETTINGS.levels:
        cs = by_level(chunks, level)
        assert len(cs) >= 2
        for a, b in zip(cs, cs[1:], strict=False):
            assert a.char_start is not None and a.char_end is not None and b.char_start is not None
            assert a.char_start < b.char_start < a.char_end, "consecutive chunks must overlap"
            shared = doc.text[b.char_start : a.char_end]
            assert a.text.endswith(shared) and b.text.startswith(shared)
            assert shared.startswith("Sentence ") and shared.endswith("."), "overlap is whole sentences"
            # About `overlap * level` tokens, at most half the level.
            assert 0.15 * level * 0.5 <= counter.count(shared) <= level // 2


def test_no_overlap_when_disabled(counter: TokenCounter) -> None:
    doc = ParsedDocument((Element("paragraph", english(60)),))
    _, chunks = chunk_document(doc, ChunkingSettings(overlap=0.0), counter)
    cs = by_level(chunks, 128)
    assert all(
        a.char_end is not None and b.char_start is not None and a.char_end < b.char_start
        for a, b in zip(cs, cs[1:], strict=False)
    )


def test_chinese_paragraph_split_at_sentence_ends(counter: TokenCounter) -> None:
    doc = ParsedDocument((Element("paragraph", chinese(40)),))
    _, chunks = chunk_document(doc, SETTINGS, counter)
    cs = by_level(chunks, 128)
    assert len(cs) >= 3
    for c in cs:
        assert c.text.startswith("第") and c.text.endswith("。"), c.text
        assert c.token_count <= 128


def test_sentence_splitter_chinese_english_mixed() -> None:
    def sents(t: str) -> list[str]:
        return [t[a:b] for a, b in split_sentences(t)]

    assert sents("公司规定，员工有年假。病假需证明！如何申请？请联系HR；谢谢。") == [
        "公司规定，员工有年假。",
        "病假需证明！",
        "如何申请？",
        "请联系HR；",
        "谢谢。",
    ]
    assert sents("他说：“好。”然后走了。") == ["他说：“好。”", "然后走了。"]
    assert sents(
        "We use tools, e.g. Python. Dr. Smith lives in the U.S. Army base. Version 3.5 is out. Done."
    ) == [
        "We use tools, e.g. Python.",
        "Dr. Smith lives in the U.S. Army base.",
        "Version 3.5 is out.",
        "Done.",
    ]
    assert sents("See Fig. 3 and No. 5 in J. Smith's report. It is 2024. 3 teams agree.") == [
        "See Fig. 3 and No. 5 in J. Smith's report.",
        "It is 2024.",
        "3 teams agree.",
    ]
    assert sents("中文句子。English sentence here. 又一句！ok?好的") == [
        "中文句子。",
        "English sentence here.",
        "又一句！",
        "ok?",
        "好的",
    ]
    assert sents("Steps:\n- first step\n- second step\n\n") == ["Steps:", "- first step", "- second step"]
    assert sents("lower case after period. continues here") == ["lower case after period. continues here"]
    assert sents("   ") == []


def test_english_abbreviations_not_chunk_boundaries(counter: TokenCounter) -> None:
    body = " ".join(
        f"Dr. Smith met the U.S. team on day {i}, e.g. at 3.5 p.m. in room {i}." for i in range(60)
    )
    _, chunks = chunk_document(ParsedDocument((Element("paragraph", body),)), SETTINGS, counter)
    for c in by_level(chunks, 128):
        assert c.text.startswith("Dr. Smith met") and c.text.endswith("."), c.text[:40]


def test_table_split_repeats_header_and_keeps_every_row(counter: TokenCounter) -> None:
    t = table(40)
    md = t.to_markdown()
    doc = ParsedDocument((Element("table", md, ("Leave",), page=7, table=t),))
    _, chunks = chunk_document(doc, SETTINGS, counter)
    header = md.split("\n")[:3]
    assert counter.count(md) > 512, "the test table must be split at every level"
    for level in SETTINGS.levels:
        cs = by_level(chunks, level)
        assert len(cs) >= 2 and all(c.kind == "table" and c.page_start == c.page_end == 7 for c in cs)
        rows = []
        for c in cs:
            lines = c.text.split("\n")
            assert lines[:3] == header
            rows += lines[3:]
            assert c.token_count <= level
        assert rows == md.split("\n")[3:], "every row exactly once, in order"


def test_small_table_is_one_chunk_of_its_own(counter: TokenCounter) -> None:
    t = table(3, caption="")
    doc = ParsedDocument(
        (
            Element("paragraph", "Intro text."),
            Element("table", t.to_markdown(), table=t),
            Element("paragraph", "Outro text."),
        )
    )
    _, chunks = chunk_document(doc, SETTINGS, counter)
    for level in SETTINGS.levels:
        cs = by_level(chunks, level)
        assert [c.kind for c in cs] == ["text", "table", "text"]
        assert cs[1].text == t.to_markdown()


def test_table_header_plus_one_row_may_exceed_the_level(counter: TokenCounter) -> None:
    # Documented exception: a piece never lacks its header, so header + one row over the level stays whole.
    long_cell = " ".join(f"clause{i}" for i in range(40))
    header = tuple(f"Column {k}" for k in range(6))
    t = Table(header, tuple((f"row {i}", long_cell, "x", "y", "z", "w") for i in range(4)))
    md = t.to_markdown()
    header_tokens = counter.count("\n".join(md.split("\n")[:2]))
    row_tokens = counter.count(md.split("\n")[2])
    assert row_tokens <= 128 < header_tokens + row_tokens
    _, chunks = chunk_document(ParsedDocument((Element("table", md, table=t),)), SETTINGS, counter)
    cs = by_level(chunks, 128)
    assert len(cs) == 4
    for c in cs:
        assert c.token_count == header_tokens + row_tokens > 128
        assert c.text.count("\n") == 2  # header, separator, one row


def test_long_sentence_split_without_losing_text(counter: TokenCounter) -> None:
    sentence = "Tokens " + " ".join(f"token{i}" for i in range(500)) + "."
    doc = ParsedDocument((Element("paragraph", "Before it. " + sentence + " After it."),))
    _, chunks = chunk_document(doc, SETTINGS, counter)
    cs = by_level(chunks, 128)
    assert len(cs) > 10 and {c.section_position for c in cs} == {0}
    covered = bytearray(len(doc.text))
    for c in cs:
        assert c.token_count <= 128 and c.char_start is not None and c.char_end is not None
        covered[c.char_start : c.char_end] = b"\x01" * (c.char_end - c.char_start)
    missing = [i for i, ch in enumerate(doc.text) if not ch.isspace() and not covered[i]]
    assert missing == []
    assert [c.text for c in cs[:2]] == ["Before it.", cs[1].text] and cs[1].text.startswith("Tokens token0 ")
    # Pieces of the long sentence start at word boundaries, and consecutive pieces overlap.
    assert cs[-1].text == "After it."
    pieces = cs[1:-1]
    for a, b in zip(pieces, pieces[1:], strict=False):
        assert re.match(r"token\d+ ", b.text), b.text[:30]
        assert b.char_start is not None and a.char_end is not None and b.char_start < a.char_end


def test_union_of_smallest_chunks_covers_mixed_document(counter: TokenCounter) -> None:
    doc = mixed_document()
    _, chunks = chunk_document(doc, SETTINGS, counter)
    covered = bytearray(len(doc.text))
    for c in by_level(chunks, 128):
        assert c.char_start is not None and c.char_end is not None
        covered[c.char_start : c.char_end] = b"\x01" * (c.char_end - c.char_start)
    assert [i for i, ch in enumerate(doc.text) if not ch.isspace() and not covered[i]] == []


def test_sections_link_and_never_cross(counter: TokenCounter) -> None:
    doc = mixed_document()
    sections, chunks = chunk_document(doc, SETTINGS, counter)
    assert [s.position for s in sections] == list(range(len(sections)))
    assert [s.heading_path for s in sections] == [(), ("Leave",), ("Travel",)]
    assert sections[0].text.startswith("Employee Handbook\n\n")
    assert (
        sections[1].text.startswith("Leave\n\n") and sections[1].page_start == 2 and sections[1].page_end == 4
    )
    for s in sections:
        assert s.char_start is not None and s.char_end is not None
        assert doc.text[s.char_start : s.char_end] == s.text
        assert counter.count(s.text) == s.token_count
    for c in chunks:
        s = sections[c.section_position]
        assert c.heading_path == s.heading_path
        assert s.char_start is not None and s.char_end is not None
        assert c.char_start is not None and c.char_end is not None
        assert s.char_start <= c.char_start < c.char_end <= s.char_end
    # Each section has chunks at each level.
    for level in SETTINGS.levels:
        assert {c.section_position for c in by_level(chunks, level)} == {0, 1, 2}


def test_tiny_sibling_sections_merged(counter: TokenCounter) -> None:
    doc = ParsedDocument(
        (
            Element("heading", "Policies", ("Policies",)),
            Element("paragraph", english(10), ("Policies",)),
            Element("heading", "Phone", ("Policies", "Phone")),
            Element("paragraph", "Call 555.", ("Policies", "Phone")),
            Element("heading", "Email", ("Policies", "Email")),
            Element("paragraph", "Write to hr@example.com.", ("Policies", "Email")),
            Element("heading", "Holidays", ("Holidays",)),
            Element("paragraph", "None yet.", ("Holidays",)),
            Element("heading", "Details", ("Holidays", "Details")),
            Element("paragraph", english(8, 5), ("Holidays", "Details")),
        )
    )
    sections, chunks = chunk_document(doc, SETTINGS, counter)
    paths = [s.heading_path for s in sections]
    # Phone + Email: tiny siblings, one section under their parent. "Holidays" is tiny, its neighbour is not.
    assert paths == [("Policies",), ("Policies",), ("Holidays",), ("Holidays", "Details")]
    assert sections[1].text == "Phone\n\nCall 555.\n\nEmail\n\nWrite to hr@example.com."
    assert [c.text for c in by_level(chunks, 128) if c.section_position == 1] == [sections[1].text]


def test_consecutive_headings_open_one_section(counter: TokenCounter) -> None:
    doc = ParsedDocument(
        (
            Element("heading", "Chapter 1", ()),  # a parser may leave a heading out of its own path
            Element("heading", "1.1 Scope", ("Chapter 1",)),
            Element("paragraph", english(6), ("Chapter 1", "1.1 Scope")),
            Element("heading", "1.2 Terms", ("Chapter 1",)),
            Element("paragraph", english(6, 1), ("Chapter 1", "1.2 Terms")),
        )
    )
    sections, chunks = chunk_document(doc, SETTINGS, counter)
    assert [s.heading_path for s in sections] == [("Chapter 1", "1.1 Scope"), ("Chapter 1", "1.2 Terms")]
    assert sections[0].text.startswith("Chapter 1\n\n1.1 Scope\n\nSentence 0-0")
    assert by_level(chunks, 128)[0].text.startswith("Chapter 1\n\n1.1 Scope\n\n")


def test_large_section_split_into_sub_sections(counter: TokenCounter) -> None:
    t = table(120)
    md = t.to_markdown()
    paragraphs = tuple(Element("paragraph", english(15, i), ("Big",)) for i in range(12))
    doc = ParsedDocument(
        (Element("heading", "Big", ("Big",)), *paragraphs, Element("table", md, ("Big",), table=t))
    )
    settings = ChunkingSettings(levels=SETTINGS.levels, max_section_tokens=1024)
    sections, chunks = chunk_document(doc, settings, counter)
    assert len(sections) > 3 and all(s.heading_path == ("Big",) for s in sections)
    assert all(s.token_count <= 1024 for s in sections)
    assert sum(1 for s in sections if "| Region | Days | Note |" in s.text) >= 2
    for s in sections:
        assert counter.count(s.text) == s.token_count
        if (
            s.text.startswith("Table 1") and s.char_start is not None
        ):  # a table continuation repeats its header
            assert s.text.endswith(doc.text[s.char_start : s.char_end])
    for c in chunks:
        s = sections[c.section_position]
        assert s.char_start is not None and s.char_end is not None and c.char_start is not None
        assert c.char_end is not None and s.char_start <= c.char_start < c.char_end <= s.char_end


def test_image_is_its_own_chunk(counter: TokenCounter) -> None:
    doc = ParsedDocument(
        (
            Element("paragraph", "A short paragraph before."),
            Element(
                "image", "Figure 1: org chart with CEO and CTO.", image=ImageRef("page 1", alt="org chart")
            ),
            Element("image", "", image=ImageRef("page 2")),  # nothing to index
            Element("paragraph", "A short paragraph after."),
        )
    )
    _, chunks = chunk_document(doc, SETTINGS, counter)
    for level in SETTINGS.levels:
        assert [(c.kind, c.text) for c in by_level(chunks, level)] == [
            ("text", "A short paragraph before."),
            ("image", "Figure 1: org chart with CEO and CTO."),
            ("text", "A short paragraph after."),
        ]


def test_deterministic(counter: TokenCounter) -> None:
    first = chunk_document(mixed_document(), SETTINGS, counter)
    second = chunk_document(mixed_document(), SETTINGS, TokenCounter())
    assert first == second


def test_empty_documents() -> None:
    assert chunk_document(ParsedDocument(())) == ([], [])
    blank = ParsedDocument((Element("paragraph", ""), Element("paragraph", "  \n ")))
    assert chunk_document(blank) == ([], [])


def test_table_lines_without_separator_are_plain_lines() -> None:
    assert table_lines("a | b\nc | d") == (None, [(0, 5), (6, 11)])
    md = table(2).to_markdown()
    header, rows = table_lines(md)
    assert header is not None and md[header[0] : header[1]].endswith("|---|---|---|")
    assert [md[a:b] for a, b in rows] == md.split("\n")[3:]


def test_token_counter_counts_past_the_model_limit(counter: TokenCounter) -> None:
    text = english(30)
    n = counter.count(text)
    assert n > 300  # the shipped tokenizer config truncates at 128; counting must not
    assert counter.count_many([text, "中文", ""]) == [n, 2, 0]
    assert counter.count_many([]) == []


def test_settings_checked_and_recorded() -> None:
    with pytest.raises(ValueError, match=re.escape("(256, 128)")):
        ChunkingSettings(levels=(256, 128))
    with pytest.raises(ValueError, match="0.9"):
        ChunkingSettings(overlap=0.9)
    with pytest.raises(ValueError, match="300"):
        ChunkingSettings(levels=(128, 256, 512), max_section_tokens=300)
    assert ChunkingSettings(levels=[64, 128], max_section_tokens=512).levels == (64, 128)  # type: ignore[arg-type]
    manifest = ChunkingSettings(levels=(128, 256, 512)).to_manifest()
    assert manifest["levels"] == [128, 256, 512] and manifest["overlap"] == 0.15
    assert manifest["tokenizer"] == TokenCounter().name


def wide_table(rows: int) -> Table:
    # A header of about 300 tokens (long column names, as in measurement exports) over short rows.
    header = tuple(f"Frequency of unstimulated CD{k} naive T cells expressing marker {k} in panel {k % 3}"
                   for k in range(12))
    return Table(header, tuple((f"donor {i}", *(str(i * k) for k in range(11))) for i in range(rows)),
                 caption="Table 9: immune panel")


def repeated_header(piece: ChunkDraft | SectionDraft, text: str) -> str:
    """What a table continuation's text puts before its rows' own span."""
    assert piece.char_start is not None and piece.char_end is not None
    span = text[piece.char_start : piece.char_end]
    assert piece.text.endswith("\n" + span)
    return piece.text[: -len(span) - 1]


def test_wide_table_header_is_cut_where_repeated(counter: TokenCounter) -> None:
    t = wide_table(30)
    md = t.to_markdown()
    doc = ParsedDocument((Element("table", md, ("Panel",), page=2, table=t),))
    _, chunks = chunk_document(doc, SETTINGS, counter)
    header = "\n".join(md.split("\n")[:3])
    rows = md.split("\n")[3:]
    assert 250 < counter.count(header) < 350 and max(counter.count(r) for r in rows) < 40
    for level in SETTINGS.levels:
        cs = by_level(chunks, level)
        assert all(c.kind == "table" and counter.count(c.text) == c.token_count <= level for c in cs)
        # The whole header first, in exact slices of the document, then pieces of rows under the cut header.
        tops = [c for c in cs if c.char_start is not None and c.char_start < len(header)]
        assert re.sub(r"\s", "", "".join(c.text for c in tops)) == re.sub(r"\s", "", header)
        assert all(c.text == doc.text[c.char_start : c.char_end] for c in tops)
        pieces = cs[len(tops) :]
        cut = repeated_header(pieces[0], doc.text)
        assert header.startswith(cut) and cut.startswith("Table 9: immune panel")
        assert level // 4 < counter.count(cut) <= level // 2
        seen = []
        for c in pieces:
            assert c.text.startswith(cut + "\n") and c.text.endswith(doc.text[c.char_start : c.char_end])
            seen += c.text[len(cut) + 1 :].split("\n")
        assert seen == rows, "every row exactly once, in order"
        assert len(pieces) < len(rows)  # short rows still share pieces


def test_wide_table_sub_sections_repeat_the_cut_header(counter: TokenCounter) -> None:
    t = wide_table(120)
    md = t.to_markdown()
    doc = ParsedDocument((Element("table", md, ("Panel",), table=t),))
    settings = ChunkingSettings(levels=(128,), max_section_tokens=256)
    sections, chunks = chunk_document(doc, settings, counter)
    header = "\n".join(md.split("\n")[:3])
    assert len(sections) > 10
    first, rest = sections[0], sections[1:]
    assert header in first.text and first.token_count > 256  # documented: the whole header with its first row
    cut = repeated_header(rest[0], doc.text)
    assert header.startswith(cut) and 64 < counter.count(cut) <= 128
    for s in sections:
        assert counter.count(s.text) == s.token_count
    for s in rest:
        assert s.char_start is not None and s.token_count <= 256
        assert s.text.startswith(cut + "\n") and s.text.endswith(doc.text[s.char_start : s.char_end])
    assert all(c.token_count <= 128 and counter.count(c.text) == c.token_count for c in chunks)
