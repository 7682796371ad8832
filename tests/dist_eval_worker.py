"""Worker of the data-parallel evaluation test: score one smoke-profile held-out domain with a
fixed non-trivial adapter (pairs and generations) and write rows and metrics (the main process).

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 tests/dist_eval_worker.py OUT.json
"""

from __future__ import annotations

import json
import sys

DOMAIN = "coffee"


def evaluate(dp) -> dict:
    """Rows and protocol metrics of DOMAIN for a seeded random adapter; ``dp`` None: one process."""
    import torch

    from ood_pl_bench import protocol
    from ood_pl_bench.distributed import score_generations, score_pairs
    from ood_pl_bench.profiles import get_profile
    from ood_pl_bench.runner import load_environment
    from ood_pl_bench.solver import DomainPolicy

    torch.set_num_threads(1)
    profile = get_profile("smoke")
    env = load_environment("qa", "se-amazon", profile, seed=0)
    gen = torch.Generator().manual_seed(11)
    adapter = {k: (torch.randn(v.shape, generator=gen) * 0.5 if "lora_B" in k else v)
               for k, v in env.policy.adapter_state().items()}
    policy = DomainPolicy(adapter=adapter)
    pairs = profile.limit_test_pairs(env.edition.pairs("qa", DOMAIN, "test"))
    ref = env.reference_pair_logprobs(pairs, DOMAIN, "test")
    rows = score_pairs(env.policy, policy, pairs, ref, reward_model=None, batch_size=2, timer=env.timer, dp=dp)
    prompts = profile.limit_eval_prompts(env.edition.prompts("qa", DOMAIN, "prompts"))
    gens = score_generations(env.policy, policy, prompts, gold=env.gold, decoding=env.task.eval_decoding,
                             num_samples=2, seed=7, batch_size=2, timer=env.timer, dp=dp)
    metrics = protocol.pair_metrics(rows, explicit_likelihood=True, has_reward_model=False, beta=1.0)
    metrics.update(protocol.generation_metrics(gens, explicit_likelihood=True))
    return {"world_size": dp.world_size if dp is not None else 1, "rows": rows, "generations": gens,
            "metrics": metrics}


def main(out: str) -> int:
    """Join the launch, evaluate, and write ``out`` from the main process."""
    from ood_pl_bench.distributed import DataParallel

    dp = DataParallel()
    result = evaluate(dp)
    result["shard_sizes"] = dp.gather([(dp.rank, len(dp.shard(len(result["rows"]))))], dp.world_size)
    if dp.is_main:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
    dp.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
