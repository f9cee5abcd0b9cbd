"""decode_text on real byte strings in the encodings Chinese and Japanese teams actually produce."""

from __future__ import annotations

import codecs

import pytest

from ingest.encoding import decode_text

ZH = "这是一个简单的中文测试文件，用于检测编码。我们的服务支持中文和英文文档。"
JA = "これは日本語のテキストです。東京と大阪の天気を確認します。"


@pytest.mark.parametrize(
    ("text", "codec", "expected"),
    [
        (ZH, "gbk", "gb18030"),
        ("中文测试", "gbk", "gb18030"),  # four characters: charset-normalizer alone says cp949
        ("会议纪要", "gb2312", "gb18030"),
        ("扩展字符：𠀀 和 䶮 以及常用汉字。", "gb18030", "gb18030"),  # not encodable in GBK at all
        (JA, "shift_jis", "cp932"),
        ("価格表", "shift_jis", "cp932"),
        ("名前,住所\n髙橋淳,名古屋\n", "cp932", "cp932"),  # 髙 exists only in the CP932 superset
        ("這是一個繁體中文測試文件，用於檢測編碼。我們的服務支援中文和英文文件。", "big5", "big5"),
        ("안녕하세요. 이것은 한국어 텍스트입니다. 서울과 부산의 날씨를 확인합니다.", "cp949", "cp949"),
        ("Café crème brûlée à la française, naïve façade.", "cp1252", "cp1252"),
    ],
)
def test_legacy_encodings_decode_exactly(text: str, codec: str, expected: str) -> None:
    out, name = decode_text(text.encode(codec))
    assert out == text
    assert name == expected


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom(codec: str) -> None:
    text = "Hello world, this is UTF-16 text. 中文也可以。"
    assert decode_text(text.encode(codec)) == (text, codec)


@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
    ],
)
def test_bom_wins_and_is_stripped(bom: bytes, codec: str) -> None:
    text = "BOM 测试 テスト"
    assert decode_text(bom + text.encode(codec)) == (text, codec)


def test_plain_utf8_and_ascii() -> None:
    assert decode_text("中文 and English".encode()) == ("中文 and English", "utf-8")
    assert decode_text(b"just ascii") == ("just ascii", "utf-8")


def test_garbage_never_raises() -> None:
    text, name = decode_text(bytes(range(256)) * 4)
    assert isinstance(text, str) and name


def test_rejects_str() -> None:
    with pytest.raises(TypeError, match="str"):
        decode_text("not bytes")  # type: ignore[arg-type]
