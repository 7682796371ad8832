"""Run profiles: which models and how much of the edition a run uses.

``default`` is the benchmark: SmolLM2-135M-Instruct policy, MiniLM reward-model backbone, the
edition's full evaluation sets. ``smoke`` uses tiny random models of the same classes and a few
items per domain so both tasks run on all 20 held-out domains in about a minute; its results are
marked ``reduced`` and are never ranked beside full runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import UsageError
from .tasks import Decoding, TaskSpec


@dataclass(frozen=True)
class Profile:
    """Models, precision and subset sizes of a run."""

    name: str = field(metadata={"help": "profile name"})
    policy: str = field(metadata={"help": "policy model: 'smollm2', a local path, or a Hugging Face id"})
    reward_backbone: str = field(metadata={"help": "reward-model backbone: 'all-minilm-l6-v2', a path or hub id"})
    dtype: str = field(default="bf16", metadata={"help": "autocast dtype on CPU/GPU: bf16 or fp32"})
    reduced: bool = field(default=False, metadata={"help": "True: a subset of the evaluation sets (not rankable)"})
    max_test_pairs: int | None = field(default=None, metadata={"help": "cap test pairs per domain"})
    max_eval_prompts: int | None = field(default=None, metadata={"help": "cap evaluation prompts per domain"})
    # Unlabeled train prompts carry cached pi_ref samples (k per prompt, generated once per domain):
    # 16 prompts x 4 samples is what the default methods use and costs ~20 s per domain on 2 cores.
    max_train_prompts: int | None = field(default=16, metadata={"help": "cap unlabeled train prompts per domain"})
    max_train_pairs: int | None = field(default=256, metadata={"help": "cap source train pairs per domain"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "override max new tokens of decoding"})
    reference_samples_per_prompt: int | None = field(default=None, metadata={"help": "override k of Y_m(x)"})
    max_prompt_tokens: int | None = field(default=None, metadata={"help": "override prompt truncation"})
    max_response_tokens: int | None = field(default=None, metadata={"help": "override response truncation"})
    # Sized for a 2-core CPU: the gold RM is trained once per edition and cached (about 3 minutes).
    gold_max_examples: int = field(default=800, metadata={"help": "oracle examples used to train a gold RM"})
    gold_epochs: int = field(default=1, metadata={"help": "epochs of gold RM training"})
    batch_size: int = field(default=8, metadata={"help": "scoring batch size"})
    # Sampling is latency-bound on CPU: 32 rows per batch give ~2.4x the tokens/s of 8 (measured).
    generation_batch_size: int = field(default=32, metadata={
        "help": "sampling batch size (pi_ref samples and evaluation generations)"})

    def limit(self, rows: list, cap: int | None) -> list:
        """The first ``cap`` rows (rows are already in their deterministic edition order)."""
        return rows if cap is None else rows[:cap]

    def limit_test_pairs(self, rows: list) -> list:
        """Test pairs of one domain used by this profile."""
        return self.limit(rows, self.max_test_pairs)

    def limit_eval_prompts(self, rows: list) -> list:
        """Evaluation prompts of one domain used by this profile."""
        return self.limit(rows, self.max_eval_prompts)

    def limit_train_prompts(self, rows: list) -> list:
        """Unlabeled training prompts of one domain used by this profile."""
        return self.limit(rows, self.max_train_prompts)

    def limit_train_pairs(self, rows: list) -> list:
        """Source training pairs of one domain used by this profile."""
        return self.limit(rows, self.max_train_pairs)

    def decoding(self, base: Decoding) -> Decoding:
        """The task's decoding with this profile's overrides."""
        if self.max_new_tokens is None:
            return base
        return dataclasses.replace(base, max_new_tokens=self.max_new_tokens)

    def apply(self, task: TaskSpec) -> TaskSpec:
        """The task spec as this profile runs it (reduced lengths for smoke)."""
        changes = {}
        if self.max_new_tokens is not None:
            changes["eval_decoding"] = self.decoding(task.eval_decoding)
            changes["reference_decoding"] = self.decoding(task.reference_decoding)
        if self.reference_samples_per_prompt is not None:
            changes["reference_samples_per_prompt"] = self.reference_samples_per_prompt
        if self.max_prompt_tokens is not None:
            changes["max_prompt_tokens"] = self.max_prompt_tokens
        if self.max_response_tokens is not None:
            changes["max_response_tokens"] = self.max_response_tokens
        return dataclasses.replace(task, **changes) if changes else task

    @property
    def tiny(self) -> bool:
        """True when the models are tiny random ones (tests, smoke)."""
        return self.policy.startswith("tiny") and self.reward_backbone.startswith("tiny")


PROFILES: dict[str, Profile] = {
    "default": Profile(name="default", policy="smollm2", reward_backbone="all-minilm-l6-v2"),
    "smoke": Profile(
        name="smoke", policy="tiny-llama", reward_backbone="tiny-bert", dtype="fp32", reduced=True,
        max_test_pairs=6, max_eval_prompts=3, max_train_prompts=8, max_train_pairs=16,
        max_new_tokens=8, reference_samples_per_prompt=2, max_prompt_tokens=48,
        max_response_tokens=32, gold_max_examples=64, gold_epochs=1, batch_size=8,
    ),
}


def get_profile(name: str) -> Profile:
    """Return a named profile or raise a UsageError listing the valid ones."""
    if name not in PROFILES:
        raise UsageError(f"Unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]
