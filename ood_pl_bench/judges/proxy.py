"""The offline default judge: the task's gold reward model as a *proxy* judge.

It prefers the response with the higher gold reward, ``r_gold(x, a)`` vs ``r_gold(x, b)`` (equal
rewards: a tie). Because it scores each response on its own, both orders always agree, so its win
rate has no position bias and no inconsistency. It is named as a proxy in every result:
``proxy:gold-rm@<revision>``, where the revision fingerprints the exact gold weights, so proxy win
rates of different gold models never share a column, nor with any API judge.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Sequence

from ..errors import ModelError, UsageError
from .base import Judge, JudgeItem, Verdict

PROXY_NAME = "gold-rm"
_REVISION_ATTRS = ("revision", "fingerprint", "model_revision")


def gold_revision(gold: Any) -> str:
    """A fingerprint of the gold model's exact weights.

    In order: the gold cache key ``gold.info["gold"]["key"]`` (a hash of everything the gold
    weights depend on: edition data, task, backbone revision, training settings; see
    :mod:`ood_pl_bench.models.gold`); the first of ``gold.revision`` / ``gold.fingerprint`` /
    ``gold.model_revision`` (or the same on ``gold.resolved`` / ``gold.model``) that is set; else
    ``sha256:<16 hex>`` of its ``state_dict()``.

    Raises:
        ModelError: none of these exists.
    """
    info = getattr(gold, "info", None)
    if isinstance(info, dict) and isinstance(info.get("gold"), dict) and info["gold"].get("key"):
        return str(info["gold"]["key"])
    for holder in (gold, getattr(gold, "resolved", None), getattr(gold, "model", None)):
        if holder is None:
            continue
        for attr in _REVISION_ATTRS:
            value = getattr(holder, attr, None)
            if isinstance(value, str) and value:
                return value
    for holder in (gold, getattr(gold, "model", None)):
        state_dict = getattr(holder, "state_dict", None)
        if callable(state_dict):
            import torch

            h = hashlib.sha256()
            for name, tensor in sorted(state_dict().items()):
                h.update(name.encode("utf-8"))
                t = tensor.detach().cpu().contiguous()
                h.update(str(t.dtype).encode())
                h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            return f"sha256:{h.hexdigest()[:16]}"
    raise ModelError("cannot fingerprint the gold reward model for the proxy judge: it has no revision "
                     "attribute and no state_dict()")


class ProxyJudge(Judge):
    """Gold reward model as a pairwise judge (see the module docstring).

    Args:
        gold: an object with ``score(prompts, responses, batch_size) -> Tensor | list`` (the
            :class:`ood_pl_bench.models` gold reward model), or a zero-argument callable returning
            one (loaded on first use).
        revision: the gold model's revision; default :func:`gold_revision` of ``gold``.
        batch_size: scoring batch size.
    """

    def __init__(self, gold: Any, *, revision: str | None = None, batch_size: int = 16):
        super().__init__()
        if gold is None:
            raise UsageError("The proxy judge needs the gold reward model of the task.")
        self._gold = gold
        self._revision = revision
        self.batch_size = int(batch_size)
        self._memo: dict[tuple[str, str], float] = {}

    @property
    def gold(self) -> Any:
        """The gold reward model (loaded now if a loader was given)."""
        if not hasattr(self._gold, "score") and callable(self._gold):
            self._gold = self._gold()
        return self._gold

    @property
    def revision(self) -> str:
        """The gold model's revision fingerprint."""
        if self._revision is None:
            self._revision = gold_revision(self.gold)
        return self._revision

    @property
    def judge_id(self) -> str:
        """``proxy:gold-rm@<revision>``."""
        return f"proxy:{PROXY_NAME}@{self.revision}"

    def info(self) -> dict[str, Any]:
        """Provenance for results: id, kind, and the gold revision."""
        return {"judge_id": self.judge_id, "kind": "proxy", "model": PROXY_NAME, "revision": self.revision}

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Gold rewards of ``(prompt, response)`` pairs, each distinct pair scored once per judge."""
        missing = list(dict.fromkeys((p, r) for p, r in zip(prompts, responses) if (p, r) not in self._memo))
        if missing:
            out = self.gold.score([p for p, _ in missing], [r for _, r in missing], batch_size=self.batch_size)
            values = out.tolist() if hasattr(out, "tolist") else list(out)
            for pair, value in zip(missing, values):
                self._memo[pair] = float(value)
        return [self._memo[(p, r)] for p, r in zip(prompts, responses)]

    def compare(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """Prefer the response with the higher gold reward; equal rewards are a tie."""
        if not items:
            return []
        start = time.perf_counter()
        prompts = [it.prompt for it in items]
        ra = self.scores(prompts, [it.text_a for it in items])
        rb = self.scores(prompts, [it.text_b for it in items])
        share = (time.perf_counter() - start) / len(items)
        verdicts = []
        for a, b in zip(ra, rb):
            winner = "A" if a > b else "B" if b > a else "tie"
            v = Verdict(winner=winner, raw=f"r_gold(a)={a:.6g} r_gold(b)={b:.6g}", parse_ok=True, price=0.0,
                        latency=share, cached=False, attempts=0)
            self.usage.add(v)
            verdicts.append(v)
        self.usage.wall_s += time.perf_counter() - start
        return verdicts


def from_spec(spec: str, *, gold: Any = None, **options: Any) -> ProxyJudge:
    """The ``proxy`` entry point of ``oodpl.judges``: ``proxy``, ``proxy:gold-rm`` or
    ``proxy:gold-rm@<revision>`` (the built judge must then have that revision).

    Options: ``batch_size``; options of API judges (``concurrency``, ``timeout``, ...) are ignored.
    """
    name, _, revision = spec.partition("@")
    if name not in ("", PROXY_NAME):
        raise UsageError(f"Unknown proxy judge {spec!r}: the proxy judge is 'proxy' or 'proxy:{PROXY_NAME}'.")
    judge = ProxyJudge(gold, batch_size=int(options.get("batch_size") or 16))
    if revision and judge.revision != revision:
        raise UsageError(f"Judge proxy:{spec} asks for gold revision {revision!r} but this gold reward model "
                         f"is {judge.revision!r}.")
    return judge
