"""Reward models: a cross-encoder over (x, y) on a BERT-like backbone with a scalar head.

Architecture: ``[CLS] x [SEP] y [SEP]`` (the backbone tokenizer's own pair template) through the
backbone (``transformers.AutoModel``), a **masked mean over the last hidden states** (the pooling
all-MiniLM-L6-v2 was trained with; its [CLS] vector was never trained as a sentence summary), and
one linear unit. The head starts at N(0, 0.02²) weights and zero bias from a fixed seed, so a fresh
reward model is deterministic and nearly constant.

Truncation to ``max_length`` (256) tokens: the prompt x keeps its **end** (questions and review
headers put the part that matters for the answer last), the response y keeps its **start**. Each
side may use at least half of the budget when it needs it; what one side leaves unused goes to the
other.

Reward models run in fp32 (MiniLM is small; gold rewards stay exact and deterministic on CPU).
Training helpers: :func:`train_bradley_terry` (pairs) and :func:`train_classifier` (labeled rows),
both AdamW with linear warm-up/decay, deterministic for a seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from ..errors import DataError, ModelError
from ..io import atomic_path, read_json, write_json
from .batching import longest_first_batches
from .resolve import ResolvedModel, quiet_transformers

REWARD_MODEL_FILE = "reward_model.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "oodpl-reward-model"
FORMAT_VERSION = 1
DEFAULT_MAX_LENGTH = 256


class RewardModel(nn.Module):
    """r_φ(x, y): a cross-encoder with mean pooling and a scalar linear head."""

    def __init__(self, backbone: nn.Module, tokenizer: Any, *, max_length: int = DEFAULT_MAX_LENGTH,
                 backbone_info: dict | None = None, add_pooling_layer: bool | None = None,
                 seed: int = 0):
        """Wrap a loaded ``backbone`` and its fast ``tokenizer``; the head is initialised from ``seed``.

        ``backbone_info`` (model id, revision, source) is recorded in saved files and results.
        """
        super().__init__()
        from tokenizers import Tokenizer

        self.backbone = backbone
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.backbone_info = dict(backbone_info or {})
        self.add_pooling_layer = add_pooling_layer
        self.info: dict[str, Any] = {}
        hidden = int(backbone.config.hidden_size)
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
            self.head = nn.Linear(hidden, 1)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=gen) * 0.02)
            self.head.bias.zero_()
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelError("The reward-model backbone needs a fast (tokenizers) tokenizer")
        # A private copy without the saved truncation/padding settings: we truncate per side.
        self._bt = Tokenizer.from_str(backend.to_str())
        self._bt.no_truncation()
        self._bt.no_padding()
        self._specials = self._bt.num_special_tokens_to_add(True)
        self._use_type_ids = int(getattr(backbone.config, "type_vocab_size", 0) or 0) > 1
        pad = tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else 0)
        if self.max_length <= self._specials + 2:
            raise ModelError(f"max_length {self.max_length} is too small for a (prompt, response) pair")

    # --- construction ----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, resolved: ResolvedModel, max_length: int = DEFAULT_MAX_LENGTH,
                        device: str | torch.device = "cpu", seed: int = 0) -> "RewardModel":
        """A fresh reward model on the backbone ``resolved`` (pretrained body, new seeded head)."""
        from transformers import AutoModel, AutoTokenizer

        try:
            with quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(resolved.path)
                backbone, pooling = _load_backbone(lambda **kw: AutoModel.from_pretrained(
                    resolved.path, dtype=torch.float32, **kw))
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - one clear message for any loading failure
            raise ModelError(f"Cannot load reward backbone {resolved.model_id!r} from {resolved.path}: {exc}") from None
        rm = cls(backbone, tokenizer, max_length=max_length, backbone_info=resolved.to_dict(),
                 add_pooling_layer=pooling, seed=seed)
        return rm.to(torch.device(device)).eval()

    # --- tokens ----------------------------------------------------------------------------------

    def _pair_ids(self, prompt: str, response: str) -> tuple[list[int], list[int]]:
        ex = self._bt.encode(prompt or "", add_special_tokens=False)
        ey = self._bt.encode(response or "", add_special_tokens=False)
        budget = self.max_length - self._specials
        nx, ny = len(ex.ids), len(ey.ids)
        keep_x = min(nx, max(budget // 2, budget - ny))
        keep_y = min(ny, budget - keep_x)
        if nx > keep_x:
            ex.truncate(keep_x, direction="left")
        if ny > keep_y:
            ey.truncate(keep_y, direction="right")
        enc = self._bt.post_process(ex, ey, add_special_tokens=True)
        return list(enc.ids), list(enc.type_ids)

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, torch.Tensor]:
        """A right-padded batch (``input_ids``, ``attention_mask``, ``token_type_ids`` when the
        backbone uses segment ids) on the model's device; truncation as in the module docstring."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return self._collate([self._pair_ids(p, r) for p, r in zip(prompts, responses)])

    def _collate(self, encoded: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in encoded)
        ids = torch.full((len(encoded), width), self._pad_id, dtype=torch.long)
        attn = torch.zeros((len(encoded), width), dtype=torch.long)
        types = torch.zeros((len(encoded), width), dtype=torch.long)
        for i, (row, type_ids) in enumerate(encoded):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            attn[i, :len(row)] = 1
            types[i, :len(row)] = torch.tensor(type_ids, dtype=torch.long)
        device = self.head.weight.device
        batch = {"input_ids": ids.to(device), "attention_mask": attn.to(device)}
        if self._use_type_ids:
            batch["token_type_ids"] = types.to(device)
        return batch

    # --- scoring ---------------------------------------------------------------------------------

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rewards of an encoded batch: Tensor[B] (differentiable)."""
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        hidden = self.backbone(**inputs).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 16) -> torch.Tensor:
        """Rewards of many (prompt, response) pairs in input order: float32 Tensor[N] on CPU.

        Eval mode (no dropout), length-sorted batches; the result does not depend on the order.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        encoded = [self._pair_ids(p, r) for p, r in zip(prompts, responses)]
        out = torch.zeros(len(encoded), dtype=torch.float32)
        with _eval_mode(self):
            for idx in longest_first_batches([len(ids) for ids, *_ in encoded], batch_size):
                out[idx] = self(self._collate([encoded[i] for i in idx])).float().cpu()
        return out

    # --- persistence -----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write weights (safetensors), backbone config, tokenizer and ``reward_model.json``
        into ``directory`` atomically (a complete folder or none)."""
        from safetensors.torch import save_model

        with atomic_path(directory) as tmp:
            tmp.mkdir()
            save_model(self, str(tmp / WEIGHTS_FILE))
            self.backbone.config.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            write_json(tmp / REWARD_MODEL_FILE, {
                "format": FORMAT, "version": FORMAT_VERSION, "max_length": self.max_length,
                "pooling": "mean", "backbone": self.backbone_info,
                "add_pooling_layer": self.add_pooling_layer, "info": self.info,
            })

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "RewardModel":
        """Load a reward model written by :meth:`save`."""
        from safetensors.torch import load_model
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        directory = Path(directory)
        meta_path = directory / REWARD_MODEL_FILE
        if not meta_path.is_file():
            raise ModelError(f"{directory} is not a saved reward model (no {REWARD_MODEL_FILE})")
        meta = read_json(meta_path)
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ModelError(f"{meta_path}: unsupported reward-model format {meta.get('format')!r} "
                             f"v{meta.get('version')}")
        with quiet_transformers():
            config = AutoConfig.from_pretrained(directory)
            tokenizer = AutoTokenizer.from_pretrained(directory)
            kwargs = {} if meta.get("add_pooling_layer") is None else {"add_pooling_layer": meta["add_pooling_layer"]}
            with torch.random.fork_rng(devices=[]):  # weights are overwritten below
                backbone = AutoModel.from_config(config, **kwargs)
        rm = cls(backbone, tokenizer, max_length=meta["max_length"], backbone_info=meta.get("backbone"),
                 add_pooling_layer=meta.get("add_pooling_layer"))
        rm.info = dict(meta.get("info") or {})
        load_model(rm, str(directory / WEIGHTS_FILE))
        return rm.to(torch.device(device)).eval()

    def __repr__(self) -> str:  # nn.Module's repr prints every layer: too long for logs
        return (f"RewardModel(backbone={self.backbone_info.get('model_id')!r}, "
                f"revision={self.backbone_info.get('revision')!r}, max_length={self.max_length})")


def _load_backbone(load) -> tuple[nn.Module, bool | None]:
    """Load without the unused pooler when the architecture allows it (BERT-like models)."""
    try:
        return load(add_pooling_layer=False), False
    except TypeError:
        return load(), None


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


# --- training ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RMTrainConfig:
    """Reward-model training settings (AdamW with linear warm-up and decay)."""

    lr: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    epochs: int = field(default=1, metadata={"help": "passes over the training examples"})
    batch_size: int = field(default=16, metadata={"help": "examples (pairs or rows) per step"})
    max_examples: int | None = field(default=None, metadata={
        "help": "use at most this many examples (a seeded random subset); None = all"})
    seed: int = field(default=0, metadata={"help": "seed of shuffling, subset and dropout"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases/norms)"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "fraction of steps of linear warm-up"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clipping (0 = off)"})
    bf16: bool = field(default=False, metadata={
        "help": "bf16 autocast for forward and backward (weights and optimizer stay fp32); ~2x on CPU"})

    def validate(self) -> None:
        """Raise ValueError for impossible values."""
        if self.lr <= 0 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("lr must be > 0, epochs and batch_size >= 1")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError("max_examples must be >= 1 or None")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")


def train_bradley_terry(rm: RewardModel, pairs: list[dict], config: RMTrainConfig,
                        progress: Any = None) -> dict:
    """Fit ``rm`` on preference pairs (keys prompt, chosen, rejected) with the Bradley-Terry loss
    -log σ(r(x, y_w) − r(x, y_l)). Returns ``{"losses": [per step], "steps", "examples", "seconds"}``.
    """
    for p in pairs:
        if not all(k in p for k in ("prompt", "chosen", "rejected")):
            raise DataError("preference pairs need the keys prompt, chosen and rejected")

    def loss_fn(batch_rows: list[dict]) -> torch.Tensor:
        prompts = [r["prompt"] for r in batch_rows]
        texts = [r["chosen"] for r in batch_rows] + [r["rejected"] for r in batch_rows]
        rewards = rm(rm.encode(prompts + prompts, texts))
        n = len(batch_rows)
        return -nn.functional.logsigmoid(rewards[:n] - rewards[n:]).mean()

    return _train(rm, pairs, config, loss_fn, progress, "reward model (Bradley-Terry)")


def train_classifier(rm: RewardModel, rows: list[dict], config: RMTrainConfig, progress: Any = None) -> dict:
    """Fit ``rm`` as a binary classifier on rows (keys prompt, text, label ∈ {0, 1}) with
    BCE-with-logits; the reward is the logit. Returns the same dict as :func:`train_bradley_terry`.
    """
    for r in rows:
        if not all(k in r for k in ("prompt", "text", "label")):
            raise DataError("labeled rows need the keys prompt, text and label")
        if float(r["label"]) not in (0.0, 1.0):
            raise DataError(f"labels must be 0 or 1, got {r['label']!r}")

    def loss_fn(batch_rows: list[dict]) -> torch.Tensor:
        logits = rm(rm.encode([r["prompt"] for r in batch_rows], [r["text"] for r in batch_rows]))
        labels = torch.tensor([float(r["label"]) for r in batch_rows], device=logits.device)
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)

    return _train(rm, rows, config, loss_fn, progress, "reward model (classifier)")


def _train(rm: RewardModel, examples: list[dict], config: RMTrainConfig, loss_fn, progress: Any,
           description: str) -> dict:
    from transformers import get_linear_schedule_with_warmup

    config.validate()
    if not examples:
        raise DataError("no training examples for the reward model")
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(config.seed)
    if config.max_examples is not None and len(examples) > config.max_examples:
        keep = sorted(torch.randperm(len(examples), generator=gen)[: config.max_examples].tolist())
        examples = [examples[i] for i in keep]
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = steps_per_epoch * config.epochs
    decay, no_decay = [], []
    for name, p in rm.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith("bias") or "norm" in name.lower() else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    sched = get_linear_schedule_with_warmup(opt, int(config.warmup_ratio * total), total)
    task = progress.add_task(description, total=total) if progress is not None else None
    losses: list[float] = []
    rm.train()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # dropout masks
            for _ in range(config.epochs):
                perm = torch.randperm(len(examples), generator=gen).tolist()
                for lo in range(0, len(perm), config.batch_size):
                    batch_rows = [examples[i] for i in perm[lo:lo + config.batch_size]]
                    device_type = next(rm.parameters()).device.type
                    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=config.bf16):
                        loss = loss_fn(batch_rows).float()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.max_grad_norm > 0:
                        nn.utils.clip_grad_norm_(rm.parameters(), config.max_grad_norm)
                    opt.step()
                    sched.step()
                    losses.append(float(loss.detach()))
                    if task is not None:
                        progress.advance(task)
    finally:
        rm.eval()
    return {"losses": losses, "steps": len(losses), "examples": len(examples),
            "epochs": config.epochs, "seconds": round(time.perf_counter() - started, 3),
            "config": dataclasses.asdict(config)}
