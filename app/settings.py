"""The one settings class. Read at the edges (the CLI and the server); everything inward takes plain arguments."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The rule of retrieval.collection.check_name, repeated so that reading settings does not import the index code.
_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ApiKey(BaseModel):
    """One client key: the collections it may use ("*" = all) and whether it may change anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: SecretStr
    collections: tuple[str, ...] = ("*",)
    write: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, v: SecretStr) -> SecretStr:
        secret = v.get_secret_value()
        if not secret or secret != secret.strip():
            raise ValueError("the key must not be empty nor start or end with whitespace")
        return v

    @field_validator("collections")
    @classmethod
    def _collections(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError('collections must name at least one collection, or be ["*"] for all')
        if "*" in v and len(v) > 1:
            raise ValueError(f'"*" already means every collection: use ["*"] alone, got {list(v)}')
        bad = [c for c in v if c != "*" and (not _COLLECTION.match(c) or ".." in c)]
        if bad:
            raise ValueError(f"invalid collection name(s) {bad}: use 1-64 letters, digits, '_', '-', '.'")
        return v


class Settings(BaseSettings):
    # Errors name the setting and the rule but never echo the value: some values are secrets (API keys).
    model_config = SettingsConfigDict(env_prefix="RAGQA_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Field(Path("data"), description="where collections live")
    collection: str = Field("default", description="collection used when a request names none")
    embedder: str = Field(
        "auto",
        description="embedding model for new collections: auto, minilm, minilm-int8, use-multilingual, e5-small, "
        "st:/path; auto: minilm-int8 for English, use-multilingual for Chinese, e5-small for English with some Chinese",
    )
    chunk_levels: tuple[int, ...] = Field((128,), description="chunk sizes in tokens, for new collections")
    chunk_overlap: float = Field(0.15, ge=0.0, lt=0.5)
    near_dup_threshold: float = Field(0.85, gt=0.0, le=1.0)
    max_file_mb: int = Field(100, ge=1, description="files larger than this are refused at ingest")
    ingest_workers: int = Field(1, ge=0, le=32, description="parser processes (0 = parse in the main process)")
    ingest_batch_chunks: int = Field(512, ge=1, le=100_000, description="chunks embedded and committed together")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: dict[str, ApiKey] = Field(
        default_factory=dict,
        description='JSON {"name": "key" (full access) or {"key", "collections": [...] or ["*"], "write": false}}; '
                    'when set, requests need "Authorization: Bearer KEY"',
    )

    llm_base_url: str | None = Field(None, description="OpenAI-compatible server; unset = start the embedded model")
    llm_model: str = Field("ragqa", description="model name sent to the server (the LoRA adapter's name on vLLM)")
    llm_api_key: SecretStr | None = None
    llm_embedded_model: Literal["qwen2.5-1.5b", "qwen2.5-0.5b"] = Field(
        "qwen2.5-1.5b", description="bundled GGUF model the embedded llama.cpp server runs"
    )
    llm_lora: Path | None = Field(
        None, description="a GGUF LoRA adapter (`ragqa finetune export --to gguf`) the embedded model applies; its "
        "sha256 is checked at start and logged")
    llama_build: Literal["auto", "portable", "avx512"] = Field(
        "auto", description="llama.cpp build of the embedded model: `auto` = the AVX-512 one where the CPU flags list "
        "everything it uses, else the portable AVX2 one (app/llm/builds.py)")
    llm_cache_dir: Path | None = Field(
        None,
        description="where bundled GGUF files are assembled (default: $RAGQA_MODEL_CACHE or ~/.cache/ragqa/models)",
    )
    llm_timeout_s: float = Field(120.0, gt=0, description="per LLM request")
    llm_max_concurrency: int = Field(2, ge=1, le=256, description="LLM requests in flight at once")
    llm_max_queue: int = Field(16, ge=0, le=10_000, description="/ask requests allowed to wait; more get 429")
    judge: Literal["unsure", "always", "never"] = Field(
        "unsure", description="the model's sufficiency judgement before answering: `unsure` = only where the score "
        "gate is unsure, `always`, `never` (the answer itself may refuse)")
    min_cited_share: float = Field(
        0.555, ge=0.0, le=1.0, description="support gate after generation: refuse an answer whose cited passages hold "
        "less than this rarity-weighted share of the question's terms (app/support_gate.py); 0 = off")
    llm_queue_timeout_s: float = Field(60.0, gt=0, le=3600, description="an /ask request that waited this long "
                                                                        "for a slot gets 503 with Retry-After")
    rerank_url: str | None = Field(None, description="a /v1/rerank endpoint (vLLM serving a cross-encoder)")
    rerank_model: str = Field("reranker", description="model name sent to the re-rank endpoint")
    rerank_path: Path | None = Field(None, description="a local sentence-transformers CrossEncoder folder")
    rerank_with_llm: bool = Field(False, description="re-rank with the answering LLM's yes/no probabilities")
    max_body_kb: int = Field(1024, ge=1, description="JSON request bodies above this get 413")
    conversation_max_turns: int = Field(20, ge=2, le=1000, description="turns a server-side conversation keeps "
                                                                       "(the oldest are dropped)")
    conversation_max_kb: int = Field(64, ge=1, le=10_240, description="text a server-side conversation keeps, KiB "
                                                                      "(the oldest turns are dropped)")

    # Ingest jobs (ingest/jobs.py, ingest/worker.py).
    embedded_worker: bool = Field(True, description="`ragqa serve` also runs one ingest worker (a subprocess)")
    max_upload_mb: int = Field(200, ge=1, description="upload request bodies above this get 413 (and each file "
                                                      "above max_file_mb)")
    job_lease_s: float = Field(60.0, ge=1.0, le=3600.0, description="a job whose worker stops renewing its "
                                                                     "lease this long is run again")
    job_poll_s: float = Field(0.5, gt=0.0, le=60.0, description="how often an idle worker looks for jobs")
    job_max_attempts: int = Field(3, ge=1, le=100, description="a job whose worker died this many times fails")
    ingest_max_file_tokens: int = Field(
        200_000, ge=0, description="a file whose text has more tokens fails (0 = no limit): bounds one file's work")
    archive_max_unpacked_mb: int = Field(
        512, ge=1, description="a DOCX/XLSX/PPTX/EPUB whose members declare more than this in all fails unopened")
    archive_max_ratio: float = Field(
        100.0, ge=1.0, description="a member of 1 MiB or more inflating more than this many times fails unopened")
    worker_max_restarts_per_minute: int = Field(
        3, ge=0, le=100, description="the embedded worker is restarted after a death at most this often")

    # Where collections and the job queue live (retrieval/backend.py): one host, or PostgreSQL (+ Milvus) shared by
    # API replicas and workers on many hosts.
    backend: Literal["local", "distributed"] = Field(
        "local", description="local: SQLite + FAISS/BM25 under data_dir; distributed: PostgreSQL store and job queue "
        "(RAGQA_POSTGRES_URL) and Milvus indexes (RAGQA_MILVUS_URI; unset: FAISS/BM25 kept in each process)")
    postgres_url: SecretStr | None = Field(None, description="e.g. postgresql://ragqa@db:5432/ragqa (distributed)")
    milvus_uri: str | None = Field(None, description="e.g. http://milvus:19530 or a Milvus Lite file (distributed)")

    # Operations.
    log_format: Literal["json", "text"] = Field("json", description="json: one JSON object per line")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _backend(self) -> Settings:
        if self.backend == "distributed" and self.postgres_url is None:
            raise ValueError("RAGQA_BACKEND=distributed needs RAGQA_POSTGRES_URL (e.g. postgresql://user@host/db)")
        return self

    @field_validator("chunk_levels")
    @classmethod
    def _levels(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(x < 16 for x in v) or list(v) != sorted(set(v)):
            raise ValueError(f"chunk_levels must be ascending sizes >= 16, got {v}")
        return v

    @field_validator("api_keys", mode="before")
    @classmethod
    def _plain_keys(cls, v: Any) -> Any:
        # A plain string is the original format: full access, so configurations from before scopes keep working.
        if not isinstance(v, dict):
            return v
        return {
            name: {"key": k, "collections": ["*"], "write": True} if isinstance(k, str | SecretStr) else k
            for name, k in v.items()
        }

    @field_validator("api_keys")
    @classmethod
    def _distinct_keys(cls, v: dict[str, ApiKey]) -> dict[str, ApiKey]:
        seen: dict[str, str] = {}
        for name, entry in v.items():
            if not name.strip():
                raise ValueError("every API key needs a non-empty name")
            secret = entry.key.get_secret_value()
            if secret in seen:  # the name, never the key, goes into the message
                raise ValueError(f"API keys {seen[secret]!r} and {name!r} are the same key: give each its own")
            seen[secret] = name
        return v

    def masked(self) -> dict[str, Any]:
        """The effective configuration with secrets hidden, for `ragqa config show`."""
        out = self.model_dump(mode="json")
        out["api_keys"] = {
            name: {"key": "****", "collections": list(k.collections), "write": k.write}
            for name, k in self.api_keys.items()
        }
        if self.llm_api_key is not None:
            out["llm_api_key"] = "****"
        return out
