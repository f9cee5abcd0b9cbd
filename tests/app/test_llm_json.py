from __future__ import annotations

import pytest

from app.llm.json_loose import parse_json_loose


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"supported": true, "reason": "ok"}', {"supported": True, "reason": "ok"}),
        ('```json\n{"supported": false, "reason": "no"}\n```', {"supported": False, "reason": "no"}),
        (
            'Sure! Here it is: {"supported": true, "reason": "x"} Hope this helps {',
            {"supported": True, "reason": "x"},
        ),
        (
            '{"supported": true, "reason": "braces } and { in a string"} trailing',
            {"supported": True, "reason": "braces } and { in a string"},
        ),
        ('{"supported": true, "reason": "a",}', {"supported": True, "reason": "a"}),
        ("{'supported': True, 'reason': 'python style'}", {"supported": True, "reason": "python style"}),
        (
            '{"outer": {"supported": true}, "supported": false, "reason": "r"}',
            {"outer": {"supported": True}, "supported": False, "reason": "r"},
        ),
    ],
)
def test_parses_common_model_outputs(text: str, expected: dict[str, object]) -> None:
    assert parse_json_loose(text, ["supported", "reason"]) == expected


def test_escaped_quotes_do_not_break_brace_matching() -> None:
    text = r'{"reason": "he said \"}\" loudly", "supported": true} and more'
    assert parse_json_loose(text, ["reason"]) == {"reason": 'he said "}" loudly', "supported": True}


def test_skips_objects_without_the_required_keys() -> None:
    text = 'First {"note": 1} then {"supported": true, "reason": "here"}'
    assert parse_json_loose(text, ["supported"]) == {"supported": True, "reason": "here"}
    assert parse_json_loose(text, []) == {"note": 1}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no json here",
        '{"supported": true, "reason": "cut off',
        "[1, 2, 3]",
        '{"other": 1}',
        "{not json at all}",
    ],
)
def test_returns_none_when_nothing_usable(text: str) -> None:
    assert parse_json_loose(text, ["supported"]) is None


def test_fenced_block_wins_over_earlier_prose_object() -> None:
    text = 'Example shape {"supported": "bool"}.\n```json\n{"supported": true}\n```'
    assert parse_json_loose(text, ["supported"]) == {"supported": True}
