"""`ragqa finetune`: RAFT-style training data from a collection, LoRA training, export to vLLM and llama.cpp.

data.py builds examples (raft.py says what one example is), train.py trains a LoRA adapter with peft,
export.py writes it for vLLM (a PEFT folder) or llama.cpp (a GGUF adapter). No FastAPI here; torch and
transformers are imported inside the functions that need them (the `finetune` extra).
"""
