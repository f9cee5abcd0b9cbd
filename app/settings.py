"""The one settings class. Read at the edges (the CLI and the server); everything inward takes plain arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGQA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="where collections live")
    collection: str = Field("default", description="collection used when a request names none")
    embedder: str = Field(
        "e5-small",
        description="embedding model for new collections: minilm, minilm-int8, use-multilingual, e5-small, st:/path",
    )
    chunk_levels: tuple[int, ...] = Field((128, 256, 512), description="chunk sizes in tokens")
    chunk_overlap: float = Field(0.15, ge=0.0, lt=0.5)
    near_dup_threshold: float = Field(0.85, gt=0.0, le=1.0)
    max_file_mb: int = Field(100, ge=1, description="files larger than this are refused at ingest")
    ingest_workers: int = Field(1, ge=0, le=32, description="parser processes (0 = parse in the main process)")
    ingest_batch_chunks: int = Field(512, ge=1, le=100_000, description="chunks embedded and committed together")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='JSON {"name": "key"}; when set, requests need "Authorization: Bearer KEY"',
    )

    llm_base_url: str | None = Field(None, description="OpenAI-compatible server; unset = start the embedded model")
    llm_model: str = Field("ragqa", description="model name sent to the server (the LoRA adapter's name on vLLM)")
    llm_api_key: SecretStr | None = None
    llm_embedded_model: Literal["qwen2.5-1.5b", "qwen2.5-0.5b"] = Field(
        "qwen2.5-1.5b", description="bundled GGUF model the embedded llama.cpp server runs"
    )
    llm_cache_dir: Path | None = Field(None, description="where bundled GGUF files are assembled (default: $RAGQA_MODEL_CACHE or ~/.cache/ragqa/models)")
    llm_timeout_s: float = Field(120.0, gt=0, description="per LLM request")
    llm_max_concurrency: int = Field(2, ge=1, le=256, description="LLM requests in flight at once")
    llm_max_queue: int = Field(16, ge=0, le=10_000, description="/ask requests allowed to wait; more get 429")
    rerank_url: str | None = Field(None, description="a /v1/rerank endpoint (vLLM serving a cross-encoder)")
    rerank_model: str = Field("reranker", description="model name sent to the re-rank endpoint")
    rerank_path: Path | None = Field(None, description="a local sentence-transformers CrossEncoder folder")
    rerank_with_llm: bool = Field(False, description="re-rank with the answering LLM's yes/no probabilities")
    max_body_kb: int = Field(1024, ge=1, description="JSON request bodies above this get 413")

    # Ingest jobs (ingest/jobs.py, ingest/worker.py).
    embedded_worker: bool = Field(True, description="`ragqa serve` also runs one ingest worker (a subprocess)")
    max_upload_mb: int = Field(200, ge=1, description="upload request bodies above this get 413 (and each file "
                                                      "above max_file_mb)")
    job_lease_s: float = Field(60.0, ge=1.0, le=3600.0, description="a job whose worker stops renewing its "
                                                                     "lease this long is run again")
    job_poll_s: float = Field(0.5, gt=0.0, le=60.0, description="how often an idle worker looks for jobs")
    job_max_attempts: int = Field(3, ge=1, le=100, description="a job whose worker died this many times fails")

    # Operations.
    log_format: Literal["json", "text"] = Field("json", description="json: one JSON object per line")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("chunk_levels")
    @classmethod
    def _levels(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(x < 16 for x in v) or list(v) != sorted(set(v)):
            raise ValueError(f"chunk_levels must be ascending sizes >= 16, got {v}")
        return v

    def masked(self) -> dict[str, Any]:
        """The effective configuration with secrets hidden, for `ragqa config show`."""
        out = self.model_dump(mode="json")
        out["api_keys"] = {k: "****" for k in self.api_keys}
        if self.llm_api_key is not None:
            out["llm_api_key"] = "****"
        return out
