"""Does metarm's reward model learn? Its test-pair accuracy as meta-training proceeds.

Meta-trains the reward model of one fold of a task (as ``oodpl run --method metarm`` does, with the
run's data, caches and models) for ``--steps`` episodes, and at step 0 and every ``--eval-every``
steps scores the reward model on the test pairs of the fold's held-out domains and of its source
domains: pooled ``rm_accuracy`` with a Wilson interval. No policy is evaluated, so a configuration
costs its meta-training plus a few reward-model passes (MiniLM), not a full run.

    .venv/bin/python scripts/metarm_learning_curve.py --task sentiment --steps 64 --eval-every 16 \\
        --set outer_margin=implicit --out curve.json

``--set`` takes metarm options as ``oodpl run --set`` does (``oodpl methods metarm`` lists them).
The output JSON has the options, the per-step training curves and the evaluation points.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO))


def rm_accuracy(rm, pairs: list[dict]) -> dict:
    """Pooled accuracy of ``rm`` on ``pairs`` (ties count ½) with its 95 % Wilson interval."""
    from ood_pl_bench.metrics.stats import wilson_interval

    prompts = [p["prompt"] for p in pairs]
    scores = rm.score(prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs],
                      batch_size=32).tolist()
    n = len(pairs)
    wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(scores[:n], scores[n:]))
    low, high = wilson_interval(wins, n)
    return {"accuracy": round(wins / n, 4) if n else None, "ci": [low, high], "pairs": n}


def main(argv: list[str] | None = None) -> int:
    """Parse flags, meta-train with evaluation points, write the JSON; returns the exit code."""
    from baselines.metarm import MetaRMConfig, MetaRMSolver, meta_train
    from ood_pl_bench import runner
    from ood_pl_bench.profiles import get_profile
    from ood_pl_bench.solver import FoldData, SolverContext, build_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sentiment")
    parser.add_argument("--edition", default="se-amazon")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--fold", default=None, help="fold name (default: the task's first)")
    parser.add_argument("--steps", type=int, default=64, help="meta-training steps K")
    parser.add_argument("--eval-every", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    options = dict(o.split("=", 1) for o in args.options)
    options["meta_steps"] = str(args.steps)
    config = build_config(MetaRMConfig, options)
    profile = get_profile(args.profile)
    env = runner.load_environment(args.task, args.edition, profile, args.seed)
    folds = {f.name: f for f in env.task.folds}
    fold = folds[args.fold] if args.fold else env.task.folds[0]
    ctx = SolverContext(
        task=env.task, fold=fold, profile=profile, seed=args.seed, work_dir=args.out.parent,
        data=FoldData(env.edition, env.task, fold, profile, reference_samples=env.reference_samples),
        device=env.policy.device, make_policy=lambda: runner._make_policy(env, args.seed),
        make_reward_model=lambda: runner._make_reward_model(env), log=print)
    solver = MetaRMSolver(config, ctx)
    domains = solver._source_domains()
    policy, rm = solver.policy(), ctx.make_reward_model()

    def test_pairs(names: list[str]) -> list[dict]:
        return [p for d in names for p in profile.limit_test_pairs(env.edition.pairs(env.task.name, d, "test"))]

    held_out, source = test_pairs(list(fold.held_out)), test_pairs(list(fold.source))
    points: list[dict] = []
    started = time.perf_counter()

    def evaluate(step: int, model) -> None:
        point = {"step": step, "seconds": round(time.perf_counter() - started, 1),
                 "held_out": rm_accuracy(model, held_out), "source": rm_accuracy(model, source)}
        points.append(point)
        print(json.dumps(point), flush=True)

    evaluate(0, rm)
    curves = meta_train(policy, rm, domains, config, seed=solver._fit_seed(), log=print,
                        on_step=lambda k, model: evaluate(k + 1, model)
                        if (k + 1) % args.eval_every == 0 or k + 1 == args.steps else None)
    result = {"task": args.task, "fold": fold.name, "seed": args.seed, "options": config.__dict__,
              "source_domains": [d.name for d in domains], "points": points, "curves": curves}
    from ood_pl_bench.io import write_json

    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
