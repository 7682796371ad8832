"""Models: policy resolution and LoRA policies, reward models, reference caches, gold reward models.

Modules: ``resolve`` (local path / hub id / GGUF wheel -> cached safetensors dir; tiny random
models for tests and the smoke profile), ``policy`` (causal LM + LoRA: response log-probs and
generation), ``reward`` (MiniLM cross-encoder with a scalar head; Bradley-Terry and classifier
training), ``cache`` (reference samples and reference log-probs, computed once and shared by every
method), ``gold`` (gold reward models trained on the oracle split), ``batching`` (length-sorted batches for
scoring).
"""
