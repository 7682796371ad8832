"""``meta_test=ppo``: hand metarm's frozen reward model to the ``ppo`` baseline's per-domain PPO.

The ppo baseline is a separate plug-in, so this bridge only runs when a solver named ``ppo`` is
registered and offers the hook it needs: an instance method ``use_reward_model(rm)`` that replaces
its Bradley-Terry reward model, after which its ``policy_for(domain)`` runs PPO with reward
r − β·KL on the domain's prompts. Anything else is refused with a one-line reason.
"""

from __future__ import annotations

from typing import Any

HOOK = "use_reward_model"


def _ppo_class() -> tuple[Any | None, str]:
    from ood_pl_bench.registry import solvers

    try:
        names = solvers.names()
    except Exception as exc:  # noqa: BLE001 - a broken registry is reported, not raised
        return None, f"the solver registry could not be read ({exc})"
    if "ppo" not in names:
        return None, "no solver named 'ppo' is installed (see `oodpl ls methods`)"
    cls = solvers.get("ppo")
    if not callable(getattr(cls, HOOK, None)):
        return None, f"the installed ppo solver has no {HOOK}(reward_model) hook"
    return cls, ""


def ppo_available() -> tuple[bool, str]:
    """(True, "") when the ppo baseline can run metarm's meta-test, else (False, why not)."""
    cls, why = _ppo_class()
    return cls is not None, why


def ppo_solver(ctx: Any, reward_model: Any) -> Any:
    """An instance of the ppo baseline (its default options) on ``ctx`` that uses ``reward_model``;
    call its ``policy_for(domain)`` for the meta-test. Raises RuntimeError when it is unavailable."""
    from ood_pl_bench.solver import build_config

    cls, why = _ppo_class()
    if cls is None:
        raise RuntimeError(f"meta_test=ppo is unavailable: {why}")
    solver = cls(build_config(getattr(cls, "Config", object), {}), ctx)
    getattr(solver, HOOK)(reward_model)
    return solver
