"""Benchmark: our DPO training step (``baselines/dpo``) against TRL's ``DPOTrainer``, side by side.

Both sides train the same LoRA adapters (r=8, α=16 on q/k/v/o, dropout 0, identical initial
weights copied from our Policy) on the same base model, the same token sequences (TRL gets our
chat-formatted prompts as plain text, and the benchmark checks that its tokenisation equals ours
token for token), the same batches in the same order, the same precision (fp32 weights, bf16
autocast with ``--dtype bf16``) and the same optimizer (AdamW, constant learning rate, gradient
clipping at 1.0, β = 0.1, sigmoid loss, the reference = the adapters disabled, no gradient
checkpointing on either side). Reported:

* steps per second of each side (median step time over the timed steps, after ``--warmup`` steps)
  and their ratio ``ours / trl`` (> 1: ours is faster);
* the per-step losses of both sides and their largest absolute difference (the first step is
  exactly log 2 on both: the adapters start at π_ref).

Our step is :func:`baselines.dpo.solver.dpo_batch` plus backward, clipping and AdamW, i.e. the
body of :func:`baselines.dpo.solver.train_dpo`; both run on CUDA when it is available. TRL's is ``Trainer.training_step`` plus its
optimizer step (timed with a ``TrainerCallback``), including TRL's per-step metric bookkeeping.

    .venv/bin/python benchmarks/bench_dpo_vs_trl.py --model tiny-llama           # seconds
    .venv/bin/python benchmarks/bench_dpo_vs_trl.py --model smollm2 --steps 4    # the default policy

Results go to ``benchmarks/results/dpo_vs_trl.json`` (``--out``), one entry per (model, dtype),
replacing an earlier entry of the same model and dtype.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO))

WORDS = ("the quick brown fox jumps over lazy dog question answer coffee beans grind water brewing "
         "learn italian read listen speak code error stack trace message values battery screen bright "
         "quality seller book movie acting story kitchen knife model data policy reward preference").split()


def make_pairs(n: int, prompt_words: int, response_words: int, seed: int = 0) -> list[dict]:
    """``n`` synthetic preference pairs with lengths varying between half and all of the given word
    counts (so batches need padding, as real data does)."""
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(max(1, k // 2), k)))

    return [{"pair_id": f"p{i}", "prompt": text(prompt_words), "chosen": text(response_words),
             "rejected": text(response_words)} for i in range(n)]


def our_policy(model: str, dtype: str, prompt_words: int, response_words: int, device: str = "cpu"):
    """The suite's Policy on ``model`` (on ``device``) with truncation limits no synthetic pair reaches."""
    from ood_pl_bench.models.policy import Policy
    from ood_pl_bench.models.resolve import resolve_policy
    from ood_pl_bench.tasks import get_task

    task = dataclasses.replace(get_task("qa"), max_prompt_tokens=8 * prompt_words + 64,
                               max_response_tokens=8 * response_words + 64)
    return Policy(resolve_policy(model), task, dtype=dtype, device=device, seed=0)


def run_ours(policy, batches: list[list[dict]], lr: float, beta: float, max_grad_norm: float) -> dict:
    """Train with our DPO step on ``batches``; per-step losses and wall times."""
    import torch

    from baselines.dpo.solver import dpo_batch

    params = policy.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    policy.train(True)
    losses, times = [], []
    for batch in batches:
        start = time.perf_counter()
        out = dpo_batch(policy, batch, beta)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        losses.append(out.loss.item())
        times.append(time.perf_counter() - start)
    policy.train(False)
    return {"losses": losses, "step_seconds": times}


def run_trl(policy, batches: list[list[dict]], lr: float, beta: float, max_grad_norm: float, dtype: str,
            workdir: Path) -> dict:
    """Train TRL's DPOTrainer on the same batches, in order; per-step losses, wall times and whether
    its tokenisation equals ours."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from ood_pl_bench.models.resolve import quiet_transformers

    with quiet_transformers():
        base = AutoModelForCausalLM.from_pretrained(policy.resolved.path, dtype=torch.float32)
    lora = policy.lora
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(policy.lora_targets), bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    set_peft_model_state_dict(model, policy.adapter_state())  # the same initial adapters as ours
    rows = [{"prompt": policy.format_prompt(p["prompt"]), "chosen": p["chosen"], "rejected": p["rejected"]}
            for batch in batches for p in batch]
    n_batch = len(batches[0])
    args = DPOConfig(
        output_dir=str(workdir), per_device_train_batch_size=n_batch, gradient_accumulation_steps=1,
        max_steps=len(batches), learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=max_grad_norm, beta=beta, loss_type=["sigmoid"], max_length=None,
        gradient_checkpointing=False, bf16=dtype == "bf16", use_cpu=not torch.cuda.is_available(),
        report_to="none", logging_steps=10**6, save_strategy="no", dataloader_num_workers=0,
        disable_tqdm=True, seed=0, precompute_ref_log_probs=False, remove_unused_columns=False)

    class Timer(TrainerCallback):
        """Wall time of each optimizer step (forward, backward, clipping, AdamW, TRL's metrics)."""

        def __init__(self):
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: D102 - TrainerCallback API
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: D102 - TrainerCallback API
            self.times.append(time.perf_counter() - self._start)

    losses: list[float] = []

    class InOrder(DPOTrainer):
        """DPOTrainer that reads the dataset in order (our batches) and records each step's loss."""

        def _get_train_sampler(self, train_dataset=None):
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """TRL's loss, recorded per step."""
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = out[0] if isinstance(out, tuple) else out
            losses.append(float(loss.detach()))
            return out

    timer = Timer()
    with quiet_transformers():
        trainer = InOrder(model=model, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=policy.tokenizer, callbacks=[timer])
    same = all(
        [policy.prompt_ids(p["prompt"]), policy.response_ids(p["chosen"])] == [ex["prompt_ids"], ex["chosen_ids"]]
        and policy.response_ids(p["rejected"]) == ex["rejected_ids"]
        for p, ex in zip((p for b in batches for p in b), trainer.train_dataset))
    trainer.train()
    return {"losses": losses, "step_seconds": timer.times, "same_tokens": bool(same)}


def summarise(side: dict, warmup: int) -> dict:
    """Median step time and steps/s over the steps after ``warmup``."""
    timed = side["step_seconds"][warmup:] or side["step_seconds"]
    med = statistics.median(timed)
    return {"median_step_s": round(med, 4), "steps_per_s": round(1.0 / med, 3),
            "step_seconds": [round(t, 4) for t in side["step_seconds"]],
            "losses": [round(x, 6) for x in side["losses"]]}


def main(argv: list[str] | None = None) -> int:
    """Run both trainers on the same batches and write the comparison."""
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny-llama", help="policy spec: tiny-llama, smollm2, a folder or hub id")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"), help="autocast dtype (weights fp32)")
    ap.add_argument("--batch", type=int, default=4, help="pairs per step (baselines/dpo's default)")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per side")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    ap.add_argument("--prompt-words", type=int, default=40, help="max words of a prompt")
    ap.add_argument("--response-words", type=int, default=30, help="max words of a response")
    ap.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (baselines/dpo's default)")
    ap.add_argument("--beta", type=float, default=0.1, help="DPO β")
    ap.add_argument("--out", default=str(HERE / "results" / "dpo_vs_trl.json"), help="results file")
    args = ap.parse_args(argv)
    if args.steps <= args.warmup:
        ap.error("--steps must exceed --warmup")

    import trl

    torch.manual_seed(0)
    pairs = make_pairs(args.batch * args.steps, args.prompt_words, args.response_words)
    batches = [pairs[i:i + args.batch] for i in range(0, len(pairs), args.batch)]
    print(f"dpo vs trl {trl.__version__}: {args.model}, {args.dtype}, {args.steps} steps of {args.batch} pairs",
          flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # TRL's Trainer picks the same device
    policy = our_policy(args.model, args.dtype, args.prompt_words, args.response_words, device)
    initial = policy.adapter_state()
    with tempfile.TemporaryDirectory(prefix="oodpl-trl-") as tmp:
        trl_side = run_trl(policy, batches, args.lr, args.beta, 1.0, args.dtype, Path(tmp))
    policy.load_adapter_state(initial)
    ours_side = run_ours(policy, batches, args.lr, args.beta, 1.0)
    tokens = sum(len(a) + len(b) for a, b in policy._pairs(
        [p["prompt"] for p in pairs] * 2, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs], True))
    ours, theirs = summarise(ours_side, args.warmup), summarise(trl_side, args.warmup)
    diffs = [abs(a - b) for a, b in zip(ours_side["losses"], trl_side["losses"])]
    entry = {
        "model": args.model, "model_revision": policy.resolved.revision, "dtype": args.dtype, "batch": args.batch,
        "steps": args.steps, "warmup": args.warmup, "mean_tokens_per_step": round(tokens / args.steps, 1),
        "lr": args.lr, "beta": args.beta, "trl": trl.__version__, "torch": torch.__version__,
        "same_tokens": trl_side["same_tokens"], "ours": ours, "trl_dpo_trainer": theirs,
        "steps_per_s_ratio": round(ours["steps_per_s"] / theirs["steps_per_s"], 2),
        "max_abs_loss_diff": round(max(diffs), 6), "first_step_losses": [ours_side["losses"][0], trl_side["losses"][0]],
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
                    "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                    "torch_threads": torch.get_num_threads()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = Path(args.out)
    data = json.loads(path.read_text()) if path.is_file() else {"benchmark": "dpo_vs_trl", "entries": []}
    data["entries"] = [e for e in data["entries"] if (e["model"], e["dtype"]) != (args.model, args.dtype)] + [entry]
    from ood_pl_bench.io import write_json

    write_json(path, data)
    print(f"{'side':<18}{'median step s':>14}{'steps/s':>10}")
    print(f"{'ours (baselines)':<18}{ours['median_step_s']:>14.3f}{ours['steps_per_s']:>10.2f}")
    print(f"{'TRL DPOTrainer':<18}{theirs['median_step_s']:>14.3f}{theirs['steps_per_s']:>10.2f}")
    print(f"steps/s ratio ours/TRL: {entry['steps_per_s_ratio']}; same tokens: {entry['same_tokens']}; "
          f"max |loss diff| over {args.steps} steps: {entry['max_abs_loss_diff']:.2e}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
