"""Make a tiny Llama-architecture chat model and a LoRA adapter for it, offline, with random weights.

For the vLLM tests (`make test-vllm`): the model's text is noise, but everything around it is real: vLLM loads it
as it would a real Llama, serves the adapter under its own name, applies the chat template, and runs structured
output on it. Runs in .venv-vllm (torch, transformers, tokenizers, peft):

    .venv-vllm/bin/python scripts/make_tiny_llm.py OUT_DIR

writes OUT_DIR/model (config, safetensors, tokenizer with a chat template) and OUT_DIR/adapter (PEFT format).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# A byte-level BPE can encode any text (Chinese included) without unknown tokens; the training text only decides
# which merges exist, so a few lines are enough.
_TRAINING_TEXT = """
The fan motor needs inspection every six months. Fault code E4 means an outdoor fan fault.
Wipe the remote control with a dry cloth. The warranty covers parts for two years from the date of purchase.
Answer the question using only the sources. Cite every sentence with [1], [2]. If the sources do not say, answer
that the knowledge base does not contain it. {"answerable": true, "missing": "", "next_query": ""}
空调的过滤网每两周清洗一次。故障代码 E4 表示室外风扇故障。保修期为两年。
"""
SPECIALS = ["<|pad|>", "<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TRAINING_TEXT] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|im_end|>", pad_token="<|pad|>",
        model_max_length=8192,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def steer(model: Any, tokenizer: Any) -> None:
    """Give the random model one habit, so that structured output completes within a few tokens.

    A random model fills a JSON string with noise until max_tokens runs out, and the judgement never parses. So
    the last MLP's bias pushes the final hidden state along dimension 0, and the output layer reads dimension 0
    as a fixed preference: '"' first (a JSON string closes at once), then the pieces of "true" (the judge's
    boolean). Free text comes out as a run of quotes: noise, as it should be, but bounded and harmless.
    """
    import torch

    with torch.no_grad():
        for layer in model.model.layers:
            for lin in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
                lin.bias.zero_()
        model.model.layers[-1].mlp.down_proj.bias[0] = 10.0
        pref = torch.zeros(model.lm_head.weight.shape[0])
        for token, idx in tokenizer.get_vocab().items():
            text = tokenizer.convert_tokens_to_string([token])
            if text and text in "true":
                pref[idx] = 0.5
        pref[tokenizer.convert_tokens_to_ids('"')] = 1.0
        model.lm_head.weight[:, 0] = pref


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.hidden % args.heads or args.hidden // args.heads != 64:
        # vLLM's CPU attention kernels take head sizes 64 and up; smaller ones crash at the first request.
        print(f"error: hidden/heads must be 64, got {args.hidden}/{args.heads}", file=sys.stderr)
        return 2

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(args.seed)
    model_dir, adapter_dir = args.out / "model", args.out / "adapter"
    tokenizer = build_tokenizer(args.vocab)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=args.hidden * 2,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
        head_dim=args.hidden // args.heads, max_position_embeddings=8192, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, dtype="float32", mlp_bias=True,
    )
    model = LlamaForCausalLM(config)
    steer(model, tokenizer)
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    # Some loaders read the template only from tokenizer_config.json: make sure it is there too.
    cfg_path = model_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))

    # init_lora_weights=False: random A and B, so the adapter really changes the output (PEFT's default B = 0
    # would make it a no-op).
    lora = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    peft_model.save_pretrained(adapter_dir, safe_serialization=True)
    # The adapter names its base by path; point it at the folder we wrote (vLLM does not need it, peft does).
    acfg_path = adapter_dir / "adapter_config.json"
    acfg = json.loads(acfg_path.read_text())
    acfg["base_model_name_or_path"] = str(model_dir.resolve())
    acfg_path.write_text(json.dumps(acfg, indent=2))
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {model_dir} ({n / 1e6:.2f} M parameters, vocab {len(tokenizer)}); adapter: {adapter_dir} (rank "
          f"{args.rank})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
