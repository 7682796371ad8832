"""Templates of ``oodpl new-solver`` (``string.Template``: ``$name``, ``$module``, ``$cls``, …).

Kept as Python strings so they ship inside the package without package-data settings. The
generated solver is a small but real method (supervised fine-tuning of the LoRA adapters on the
chosen responses of the pooled source pairs) that users replace with their own.
"""

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "The $name method for ood-pl-bench (out-of-distribution preference learning)"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["ood-pl-bench"]

[project.optional-dependencies]
test = ["pytest>=8"]

# This line is what makes `oodpl run --method $name` find the solver.
[project.entry-points."oodpl.solvers"]
$name = "$module:$cls"

[tool.setuptools]
packages = ["$module"]
'''

INIT = '''\
"""The ``$name`` method for ood-pl-bench."""

from .solver import $config_cls, $cls

__all__ = ["$config_cls", "$cls"]
'''

SOLVER = '''\
"""The ``$name`` solver.

Starting point written by ``oodpl new-solver``: supervised fine-tuning (SFT) of the LoRA adapters
on the *chosen* responses of the pooled source-domain pairs, applied as is to every held-out
domain. Replace ``fit`` and ``policy_for`` with your method; keep the contract:

* ``fit()`` trains once per fold. It may use ``ctx.data.source_pairs()`` (labels of source
  domains only), ``ctx.data.train_prompts(domain)`` and ``ctx.data.reference_samples(domain)``
  (unlabeled, any domain of the fold, held-out ones included), ``ctx.make_policy()`` (a fresh
  LoRA policy equal to the reference) and ``ctx.make_reward_model()`` (a fresh reward model).
* ``policy_for(domain)`` returns a ``DomainPolicy`` for a held-out domain: LoRA ``adapter``
  weights (``policy.adapter_state()``), or a ``generate`` function with
  ``explicit_likelihood=False`` for an implicit policy such as best-of-n.
* ``save``/``load`` let a killed run resume without training again.
* Set ``has_reward_model = True`` and return it from ``reward_model()`` to get rm_accuracy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ood_pl_bench.runner import derive_seed
from ood_pl_bench.solver import DomainPolicy, Solver


@dataclass
class $config_cls:
    """Options of ``$name``: ``oodpl run --method $name --set key=value`` (see ``oodpl ls methods -v``)."""

    steps: int = field(default=8, metadata={"help": "optimizer steps per fold"})
    batch_size: int = field(default=4, metadata={"help": "source pairs per step (their chosen responses)"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the LoRA adapters"})
    seed: int | None = field(default=None, metadata={
        "help": "seed of the data order; None: derived from the run seed and the fold"})

    def validate(self) -> None:
        """Reject impossible values (the CLI turns the ValueError into a one-line error)."""
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("steps must be >= 0, batch_size >= 1 and lr > 0")


class $cls(Solver):
    """$name: SFT on the chosen responses of the pooled source pairs (replace with your method)."""

    name = "$name"
    description = "$name (skeleton: SFT on chosen source responses)"
    Config = $config_cls

    def __init__(self, config: $config_cls, ctx):
        super().__init__(config, ctx)
        self.adapter: dict[str, torch.Tensor] | None = None
        self.losses: list[float] = []

    def fit(self) -> None:
        """Train LoRA adapters on the fold's source pairs."""
        cfg = self.config
        seed = cfg.seed if cfg.seed is not None else derive_seed(self.ctx.seed, f"$name:{self.ctx.fold.name}")
        rng = random.Random(seed)
        policy = self.ctx.make_policy()
        pairs = self.ctx.data.source_pairs()
        opt = torch.optim.AdamW(policy.trainable_parameters(), lr=cfg.lr)
        for _ in range(cfg.steps):
            batch = rng.sample(pairs, min(cfg.batch_size, len(pairs)))
            enc = policy.encode([p["prompt"] for p in batch], [p["chosen"] for p in batch])
            loss = -policy.response_logprobs(enc).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.losses.append(loss.item())
        self.adapter = policy.adapter_state()

    def policy_for(self, domain: str) -> DomainPolicy:
        """The fold's adapter for every held-out domain."""
        return DomainPolicy(adapter=self.adapter, info={"method": "$name"})

    def save(self, directory: Path) -> None:
        """Write the adapter so a resumed run skips ``fit``."""
        save_file({k: v.contiguous() for k, v in self.adapter.items()}, str(Path(directory) / "adapter.safetensors"))

    def load(self, directory: Path) -> bool:
        """Load the adapter of a finished ``fit``; False if there is none."""
        path = Path(directory) / "adapter.safetensors"
        if not path.exists():
            return False
        self.adapter = load_file(str(path))
        return True

    def training_curves(self) -> dict[str, list[float]]:
        """Per-step training loss (written to the run folder)."""
        return {"loss": list(self.losses)}
'''

TEST = '''\
"""Tests of ``$name``: the config documents every option, and a smoke run works end to end."""

from __future__ import annotations

import dataclasses

import pytest

from $module import $config_cls, $cls


def test_every_option_has_help():
    for f in dataclasses.fields($config_cls):
        assert f.metadata.get("help"), f.name


def test_smoke_run(tmp_path, monkeypatch):
    """One held-out domain on the smoke profile (tiny random models, a few items): about a minute."""
    from ood_pl_bench.errors import DataError
    from ood_pl_bench.paths import find_data_dir
    from ood_pl_bench.registry import solvers
    from ood_pl_bench.runner import RunConfig, run

    try:
        find_data_dir()
    except DataError as exc:
        pytest.skip(f"raw data not found: {exc}")
    monkeypatch.setenv("OODPL_RUNS", str(tmp_path / "runs"))
    if "$name" not in solvers.names():  # not pip-installed yet: register in this process
        solvers.register("$name", $cls)
    results = run(RunConfig(method="$name", task="qa", profile="smoke", domains=("coffee",),
                            in_distribution=False, method_options={"steps": "2"}), out=tmp_path / "run")
    (domain,) = [d for d in results["domains"] if d["role"] == "held_out"]
    assert domain["metrics"]["pl_accuracy"]["value"] is not None
    assert domain["metrics"]["gold_reward"]["value"] is not None
'''

README = '''\
# $dist

The `$name` method for ood-pl-bench (out-of-distribution preference learning),
written with `oodpl new-solver $name`.

```bash
pip install -e .                                   # registers the solver (entry point oodpl.solvers)
oodpl ls methods -v                                # $name and its options
oodpl run --method $name --task qa --profile smoke # a minute on tiny models: wiring check
python -m pytest tests                             # the skeleton's tests
oodpl run --method $name --task qa                 # the benchmark run (default profile)
```

Edit `$module/solver.py`: `fit` (training, once per fold) and `policy_for` (one held-out domain).
See `docs/adding-a-baseline.md` in ood-pl-bench for the whole walk-through, up to the leaderboard.
'''

FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "$module/__init__.py": INIT,
    "$module/solver.py": SOLVER,
    "tests/test_$module.py": TEST,
}
