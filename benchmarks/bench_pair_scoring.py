"""Benchmark: packed pair scoring (each prompt once per row) against scoring each response alone.

The scorers run side by side in one process on the default profile's policy (SmolLM2-135M-Instruct,
bf16 autocast) and the real test pairs of the default edition, one call per domain as the
evaluation scores them, alternating so machine load hits all alike:

* ``separate``: :meth:`Policy.sequence_logprobs` over ``prompts * 2`` and ``chosen + rejected``
  (the layout the evaluation used before packing);
* ``packed-K``: :meth:`Policy.pair_logprobs` with ``RESPONSES_PER_PACKED_ROW = K``: each distinct
  (prompt, response) once, up to K distinct responses of a prompt in one row. ``pairs-per-row``
  is the layout of session 3 (one row ``[prompt][chosen][rejected]`` per pair, no sharing).

It reports tokens fed to the model, the median seconds of each, their ratios to ``separate``, and
how far the layouts disagree (max |Δ log-prob| in nats, in bf16 as run and in fp32). ``--compile``
adds the default packing with ``torch.compile`` on the decoder body (its first call, which
compiles, is timed separately).

    .venv/bin/python benchmarks/bench_pair_scoring.py --domains 2 --repeats 2

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


def domain_pairs(task_name: str, n_domains: int) -> tuple[object, list[list[dict]]]:
    """The default-profile task and the test pairs of its first ``n_domains`` domains, per domain."""
    from ood_pl_bench.data.edition import load_edition
    from ood_pl_bench.profiles import get_profile
    from ood_pl_bench.tasks import get_task

    profile = get_profile("default")
    task = profile.apply(get_task(task_name))
    edition = load_edition(task.edition)
    domains = edition.domains(task.name)[:max(1, n_domains)]
    return task, [profile.limit_test_pairs(edition.pairs(task.name, d, "test")) for d in domains]


def measure(task_name: str, n_domains: int, repeats: int, batch_size: int, row_sizes: list[int],
            compile_body: bool = False, policy_spec: str = "smollm2") -> dict:
    """Time every layout on the test pairs of ``n_domains`` domains of ``task_name``; compare values."""
    import torch

    from ood_pl_bench.models import policy as policy_module
    from ood_pl_bench.models.policy import Policy
    from ood_pl_bench.models.resolve import resolve_policy

    task, per_domain = domain_pairs(task_name, n_domains)
    policy = Policy(resolve_policy(policy_spec), task, dtype="bf16")
    calls = [([p["prompt"] for p in pairs], [p["chosen"] for p in pairs], [p["rejected"] for p in pairs])
             for pairs in per_domain]
    n_pairs = sum(len(pairs) for pairs in per_domain)
    default_size = policy_module.RESPONSES_PER_PACKED_ROW
    fed = {"tokens": 0}
    real_packed = policy._packed_logprobs

    def counting_packed(rows):
        fed["tokens"] += sum(len(prompt) + sum(map(len, responses)) for prompt, responses in rows)
        return real_packed(rows)

    policy._packed_logprobs = counting_packed

    def separate() -> torch.Tensor:
        out = []
        for prompts, chosen, rejected in calls:
            out.append(policy.sequence_logprobs(prompts * 2, chosen + rejected, batch_size=batch_size))
            fed["tokens"] += sum(2 * len(policy.prompt_ids(p)) for p in prompts)
            fed["tokens"] += sum(len(policy.response_ids(r)) for r in chosen + rejected)
        return torch.cat(out)

    def packed_with(size: int):
        def packed() -> torch.Tensor:
            policy_module.RESPONSES_PER_PACKED_ROW = size
            try:
                return torch.cat([torch.cat(policy.pair_logprobs(*call, batch_size=batch_size)) for call in calls])
            finally:
                policy_module.RESPONSES_PER_PACKED_ROW = default_size
        return packed

    @torch.no_grad()
    def pairs_per_row() -> torch.Tensor:
        # Session 3's layout: every pair its own row, nothing shared between pairs.
        out = []
        for prompts, chosen, rejected in calls:
            rows = policy._group_rows(prompts, [[c, r] for c, r in zip(chosen, rejected)], True)
            table = torch.cat([real_packed(rows[lo:lo + batch_size]) for lo in range(0, len(rows), batch_size)])
            out += [table[:, 0].float(), table[:, 1].float()]
            fed["tokens"] += sum(len(p) + sum(map(len, rs)) for p, rs in rows)
        return torch.cat(out)

    scorers = {"separate": separate, "pairs-per-row": pairs_per_row}
    scorers.update({f"packed-{k}": packed_with(k) for k in row_sizes})
    compile_seconds = None
    if compile_body:
        # torch.compile of the decoder body (dynamic shapes: one graph for every batch width).
        inner = policy.model.get_base_model()
        eager_body = getattr(inner, inner.base_model_prefix)
        compiled_body = torch.compile(eager_body, dynamic=True)

        def packed_compiled() -> torch.Tensor:
            setattr(inner, inner.base_model_prefix, compiled_body)
            try:
                return packed_with(default_size)()
            finally:
                setattr(inner, inner.base_model_prefix, eager_body)

        start = time.perf_counter()
        packed_compiled()
        compile_seconds = round(time.perf_counter() - start, 1)
        scorers["packed_compiled"] = packed_compiled
    times: dict[str, list[float]] = {k: [] for k in scorers}
    values: dict[str, torch.Tensor] = {}
    tokens: dict[str, int] = {}
    policy.pair_logprobs(*[c[:8] for c in calls[0]], batch_size=batch_size)  # warm-up
    for _ in range(max(1, repeats)):
        for name, fn in scorers.items():
            fed["tokens"] = 0
            start = time.perf_counter()
            values[name] = fn()
            times[name].append(time.perf_counter() - start)
            tokens[name] = fed["tokens"]
    layouts = [k for k in values if k != "separate"]
    bf16_diff = max(float((values["separate"] - values[k]).abs().max()) for k in layouts)
    # The same weights without autocast (the layouts agree to fp32 rounding), on the first domain's
    # first 16 pairs: fp32 scoring runs ~2.5x slower than bf16.
    policy.dtype = "fp32"
    calls[:] = [tuple(column[:16] for column in calls[0])]
    fp32_separate = separate()
    fp32_diff = max(float((fp32_separate - scorers[k]()).abs().max())
                    for k in layouts if k != "packed_compiled")
    med = {k: statistics.median(v) for k, v in times.items()}
    extra = {}
    if compile_body:
        extra = {"compile_first_call_seconds": compile_seconds,
                 "compiled_over_packed_time": round(med["packed_compiled"] / med[f"packed-{default_size}"], 3)
                 if f"packed-{default_size}" in med else None,
                 "max_abs_logprob_diff_compiled_bf16": round(
                     float((values["packed_compiled"] - values["separate"]).abs().max()), 4)}
    return {
        **extra, "domains": len(per_domain), "pairs": n_pairs, "batch_size": batch_size,
        "responses_per_packed_row_default": default_size,
        "tokens": tokens,
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "time_over_separate": {k: round(med[k] / med["separate"], 3) for k in med},
        "tokens_over_separate": {k: round(tokens[k] / tokens["separate"], 3) for k in tokens},
        "max_abs_logprob_diff_bf16": round(bf16_diff, 4),
        "max_abs_logprob_diff_fp32": round(fp32_diff, 6),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run both tasks, print and write the results; returns the exit code."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["qa", "sentiment"])
    parser.add_argument("--policy", default="smollm2", help="policy model (tests: tiny-llama)")
    parser.add_argument("--domains", type=int, default=2, help="domains per task (all their test pairs)")
    parser.add_argument("--row-sizes", type=int, nargs="+", default=[2, 4, 8],
                        help="RESPONSES_PER_PACKED_ROW values to time")
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions of each scorer")
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
        results["tasks"][name] = measure(name, args.domains, args.repeats, args.batch_size, args.row_sizes,
                                         args.compile, args.policy)
        print(name, json.dumps(results["tasks"][name]), flush=True)
    from ood_pl_bench.io import write_json

    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
