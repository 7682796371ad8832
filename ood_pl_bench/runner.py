"""``oodpl run``: train a method once per fold and evaluate it on every domain, resumably.

A run is a list of *units*: ``fit:<fold>`` (the solver's training, checkpointed in
``solver/<fold>/``) and ``eval:<role>:<domain>`` (one domain's scoring, written to
``domains/<role>/<domain>.json`` plus per-sample files). ``manifest.json`` records finished units;
rerunning the same command skips them, and every unit is seeded from (seed, unit name) alone, so a
killed run that is resumed ends with the same results as an uninterrupted one.

Under ``accelerate launch -m ood_pl_bench.cli run ...`` (N processes, see
:mod:`ood_pl_bench.distributed`) the main process builds the shared caches first, fits the solver
(every process fits its shard when the solver is ``data_parallel``), broadcasts each domain's
adapters, every process scores its share of the pairs and prompts, and the main process gathers
the per-item rows, judges, and writes every file; the metrics are those of one process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import __version__
from .errors import UsageError
from .io import read_json, read_jsonl, sha256_file, stable_hash, write_json, write_jsonl
from .paths import runs_dir
from .profiles import Profile, get_profile
from .registry import solvers
from .solver import DomainPolicy, FoldData, Solver, SolverContext, build_config
from .tasks import DEFAULT_EDITION, TaskSpec, get_task

MANIFEST = "manifest.json"


@dataclass
class RunConfig:
    """What ``oodpl run`` was asked to do (everything that changes results)."""

    method: str = field(metadata={"help": "registered solver name (oodpl ls methods)"})
    task: str = field(metadata={"help": "task name: qa or sentiment"})
    edition: str = field(default=DEFAULT_EDITION, metadata={"help": "data edition"})
    profile: str = field(default="default", metadata={"help": "run profile: default or smoke"})
    seed: int = field(default=0, metadata={"help": "seed for training, sampling and evaluation"})
    method_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "solver config overrides"})
    domains: tuple[str, ...] | None = field(default=None, metadata={"help": "restrict to these held-out domains"})
    in_distribution: bool = field(default=True, metadata={"help": "also score source test pairs (gap)"})
    judge: str = field(default="proxy", metadata={"help": "win-rate judge: proxy (gold RM), openai:MODEL or a config name"})

    def key(self) -> str:
        """Hash of everything that changes results (for resume safety)."""
        return stable_hash(dataclasses.asdict(self))


class PhaseTimer:
    """Accumulates wall time per phase (data, reference, training, scoring, generation, judging)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._active: list[str] = []

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        """Time a block under ``phase``; nested phases are not double counted."""
        if self._active:
            # Nested: charge the inner phase and pause the outer one.
            outer = self._active[-1]
            self.times.setdefault(outer, 0.0)
        start = time.perf_counter()
        self._active.append(phase)
        try:
            yield
        finally:
            self._active.pop()
            elapsed = time.perf_counter() - start
            self.times[phase] = self.times.get(phase, 0.0) + elapsed
            if self._active:
                self.times[self._active[-1]] = self.times.get(self._active[-1], 0.0) - elapsed

    def snapshot(self) -> dict[str, float]:
        """A copy of the accumulated times."""
        return {k: round(v, 3) for k, v in self.times.items()}


def derive_seed(seed: int, unit: str) -> int:
    """A per-unit seed from the run seed and the unit name (independent of execution order)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{unit}".encode()).digest()[:4], "little")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch RNGs."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Manifest:
    """Finished units of a run directory, persisted atomically after each unit."""

    def __init__(self, run_dir: Path, config_key: str, writable: bool = True):
        self.path = run_dir / MANIFEST
        self.writable = writable  # False on the non-main processes of a data-parallel launch
        if self.path.exists():
            data = read_json(self.path)
            if data.get("config_key") != config_key:
                raise UsageError(
                    f"{run_dir} holds a run with a different configuration; pass another --out "
                    "or remove that folder.")
            self.units: dict[str, dict] = data.get("units", {})
        else:
            self.units = {}
        self.config_key = config_key

    def done(self, unit: str) -> bool:
        """Whether ``unit`` finished."""
        return self.units.get(unit, {}).get("state") == "done"

    def mark_done(self, unit: str, phase_times: dict[str, float], git_commit: str | None = None) -> None:
        """Record ``unit`` as finished with the phase times it took and the code that computed it."""
        self.units[unit] = {"state": "done", "phase_times_s": phase_times, "git_commit": git_commit,
                            "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat()}
        if self.writable:
            write_json(self.path, {"config_key": self.config_key, "units": self.units})


@dataclass
class Environment:
    """The loaded, shared pieces of a run: task, edition, models, caches."""

    task: TaskSpec
    profile: Profile
    edition: Any
    policy: Any           # the evaluation Policy (adapters swapped per domain)
    gold: Any             # gold reward model of the task
    models: dict[str, Any]
    seed: int
    timer: PhaseTimer
    judge: Any = None     # win-rate judge (ood_pl_bench.judges)
    console: Any = None
    progress: Any = None

    def reference_generations(self, domain: str, prompts: list[dict], seed: int) -> list[dict]:
        """pi_ref's generations on a domain's evaluation prompts (cached: shared by every method)."""
        from .evaluation import score_generations
        from .paths import cache_dir

        key = stable_hash({"policy": self.models["policy"].revision, "data": self.edition.data_hash,
                           "domain": domain, "prompts": [p["prompt_id"] for p in prompts],
                           "decoding": dataclasses.asdict(self.task.eval_decoding),
                           "k": self.task.samples_per_eval_prompt, "seed": seed,
                           "truncation": [self.task.max_prompt_tokens, self.task.max_response_tokens],
                           # Samples are seeded per row, but bf16 padding can still flip a token.
                           "generation_batch_size": self.profile.generation_batch_size,
                           "gold": getattr(self.gold, "info", {}).get("gold", {}).get("key")})
        path = cache_dir() / "reference" / "eval-generations" / f"{domain}-{key}.jsonl"
        if path.exists():
            return read_jsonl(path)
        with self.timer("reference"):
            rows = score_generations(self.policy, DomainPolicy(), prompts, gold=self.gold,
                                     decoding=self.task.eval_decoding, num_samples=self.task.samples_per_eval_prompt,
                                     seed=seed, batch_size=self.profile.batch_size, timer=self.timer,
                                     generation_batch_size=self.profile.generation_batch_size)
        write_jsonl(path, rows)
        return rows

    def reference_pair_logprobs(self, pairs: list[dict], domain: str, split: str) -> dict:
        """Cached reference log-probs of the pairs (shared by every method)."""
        from .models import cache

        with self.timer("reference"):
            return cache.reference_pair_logprobs(self.policy, pairs, data_hash=self.edition.data_hash,
                                                 domain=domain, split=split)

    def reference_samples(self, domain: str) -> list[dict]:
        """Cached reference samples Y(x) on a domain's training prompts."""
        from .models import cache

        prompts = self.profile.limit_train_prompts(self.edition.prompts(self.task.name, domain, "train"))
        with self.timer("reference"):
            return cache.reference_samples(
                self.policy, prompts, k=self.task.reference_samples_per_prompt,
                decoding=self.task.reference_decoding, seed=self.seed, data_hash=self.edition.data_hash,
                domain=domain, split="train", batch_size=self.profile.generation_batch_size)


def load_environment(task_name: str, edition_name: str, profile: Profile, seed: int, *,
                     data_dir: str | None = None, policy_spec: str | None = None, judge: str = "proxy",
                     console: Any = None, progress: Any = None, device: Any = "cpu") -> Environment:
    """Load the edition, the evaluation policy and the gold reward model (building caches once)."""
    from .data.edition import load_edition
    from .models.gold import gold_reward_model
    from .models.policy import Policy
    from .models.resolve import resolve_policy, resolve_reward_backbone

    timer = PhaseTimer()
    task = profile.apply(get_task(task_name, edition_name))
    with timer("data"):
        edition = load_edition(edition_name, data_dir=data_dir, progress=progress)
    with timer("models"):
        resolved_policy = resolve_policy(policy_spec or profile.policy)
        resolved_rm = resolve_reward_backbone(profile.reward_backbone)
        policy = Policy(resolved_policy, task, dtype=profile.dtype, seed=seed, device=device)
    with timer("gold"):
        gold = gold_reward_model(task, edition, profile, progress=progress, device=str(policy.device))
    from .judges import resolve_judge

    models = {"policy": resolved_policy, "reward_backbone": resolved_rm}
    return Environment(task=task, profile=profile, edition=edition, policy=policy, gold=gold,
                       models=models, seed=seed, timer=timer, judge=resolve_judge(judge, gold=gold),
                       console=console, progress=progress)


def write_sample_file(run_dir: Path, role: str, domain: str, kind: str, rows: list[dict]) -> dict:
    """Write one per-sample file atomically; return its ``samples`` entry (path, sha256, rows)."""
    rel = f"samples/{role}/{domain}.{kind}.jsonl"
    write_jsonl(run_dir / rel, rows)
    return {"path": rel, "sha256": sha256_file(run_dir / rel), "rows": len(rows)}


def evaluate_domain(env: Environment, run_dir: Path, fold_name: str, role: str, domain: str,
                    domain_policy: DomainPolicy, reward_model: Any | None, beta: float = 1.0,
                    dp: Any = None) -> dict | None:
    """Score one domain and write its result and per-sample files; returns the domain payload.

    With ``dp`` (a data-parallel launch) every process scores its share; only the main process
    judges and writes, and the others return None.
    """
    from . import protocol
    from .distributed import score_generations, score_pairs

    start = time.perf_counter()
    task, profile = env.task, env.profile
    pairs = profile.limit_test_pairs(env.edition.pairs(task.name, domain, "test"))
    with main_process_first(dp):
        ref = env.reference_pair_logprobs(pairs, domain, "test")
    pair_rows = score_pairs(env.policy, domain_policy, pairs, ref, reward_model=reward_model,
                            batch_size=profile.batch_size, timer=env.timer, dp=dp)
    metrics = protocol.pair_metrics(pair_rows, explicit_likelihood=domain_policy.explicit_likelihood,
                                    has_reward_model=reward_model is not None, beta=beta)
    main = dp is None or dp.is_main
    if not main and role != "held_out":
        return None
    samples = {"pairs": write_sample_file(run_dir, role, domain, "pairs", pair_rows)} if main else {}
    n_prompts = 0
    if role == "held_out":
        from .judges.command import record_domain_judgement

        prompts = profile.limit_eval_prompts(env.edition.prompts(task.name, domain, "prompts"))
        n_prompts = len(prompts)
        # The same sampling seed for the method and pi_ref: the reference method then ties exactly.
        gen_seed = derive_seed(env.seed, f"generate:{domain}")
        with main_process_first(dp):
            ref_rows = env.reference_generations(domain, prompts, gen_seed)
        if domain_policy.is_reference:
            gen_rows = ref_rows
        else:
            gen_rows = score_generations(
                env.policy, domain_policy, prompts, gold=env.gold, decoding=task.eval_decoding,
                num_samples=task.samples_per_eval_prompt, seed=gen_seed, batch_size=profile.batch_size,
                timer=env.timer, generation_batch_size=profile.generation_batch_size, dp=dp)
        if not main:
            return None
        metrics.update(protocol.generation_metrics(gen_rows, explicit_likelihood=domain_policy.explicit_likelihood))
        samples["generations"] = write_sample_file(run_dir, role, domain, "generations", gen_rows)
        samples["reference_generations"] = write_sample_file(run_dir, role, domain, "reference_generations", ref_rows)
        with env.timer("judging"):
            judge_metrics, judge_samples, _ = record_domain_judgement(
                run_dir, domain, env.judge, prompts, gen_rows, ref_rows, seed=env.seed)
        metrics.update(judge_metrics)
        samples.update(judge_samples)
    payload = {"domain": domain, "task": task.name, "fold": fold_name, "role": role, "metrics": metrics,
               "n_test_pairs": len(pairs), "n_eval_prompts": n_prompts, "samples": samples,
               "wall_time_s": round(time.perf_counter() - start, 3)}
    write_json(run_dir / "domains" / role / f"{domain}.json", payload)
    return payload


def main_process_first(dp: Any) -> contextlib.AbstractContextManager:
    """Run a cache-building block on the main process first (a no-op context in one process)."""
    return dp.main_first() if dp is not None else contextlib.nullcontext()


def policy_for_domain(solver: Solver, domain: str, dp: Any = None) -> DomainPolicy:
    """``solver.policy_for(domain)``; in a data-parallel launch the main process computes it and
    broadcasts the adapters, so every process scores the same weights (a domain policy with its
    own sampler or model is built on each process instead: those cannot be sent)."""
    if dp is None:
        return solver.policy_for(domain)
    mine = solver.policy_for(domain) if dp.is_main else None
    portable = None
    if mine is not None and mine.generate is None and mine.model is None:
        portable = {"adapter": mine.adapter, "explicit_likelihood": mine.explicit_likelihood, "info": mine.info}
    shared = dp.broadcast({"portable": portable} if dp.is_main else None)
    if dp.is_main:
        return mine
    if shared["portable"] is None:
        return solver.policy_for(domain)
    return DomainPolicy(**shared["portable"])


def default_run_dir(cfg: RunConfig) -> Path:
    """``runs/<edition>/<task>/<method>-<profile>-seed<N>``: rerunning a command resumes it."""
    return runs_dir() / cfg.edition / cfg.task / f"{cfg.method}-{cfg.profile}-seed{cfg.seed}"


def resolve_solver(method: str, options: dict[str, Any]) -> tuple[type[Solver], Any]:
    """The solver class registered as ``method`` and its typed config with ``options`` applied."""
    cls = solvers.get(method)
    return cls, build_config(getattr(cls, "Config", object), options)


def run(cfg: RunConfig, *, out: Path | None = None, data_dir: str | None = None,
        console: Any = None, progress_factory: Callable[[], Any] | None = None,
        stop_after_units: int | None = None, solver_cls: type[Solver] | None = None) -> dict | None:
    """Run ``cfg`` into ``out`` (resuming finished units) and return the results dict.

    Under ``accelerate launch`` (``WORLD_SIZE`` > 1) the processes share the work as the module
    docstring says; the main process returns the results and the others return None.

    ``solver_cls`` bypasses the registry (``oodpl eval`` passes its external-checkpoint harness).
    ``stop_after_units`` stops (raising KeyboardInterrupt) after that many newly finished units:
    used by tests to simulate a killed run.
    """
    import torch

    from .distributed import DataParallel
    from .envinfo import git_commit
    from .results import RunResults

    dp = DataParallel.from_environment()
    is_main = dp is None or dp.is_main
    # The code this invocation runs, read now: editing the checkout during a long run must not
    # relabel the results with code that did not compute them.
    code_commit = git_commit()

    if solver_cls is None:
        solver_cls, method_config = resolve_solver(cfg.method, cfg.method_options)
    else:
        method_config = build_config(getattr(solver_cls, "Config", object), cfg.method_options)
    profile = get_profile(cfg.profile)
    task = get_task(cfg.task, cfg.edition)
    held_out = task.held_out_domains
    if cfg.domains:
        unknown = [d for d in cfg.domains if d not in held_out]
        if unknown:
            raise UsageError(f"Not held-out domains of {cfg.task}: {', '.join(unknown)}. "
                             f"Held out: {', '.join(held_out)}")
    run_dir = Path(out) if out else default_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(run_dir, cfg.key(), writable=is_main)
    if is_main:
        write_json(run_dir / "config.json", {
            "run": dataclasses.asdict(cfg),
            "method_config": dataclasses.asdict(method_config) if dataclasses.is_dataclass(method_config) else {},
            "profile": dataclasses.asdict(profile),
        })
    device = dp.device if dp is not None else torch.device("cpu")
    wall_start = time.perf_counter()
    progress = progress_factory() if progress_factory else None
    with (progress if progress is not None else contextlib.nullcontext()):
        with main_process_first(dp):  # edition, model conversion and gold RM are built once
            env = load_environment(cfg.task, cfg.edition, profile, cfg.seed, data_dir=data_dir, judge=cfg.judge,
                                   console=console, progress=progress, device=device)
        new_units = 0

        def finish(unit: str, before: dict[str, float]) -> None:
            nonlocal new_units
            after = env.timer.snapshot()
            manifest.mark_done(unit, {k: round(after.get(k, 0.0) - before.get(k, 0.0), 3) for k in after},
                               git_commit=code_commit)
            new_units += 1
            if stop_after_units is not None and new_units >= stop_after_units:
                raise KeyboardInterrupt(f"stopped after {new_units} units (test hook)")

        for fold in env.task.folds:
            fold_held = [d for d in fold.held_out if not cfg.domains or d in cfg.domains]
            units = [f"eval:held_out:{d}" for d in fold_held]
            if cfg.in_distribution:
                units += [f"eval:source:{d}" for d in fold.source]
            if all(manifest.done(u) for u in units):
                continue
            fold_data = FoldData(env.edition, env.task, fold, profile, reference_samples=env.reference_samples)
            work_dir = run_dir / "solver" / fold.name
            work_dir.mkdir(parents=True, exist_ok=True)
            ctx = SolverContext(
                task=env.task, fold=fold, data=fold_data, profile=profile, seed=cfg.seed, work_dir=work_dir,
                device=device,
                make_policy=lambda: _make_policy(env, cfg.seed),
                make_reward_model=lambda: _make_reward_model(env),
                log=(console.log if console is not None else (lambda msg: None)), progress=progress,
                dp=dp if solver_cls.data_parallel else None)
            solver = solver_cls(method_config, ctx)
            fit_unit = f"fit:{fold.name}"
            if not (manifest.done(fit_unit) and solver.load(work_dir)):
                before = env.timer.snapshot()
                # Data-parallel solvers fit on every process; the others on the main process only.
                fits_here = is_main or solver_cls.data_parallel
                if fits_here:
                    seed_everything(derive_seed(cfg.seed, fit_unit))
                    with env.timer("training"):
                        solver.fit()
                        if is_main:
                            solver.save(work_dir)
                    curves = solver.training_curves()
                    if curves and is_main:
                        write_json(run_dir / "curves" / f"{fold.name}.json", curves)
                if dp is not None:
                    dp.wait()
                    if not fits_here and not solver.load(work_dir):
                        raise RuntimeError(f"process {dp.rank}: the main process's fit of {fold.name} "
                                           f"cannot be loaded from {work_dir} (is the run folder shared?)")
                finish(fit_unit, before)
            rm = solver.reward_model() if solver.has_reward_model else None
            for unit in units:
                if manifest.done(unit):
                    continue
                _, role, domain = unit.split(":", 2)
                before = env.timer.snapshot()
                seed_everything(derive_seed(cfg.seed, unit))
                with env.timer("training"):
                    domain_policy = policy_for_domain(solver, domain, dp)
                evaluate_domain(env, run_dir, fold.name, role, domain, domain_policy, rm,
                                beta=float(getattr(method_config, "beta", 1.0)), dp=dp)
                finish(unit, before)
    if not is_main:
        dp.wait()  # the main process writes results.json
        return None
    results = assemble_results(cfg, run_dir, env, method_config, manifest,
                               wall_time_s=time.perf_counter() - wall_start, code_commit=code_commit)
    RunResults.model_validate(results)
    write_json(run_dir / "results.json", results)
    if dp is not None:
        dp.wait()
    return results


def _make_policy(env: Environment, seed: int) -> Any:
    from .models.policy import Policy

    return Policy(env.models["policy"], env.task, dtype=env.profile.dtype, seed=seed, device=env.policy.device)


def _make_reward_model(env: Environment) -> Any:
    from .models.reward import RewardModel

    # On the policy's device: under a GPU launch each process's reward models sit on its own card.
    return RewardModel.from_pretrained(env.models["reward_backbone"], device=env.policy.device)


def load_domain_payloads(run_dir: Path, role: str) -> dict[str, dict]:
    """The written domain payloads of one role, by domain."""
    folder = run_dir / "domains" / role
    if not folder.is_dir():
        return {}
    return {p.stem: read_json(p) for p in sorted(folder.glob("*.json"))}


def load_rows(run_dir: Path, payload: dict) -> dict[str, list[dict]]:
    """The per-sample rows of a domain payload: {"pairs": [...], "generations": [...]}."""
    rows: dict[str, list[dict]] = {"pairs": [], "generations": []}
    for kind, info in payload.get("samples", {}).items():
        rows[kind] = read_jsonl(run_dir / info["path"])
    return rows


def assemble_results(cfg: RunConfig, run_dir: Path, env: Environment, method_config: Any,
                     manifest: Manifest, wall_time_s: float, code_commit: str | None = None) -> dict:
    """Build the results.json dict from the written domain files (the same path validate takes).

    ``code_commit``: the git commit read when the run started (default: read now).
    """
    from . import protocol
    from .envinfo import device_name, git_commit, package_versions
    from .judges.win_rate import aggregate_judgements

    held = load_domain_payloads(run_dir, "held_out")
    source = load_domain_payloads(run_dir, "source")
    order = {d: i for i, d in enumerate(env.task.domains)}
    held = dict(sorted(held.items(), key=lambda kv: order.get(kv[0], 99)))
    source = dict(sorted(source.items(), key=lambda kv: order.get(kv[0], 99)))
    held_rows = {d: load_rows(run_dir, p) for d, p in held.items()}
    aggregates = protocol.aggregate(
        {d: p["metrics"] for d, p in held.items()}, held_rows,
        {d: p["metrics"] for d, p in source.items()}, {d: load_rows(run_dir, p) for d, p in source.items()})
    aggregates["held_out"].update(aggregate_judgements(held_rows))
    phase: dict[str, float] = {}
    for unit in manifest.units.values():
        for k, v in unit.get("phase_times_s", {}).items():
            phase[k] = round(phase.get(k, 0.0) + v, 3)
    for k, v in env.timer.snapshot().items():  # shared set-up of this invocation (data, models, gold)
        if k in ("data", "models", "gold"):
            phase[k] = round(phase.get(k, 0.0) + v, 3)
    task = env.task
    return {
        "schema_version": "1.0",
        "suite_version": __version__,
        "task": task.name,
        "edition": task.edition,
        "data_version": str(env.edition.version),
        "data_hash": env.edition.data_hash,
        "profile": env.profile.name,
        "reduced": env.profile.reduced or bool(cfg.domains),
        "method": cfg.method,
        "method_config": dataclasses.asdict(method_config) if dataclasses.is_dataclass(method_config) else {},
        "seed": cfg.seed,
        "models": {k: {"model_id": v.model_id, "revision": v.revision, "source": v.source}
                   for k, v in env.models.items()},
        "judge": env.judge.judge_id if env.judge is not None else None,
        "protocol": protocol.protocol_record(task),
        "package_versions": package_versions(),
        "git_commit": code_commit if code_commit is not None else git_commit(),
        "device": device_name(),
        "phase_times_s": phase,
        "wall_time_s": round(wall_time_s, 3),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "domains": list(held.values()) + list(source.values()),
        "aggregates": aggregates,
    }


def comparable_metrics(results: dict) -> str:
    """The metrics of a results dict as canonical JSON, for comparing two runs.

    Ignores provenance and the cost bookkeeping inside metrics (wall/latency seconds, cache hits),
    which legitimately differ between a resumed and an uninterrupted run.
    """
    def strip(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not (k.endswith("_s") or k in ("cached", "calls"))}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    keep = {"domains": [{k: d[k] for k in ("domain", "role", "metrics")} for d in results["domains"]],
            "aggregates": results["aggregates"]}
    return json.dumps(strip(keep), sort_keys=True)
