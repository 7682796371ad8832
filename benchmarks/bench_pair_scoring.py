"""Benchmark: packed pair scoring (one pass of the prompt) against scoring each response alone.

Both scorers run side by side in one process on the default profile's policy (SmolLM2-135M-Instruct,
bf16 autocast) and the real test pairs of the default edition, alternating A/B so machine load hits
both alike:

* ``separate``: :meth:`Policy.sequence_logprobs` over ``prompts * 2`` and ``chosen + rejected``
  (the layout the evaluation used before packing);
* ``packed``: :meth:`Policy.pair_logprobs`, one row ``[prompt][chosen][rejected]`` per pair.

It reports tokens fed to the model, the median seconds of each, their ratio, and how far the two
disagree (max |Δ log-prob| in nats, in bf16 as run and in fp32). ``--compile`` adds packed scoring
with ``torch.compile`` on the decoder body (its first call, which compiles, is timed separately).

    .venv/bin/python benchmarks/bench_pair_scoring.py --pairs 64 --repeats 3

Results go to ``benchmarks/results/pair-scoring-<device>.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO))


def task_pairs(task_name: str, n: int) -> tuple[object, list[dict]]:
    """The default-profile task and its first ``n`` test pairs, taken round-robin over domains."""
    from ood_pl_bench.data.edition import load_edition
    from ood_pl_bench.profiles import get_profile
    from ood_pl_bench.tasks import get_task

    profile = get_profile("default")
    task = profile.apply(get_task(task_name))
    edition = load_edition(task.edition)
    per_domain = [profile.limit_test_pairs(edition.pairs(task.name, d, "test")) for d in edition.domains(task.name)]
    pairs: list[dict] = []
    for i in range(max(map(len, per_domain))):
        pairs += [rows[i] for rows in per_domain if i < len(rows)]
    return task, pairs[:n]


def measure(task_name: str, n_pairs: int, repeats: int, batch_size: int, compile_body: bool = False,
            policy_spec: str = "smollm2") -> dict:
    """Time both scorers on ``n_pairs`` pairs of ``task_name`` and compare their values."""
    import torch

    from ood_pl_bench.models.policy import Policy
    from ood_pl_bench.models.resolve import resolve_policy

    task, pairs = task_pairs(task_name, n_pairs)
    policy = Policy(resolve_policy(policy_spec), task, dtype="bf16")
    prompts = [p["prompt"] for p in pairs]
    chosen, rejected = [p["chosen"] for p in pairs], [p["rejected"] for p in pairs]
    prompt_tokens = sum(len(policy.prompt_ids(p)) for p in prompts)
    response_tokens = sum(len(policy.response_ids(r)) for r in chosen + rejected)

    def separate() -> torch.Tensor:
        return policy.sequence_logprobs(prompts * 2, chosen + rejected, batch_size=batch_size)

    def packed() -> torch.Tensor:
        return torch.cat(policy.pair_logprobs(prompts, chosen, rejected, batch_size=batch_size))

    scorers = {"separate": separate, "packed": packed}
    compile_seconds = None
    if compile_body:
        # torch.compile of the decoder body (dynamic shapes: one graph for every batch width).
        inner = policy.model.get_base_model()
        eager_body = getattr(inner, inner.base_model_prefix)
        compiled_body = torch.compile(eager_body, dynamic=True)

        def packed_compiled() -> torch.Tensor:
            setattr(inner, inner.base_model_prefix, compiled_body)
            try:
                return packed()
            finally:
                setattr(inner, inner.base_model_prefix, eager_body)

        start = time.perf_counter()
        packed_compiled()
        compile_seconds = round(time.perf_counter() - start, 1)
        scorers["packed_compiled"] = packed_compiled
    times: dict[str, list[float]] = {k: [] for k in scorers}
    values: dict[str, torch.Tensor] = {}
    separate(), packed()  # warm-up
    for _ in range(max(1, repeats)):
        for name, fn in scorers.items():
            start = time.perf_counter()
            values[name] = fn()
            times[name].append(time.perf_counter() - start)
    bf16_diff = float((values["separate"] - values["packed"]).abs().max())
    policy.dtype = "fp32"  # the same weights without autocast: the layouts agree to fp32 rounding
    fp32_diff = float((separate() - packed()).abs().max())
    med = {k: statistics.median(v) for k, v in times.items()}
    extra = {}
    if compile_body:
        extra = {"compile_first_call_seconds": compile_seconds,
                 "compiled_over_packed_time": round(med["packed_compiled"] / med["packed"], 3),
                 "max_abs_logprob_diff_compiled_bf16": round(
                     float((values["packed_compiled"] - values["packed"]).abs().max()), 4)}
    return {
        **extra, "pairs": len(pairs), "batch_size": batch_size,
        "tokens": {"separate": 2 * prompt_tokens + response_tokens, "packed": prompt_tokens + response_tokens},
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "packed_over_separate_time": round(med["packed"] / med["separate"], 3),
        "packed_over_separate_tokens": round((prompt_tokens + response_tokens) / (2 * prompt_tokens + response_tokens), 3),
        "max_abs_logprob_diff_bf16": round(bf16_diff, 4),
        "max_abs_logprob_diff_fp32": round(fp32_diff, 6),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run both tasks, print and write the results; returns the exit code."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["qa", "sentiment"])
    parser.add_argument("--policy", default="smollm2", help="policy model (tests: tiny-llama)")
    parser.add_argument("--pairs", type=int, default=64, help="test pairs per task")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each scorer")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per forward pass (profile default 8)")
    parser.add_argument("--compile", action="store_true",
                        help="also time packed scoring with torch.compile on the decoder body")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "pair-scoring-cpu.json")
    args = parser.parse_args(argv)
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "threads": torch.get_num_threads(), "torch": torch.__version__,
                           "load_average": os.getloadavg()},
               "tasks": {}}
    for name in args.tasks:
        results["tasks"][name] = measure(name, args.pairs, args.repeats, args.batch_size, args.compile,
                                         args.policy)
        print(name, json.dumps(results["tasks"][name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
