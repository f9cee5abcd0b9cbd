"""The answering LLM: bundled model assets, the embedded llama.cpp server, the OpenAI-compatible client."""

from app.llm.assets import (
    MODELS,
    ChecksumMismatch,
    MissingModelParts,
    ModelAssetError,
    ensure_model,
    prepare_models,
)
from app.llm.client import ChatResult, LLMClient, LLMError, LLMUnavailable, Usage
from app.llm.embedded import EmbeddedLLMServer, EmbeddedServerError
from app.llm.json_loose import parse_json_loose

__all__ = [
    "MODELS",
    "ChatResult",
    "ChecksumMismatch",
    "EmbeddedLLMServer",
    "EmbeddedServerError",
    "LLMClient",
    "LLMError",
    "LLMUnavailable",
    "MissingModelParts",
    "ModelAssetError",
    "Usage",
    "ensure_model",
    "parse_json_loose",
    "prepare_models",
]
