"""Benchmark: one metarm meta-training step against one DPO step on the same tokens.

Side by side in one run, on the default profile's models (SmolLM2-135M-Instruct policy with LoRA,
bf16 autocast; all-MiniLM-L6-v2 reward model) and real ``qa`` source pairs:

* wall time of one meta-step (one iteration of :func:`baselines.metarm.meta_train`: D inner
  weighted steps, the outer loss and its gradient, the analytic hypergradient (one JVP and one RM
  backward per inner batch), the monitoring forward passes and the Adam step on φ);
* wall time of one DPO step (reference log-probs without gradients, policy forward/backward,
  AdamW) on exactly the sequences the meta-step reads (its inner samples and its outer pairs);
* peak memory of both, for D = 1, 2, 4.

Memory is the **peak resident set size (RSS)** of the process, sampled every 2 ms by a psutil
thread during the timed steps, minus the RSS after the models were loaded (tracemalloc does not see
torch's allocations). Each (method, D) runs in a fresh subprocess so allocator caches of one
measurement do not leak into the next. Times are the median of ``--repeats`` steps after one
warm-up step.

    .venv/bin/python benchmarks/bench_metastep.py            # writes benchmarks/results/metastep.json
    .venv/bin/python benchmarks/bench_metastep.py --profile smoke   # seconds, tiny models
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOMAIN = "beer"  # a qa source domain (fold A)


class PeakRSS:
    """Samples the process RSS in a background thread; ``peak`` is the maximum seen (bytes)."""

    def __init__(self, interval: float = 0.002):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> int:
        """The RSS now (bytes)."""
        return self._proc.memory_info().rss

    def __enter__(self) -> "PeakRSS":
        self.peak = self.current()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.current())


def _load(profile_name: str):
    from ood_pl_bench.data.edition import load_edition
    from ood_pl_bench.models.policy import Policy
    from ood_pl_bench.models.resolve import resolve_policy, resolve_reward_backbone
    from ood_pl_bench.models.reward import RewardModel
    from ood_pl_bench.profiles import get_profile
    from ood_pl_bench.tasks import get_task

    profile = get_profile(profile_name)
    task = profile.apply(get_task("qa"))
    policy = Policy(resolve_policy(profile.policy), task, dtype=profile.dtype, seed=0)
    rm = RewardModel.from_pretrained(resolve_reward_backbone(profile.reward_backbone), seed=0)
    pairs = load_edition("se-amazon").pairs("qa", DOMAIN, "train")
    return profile, policy, rm, pairs


def _problem(pairs: list[dict], inner_prompts: int, outer_pairs: int):
    """A source domain whose draws are always the same sequences: ``inner_prompts`` prompts with two
    samples each (a pair's two answers) and ``outer_pairs`` other pairs."""
    from baselines.metarm.solver import SourceDomain

    inner = pairs[:inner_prompts]
    outer = pairs[inner_prompts:inner_prompts + outer_pairs]
    rows = [{"prompt_id": p["pair_id"], "prompt": p["prompt"],
             "samples": [{"text": p["chosen"], "finished": True}, {"text": p["rejected"], "finished": True}]}
            for p in inner]
    return SourceDomain(DOMAIN, outer, rows), inner, outer


def _dpo_step(policy, opt, pairs: list[dict], beta: float = 0.1) -> int:
    """One DPO step (as ``baselines.dpo``): reference log-probs without gradients, then loss,
    backward and AdamW. Returns the number of tokens in the batch."""
    import torch
    import torch.nn.functional as F

    prompts = [p["prompt"] for p in pairs]
    batch = policy.encode(prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
    with torch.no_grad():
        ref = policy.response_logprobs(batch, reference=True)
    logp = policy.response_logprobs(batch)
    n = len(pairs)
    loss = -F.logsigmoid(beta * ((logp[:n] - ref[:n]) - (logp[n:] - ref[n:]))).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return int(batch["attention_mask"].sum())


def measure(kind: str, inner_steps: int, profile_name: str, repeats: int) -> dict:
    """Time and peak RSS of ``repeats`` steps of ``kind`` ('meta' or 'dpo') after one warm-up."""
    import torch

    from baselines.metarm import MetaRMConfig, meta_train

    torch.manual_seed(0)
    cfg = MetaRMConfig(meta_steps=1, inner_steps=inner_steps)
    profile, policy, rm, pairs = _load(profile_name)
    domain, inner, outer = _problem(pairs, cfg.inner_prompts, cfg.outer_pairs)
    meter = PeakRSS()
    base_rss = meter.current()
    times: list[float] = []
    # the sequences a meta-step reads: D copies of the inner batch (as pairs) and the outer pairs
    dpo_pairs = inner * inner_steps + outer
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-4) if kind == "dpo" else None
    tokens = 0
    with meter:
        for i in range(repeats + 1):
            start = time.perf_counter()
            if kind == "meta":
                meta_train(policy, rm, [domain], cfg, seed=i)
            else:
                tokens = _dpo_step(policy, opt, dpo_pairs)
            if i > 0:
                times.append(time.perf_counter() - start)
    if kind == "meta":
        enc = [policy.encode([p["prompt"]] * 2, [p["chosen"], p["rejected"]]) for p in dpo_pairs]
        tokens = int(sum(int(e["attention_mask"].sum()) for e in enc))
    return {"kind": kind, "inner_steps": inner_steps, "profile": profile.name, "repeats": repeats,
            "seconds_median": statistics.median(times), "seconds": [round(t, 3) for t in times],
            "tokens": tokens, "peak_rss_mb": round((meter.peak - base_rss) / 2**20, 1),
            "rss_after_load_mb": round(base_rss / 2**20, 1), "torch_threads": torch.get_num_threads(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "metarm_config": dataclasses.asdict(cfg) if kind == "meta" else None}


def main(argv: list[str] | None = None) -> int:
    """Run every (method, D) measurement in its own subprocess and write the results JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default", help="run profile whose models are used")
    ap.add_argument("--repeats", type=int, default=1, help="timed steps after one warm-up step")
    ap.add_argument("--inner-steps", default="1,2,4", help="comma-separated D values")
    ap.add_argument("--out", default=str(HERE / "results" / "metastep.json"), help="results file")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "D"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.profile, args.repeats)))
        return 0
    rows = []
    for d in [int(x) for x in args.inner_steps.split(",")]:
        for kind in ("dpo", "meta"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--profile", args.profile,
                   "--repeats", str(args.repeats), "--one", kind, str(d)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=os.environ.copy())
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-4000:])
                return proc.returncode
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"D={d} {kind:4s}: {row['seconds_median']:.2f}s  peak +{row['peak_rss_mb']:.0f} MB  "
                  f"{row['tokens']} tokens", flush=True)
    by = {(r["kind"], r["inner_steps"]): r for r in rows}
    summary = []
    for d in sorted({r["inner_steps"] for r in rows}):
        meta, dpo = by[("meta", d)], by[("dpo", d)]
        summary.append({"inner_steps": d, "meta_seconds": meta["seconds_median"],
                        "dpo_seconds": dpo["seconds_median"],
                        "time_ratio": round(meta["seconds_median"] / dpo["seconds_median"], 2),
                        "meta_peak_rss_mb": meta["peak_rss_mb"], "dpo_peak_rss_mb": dpo["peak_rss_mb"],
                        "tokens": meta["tokens"]})
    import torch

    out = {"benchmark": "metastep", "profile": args.profile,
           "memory": "peak RSS (psutil, sampled every 2 ms) minus RSS after loading the models; "
                     "one subprocess per measurement",
           "machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "cpu_count": os.cpu_count(), "torch": torch.__version__},
           "load_average_at_end": list(os.getloadavg()),
           "summary": summary, "rows": rows,
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    from ood_pl_bench.io import write_json

    write_json(args.out, out)
    for s in summary:
        print(f"D={s['inner_steps']}: meta {s['meta_seconds']:.2f}s vs dpo {s['dpo_seconds']:.2f}s "
              f"-> {s['time_ratio']}x; peak RSS meta +{s['meta_peak_rss_mb']} MB, dpo +{s['dpo_peak_rss_mb']} MB")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
