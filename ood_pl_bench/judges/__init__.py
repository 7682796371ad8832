"""Judges for the ``win_rate`` metric (SPEC section 5): plug-ins, configs, cache and win-rate maths.

Judge ids, as given to ``--judge``:

* ``proxy`` (the offline default): the gold reward model as a proxy judge; its id in results is
  ``proxy:gold-rm@<gold revision>``.
* ``openai:MODEL``: any chat model on an OpenAI-compatible server (``OPENAI_API_KEY``,
  ``OPENAI_BASE_URL`` from the environment), e.g. ``openai:gpt-4o`` or ``openai:my-vllm-model``.
* ``NAME``: a judge config folder (``gpt-4o``, ``gpt-4o-mini``, ``local-openai-compatible``, or one
  of the user's under ``OODPL_JUDGE_CONFIGS``); see :mod:`ood_pl_bench.judges.config`.
* ``PLUGIN:SPEC``: any judge registered in the ``oodpl.judges`` entry-point group.

A judge's id as printed in results (``openai:gpt-4o-2024-08-06@v1-1a2b3c4d``) also resolves, and
must then match the installed config exactly.
"""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import UsageError
from ..registry import judges as registry
from .base import ORDERS, POLICY_FIRST, REFERENCE_FIRST, Judge, JudgeItem, JudgeUsage, Verdict
from .config import JudgeConfig, available_configs, load_config

DEFAULT_JUDGE = "proxy"
"""The judge the runner uses when none is asked for (offline)."""

_PLUGIN_HELP = {
    "proxy": "the gold reward model as a proxy judge (offline default); id proxy:gold-rm@<revision>",
    "openai": "openai:MODEL - any chat model on an OpenAI-compatible server (OPENAI_API_KEY, OPENAI_BASE_URL)",
}

__all__ = [
    "DEFAULT_JUDGE", "ORDERS", "POLICY_FIRST", "REFERENCE_FIRST", "Judge", "JudgeConfig", "JudgeItem",
    "JudgeUsage", "Verdict", "available_configs", "available_judges", "load_config", "resolve_judge",
]


def available_judges() -> list[tuple[str, str]]:
    """``(id, description)`` of every plug-in and every judge config folder, for listings."""
    out = [(name, _PLUGIN_HELP.get(name, f"{name}:SPEC (plug-in)")) for name in registry.names()]
    for name in sorted(available_configs()):
        try:
            desc = load_config(name).description
        except UsageError as exc:
            desc = f"(broken config: {exc.message})"
        out.append((name, desc))
    return out


def resolve_judge(judge_id: str, gold: Any = None, **options: Any) -> Judge:
    """Build the judge named by ``judge_id`` (see the module docstring for the forms).

    Args:
        judge_id: ``proxy``, ``openai:MODEL``, a config folder name, or ``PLUGIN:SPEC``.
        gold: the gold reward model, or a zero-argument callable loading it (proxy judge only).
        **options: judge options such as ``concurrency``, ``timeout``, ``max_attempts``,
            ``backoff_base``, ``cache``; judges ignore the ones that do not apply to them.

    Raises:
        UsageError: an unknown id (with a did-you-mean hint) or a malformed config.
    """
    judge_id = (judge_id or "").strip()
    plugins = registry.names()
    provider, sep, spec = judge_id.partition(":")
    if sep and provider in plugins:
        return registry.get(provider)(spec, gold=gold, **options)
    if not sep:
        if judge_id in plugins:
            return registry.get(judge_id)("", gold=gold, **options)
        configs = available_configs()
        name = judge_id.partition("@")[0]
        if name in configs:
            config = load_config(name)
            return registry.get(config.provider)(judge_id, gold=gold, **options)
    if sep and provider in registry.failed():
        registry.get(provider)  # raises the "installed but failed to import" UsageError
    if sep:
        close = [f"{c}:{spec}" for c in difflib.get_close_matches(provider, plugins, n=1)]
    else:
        close = difflib.get_close_matches(judge_id, plugins + sorted(available_configs()), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UsageError(
        f"Unknown judge {judge_id!r}.{hint} Use 'proxy', 'openai:MODEL', or a judge config: "
        f"{', '.join(sorted(available_configs())) or 'none'}.")
