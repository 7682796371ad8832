"""Benchmark: where a run's wall time goes, per phase, and how often it tokenises the same text.

Runs one ``oodpl run`` in a temporary folder (default: ``--method metarm --task qa --profile smoke
--domains coffee --no-in-distribution``, about a minute on a loaded 2-core CPU) and prints the
runner's own ``phase_times_s`` from ``results.json`` (data, models, gold, reference, training,
scoring, generation, judging) with each phase's share of the wall time, plus what the run spent
outside any phase (imports, writing files, statistics).

Tokenisation audit: while the run goes, :meth:`Policy.prompt_ids` and :meth:`Policy.response_ids`
(the only places the policy tokenises text) are wrapped to count calls, distinct texts and the
seconds spent in them, so repeated tokenisation of the same text shows up as ``calls / distinct``
and its cost as a share of the wall time.

    .venv/bin/python benchmarks/bench_phases.py                       # smoke metarm run
    .venv/bin/python benchmarks/bench_phases.py --method reference --profile default --task qa

Results go to ``benchmarks/results/phases-<method>-<task>-<profile>.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO))

PHASES = ("data", "models", "gold", "reference", "training", "scoring", "generation", "judging")


class TokenisationAudit:
    """Wraps ``Policy.prompt_ids`` / ``Policy.response_ids`` to count calls, distinct texts and time."""

    def __init__(self) -> None:
        self.calls: dict[str, Counter] = {"prompt_ids": Counter(), "response_ids": Counter()}
        self.seconds: dict[str, float] = {"prompt_ids": 0.0, "response_ids": 0.0}
        self._saved: dict[str, object] = {}

    def __enter__(self) -> "TokenisationAudit":
        from ood_pl_bench.models.policy import Policy

        for name in self.calls:
            original = getattr(Policy, name)
            self._saved[name] = original

            def wrapper(policy, text, *args, _name=name, _original=original, **kwargs):
                start = time.perf_counter()
                try:
                    return _original(policy, text, *args, **kwargs)
                finally:
                    self.seconds[_name] += time.perf_counter() - start
                    self.calls[_name][(text, args, tuple(sorted(kwargs.items())))] += 1

            setattr(Policy, name, wrapper)
        return self

    def __exit__(self, *exc) -> None:
        from ood_pl_bench.models.policy import Policy

        for name, original in self._saved.items():
            setattr(Policy, name, original)

    def summary(self, wall_s: float) -> dict:
        """Calls, distinct (text, flags) keys (over all Policy objects), repeats and seconds per method."""
        out = {}
        for name, counter in self.calls.items():
            calls, distinct = sum(counter.values()), len(counter)
            out[name] = {"calls": calls, "distinct": distinct, "repeated_calls": calls - distinct,
                         "max_calls_per_text": max(counter.values(), default=0),
                         "seconds": round(self.seconds[name], 3),
                         "share_of_wall": round(self.seconds[name] / wall_s, 4) if wall_s > 0 else None}
        total = sum(self.seconds.values())
        repeated = sum(v["repeated_calls"] for v in out.values())
        calls = sum(v["calls"] for v in out.values())
        out["total"] = {"calls": calls, "repeated_calls": repeated, "seconds": round(total, 3),
                        "repeated_seconds_estimate": round(total * repeated / calls, 3) if calls else 0.0,
                        "share_of_wall": round(total / wall_s, 4) if wall_s > 0 else None}
        return out


def phase_table(results: dict) -> list[dict]:
    """Rows (phase, seconds, share of wall) from a results dict, plus ``other`` (outside phases)."""
    wall = float(results["wall_time_s"])
    phases = results.get("phase_times_s", {})
    rows = [{"phase": p, "seconds": round(float(phases.get(p, 0.0)), 3),
             "share": round(float(phases.get(p, 0.0)) / wall, 4) if wall > 0 else None}
            for p in PHASES]
    rows += [{"phase": p, "seconds": round(float(v), 3), "share": round(float(v) / wall, 4) if wall > 0 else None}
             for p, v in phases.items() if p not in PHASES]
    other = wall - sum(r["seconds"] for r in rows)
    rows.append({"phase": "other (outside phases)", "seconds": round(other, 3),
                 "share": round(other / wall, 4) if wall > 0 else None})
    return rows


def render(out: dict) -> str:
    """The per-phase and tokenisation tables as text."""
    lines = [f"{out['method']} on {out['task']} ({out['profile']}{', domains ' + ','.join(out['domains']) if out['domains'] else ''}): "
             f"wall {out['wall_time_s']:.1f}s on {out['device']} (load {out['machine'].get('load_average', ['?'])[0]})",
             f"{'phase':<24}{'seconds':>10}{'share':>8}"]
    for r in out["phases"]:
        lines.append(f"{r['phase']:<24}{r['seconds']:>10.2f}{(r['share'] or 0) * 100:>7.1f}%")
    tok = out["tokenisation"]
    lines.append(f"{'tokenisation':<24}{'calls':>8}{'distinct':>10}{'max/text':>10}{'seconds':>9}")
    for name in ("prompt_ids", "response_ids"):
        t = tok[name]
        lines.append(f"{name:<24}{t['calls']:>8}{t['distinct']:>10}{t['max_calls_per_text']:>10}{t['seconds']:>9.3f}")
    total = tok["total"]
    lines.append(f"tokenisation total {total['seconds']:.3f}s = {(total['share_of_wall'] or 0) * 100:.2f}% of wall; "
                 f"{total['repeated_calls']} repeated calls (about {total['repeated_seconds_estimate']:.3f}s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the configured run under the tokenisation audit; print and write the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="metarm", help="solver")
    ap.add_argument("--task", default="qa", help="task")
    ap.add_argument("--profile", default="smoke", help="run profile (default: smoke)")
    ap.add_argument("--domains", default="coffee", help="comma-separated held-out domains ('' for all)")
    ap.add_argument("--in-distribution", action="store_true", help="also score source test pairs")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="method option key=value")
    ap.add_argument("--seed", type=int, default=0, help="run seed")
    ap.add_argument("--run-dir", help="run folder (default: a temporary one, removed after)")
    ap.add_argument("--out", help="results file (default benchmarks/results/phases-<method>-<task>-<profile>.json)")
    args = ap.parse_args(argv)

    from ood_pl_bench.envinfo import device_name
    from ood_pl_bench.runner import RunConfig, run

    domains = tuple(d for d in args.domains.split(",") if d) or None
    options = dict(s.split("=", 1) for s in args.sets)
    cfg = RunConfig(method=args.method, task=args.task, profile=args.profile, seed=args.seed,
                    method_options=options, domains=domains, in_distribution=args.in_distribution)
    with tempfile.TemporaryDirectory(prefix="oodpl-phases-") as tmp:
        run_dir = Path(args.run_dir) if args.run_dir else Path(tmp) / "run"
        start = time.perf_counter()
        with TokenisationAudit() as audit:
            results = run(cfg, out=run_dir)
        wall = time.perf_counter() - start
    out = {"benchmark": "phases", "method": args.method, "task": args.task, "profile": args.profile,
           "domains": list(domains or ()), "in_distribution": args.in_distribution, "options": options,
           "wall_time_s": round(float(results["wall_time_s"]), 3), "process_wall_s": round(wall, 3),
           "device": device_name(), "phases": phase_table(results),
           "tokenisation": audit.summary(float(results["wall_time_s"])),
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                       "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None},
           "note": "phase times of the shared set-up (data, models, gold) include building caches when they are cold",
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = Path(args.out) if args.out else HERE / "results" / f"phases-{args.method}-{args.task}-{args.profile}.json"
    from ood_pl_bench.io import write_json

    write_json(path, out)
    print(render(out))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
