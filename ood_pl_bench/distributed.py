"""Data parallelism on ``accelerate``: shard a domain's items over processes, gather per item;
average gradients of data-parallel training loops; run cache-building work on the main process first.

``oodpl run`` under ``accelerate launch -m ood_pl_bench.cli run ...`` uses this module (see
:func:`ood_pl_bench.runner.run`): the main process builds the shared caches first (the others then
read them), fits the solver (or every process fits its shard when the solver is data-parallel),
broadcasts each domain's adapters, and every process scores its share of the pairs and prompts.

Launched with ``accelerate launch --multi_gpu --num_processes N`` (or ``torchrun``; on a machine
without CUDA the processes form a CPU group with the gloo backend), every process holds the same models; each
scores / generates for its share of the items (item ``i`` goes to process ``i % world_size``), and
the per-item rows are gathered with :func:`accelerate.utils.gather_object` and put back in item
order on every process. The protocol's metrics are then computed from the gathered rows, exactly as
in one process: rows never depend on which other items shared their batch (log-probs use position
ids that follow the attention mask; every sample draws from its own generator seeded by seed,
prompt and sample index), so N processes give the metrics of one, up to floating-point effects of
different padding widths.

Device placement and precision come from accelerate: :attr:`DataParallel.device` is the process's
device (``cuda:<local rank>`` on GPUs, else ``cpu``) and :meth:`DataParallel.policy_dtype`
maps accelerate's ``--mixed_precision bf16`` onto the policy's bf16 autocast. In a single process
(no launcher) everything falls through to :mod:`ood_pl_bench.evaluation` unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from . import evaluation
from .solver import DomainPolicy


def launched_as_main_process() -> bool:
    """True unless this process is a non-main rank of an ``accelerate launch`` / ``torchrun``.

    Read from the launcher's environment (``RANK``), so it answers before any process group exists.
    """
    import os

    return os.environ.get("RANK", "0") in ("", "0")


class DataParallel:
    """This process's place in an accelerate launch: rank, world size, device, and gathering."""

    @classmethod
    def from_environment(cls) -> "DataParallel | None":
        """The launch this process belongs to, or None when it runs alone (no ``WORLD_SIZE`` > 1 set
        by ``accelerate launch`` / ``torchrun``)."""
        import os

        if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
            return None
        return cls()

    def __init__(self, state: Any = None):
        """Wrap ``state`` (an ``accelerate.PartialState``; created, and the process group joined, if None).

        Without CUDA, or with ``ACCELERATE_USE_CPU=1``, processes join a CPU (gloo) group.
        """
        if state is None:
            import torch
            from accelerate import PartialState
            from accelerate.utils import parse_flag_from_env

            cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
            state = PartialState(cpu=cpu)
        self.state = state

    @property
    def rank(self) -> int:
        """Index of this process (0 .. world_size - 1)."""
        return int(self.state.process_index)

    @property
    def world_size(self) -> int:
        """Number of processes of the launch."""
        return int(self.state.num_processes)

    @property
    def is_main(self) -> bool:
        """True on the process that writes files."""
        return bool(self.state.is_main_process)

    @property
    def device(self) -> Any:
        """The torch device accelerate placed this process on."""
        return self.state.device

    def policy_dtype(self, default: str = "bf16") -> str:
        """The policy precision: ``bf16`` or ``fp32`` from accelerate's mixed precision, else ``default``."""
        mode = str(getattr(self.state, "mixed_precision", "no") or "no")
        return {"bf16": "bf16", "fp16": "bf16", "fp32": "fp32"}.get(mode, default)

    def shard(self, n: int) -> list[int]:
        """The item indices of ``range(n)`` this process handles (strided: ``i % world_size == rank``)."""
        return list(range(self.rank, n, self.world_size))

    def gather(self, indexed: Sequence[tuple[int, Any]], n: int) -> list[Any]:
        """Collect ``(index, value)`` pairs from every process into one list in index order.

        Raises RuntimeError when an index is missing or duplicated (a sharding bug).
        """
        from accelerate.utils import gather_object

        everything = gather_object(list(indexed)) if self.world_size > 1 else list(indexed)
        out: list[Any] = [None] * n
        seen = [False] * n
        for i, value in everything:
            if seen[i]:
                raise RuntimeError(f"item {i} was gathered twice")
            out[i], seen[i] = value, True
        missing = [i for i, s in enumerate(seen) if not s]
        if missing:
            raise RuntimeError(f"items {missing[:5]} were not gathered from any process")
        return out

    def wait(self) -> None:
        """Barrier: every process reaches this point before any goes on."""
        self.state.wait_for_everyone()

    def main_first(self) -> Any:
        """Context: the main process runs the block first (building a cache), then the others
        (which read it). The cache folder must be shared by the processes (one machine, or a
        shared ``OODPL_CACHE`` across nodes)."""
        return self.state.main_process_first()

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj`` on every process (pickled; tensors come back on CPU)."""
        from accelerate.utils import broadcast_object_list

        box = [obj if self.is_main else None]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value's mean over processes, in one collective (for logging data-parallel statistics)."""
        import torch
        from accelerate.utils import reduce

        stacked = torch.tensor([float(v) for v in values.values()], device=self.device)
        return dict(zip(values, reduce(stacked, reduction="mean").tolist()))

    def average_gradients(self, params: Sequence[Any]) -> None:
        """Replace each parameter's gradient with its mean over processes (data-parallel SGD).

        Our policies compute log-probs through the base model's body rather than the wrapped
        module's ``forward`` (see :mod:`ood_pl_bench.models.policy`), so DDP's forward-time hooks
        would not fire; averaging the (small: LoRA or head-only) gradients with accelerate's
        collective after ``backward`` gives the same update. Every process must call this once per
        optimizer step, in the same parameter order.
        """
        import torch
        from accelerate.utils import reduce

        if self.world_size == 1:
            return
        for p in params:
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            p.grad = reduce(grad.contiguous(), reduction="mean")


def _single(dp: DataParallel | None) -> bool:
    return dp is None or dp.world_size == 1


def score_pairs(policy: Any, domain_policy: DomainPolicy, pairs: list[dict],
                ref_logprobs: dict[str, tuple[float, float]], *, reward_model: Any | None, batch_size: int,
                timer: Callable, dp: DataParallel | None = None) -> list[dict]:
    """:func:`ood_pl_bench.evaluation.score_pairs` with the pairs sharded over ``dp``'s processes;
    every process returns all rows, in pair order."""
    if _single(dp):
        return evaluation.score_pairs(policy, domain_policy, pairs, ref_logprobs, reward_model=reward_model,
                                      batch_size=batch_size, timer=timer)
    idx = dp.shard(len(pairs))
    rows = evaluation.score_pairs(policy, domain_policy, [pairs[i] for i in idx], ref_logprobs,
                                  reward_model=reward_model, batch_size=batch_size, timer=timer) if idx else []
    return dp.gather(list(zip(idx, rows)), len(pairs))


def shard_items(items: Sequence[Any], dp: DataParallel | None) -> list[Any]:
    """This process's share of ``items`` (all of them in a single process)."""
    return list(items) if _single(dp) else [items[i] for i in dp.shard(len(items))]


def score_generations(policy: Any, domain_policy: DomainPolicy, prompts: list[dict], *, gold: Any,
                      decoding: Any, num_samples: int, seed: int, batch_size: int, timer: Callable,
                      dp: DataParallel | None = None, generation_batch_size: int | None = None) -> list[dict]:
    """:func:`ood_pl_bench.evaluation.score_generations` with the prompts sharded over ``dp``'s
    processes; every process returns all rows (prompt order, then sample order)."""
    kwargs = dict(gold=gold, decoding=decoding, num_samples=num_samples, seed=seed, batch_size=batch_size,
                  timer=timer, generation_batch_size=generation_batch_size)
    if _single(dp):
        return evaluation.score_generations(policy, domain_policy, prompts, **kwargs)
    idx = dp.shard(len(prompts))
    mine = [prompts[i] for i in idx]
    rows = evaluation.score_generations(policy, domain_policy, mine, **kwargs) if mine else []
    by_prompt: dict[str, list[dict]] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    groups = dp.gather([(i, by_prompt.get(prompts[i]["prompt_id"], [])) for i in idx], len(prompts))
    return [row for group in groups for row in group]
