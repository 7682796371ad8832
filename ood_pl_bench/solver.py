"""The solver plug-in interface.

A solver is a class with a typed ``Config`` dataclass (every field with ``metadata={"help": ...}``),
registered under the ``oodpl.solvers`` entry-point group. The runner calls, once per fold::

    solver = SolverClass(config, ctx)        # ctx: SolverContext for this fold
    if not solver.load(ctx.work_dir): solver.fit(); solver.save(ctx.work_dir)
    for domain in fold.held_out:
        policy = solver.policy_for(domain)   # a DomainPolicy, evaluated by the runner
    solver.reward_model()                    # optional: scored for rm_accuracy

Solvers see preference labels of source domains only: ``FoldData`` has no accessor for held-out
pairs, and oracle pairs are never exposed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from .errors import UsageError

if TYPE_CHECKING:  # heavy imports only for type checkers
    import torch

    from .data.edition import Edition
    from .profiles import Profile
    from .tasks import Fold, TaskSpec


@dataclass
class DomainPolicy:
    """What a solver hands back for one held-out domain.

    ``adapter``: LoRA adapter weights of the aligned policy (None = the reference policy).
    ``generate``: optional override for generation (e.g. best-of-n), called as
    ``generate(prompts: list[str], num_samples: int, seed: int) -> list[list[str]]``.
    ``explicit_likelihood``: False when the policy has no likelihood of its own (best-of-n);
    PL metrics are then reported as not applicable.
    """

    adapter: dict[str, "torch.Tensor"] | None = None
    generate: Callable[..., list[list[str]]] | None = None
    explicit_likelihood: bool = True
    # A separate full model to score and sample with (``oodpl eval`` of an external checkpoint);
    # None: the shared reference model with ``adapter`` loaded.
    model: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def is_reference(self) -> bool:
        """True when this is pi_ref itself (no adapter, no separate model, no custom sampler)."""
        return self.adapter is None and self.model is None and self.generate is None and self.explicit_likelihood


class FoldData:
    """A solver's view of the data of one fold: source labels only.

    ``source_pairs``: train pairs of the fold's source domains.
    ``train_prompts``: unlabeled training prompts of any domain of the fold (held-out included).
    ``reference_samples``: cached samples of pi_ref on a domain's training prompts.
    """

    def __init__(self, edition: "Edition", task: "TaskSpec", fold: "Fold", profile: "Profile",
                 reference_samples: Callable[[str], list[dict]] | None = None):
        self._edition = edition
        self.task = task
        self.fold = fold
        self._profile = profile
        self._reference_samples = reference_samples

    def source_pairs(self, domain: str | None = None) -> list[dict]:
        """Train pairs of one source domain, or of all source domains pooled."""
        domains = self.fold.source if domain is None else (domain,)
        for d in domains:
            if d not in self.fold.source:
                raise PermissionError(f"{d!r} is held out in fold {self.fold.name}: its labels are not available")
        rows: list[dict] = []
        for d in domains:
            rows.extend(self._profile.limit_train_pairs(self._edition.pairs(self.task.name, d, "train")))
        return rows

    def source_test_pairs(self, domain: str) -> list[dict]:  # pragma: no cover - guard
        """Not available to solvers: evaluation pairs are the runner's."""
        raise PermissionError("test pairs are reserved for evaluation")

    def train_prompts(self, domain: str) -> list[dict]:
        """Unlabeled training prompts of a fold domain (no preference labels)."""
        if domain not in self.fold.source + self.fold.held_out:
            raise PermissionError(f"{domain!r} is not a domain of fold {self.fold.name}")
        return self._profile.limit_train_prompts(self._edition.prompts(self.task.name, domain, "train"))

    def reference_samples(self, domain: str) -> list[dict]:
        """Cached pi_ref samples on ``train_prompts(domain)``: rows with prompt_id, prompt, samples."""
        if self._reference_samples is None:
            raise RuntimeError("reference samples are not available in this context")
        if domain not in self.fold.source + self.fold.held_out:
            raise PermissionError(f"{domain!r} is not a domain of fold {self.fold.name}")
        return self._reference_samples(domain)


@dataclass
class SolverContext:
    """Everything a solver needs for one fold."""

    task: "TaskSpec"
    fold: "Fold"
    data: FoldData
    profile: "Profile"
    seed: int
    work_dir: Path
    device: "torch.device"
    make_policy: Callable[[], Any]        # -> ood_pl_bench.models.policy.Policy (fresh zero adapters)
    make_reward_model: Callable[[], Any]  # -> ood_pl_bench.models.reward.RewardModel (fresh head)
    log: Callable[[str], None] = print
    progress: Any = None                  # rich Progress or None
    # This process's place in an ``accelerate launch`` (ood_pl_bench.distributed.DataParallel), or
    # None in one process. Only solvers with ``data_parallel = True`` see it during ``fit``.
    dp: Any = None


class Solver:
    """Base class of every method. Subclasses set ``name``, ``Config`` and implement ``fit``."""

    name: ClassVar[str] = "solver"
    description: ClassVar[str] = ""
    Config: ClassVar[type] = object
    # Whether this method trains a reward model (then rm_accuracy is reported).
    has_reward_model: ClassVar[bool] = False
    # Under ``accelerate launch``: True if ``fit`` shards its batches over ``ctx.dp`` and averages
    # gradients (every process runs ``fit``); False: the main process fits and saves, the others load.
    data_parallel: ClassVar[bool] = False

    def __init__(self, config: Any, ctx: SolverContext):
        self.config = config
        self.ctx = ctx

    def fit(self) -> None:
        """Train on the fold's source domains (may use unlabeled held-out prompts)."""

    def policy_for(self, domain: str) -> DomainPolicy:
        """Return the aligned policy for held-out ``domain``."""
        return DomainPolicy()

    def reward_model(self) -> Any | None:
        """The method's reward model (scored for rm_accuracy), or None."""
        return None

    def save(self, directory: Path) -> None:
        """Save what ``fit`` produced so a resumed run skips it."""

    def load(self, directory: Path) -> bool:
        """Load a finished ``fit`` from ``directory``; return False if there is none."""
        return False

    def training_curves(self) -> dict[str, list[float]]:
        """Optional curves recorded during fit (written to the run directory)."""
        return {}


# --- typed configs -------------------------------------------------------------------------------

def config_fields(config_cls: type) -> list[dataclasses.Field]:
    """The dataclass fields of a solver config."""
    if not dataclasses.is_dataclass(config_cls):
        return []
    return list(dataclasses.fields(config_cls))


def _optional(annotation: Any) -> bool:
    """Whether a field annotation (a string under ``from __future__ import annotations``) admits None."""
    if isinstance(annotation, str):
        return "None" in annotation or annotation.startswith("Optional")
    return type(None) in getattr(annotation, "__args__", ())


def _coerce(value: str, annotation: Any, default: Any) -> Any:
    # `--set key=None` (or null) sets an optional field back to None.
    if value.strip().lower() in ("none", "null") and (_optional(annotation) or default is None):
        return None
    kind = type(default) if default is not dataclasses.MISSING and default is not None else annotation
    if isinstance(kind, str):
        kind = {"int": int, "float": float, "bool": bool, "str": str}.get(kind.split("|")[0].strip(), str)
    if kind is bool:
        low = value.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {value!r}")
    if kind in (int, float, str):
        return kind(value)
    if kind in (tuple, list):
        return type(default)(v.strip() for v in value.split(",") if v.strip())
    return value


def build_config(config_cls: type, overrides: dict[str, Any]) -> Any:
    """Instantiate ``config_cls`` with ``overrides`` (strings from ``--set`` are coerced).

    Unknown keys and bad values raise UsageError naming the key and the valid keys.
    """
    if not dataclasses.is_dataclass(config_cls):
        if overrides:
            raise UsageError(f"this method takes no options, got: {', '.join(overrides)}")
        return None
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if overrides and not fields:
        raise UsageError(f"this method takes no options, got: {', '.join(overrides)}")
    kwargs: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in fields:
            import difflib

            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"Unknown option {key!r}.{hint} Valid options: {', '.join(fields)}.")
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if isinstance(value, str):
            try:
                value = _coerce(value, f.type, default)
            except ValueError as exc:
                raise UsageError(f"Bad value for option {key!r}: {exc}") from None
        kwargs[key] = value
    try:
        config = config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"Invalid options: {exc}") from None
    validate = getattr(config, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise UsageError(f"Invalid options: {exc}") from None
    return config


def config_help(config_cls: type) -> list[tuple[str, str, str]]:
    """(name, default, help) for every field of a config: feeds ``oodpl ls methods -v`` and docs."""
    rows = []
    for f in config_fields(config_cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((f.name, default, f.metadata.get("help", "")))
    return rows
