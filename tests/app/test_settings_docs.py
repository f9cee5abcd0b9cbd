"""Every setting is documented: in the README's configuration table and with a default that `config show` prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    table = "\n".join(ln for ln in README.read_text(encoding="utf-8").splitlines() if ln.startswith("| `RAGQA_"))
    documented = set(re.findall(r"`RAGQA_([A-Z0-9_]+)`", table))
    missing = sorted(n.upper() for n in Settings.model_fields if n.upper() not in documented)
    assert not missing, f"settings missing from the README table: {missing}"
    unknown = sorted(documented - {n.upper() for n in Settings.model_fields})
    assert not unknown, f"README documents settings that do not exist: {unknown}"


def test_config_show_masks_secrets_and_covers_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGQA_API_KEYS", '{"ops": "s3cret"}')
    monkeypatch.setenv("RAGQA_LLM_API_KEY", "llm-s3cret")
    shown = Settings().masked()
    assert set(shown) == set(Settings.model_fields)
    text = json.dumps(shown)
    assert "s3cret" not in text and shown["api_keys"]["ops"]["key"] == "****" and shown["llm_api_key"] == "****"
