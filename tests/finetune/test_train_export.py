"""LoRA training and GGUF export on tiny random models: the loss falls on a fixed batch, training resumes from its
checkpoint, and the exported GGUF adapter loads in real llama.cpp and computes what the PyTorch adapter computes.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.finetune.raft import QA, build_example
from app.finetune.train import TrainOptions, answer_loss, encode, load_base, train
from app.llm.assets import MissingModelParts, ensure_model
from app.llm.embedded import EmbeddedLLMServer, sha256_file
from retrieval.types import Chunk
from tests.support import REPO

pytestmark = [pytest.mark.slow]

pytest.importorskip("peft", reason="needs the finetune extra")
pytest.importorskip("llama_cpp", reason="needs the llm extra")


def _chunk(cid: int, doc: str, text: str) -> Chunk:
    return Chunk(chunk_id=cid, doc_id=doc, collection="t", text=text, level=128, position=0, section_id=None,
                 title=f"{doc} manual", source_path=f"/docs/{doc}.md", language="en")


def _rows() -> list[dict[str, Any]]:
    oracle = _chunk(1, "ac", "Fault code E4 means the outdoor fan has failed. Call service.")
    other = _chunk(2, "heater", "The heater filter is cleaned every two weeks with warm water.")
    rng = random.Random(0)
    qa = QA(1, "What does fault code E4 mean?", "Fault code E4 means the outdoor fan has failed.",
            "Fault code E4 means the outdoor fan has failed")
    return [build_example(qa, oracle, [other], language="en", refusal=r, rng=rng).record("train")
            for r in (False, True)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/make_tiny_llm.py's random Llama (vocab of a few hundred): training steps take a fraction of a second."""
    out = tmp_path_factory.mktemp("tiny-llama")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_tiny_llm.py"), str(out)], check=True,
                   capture_output=True, timeout=300)
    return out / "model"


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Qwen2 with the bundled Qwen2.5 tokenizer (read from the 0.5B GGUF): llama.cpp's converter
    knows that vocabulary, so the base converts to GGUF too (it refuses the tiny Llama's home-made one)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    cache = Path(os.environ.get("RAGQA_MODEL_CACHE") or tmp_path_factory.mktemp("models"))
    try:
        gguf = ensure_model("qwen2.5-0.5b", cache)
    except MissingModelParts as e:
        pytest.skip(str(e))
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    out = tmp_path_factory.mktemp("tiny-qwen") / "model"
    Qwen2ForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def _opts(steps: int) -> TrainOptions:
    return TrainOptions(max_steps=steps, lr=2e-2, rank=4, alpha=8, dropout=0.0, batch=2, grad_accum=1, save_every=3,
                        threads=2)


@pytest.fixture(scope="module")
def trained(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    rows = _rows()
    out = tmp_path_factory.mktemp("adapter") / "ragqa-lora"
    return out, train(tiny, rows, rows, out, _opts(6))


def test_loss_falls_on_a_fixed_batch(trained: tuple[Path, Any]) -> None:
    out, s = trained
    assert s.steps == 6 and s.examples == 2 and s.resumed_from == 0
    assert s.val_loss_before is not None and s.val_loss_after is not None
    assert s.val_loss_after < 0.8 * s.val_loss_before, (s.val_loss_before, s.val_loss_after)
    assert (out / "adapter_model.safetensors").is_file() and (out / "base" / "config.json").is_file()
    assert (out / "train_summary.json").is_file()


def test_training_resumes_from_the_last_checkpoint(trained: tuple[Path, Any], tiny: Path) -> None:
    out, _ = trained
    again = train(tiny, _rows(), [], out, _opts(8))
    assert again.resumed_from == 6 and again.steps == 8
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-000006", "step-000008"]


def test_the_target_is_masked_to_the_answer(tiny: Path) -> None:
    _, tok = load_base(tiny)
    row = _rows()[0]
    ids, labels = encode(tok, row["messages"])
    scored = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != -100])
    assert scored.startswith(row["messages"][1]["content"]) and len(scored) < len(row["messages"][1]["content"]) + 20


def test_answer_only_logits_give_the_full_forward_loss(tiny: Path) -> None:
    import torch

    model, tok = load_base(tiny)
    ids, labels = encode(tok, _rows()[0]["messages"])
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()
        fast = answer_loss(model, ids, labels).item()
    assert labels[0] == -100 and fast == pytest.approx(full, rel=1e-5)


@pytest.fixture(scope="module")
def exported(tiny_qwen: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A LoRA trained 2 steps on the tiny Qwen, exported to GGUF, and the tiny Qwen itself converted to GGUF."""
    from app.finetune.export import export_gguf, llama_cpp_source

    tmp = tmp_path_factory.mktemp("gguf")
    out = tmp / "ragqa-lora"
    train(tiny_qwen, _rows()[:1], [], out, replace(_opts(2), lr=5e-2, batch=1))
    src = llama_cpp_source()
    adapter = export_gguf(out, tmp / "ragqa-lora.gguf", outtype="f32", src=src)
    base = tmp / "tiny.gguf"
    r = subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(tiny_qwen), "--outfile", str(base),
                        "--outtype", "f32"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return {"peft": out, "adapter": adapter, "base": base}


def test_gguf_adapter_loads_in_llama_cpp_and_matches_torch(exported: dict[str, Path], tiny_qwen: Path) -> None:
    import numpy as np
    import torch
    from llama_cpp import Llama
    from peft import PeftModel

    adapter, base = exported["adapter"], exported["base"]
    assert adapter.with_name(adapter.name + ".sha256").read_text().split()[0] == sha256_file(adapter)
    model, tok = load_base(tiny_qwen)
    peft_model = PeftModel.from_pretrained(model, exported["peft"]).eval()
    ids = tok("Fault code E4 means", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        want = peft_model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        with peft_model.disable_adapter():
            base_logits = peft_model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()

    def last_logits(**kw: Any) -> np.ndarray:
        llm = Llama(model_path=str(base), n_ctx=128, n_threads=2, logits_all=True, verbose=False, **kw)
        llm.eval(ids)
        return np.array(llm.scores[len(ids) - 1])

    got, got_base = last_logits(lora_path=str(adapter)), last_logits()
    assert np.abs(want - base_logits).max() > 1e-3  # the adapter changes the output...
    assert np.abs(got - want).max() < 1e-2 * max(1.0, np.abs(want).max())  # ...and llama.cpp applies it as torch does
    assert np.abs(got_base - base_logits).max() < 1e-2 * max(1.0, np.abs(base_logits).max())


def test_the_embedded_server_serves_with_the_adapter(exported: dict[str, Path]) -> None:
    """RAGQA_LLM_LORA's path: the real llama_cpp.server subprocess starts with --lora_path and answers."""
    from app.settings import Settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGQA_LLM_LORA", str(exported["adapter"]))
        settings = Settings(llm_embedded_model="qwen2.5-0.5b")
    assert settings.llm_lora == exported["adapter"]
    server = EmbeddedLLMServer(exported["base"], n_ctx=512, lora_path=settings.llm_lora, startup_timeout=120)
    with server:
        assert server.lora_sha256 == sha256_file(exported["adapter"])
        assert ["--lora_path", str(exported["adapter"])] == server.command()[-2:]
        r = server.client(timeout=60).chat_sync([{"role": "user", "content": "E4?"}], max_tokens=4)
        assert r.usage.completion_tokens > 0
        assert f"sha256 {server.lora_sha256}" in (server.log_path.read_text() if server.log_path else "")
