"""Prompt templates are files in this folder: `load_prompt` reads one (cached), `render_prompt` fills it.

Placeholders use string.Template syntax (`$question`, `${context}`), so the JSON braces common in prompts
need no escaping.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from string import Template

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@lru_cache(maxsize=64)
def load_prompt(name: str) -> str:
    """The text of prompt `name` (a file in app/prompts; `.txt` or `.md` may be left off)."""
    if not _NAME.match(name):
        raise ValueError(f"prompt name must be a plain file name, got {name!r}")
    folder = resources.files(__package__)
    for candidate in (name, f"{name}.txt", f"{name}.md"):
        f = folder / candidate
        if candidate != "__init__.py" and f.is_file():
            return f.read_text(encoding="utf-8")
    known = sorted(p.name for p in folder.iterdir() if p.name.endswith((".txt", ".md")))
    raise FileNotFoundError(f"no prompt {name!r} in app/prompts; known: {known}")


def render_prompt(name: str, /, **values: object) -> str:
    """Prompt `name` with its $placeholders filled; a missing value raises KeyError naming it."""
    return Template(load_prompt(name)).substitute({k: str(v) for k, v in values.items()})
