"""Pieces shared by the baselines: adapter files, seeds, schedules, curves, and the Bradley-Terry
reward model r_ψ that ``ppo``, ``rwr`` and ``bon`` all use.

The BT reward model is trained once per fold on the pooled source train pairs and cached under
``<OODPL_CACHE>/bt-rm/<key>/``, keyed by everything that determines it (the pairs' content, the
backbone, the training options and the seed). ``ppo``, ``rwr`` and ``bon`` therefore share the
*same* r_ψ, which is what makes them comparable (``rwr`` vs ``metarm`` isolates the meta-learned RM;
``ppo`` vs ``rwr`` isolates the policy optimiser). Each run also keeps a copy in its solver folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ood_pl_bench.io import atomic_path, read_json, sha256_text, stable_hash, write_json
from ood_pl_bench.solver import Solver

# --- seeds, schedules, adapters, curves ------------------------------------------------------------


def resolve_seed(explicit: int | None, run_seed: int, unit: str) -> int:
    """``explicit`` if given, else a seed derived from (run seed, unit name) alone.

    Deriving from the unit name (e.g. ``"dpo:A"``) keeps a resumed run identical to an
    uninterrupted one and makes folds and domains independent of execution order.
    """
    if explicit is not None:
        return int(explicit)
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{unit}".encode()).digest()[:4], "little")


def linear_warmup_decay(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    """LR multiplier for ``LambdaLR``: linear warm-up over ``warmup_ratio·total`` steps, then
    linear decay to 0 at ``total_steps``."""
    warmup = int(round(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def save_adapter(path: Path, adapter: dict[str, torch.Tensor] | None) -> None:
    """Save LoRA weights as safetensors atomically (``None``, the reference, saves an empty file)."""
    from safetensors.torch import save_file

    with atomic_path(path, ".safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in (adapter or {}).items()}, str(tmp))


def load_adapter(path: Path) -> dict[str, torch.Tensor] | None:
    """Load LoRA weights saved by :func:`save_adapter` (``None`` for an empty file)."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    return state or None


class Curves:
    """Named per-step training curves (lists of floats), saved as JSON beside a solver's state."""

    def __init__(self, data: dict[str, list[float]] | None = None):
        self.data: dict[str, list[float]] = {k: list(v) for k, v in (data or {}).items()}

    def add(self, prefix: str = "", **values: float) -> None:
        """Append one value to each named curve (names get ``prefix`` prepended)."""
        for k, v in values.items():
            self.data.setdefault(prefix + k, []).append(float(v))

    def extend(self, other: "Curves", prefix: str = "") -> None:
        """Append every curve of ``other`` under ``prefix``."""
        for k, v in other.data.items():
            self.data.setdefault(prefix + k, []).extend(v)

    def as_dict(self) -> dict[str, list[float]]:
        """A copy of the curves."""
        return {k: list(v) for k, v in self.data.items()}

    def save(self, path: Path) -> None:
        """Write the curves as JSON."""
        write_json(path, self.data)

    @classmethod
    def load(cls, path: Path) -> "Curves":
        """Read curves written by :meth:`save` (empty when the file is missing)."""
        return cls(read_json(path)) if Path(path).exists() else cls()


# --- the Bradley-Terry reward model r_ψ shared by ppo, rwr and bon ---------------------------------

BT_RM_DIR = "bt-rm"
BT_RM_FORMAT = 1


@dataclass
class BTRewardOptions:
    """Options of the Bradley-Terry reward model r_ψ (a base class of the ppo/rwr/bon configs).

    Defaults: one epoch at lr 5e-5 (the usual fine-tuning rate of a MiniLM-sized encoder; one
    epoch because BT reward models overfit after the first, Ouyang et al. 2022), batches of 16
    pairs, on a seeded subset of at most 384 pooled source pairs (qa pools ~630 per fold,
    sentiment ~1020): on a 2-core CPU that is ~2 minutes per fold in bf16, which keeps ``ppo``,
    ``rwr`` and ``bon`` runs near the 15-minute budget. Bf16 autocast follows the profile's dtype
    (as for the gold reward models).
    """

    rm_lr: float = field(default=5e-5, metadata={"help": "reward model: AdamW peak learning rate"})
    rm_epochs: int = field(default=1, metadata={"help": "reward model: passes over the pooled source pairs"})
    rm_batch_size: int = field(default=16, metadata={"help": "reward model: pairs per step"})
    rm_max_pairs: int | None = field(default=384, metadata={
        "help": "reward model: use at most this many pooled source pairs (a seeded subset; a number "
                ">= the pool size, or None, uses all)"})
    rm_seed: int | None = field(default=None, metadata={
        "help": "reward model: training seed; None = derived from the run seed and the fold"})

    def rm_train_config(self, run_seed: int, fold: str, bf16: bool = False):
        """The :class:`~ood_pl_bench.models.reward.RMTrainConfig` these options describe."""
        from ood_pl_bench.models.reward import RMTrainConfig

        return RMTrainConfig(lr=self.rm_lr, epochs=self.rm_epochs, batch_size=self.rm_batch_size,
                             max_examples=self.rm_max_pairs, bf16=bf16,
                             seed=resolve_seed(self.rm_seed, run_seed, f"bt-rm:{fold}"))

    def validate_rm(self) -> None:
        """Raise ValueError for impossible reward-model options."""
        if self.rm_lr <= 0 or self.rm_epochs < 1 or self.rm_batch_size < 1:
            raise ValueError("rm_lr must be > 0, rm_epochs and rm_batch_size >= 1")
        if self.rm_max_pairs is not None and self.rm_max_pairs < 1:
            raise ValueError("rm_max_pairs must be >= 1 or None")


def pairs_fingerprint(pairs: list[dict]) -> str:
    """Content hash of a list of preference pairs (order-sensitive)."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(sha256_text("\x1f".join((p["prompt"], p["chosen"], p["rejected"]))).encode())
    return h.hexdigest()


def bt_reward_model(ctx: Any, options: BTRewardOptions):
    """The fold's Bradley-Terry reward model r_ψ: loaded from the cache, or trained and cached.

    Trained with :func:`~ood_pl_bench.models.reward.train_bradley_terry` on
    ``ctx.data.source_pairs()`` (pooled source train pairs; no held-out label is ever seen), from
    a fresh ``ctx.make_reward_model()``. The cache key covers the pairs' content, the backbone
    (id and revision), the head seed and the training options, so every method that asks for the
    same r_ψ gets the identical model. Writes ``<work_dir>/bt_rm.json`` (key, path, training
    summary) for the run's record. Returns the reward model in eval mode.
    """
    from ood_pl_bench.models.reward import RewardModel, train_bradley_terry
    from ood_pl_bench.paths import cache_dir, training_device_key

    pairs = ctx.data.source_pairs()
    config = options.rm_train_config(ctx.seed, ctx.fold.name, bf16=ctx.profile.dtype == "bf16")
    rm = ctx.make_reward_model()
    key = stable_hash({
        "format": BT_RM_FORMAT, "pairs": pairs_fingerprint(pairs),
        "backbone": {k: rm.backbone_info.get(k) for k in ("model_id", "revision")},
        "max_length": rm.max_length, "train": dataclasses.asdict(config),
        "head": hashlib.sha256(rm.head.weight.detach().cpu().numpy().tobytes()).hexdigest(),
        **training_device_key(ctx.device),
    })[:20]
    folder = cache_dir() / BT_RM_DIR / key
    record_path = Path(ctx.work_dir) / "bt_rm.json"
    if (folder / "reward_model.json").is_file():
        ctx.log(f"bt reward model: cached at {folder}")
        rm = RewardModel.load(folder, device=ctx.device)
    else:
        used = len(pairs) if config.max_examples is None else min(len(pairs), config.max_examples)
        ctx.log(f"bt reward model: training on {used} of {len(pairs)} pooled source pairs")
        summary = train_bradley_terry(rm, pairs, config, progress=ctx.progress)
        rm.info = {"method": "bradley-terry", "fold": ctx.fold.name, "source_domains": list(ctx.fold.source),
                   "pairs": len(pairs), "steps": summary["steps"], "seconds": summary["seconds"],
                   "final_loss": _tail_mean(summary["losses"]), "config": summary["config"]}
        rm.save(folder)
    write_json(record_path, {"key": key, "path": str(folder), "info": rm.info})
    return rm.eval()


def _tail_mean(values: list[float], n: int = 10) -> float | None:
    tail = values[-n:]
    return sum(tail) / len(tail) if tail else None



class BTRewardSolver(Solver):
    """Base of the solvers built on the fold's Bradley-Terry reward model (``ppo``, ``rwr``, ``bon``).

    ``fit`` trains r_ψ (or loads it from the shared cache); a resumed run reloads it; the runner
    scores it for rm_accuracy. Subclasses implement ``policy_for``. Their config must derive from
    :class:`BTRewardOptions`.
    """

    has_reward_model = True

    def __init__(self, config: Any, ctx: Any):
        super().__init__(config, ctx)
        self.rm: Any = None
        self._policy: Any = None

    def fit(self) -> None:
        """Train (or load from the cache) the fold's Bradley-Terry reward model r_ψ."""
        self.rm = bt_reward_model(self.ctx, self.config)

    def policy(self) -> Any:
        """The solver's own policy, created on first use (adapters at θ₀ between uses)."""
        if self._policy is None:
            self._policy = self.ctx.make_policy()
        return self._policy

    def reward_model(self) -> Any:
        """The Bradley-Terry reward model r_ψ (scored for rm_accuracy)."""
        return self.rm

    def save(self, directory: Path) -> None:
        """Nothing beyond ``bt_rm.json``: r_ψ itself lives in the shared cache."""

    def load(self, directory: Path) -> bool:
        """Reload r_ψ after an interrupted run (retrained, identically, if the cache was cleared);
        False when ``fit`` never finished in ``directory``."""
        if not (Path(directory) / "bt_rm.json").exists():
            return False
        self.rm = bt_reward_model(self.ctx, self.config)
        return True
