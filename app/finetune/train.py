"""`ragqa finetune train`: LoRA supervised fine-tuning with peft, on CPU, resumable.

The base is a Hugging Face folder, or a GGUF file that transformers dequantizes (the bundled Qwen2.5 0.5B by its
name). A plain loop rather than trl's SFTTrainer: the loss covers only the answer's tokens (the prompt is masked),
and a checkpoint (adapter, optimizer, step) is written every `save_every` steps; a second run with the same --out
continues from the last one. The adapter folder also holds `base/`, the base's config and tokenizer: the GGUF
converter and vLLM need them (weights only with `export --to vllm`).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ProgressBar = Callable[..., Any]
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainOptions:
    epochs: float = 1.0
    lr: float = 2e-4
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    batch: int = 1
    grad_accum: int = 4
    max_tokens: int = 1024  # longer examples are skipped (counted in the summary)
    max_steps: int | None = None  # optimizer steps; overrides epochs
    save_every: int = 25
    threads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rank < 1 or self.batch < 1 or self.grad_accum < 1 or self.threads < 1 or self.save_every < 1:
            raise ValueError("--rank, --batch, --grad-accum, --threads and --save-every must be at least 1")
        if not self.lr > 0 or not self.epochs > 0:
            raise ValueError(f"--lr and --epochs must be positive, got {self.lr}, {self.epochs}")


@dataclass(frozen=True)
class TrainSummary:
    base: str
    examples: int
    skipped_too_long: int
    steps: int
    resumed_from: int
    seconds: float
    first_loss: float | None
    last_loss: float | None
    val_loss_before: float | None
    val_loss_after: float | None
    adapter: str

    def text(self) -> str:
        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        return (f"trained {self.steps} steps (resumed at {self.resumed_from}) on {self.examples} examples "
                f"({self.skipped_too_long} too long) in {self.seconds:.0f} s; loss {f(self.first_loss)} -> "
                f"{f(self.last_loss)}; val loss {f(self.val_loss_before)} -> {f(self.val_loss_after)}\n"
                f"adapter: {self.adapter}")


def load_base(base: Path) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 from a HF folder or a GGUF file (dequantized by transformers + gguf)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if base.suffix == ".gguf":
        kw: dict[str, Any] = {"gguf_file": base.name}
        folder = base.parent
    else:
        kw, folder = {}, base
    tok = AutoTokenizer.from_pretrained(folder, **kw)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def encode(tok: Any, messages: Sequence[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of the chat and labels that score only the assistant's answer (prompt tokens are -100)."""
    prompt = tok.apply_chat_template(list(messages[:-1]), tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(list(messages), tokenize=False)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = tok(full, add_special_tokens=False)["input_ids"]
    if ids[: len(p_ids)] != p_ids:  # a template that re-renders the prompt differently: fall back to concatenation
        ids = p_ids + tok(full[len(prompt):], add_special_tokens=False)["input_ids"]
    return ids, [-100] * len(p_ids) + ids[len(p_ids):]


def batch_loss(model: Any, batch: Sequence[tuple[list[int], list[int]]], pad: int) -> Any:
    import torch

    if len(batch) == 1:
        return answer_loss(model, *batch[0])
    n = max(len(ids) for ids, _ in batch)
    ids = torch.tensor([i + [pad] * (n - len(i)) for i, _ in batch])
    labels = torch.tensor([lab + [-100] * (n - len(lab)) for _, lab in batch])
    mask = torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i, _ in batch])
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


def answer_loss(model: Any, ids: list[int], labels: list[int]) -> Any:
    """One example's loss with logits computed only where an answer token is predicted (`logits_to_keep`): the same
    value as the full forward's, without the output layer over the prompt. In a RAFT example the prompt is ~95 % of
    the tokens, and Qwen2.5-0.5B's output layer (896 x 151,936, tied) is 136M of its 494M weights, so that is about a
    quarter of each step's arithmetic, and the 152k-wide logits of the prompt are never held in memory."""
    import torch

    first = next((i for i, lab in enumerate(labels) if lab != -100), 0)
    if first == 0:  # nothing masked (or nothing to score): the plain forward
        return model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
    logits = model(input_ids=torch.tensor([ids]), logits_to_keep=len(ids) - first + 1).logits
    return torch.nn.functional.cross_entropy(logits[0, :-1].float(), torch.tensor(labels[first:]), ignore_index=-100)


def evaluate(model: Any, data: Sequence[tuple[list[int], list[int]]], pad: int) -> float | None:
    import torch

    if not data:
        return None
    model.eval()
    with torch.no_grad():
        losses = [batch_loss(model, [d], pad).item() for d in data]
    model.train()
    return sum(losses) / len(losses)


def lora_model(model: Any, opts: TrainOptions, resume: Path | None) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model

    if resume is not None:
        return PeftModel.from_pretrained(model, resume, is_trainable=True)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    cfg = LoraConfig(r=opts.rank, lora_alpha=opts.alpha, lora_dropout=opts.dropout, task_type="CAUSAL_LM",
                     target_modules=[t for t in TARGETS if t in present])
    return get_peft_model(model, cfg)


def train(base: Path, train_rows: Sequence[dict[str, Any]], val_rows: Sequence[dict[str, Any]], out: Path,
          opts: TrainOptions, progress: ProgressBar | None = None) -> TrainSummary:
    import torch

    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    started = time.monotonic()
    model, tok = load_base(base)
    enc = [encode(tok, r["messages"]) for r in train_rows]
    data = [e for e in enc if len(e[0]) <= opts.max_tokens]
    val = [e for e in (encode(tok, r["messages"]) for r in val_rows) if len(e[0]) <= opts.max_tokens]
    if not data:
        raise ValueError(f"no training example fits in --max-tokens {opts.max_tokens} ({len(enc)} given)")
    per_step = opts.batch * opts.grad_accum
    total = opts.max_steps or max(1, math.ceil(len(data) * opts.epochs / per_step))
    ckpts = out / "checkpoints"
    last = _last_checkpoint(ckpts)
    model = lora_model(model, opts, last)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=opts.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / 5) * max(0.0, 1 - s / (total + 1)))
    step = 0
    if last is not None:
        state = torch.load(last / "trainer.pt", weights_only=False)
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        step = state["step"]
    resumed = step
    pad = tok.pad_token_id
    val_before = evaluate(model, val, pad) if step == 0 else None
    order = _order(len(data), total * per_step, opts.seed)
    losses: list[float] = []
    bar = progress(total=total, initial=step, desc="train", unit="step") if progress else None
    model.train()
    while step < total:
        acc = 0.0
        for k in range(opts.grad_accum):
            at = (step * opts.grad_accum + k) * opts.batch
            loss = batch_loss(model, [data[i] for i in order[at: at + opts.batch]], pad) / opts.grad_accum
            loss.backward()
            acc += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad()
        step += 1
        losses.append(acc)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{acc:.3f}")
        if step % opts.save_every == 0 or step == total:
            _checkpoint(model, optim, sched, step, ckpts)
    if bar is not None:
        bar.close()
    val_after = evaluate(model, val, pad)
    save_adapter(model, tok, base, out)
    summary = TrainSummary(str(base), len(data), len(enc) - len(data), step, resumed, time.monotonic() - started,
                           losses[0] if losses else None, losses[-1] if losses else None, val_before, val_after,
                           str(out))
    (out / "train_summary.json").write_text(json.dumps({**asdict(summary), "options": asdict(opts),
                                                        "losses": losses}, indent=2))
    return summary


def save_adapter(model: Any, tok: Any, base: Path, out: Path) -> None:
    """The PEFT adapter in `out`, naming its base by path, and the base's config + tokenizer in `out/base`."""
    model.save_pretrained(out, safe_serialization=True)
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(base.resolve())
    cfg_path.write_text(json.dumps(cfg, indent=2))
    base_dir = out / "base"
    base_dir.mkdir(exist_ok=True)
    base_model = model.get_base_model()
    base_model.config.save_pretrained(base_dir)
    # A config read from GGUF names no architecture (llama.cpp's converter picks its model class by it) and says
    # "quantized: gguf", which the converter refuses; the adapter's tensors are float either way.
    cfg_file = base_dir / "config.json"
    hf = json.loads(cfg_file.read_text())
    hf["architectures"] = hf.get("architectures") or [type(base_model).__name__]
    hf.pop("quantization_config", None)
    cfg_file.write_text(json.dumps(hf, indent=2))
    tok.save_pretrained(base_dir)


def _order(n: int, need: int, seed: int) -> list[int]:
    """Example indices for `need` draws: whole shuffled epochs, the same on every (resumed) run."""
    rng = random.Random(seed)
    out: list[int] = []
    while len(out) < need:
        epoch = list(range(n))
        rng.shuffle(epoch)
        out.extend(epoch)
    return out


def _checkpoint(model: Any, optim: Any, sched: Any, step: int, folder: Path) -> None:
    import torch

    tmp = folder / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    torch.save({"optim": optim.state_dict(), "sched": sched.state_dict(), "step": step}, tmp / "trainer.pt")
    final = folder / f"step-{step:06d}"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)  # a checkpoint is complete or absent, never half written
    for old in sorted(folder.glob("step-*"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)


def _last_checkpoint(folder: Path) -> Path | None:
    done = sorted(p for p in folder.glob("step-*") if (p / "trainer.pt").is_file()) if folder.is_dir() else []
    return done[-1] if done else None
