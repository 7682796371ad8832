"""Options of the ``metarm`` solver (``oodpl run --method metarm --set key=value``).

The defaults are sized for the default profile on a 2-core CPU (SmolLM2-135M policy, MiniLM reward
model): meta-training takes a few minutes per fold and each held-out domain's meta-test well under a
minute, so ``oodpl run --method metarm --task qa`` stays within the benchmark's time budget.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

WEIGHT_MODES = ("softmax", "exp")
HYPERGRAD_MODES = ("analytic", "exact")
META_TEST_MODES = ("weighted", "ppo")
META_TEST_OPTIMIZERS = ("sgd", "adam")
RM_TRAINABLE = ("all", "head")
OUTER_MARGINS = ("likelihood", "implicit")

# Options that change only the meta-test (per held-out domain); every other option changes the
# meta-trained reward model, so a finished meta-training is reused when only these differ.
META_TEST_FIELDS = ("meta_test", "meta_test_steps", "meta_test_optimizer", "meta_test_lr",
                    "meta_test_prompts")


@dataclass
class MetaRMConfig:
    """Hyperparameters of meta-training (SPEC section 4) and of the meta-test."""

    meta_steps: int = field(default=8, metadata={
        "help": "K: outer (meta-training) steps per fold; each is one episode on one source domain"})
    inner_steps: int = field(default=1, metadata={
        "help": "D: inner weighted-likelihood SGD steps per episode, from θ₀ (the reference adapters)"})
    alpha: float = field(default=5e-3, metadata={
        "help": "α: inner SGD step size, θ ← θ + α·Σ_b w_b·∇θ log π_θ(y_b|x_b) (sum over the batch)"})
    eta: float = field(default=2e-3, metadata={
        "help": "η: Adam learning rate of the reward model on the hypergradient"})
    beta: float = field(default=0.5, metadata={
        "help": "β > 0: reward factor; inner weights are softmax(r_φ/β) (or exp(r_φ/β))"})
    inner_prompts: int = field(default=2, metadata={
        "help": "prompts per inner batch (each with samples_per_prompt reference samples)"})
    samples_per_prompt: int = field(default=2, metadata={
        "help": "reference samples y ~ π_ref(·|x) used per prompt (>= 2: softmax weights are "
                "normalised within a prompt's group; at most the cached k)"})
    outer_pairs: int = field(default=2, metadata={
        "help": "preference pairs of the episode's source domain in the outer Bradley-Terry batch"})
    weights: str = field(default="softmax", metadata={
        "help": "inner weights: 'softmax' of r_φ/β within each prompt's group, or 'exp': the "
                "paper's raw exp(r_φ/β), clipped at exp(max_log_weight)"})
    max_log_weight: float = field(default=5.0, metadata={
        "help": "for weights=exp: r_φ/β is clipped at this value (weights at most e^max_log_weight; "
                "a clipped weight passes no gradient)"})
    hypergrad: str = field(default="analytic", metadata={
        "help": "'analytic': one forward-mode JVP per inner step and one RM backward (exact for "
                "inner_steps=1); 'exact': differentiate through the unrolled inner loop (slow, "
                "memory grows with inner_steps; for checking and small models)"})
    outer_margin: str = field(default="likelihood", metadata={
        "help": "margin of the outer loss −log σ(·): 'likelihood', the paper's A = log π_θ(y_w|x) − "
                "log π_θ(y_l|x); or 'implicit', A − A_ref (the margin pl_accuracy scores), which "
                "weighs every pair σ(−0) = ½ at θ₀ instead of letting pairs whose likelihoods differ "
                "by tens of nats saturate the loss (0 or 1)"})
    bt_weight: float = field(default=0.0, metadata={
        "help": "weight of an extra direct Bradley-Terry loss of r_φ on the outer pairs (0: off, "
                "the pure meta-learned RM of the paper)"})
    rm_trainable: str = field(default="head", metadata={
        "help": "reward-model parameters φ that meta-training updates: 'all' (backbone and head) "
                "or 'head' (the scalar head only, on the frozen pretrained backbone)"})
    rm_max_grad_norm: float = field(default=1.0, metadata={
        "help": "clip the RM gradient (hypergradient plus BT term) to this norm before Adam (0: off)"})
    meta_test: str = field(default="weighted", metadata={
        "help": "meta-test on a held-out domain: 'weighted' (T steps of the inner update with the "
                "frozen r_φ) or 'ppo' (needs the ppo baseline to be installed)"})
    meta_test_steps: int = field(default=4, metadata={
        "help": "T: weighted steps from θ₀ on each held-out domain's reference samples (0: the "
                "reference policy)"})
    meta_test_optimizer: str = field(default="sgd", metadata={
        "help": "optimizer of the meta-test: 'sgd' (the update meta-training assumed) or 'adam'"})
    meta_test_lr: float | None = field(default=None, metadata={
        "help": "meta-test learning rate; None: alpha for sgd, 1e-3 for adam"})
    meta_test_prompts: int | None = field(default=None, metadata={
        "help": "prompts per meta-test step; None: inner_prompts"})
    seed: int | None = field(default=None, metadata={
        "help": "seed of meta-training (domain order, batches, RM head) and of the meta-test "
                "batches; None: derived from the run seed and the fold / domain"})

    def validate(self) -> None:
        """Raise ValueError for impossible values or combinations."""
        if self.meta_steps < 0:
            raise ValueError(f"meta_steps must be >= 0, got {self.meta_steps}")
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1, got {self.inner_steps}")
        for name in ("alpha", "eta", "beta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("inner_prompts", "outer_pairs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.samples_per_prompt < 2:
            raise ValueError(
                f"samples_per_prompt must be >= 2, got {self.samples_per_prompt}: a group of one "
                "sample has softmax weight 1 and passes no gradient to the reward model")
        if self.weights not in WEIGHT_MODES:
            raise ValueError(f"weights must be one of {', '.join(WEIGHT_MODES)}, got {self.weights!r}")
        if self.hypergrad not in HYPERGRAD_MODES:
            raise ValueError(f"hypergrad must be one of {', '.join(HYPERGRAD_MODES)}, got {self.hypergrad!r}")
        if self.rm_trainable not in RM_TRAINABLE:
            raise ValueError(f"rm_trainable must be one of {', '.join(RM_TRAINABLE)}, got {self.rm_trainable!r}")
        if self.outer_margin not in OUTER_MARGINS:
            raise ValueError(f"outer_margin must be one of {', '.join(OUTER_MARGINS)}, got {self.outer_margin!r}")
        if self.bt_weight < 0:
            raise ValueError(f"bt_weight must be >= 0, got {self.bt_weight}")
        if self.rm_max_grad_norm < 0:
            raise ValueError(f"rm_max_grad_norm must be >= 0, got {self.rm_max_grad_norm}")
        if self.meta_test not in META_TEST_MODES:
            raise ValueError(f"meta_test must be one of {', '.join(META_TEST_MODES)}, got {self.meta_test!r}")
        if self.meta_test_steps < 0:
            raise ValueError(f"meta_test_steps must be >= 0, got {self.meta_test_steps}")
        if self.meta_test_optimizer not in META_TEST_OPTIMIZERS:
            raise ValueError(f"meta_test_optimizer must be one of {', '.join(META_TEST_OPTIMIZERS)}, "
                             f"got {self.meta_test_optimizer!r}")
        if self.meta_test_lr is not None and not self.meta_test_lr > 0:
            raise ValueError(f"meta_test_lr must be > 0 or None, got {self.meta_test_lr}")
        if self.meta_test_prompts is not None and self.meta_test_prompts < 1:
            raise ValueError(f"meta_test_prompts must be >= 1 or None, got {self.meta_test_prompts}")
        if not math.isfinite(self.max_log_weight):
            raise ValueError(f"max_log_weight must be finite, got {self.max_log_weight}")
        if self.meta_test == "ppo":
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            changed = [k for k in ("meta_test_steps", "meta_test_optimizer", "meta_test_lr", "meta_test_prompts")
                       if getattr(self, k) != defaults[k]]
            if changed:
                raise ValueError(f"{', '.join(changed)} only apply to meta_test=weighted; with meta_test=ppo "
                                 "the ppo baseline's own options are used")
            from .ppo_bridge import ppo_available

            ok, why = ppo_available()
            if not ok:
                raise ValueError(f"meta_test=ppo needs the ppo baseline: {why}. "
                                 "Use meta_test=weighted (the default).")

    # --- derived values ------------------------------------------------------------------------

    @property
    def test_lr(self) -> float:
        """The meta-test learning rate after applying the None default."""
        if self.meta_test_lr is not None:
            return float(self.meta_test_lr)
        return float(self.alpha) if self.meta_test_optimizer == "sgd" else 1e-3

    @property
    def test_prompts(self) -> int:
        """Prompts per meta-test step after applying the None default."""
        return int(self.meta_test_prompts if self.meta_test_prompts is not None else self.inner_prompts)

    def meta_training_options(self) -> dict:
        """The options that determine the meta-trained reward model (the reuse key)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in META_TEST_FIELDS}
