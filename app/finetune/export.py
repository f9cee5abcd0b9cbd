"""`ragqa finetune export ADAPTER --to vllm|gguf`.

vllm: a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) that
`vllm serve BASE --enable-lora --lora-modules ragqa=DIR` loads; with `--with-base`, BASE itself is written beside it
(vLLM reads Hugging Face folders; a GGUF base is dequantized to float16 safetensors).
gguf: llama.cpp's own converter, `convert_lora_to_gguf.py`, from the llama-cpp-python source distribution of the
installed version (its vendor/llama.cpp: the converter matches the llama.cpp that will load the file). The converter
reads the base's config from ADAPTER/base, which `train` saved. `RAGQA_LLAMA_CPP_SRC` may name an unpacked
vendor/llama.cpp folder; otherwise the sdist is fetched once with pip into ~/.cache/ragqa/llama.cpp-src.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

from app.llm.embedded import sha256_file

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class ExportError(RuntimeError):
    pass


def check_adapter(adapter: Path) -> None:
    missing = [f for f in ADAPTER_FILES if not (adapter / f).is_file()]
    if missing:
        raise ExportError(f"{adapter} is not a PEFT adapter folder (missing {', '.join(missing)}); "
                          "make one with `ragqa finetune train`")


def export_vllm(adapter: Path, dest: Path, with_base: bool = False) -> Path:
    check_adapter(adapter)
    dest.mkdir(parents=True, exist_ok=True)
    for f in ADAPTER_FILES:
        shutil.copy2(adapter / f, dest / f)
    if with_base:
        base = Path(json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"])
        from app.finetune.train import load_base

        model, tok = load_base(base)
        model.half().save_pretrained(dest / "base", safe_serialization=True)
        tok.save_pretrained(dest / "base")
    return dest


def llama_cpp_source(cache: Path | None = None) -> Path:
    """vendor/llama.cpp of the installed llama-cpp-python's source distribution (holds the converters)."""
    if env := os.environ.get("RAGQA_LLAMA_CPP_SRC"):
        return Path(env)
    ver = version("llama-cpp-python")
    root = (cache or Path.home() / ".cache" / "ragqa" / "llama.cpp-src") / ver
    folder = root / "vendor" / "llama.cpp"
    if (folder / "convert_lora_to_gguf.py").is_file():
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            "-d", tmp, f"llama-cpp-python=={ver}"], capture_output=True, text=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if r.returncode or not sdists:
            raise ExportError(f"could not fetch the llama-cpp-python {ver} sdist: {r.stderr.strip()[-500:]}; "
                              "set RAGQA_LLAMA_CPP_SRC to an unpacked vendor/llama.cpp folder")
        with tarfile.open(sdists[0]) as tar:
            top = tar.getnames()[0].split("/")[0]
            want = [m for m in tar.getmembers() if m.name.startswith(f"{top}/vendor/llama.cpp/")
                    and (m.name.endswith(".py") or "/gguf-py/" in m.name)]
            tmp_root = root.with_name(root.name + ".tmp")
            shutil.rmtree(tmp_root, ignore_errors=True)
            tar.extractall(tmp_root, members=want, filter="data")
        shutil.rmtree(root, ignore_errors=True)
        (tmp_root / top).rename(root)
        shutil.rmtree(tmp_root, ignore_errors=True)
    return folder


def export_gguf(adapter: Path, dest: Path, outtype: str = "f16", src: Path | None = None) -> Path:
    """The adapter as a llama.cpp GGUF LoRA file at `dest`; its sha256 is written beside it (`dest.sha256`)."""
    check_adapter(adapter)
    base_cfg = adapter / "base"
    if not (base_cfg / "config.json").is_file():
        raise ExportError(f"{base_cfg}/config.json is missing: the converter needs the base's config "
                          "(`ragqa finetune train` saves it)")
    folder = src or llama_cpp_source()
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(folder / "convert_lora_to_gguf.py"), "--base", str(base_cfg), "--outfile", str(dest),
           "--outtype", outtype, str(adapter)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if r.returncode or not dest.is_file():
        raise ExportError(f"convert_lora_to_gguf.py failed ({r.returncode}):\n{(r.stderr or r.stdout)[-2000:]}")
    digest = sha256_file(dest)
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n", encoding="ascii")
    return dest
