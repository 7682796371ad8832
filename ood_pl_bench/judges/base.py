"""The judge interface: items to compare, verdicts, usage accounting, and the plug-in factory shape.

A *judge* compares two responses to the same prompt and says which is better. Judges are plug-ins
of the ``oodpl.judges`` entry-point group (:data:`ood_pl_bench.registry.judges`); each entry point
is a :class:`JudgeFactory`, called as ``factory(spec, gold=..., **options)`` by
:func:`ood_pl_bench.judges.resolve_judge`.

Positions are always called ``A`` (shown first) and ``B`` (shown second). Which side is the policy
is recorded in :attr:`JudgeItem.order`; the win-rate code (:mod:`ood_pl_bench.judges.win_rate`)
asks every pair in both orders and maps positions back to sides.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Optional, Protocol, Sequence

Winner = Literal["A", "B", "tie"]
"""A parsed verdict: the response in position A, the one in position B, or neither."""

POLICY_FIRST = "policy_first"
"""Order in which the policy's response is shown as A and the reference's as B."""
REFERENCE_FIRST = "reference_first"
"""Order in which the reference's response is shown as A and the policy's as B."""
ORDERS = (POLICY_FIRST, REFERENCE_FIRST)


@dataclass(frozen=True)
class JudgeItem:
    """One comparison to judge.

    Attributes:
        prompt: the instruction both responses answer.
        text_a: the response shown first (position A).
        text_b: the response shown second (position B).
        order: which side is in position A (:data:`POLICY_FIRST` or :data:`REFERENCE_FIRST`, or any
            label a caller uses); part of every cache key.
        seed: sampling seed sent to judges that accept one; part of every cache key.
        item_id: free-form label for messages and rows (not part of any cache key).
    """

    prompt: str
    text_a: str
    text_b: str
    order: str = POLICY_FIRST
    seed: int = 0
    item_id: str = ""


@dataclass
class Verdict:
    """A judge's answer to one :class:`JudgeItem`.

    Attributes:
        winner: ``"A"``, ``"B"``, ``"tie"``, or ``None`` when the judge's output could not be parsed.
        raw: the judge's raw output text (what the parser read).
        parse_ok: False exactly when ``winner`` is None: an unparseable verdict, kept and counted.
        price: USD this verdict cost when it was made (None when the price is unknown); a cached
            verdict keeps the price it originally cost.
        latency: seconds of the successful call that produced it (0 for free local judges' share).
        cached: True when served from the persistent cache without a call.
        attempts: HTTP attempts the verdict took (1 without retries; 0 for cached or local judges).
        input_tokens: prompt tokens reported by the server (None when not reported).
        output_tokens: completion tokens reported by the server (None when not reported).
    """

    winner: Optional[Winner]
    raw: str
    parse_ok: bool
    price: Optional[float] = 0.0
    latency: float = 0.0
    cached: bool = False
    attempts: int = 0
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None

    def to_row(self) -> dict:
        """The verdict as a JSON-ready dict (the per-sample judgement files hold these)."""
        return {
            "winner": self.winner,
            "raw": self.raw,
            "parse_ok": self.parse_ok,
            "price_usd": self.price,
            "latency_s": round(float(self.latency), 6),
            "cached": self.cached,
            "attempts": self.attempts,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass
class JudgeUsage:
    """What a judge spent in this process, summed over its ``compare`` calls.

    ``price_usd`` and ``latency_s`` count only calls made now (a cached verdict is free);
    ``price_unknown`` counts calls whose price is unknown (not in ``price_usd``).
    """

    verdicts: int = 0
    calls: int = 0
    cached: int = 0
    attempts: int = 0
    retries: int = 0
    unparseable: int = 0
    price_usd: float = 0.0
    price_unknown: int = 0
    latency_s: float = 0.0
    wall_s: float = 0.0

    def add(self, verdict: Verdict) -> None:
        """Count one verdict returned by ``compare``."""
        self.verdicts += 1
        if not verdict.parse_ok:
            self.unparseable += 1
        if verdict.cached:
            self.cached += 1
            return
        if verdict.attempts:
            self.calls += 1
            self.attempts += verdict.attempts
            self.retries += verdict.attempts - 1
        if verdict.price is None:
            self.price_unknown += 1
        else:
            self.price_usd += float(verdict.price)
        self.latency_s += float(verdict.latency)

    def as_dict(self) -> dict:
        """A JSON-ready copy with rounded floats."""
        out = dataclasses.asdict(self)
        out["price_usd"] = round(self.price_usd, 8)
        out["latency_s"] = round(self.latency_s, 4)
        out["wall_s"] = round(self.wall_s, 4)
        return out


class Judge(abc.ABC):
    """Base class of judges: a stable id and a batched ``compare``.

    Subclasses implement :attr:`judge_id` and :meth:`compare`; they should add every returned
    verdict to :attr:`usage` (``self.usage.add(v)``).
    """

    usage: JudgeUsage

    def __init__(self) -> None:
        self.usage = JudgeUsage()

    @property
    @abc.abstractmethod
    def judge_id(self) -> str:
        """A stable id naming the judge model and its version, e.g. ``proxy:gold-rm@sha256:...``.

        Results key win-rate columns by this id, so two different judges never share a column.
        """

    @abc.abstractmethod
    def compare(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """Judge every item; one verdict per item, in order.

        Unparseable outputs come back as verdicts with ``winner=None``; failures that persist after
        retries raise :class:`ood_pl_bench.errors.JudgeError`.
        """

    def info(self) -> dict[str, Any]:
        """Provenance of the judge for results (never secrets): at least ``judge_id`` and ``kind``."""
        return {"judge_id": self.judge_id, "kind": type(self).__name__}

    def close(self) -> None:
        """Release resources (cache connections). The judge must not be used afterwards."""


class JudgeFactory(Protocol):
    """The shape of an ``oodpl.judges`` entry point.

    ``spec`` is what follows ``NAME:`` in a judge id (``"gpt-4o"`` in ``openai:gpt-4o``), the empty
    string for a bare ``NAME``; ``gold`` is the gold reward model or a zero-argument callable that
    loads it (only judges that need it call it); ``options`` are judge options (``concurrency``,
    ``timeout``, ...), which a factory may ignore when they do not apply to it.
    """

    def __call__(self, spec: str, *, gold: Any = None, **options: Any) -> Judge:
        """Build the judge named by ``spec``."""

