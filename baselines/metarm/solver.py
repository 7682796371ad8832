"""``metarm``: the meta-learned reward model of SPEC section 4 as a solver.

``fit`` meta-trains one reward model r_φ per fold on the fold's source domains (episodes of D inner
weighted-likelihood steps from θ₀, the outer Bradley-Terry loss on the adapted policy's margin A
(or A − A_ref with ``outer_margin=implicit``),
and an Adam step on φ along the hypergradient of :mod:`baselines.metarm.hypergrad`).
``policy_for`` runs the meta-test on a held-out domain: T weighted steps from θ₀ with the frozen
r_φ on that domain's cached reference samples (:mod:`baselines.metarm.metatest`).

A finished meta-training is saved in the run's solver folder (the reward model as safetensors,
the curves, a PNG in the run's ``curves/``) and published to ``<OODPL_CACHE>/metarm/<key>/``,
keyed by everything that determines it (meta-training options, seed, fold, models, the source data
and reference samples): a run that changes only meta-test options reuses it instead of training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ood_pl_bench.errors import DataError
from ood_pl_bench.io import atomic_path, read_json, write_json
from ood_pl_bench.paths import cache_dir, training_device_key
from ood_pl_bench.runner import derive_seed
from ood_pl_bench.solver import DomainPolicy, Solver

from .config import MetaRMConfig
from .hypergrad import HYPERGRADIENTS, InnerBatch, group_index
from .metatest import WeightedUpdate, draw_batch, flatten, usable_rows, weighted_meta_test

RM_DIR = "reward_model"
CURVES_FILE = "metarm_curves.json"
META_FILE = "metarm.json"
KEY_VERSION = 1


@dataclass
class SourceDomain:
    """What meta-training uses of one source domain: its train pairs and reference-sample rows."""

    name: str
    pairs: list[dict]
    rows: list[dict]


# --- meta-training -------------------------------------------------------------------------------------


def configure_reward_model(rm: Any, trainable: str) -> dict[str, torch.nn.Parameter]:
    """Set which reward-model parameters φ meta-training updates; returns them by name."""
    rm.requires_grad_(True)
    if trainable == "head":
        rm.backbone.requires_grad_(False)
    rm.eval()  # no dropout: the weights and the hypergradient must see the same r_φ
    return {n: p for n, p in rm.named_parameters() if p.requires_grad}


def _outcome(diff: torch.Tensor) -> torch.Tensor:
    return torch.where(diff > 0, 1.0, torch.where(diff == 0, 0.5, 0.0))


def meta_train(policy: Any, rm: Any, domains: list[SourceDomain], config: MetaRMConfig, seed: int, *,
               log: Callable[[str], None] = lambda msg: None, progress: Any = None,
               on_step: Callable[[int, Any], None] | None = None) -> dict[str, list[float]]:
    """Meta-train ``rm`` in place for ``config.meta_steps`` episodes; returns per-step curves.

    Per step k: a source domain (shuffled cycles over ``domains``), D inner batches of its reference
    samples and one batch of its pairs; the hypergradient (``config.hypergrad``) plus the optional
    direct BT term, clipped, then Adam. The policy's own parameters stay at θ₀ throughout.
    Curves: outer_loss, pl_accuracy (implicit reward on the outer pairs), pl_likelihood_accuracy
    (A > 0), rm_accuracy (r_φ before the step, outer pairs), bt_loss, hypergrad_norm, domain
    (index into ``domains``), seconds. ``on_step(k, rm)`` is called after each update (tests).
    """
    cfg = config
    if not domains:
        raise DataError("metarm: no source domain has both train pairs and reference samples")
    rng = random.Random(seed)
    rm_params = configure_reward_model(rm, cfg.rm_trainable)
    opt = torch.optim.Adam(list(rm_params.values()), lr=cfg.eta)
    theta0 = {k: v.detach().clone() for k, v in policy.named_trainable_parameters().items()}
    hypergradient = HYPERGRADIENTS[cfg.hypergrad]

    def loglik(theta, batch):
        """Summed response log-probs of ``batch`` with adapters ``theta`` (functional call)."""
        return policy.response_logprobs(batch, params=theta)

    curves: dict[str, list[float]] = {k: [] for k in (
        "outer_loss", "pl_accuracy", "pl_likelihood_accuracy", "rm_accuracy", "bt_loss",
        "hypergrad_norm", "domain", "seconds")}
    domain_order: list[int] = []
    row_orders: dict[int, list[int]] = {i: [] for i in range(len(domains))}
    pair_orders: dict[int, list[int]] = {i: [] for i in range(len(domains))}
    task = progress.add_task("metarm meta-training", total=cfg.meta_steps) if progress is not None else None
    for k in range(cfg.meta_steps):
        started = time.perf_counter()
        if not domain_order:
            domain_order = list(range(len(domains)))
            rng.shuffle(domain_order)
            domain_order.reverse()  # pop() from the end keeps the shuffled order
        m = domain_order.pop()
        dom = domains[m]
        inner = []
        for _ in range(cfg.inner_steps):
            drawn = draw_batch(dom.rows, row_orders[m], rng, cfg.inner_prompts, cfg.samples_per_prompt)
            prompts, texts, finished, sizes = flatten(drawn)
            inner.append(InnerBatch(policy.encode(prompts, texts, eos=finished), rm.encode(prompts, texts),
                                    group_index(sizes)))
        pairs = []
        for _ in range(min(cfg.outer_pairs, len(dom.pairs))):
            if not pair_orders[m]:
                pair_orders[m].extend(range(len(dom.pairs)))
                rng.shuffle(pair_orders[m])
            pairs.append(dom.pairs[pair_orders[m].pop()])
        px = [p["prompt"] for p in pairs]
        answers = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
        outer = policy.encode(px + px, answers)
        n = len(pairs)
        with torch.no_grad():
            # A_ref through the same functional path as A(θ_D) (θ₀ = zero adapters = π_ref): the
            # same kernels, so A − A_ref is exactly 0 when θ_D = θ₀.
            ref = loglik(theta0, outer)
        ref_margin = ref[:n] - ref[n:]
        implicit = cfg.outer_margin == "implicit"
        out = hypergradient(loglik, rm, rm_params, theta0, inner, outer, alpha=cfg.alpha, beta=cfg.beta,
                            weights=cfg.weights, max_log_weight=cfg.max_log_weight,
                            margin_offset=ref_margin if implicit else None)
        grads = out.grads
        ref_margin = ref_margin.to(out.margins.dtype)
        # out.margins are the loss's margins: A, or A − A_ref with the implicit outer margin.
        likelihood_margin = out.margins + ref_margin if implicit else out.margins
        implicit_margin = out.margins if implicit else out.margins - ref_margin
        rm_pairs = rm.encode(px + px, answers)
        if cfg.bt_weight > 0:
            r_pairs = rm(rm_pairs)
            bt = -F.logsigmoid(r_pairs[:n] - r_pairs[n:]).mean()
            names = list(rm_params)
            bt_grads = torch.autograd.grad(cfg.bt_weight * bt, [rm_params[x] for x in names], allow_unused=True)
            grads = {x: grads[x] + (g if g is not None else 0.0) for x, g in zip(names, bt_grads)}
            r_pairs = r_pairs.detach()
        else:
            with torch.no_grad():
                r_pairs = rm(rm_pairs)
                bt = -F.logsigmoid(r_pairs[:n] - r_pairs[n:]).mean()
        norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))
        for x, p in rm_params.items():
            p.grad = grads[x].detach().to(p.dtype).clone()
        if cfg.rm_max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(list(rm_params.values()), cfg.rm_max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        curves["outer_loss"].append(float(out.loss))
        curves["pl_accuracy"].append(float(_outcome(implicit_margin).mean()))
        curves["pl_likelihood_accuracy"].append(float(_outcome(likelihood_margin).mean()))
        curves["rm_accuracy"].append(float(_outcome(r_pairs[:n] - r_pairs[n:]).mean()))
        curves["bt_loss"].append(float(bt.detach()))
        curves["hypergrad_norm"].append(norm)
        curves["domain"].append(float(m))
        curves["seconds"].append(round(time.perf_counter() - started, 4))
        if on_step is not None:
            on_step(k, rm)
        if k % 5 == 0 or k == cfg.meta_steps - 1:
            log(f"metarm step {k + 1}/{cfg.meta_steps} [{dom.name}]: outer loss {float(out.loss):.4f} "
                f"|dℓ/dφ| {norm:.3g} ({curves['seconds'][-1]:.1f}s)")
        if task is not None:
            progress.advance(task)
    if task is not None:
        progress.remove_task(task)
    rm.requires_grad_(False)
    rm.eval()
    return curves


def data_fingerprint(domains: list[SourceDomain]) -> str:
    """sha256 (16 hex) of the pairs and reference samples meta-training reads, domain by domain."""
    h = hashlib.sha256()
    for d in domains:
        h.update(json.dumps({"domain": d.name,
                             "pairs": [[p.get("pair_id"), p["prompt"], p["chosen"], p["rejected"]] for p in d.pairs],
                             "rows": [[r.get("prompt_id"), r["prompt"],
                                       [[s.get("text"), bool(s.get("finished", True))] for s in r["samples"]]]
                                      for r in d.rows]}, sort_keys=True).encode())
    return h.hexdigest()[:16]


# --- the solver -------------------------------------------------------------------------------------------


class MetaRMSolver(Solver):
    """Meta-learned reward model (bilevel, SPEC section 4) with a weighted meta-test per held-out domain."""

    name = "metarm"
    description = ("meta-learned reward model (bilevel meta-training on source domains), then "
                   "reward-weighted policy updates on each held-out domain")
    Config = MetaRMConfig
    has_reward_model = True

    def __init__(self, config: MetaRMConfig | None, ctx: Any):
        super().__init__(config if config is not None else MetaRMConfig(), ctx)
        self.rm: Any = None
        self.curves: dict[str, list[float]] = {}
        self.meta: dict[str, Any] = {}
        self.test_curves: dict[str, dict[str, list[float]]] = {}
        self._policy: Any = None
        self._ppo: Any = None  # the ppo baseline's solver, for meta_test=ppo

    # --- seeds and shared objects ---------------------------------------------------------------

    def _base_seed(self) -> int:
        return int(self.config.seed) if self.config.seed is not None else int(self.ctx.seed)

    def _fit_seed(self) -> int:
        return derive_seed(self._base_seed(), f"metarm:fit:{self.ctx.fold.name}")

    def _test_seed(self, domain: str) -> int:
        return derive_seed(self._base_seed(), f"metarm:test:{domain}")

    def policy(self) -> Any:
        """The solver's own policy (created once; its adapters are at θ₀ between uses)."""
        if self._policy is None:
            self._policy = self.ctx.make_policy()
        return self._policy

    def _source_domains(self) -> list[SourceDomain]:
        out = []
        for d in self.ctx.fold.source:
            pairs = self.ctx.data.source_pairs(d)
            rows = [r for r in usable_rows(self.ctx.data.reference_samples(d))
                    if sum(1 for s in r["samples"] if s.get("text")) >= 2]
            if not pairs or not rows:
                self.ctx.log(f"metarm: source domain {d} skipped ({len(pairs)} pairs, {len(rows)} prompts "
                             "with >= 2 reference samples)")
                continue
            out.append(SourceDomain(d, pairs, rows))
        return out

    def training_key(self, policy: Any, rm: Any, domains: list[SourceDomain]) -> tuple[str, dict]:
        """The reuse key of a meta-training and the fields it hashes."""
        from ood_pl_bench.io import stable_hash

        options = self.config.meta_training_options()
        options["seed"] = self._fit_seed()
        task = self.ctx.task
        fields = {
            "version": KEY_VERSION, "options": options, "task": task.name, "edition": task.edition,
            "fold": dataclasses.asdict(self.ctx.fold),
            "policy": {"revision": policy.resolved.revision, "dtype": policy.dtype,
                       "lora": dataclasses.asdict(policy.lora), "prompt_format": policy.prompt_format,
                       "max_prompt_tokens": task.max_prompt_tokens,
                       "max_response_tokens": task.max_response_tokens},
            "reward_model": {"backbone": (rm.backbone_info or {}).get("revision"), "max_length": rm.max_length},
            "data": data_fingerprint(domains),
            "torch": torch.__version__.split("+")[0],
            **training_device_key(self.ctx.device),
        }
        return stable_hash(fields), fields

    # --- Solver API --------------------------------------------------------------------------------

    def fit(self) -> None:
        """Meta-train r_φ on the fold's source domains, or reuse an identical finished meta-training."""
        from ood_pl_bench.models.reward import RewardModel

        cfg = self.config
        domains = self._source_domains()
        policy = self.policy()
        rm = self.ctx.make_reward_model()
        key, fields = self.training_key(policy, rm, domains)
        cached = cache_dir() / "metarm" / key
        if (cached / META_FILE).is_file() and (cached / RM_DIR).is_dir():
            self.rm = RewardModel.load(cached / RM_DIR, device=self.ctx.device)
            self.rm.requires_grad_(False)
            self.curves = read_json(cached / CURVES_FILE)
            self.meta = dict(read_json(cached / META_FILE), reused_from=str(cached))
            self.ctx.log(f"metarm: reusing the finished meta-training {key} from {cached}")
            return
        started = time.perf_counter()
        self.ctx.log(f"metarm: meta-training on {', '.join(d.name for d in domains)}: K={cfg.meta_steps}, "
                     f"D={cfg.inner_steps}, hypergrad={cfg.hypergrad}")
        self.curves = meta_train(policy, rm, domains, cfg, self._fit_seed(), log=self.ctx.log,
                                 progress=self.ctx.progress)
        self.rm = rm
        self.meta = {"key": key, "key_fields": fields, "fold": self.ctx.fold.name,
                     "domains": [d.name for d in domains], "seconds": round(time.perf_counter() - started, 3)}
        try:
            with atomic_path(cached) as tmp:
                tmp.mkdir(parents=True)
                self._write(tmp)
        except OSError as exc:  # a read-only cache only loses the reuse
            self.ctx.log(f"metarm: could not cache the meta-training ({exc})")

    def _write(self, directory: Path) -> None:
        self.rm.save(directory / RM_DIR)
        write_json(directory / CURVES_FILE, self.curves)
        write_json(directory / META_FILE, {k: v for k, v in self.meta.items() if k != "reused_from"})

    def policy_for(self, domain: str) -> DomainPolicy:
        """Meta-test: T weighted steps from θ₀ with the frozen r_φ on ``domain``'s reference samples."""
        cfg = self.config
        if self.rm is None:
            raise RuntimeError("metarm: policy_for called before fit or load")
        if cfg.meta_test == "ppo":
            from .ppo_bridge import ppo_solver

            if self._ppo is None:
                self._ppo = ppo_solver(self.ctx, self.rm)
            return self._ppo.policy_for(domain)
        options = WeightedUpdate(steps=cfg.meta_test_steps, lr=cfg.test_lr, beta=cfg.beta,
                                 prompts_per_step=cfg.test_prompts, samples_per_prompt=cfg.samples_per_prompt,
                                 weights=cfg.weights, max_log_weight=cfg.max_log_weight,
                                 optimizer=cfg.meta_test_optimizer)
        rows = self.ctx.data.reference_samples(domain)
        result = weighted_meta_test(self.policy(), self.rm, rows, options, self._test_seed(domain),
                                    log=self.ctx.log)
        self.test_curves[domain] = result.curves
        return DomainPolicy(adapter=result.adapter, info={
            "method": "metarm", "fold": self.ctx.fold.name, "meta_test_steps": cfg.meta_test_steps,
            "meta_training": self.meta.get("key"),
            "mean_batch_reward": (sum(result.curves["reward"]) / len(result.curves["reward"])
                                  if result.curves["reward"] else None)})

    def reward_model(self) -> Any:
        """The meta-learned reward model r_φ (scored for rm_accuracy)."""
        return self.rm

    def save(self, directory: Path) -> None:
        """Save r_φ (safetensors), the curves and the key into ``directory``; plot the curves as
        ``<run dir>/curves/<fold>.png`` (``directory`` is ``<run dir>/solver/<fold>``)."""
        directory = Path(directory)
        self._write(directory)
        run_dir = directory.parent.parent if directory.parent.name == "solver" else directory
        self.plot(run_dir / "curves" / f"{self.ctx.fold.name}.png")

    def plot(self, path: Path) -> Path | None:
        """Write the meta-training curves as a PNG; returns the path (None without curves)."""
        from .plots import plot_curves

        if not self.curves or not any(self.curves.values()):
            return None
        return plot_curves(self.curves, path, title=f"metarm meta-training, fold {self.ctx.fold.name}")

    def load(self, directory: Path) -> bool:
        """Load a finished meta-training from ``directory``; False when there is none."""
        from ood_pl_bench.models.reward import RewardModel

        directory = Path(directory)
        if not ((directory / META_FILE).is_file() and (directory / RM_DIR / "reward_model.json").is_file()):
            return False
        self.rm = RewardModel.load(directory / RM_DIR, device=self.ctx.device)
        self.rm.requires_grad_(False)
        self.curves = read_json(directory / CURVES_FILE) if (directory / CURVES_FILE).is_file() else {}
        self.meta = read_json(directory / META_FILE)
        return True

    def training_curves(self) -> dict[str, list[float]]:
        """Per meta-step: outer loss, source PL accuracy (implicit and A > 0), RM accuracy, BT loss,
        hypergradient norm, source-domain index and seconds."""
        return {k: list(v) for k, v in self.curves.items()}
