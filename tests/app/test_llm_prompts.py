from __future__ import annotations

import pytest

from app.prompts import load_prompt, render_prompt


def test_load_prompt_with_or_without_extension() -> None:
    text = load_prompt("judge_json_example")
    assert load_prompt("judge_json_example.txt") == text
    assert "$passage" in text and '{"supported"' in text


def test_render_fills_placeholders_and_keeps_json_braces() -> None:
    out = render_prompt("judge_json_example", passage="The sky is blue.", answer="蓝色")
    assert "Passage: The sky is blue." in out and "Answer: 蓝色" in out
    assert '{"supported": true or false' in out and "$" not in out


def test_missing_value_and_unknown_prompt_are_clear() -> None:
    with pytest.raises(KeyError, match="answer"):
        render_prompt("judge_json_example", passage="p")
    with pytest.raises(FileNotFoundError, match="judge_json_example.txt"):
        load_prompt("no_such_prompt")
    with pytest.raises(ValueError, match="'../secrets'"):
        load_prompt("../secrets")
