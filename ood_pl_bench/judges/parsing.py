"""Verdict parsers: turn a judge model's raw text into ``"A"``, ``"B"``, ``"tie"`` or ``None``.

A judge config names its parser (``parser: output_ab``). ``None`` means *unparseable*: the caller
records the raw text, counts it and never drops it silently. Parsers are strict on purpose: a text
that names both outputs without a clear first answer is unparseable rather than guessed.

Parsers:

``output_ab``
    AlpacaEval style: the answer starts with ``Output (a)`` or ``Output (b)`` (``## Output (a)``,
    ``Output a``, ``**Output (b)**`` and any case are accepted). If the text does not start with
    one, it must mention exactly one of the two.
``json_winner``
    The first JSON object in the text with a ``winner`` (or ``preferred``/``choice``) key whose
    value is one of ``a``/``b``/``1``/``2``/``output (a)``/``output (b)``/``tie``; code fences are
    allowed around it.
``token_12``
    A single token ``1`` (A) or ``2`` (B), optionally followed by punctuation; ``0`` or ``tie`` is a
    tie.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Callable, Optional

from ..errors import UsageError
from .base import Winner

Parser = Callable[[str], Optional[Winner]]

_OUTPUT_START = re.compile(r"^[\s#*>`\"'\[\(]*output\s*\(?\s*([ab])\s*\)?(?![a-z0-9])", re.IGNORECASE)
_OUTPUT_ANY = re.compile(r"output\s*\(\s*([ab])\s*\)|output\s+([ab])(?![a-z0-9])", re.IGNORECASE)
_TOKEN = re.compile(r"^[\s\"'`*\[\(]*(1|2|0|tie)[\s\"'`*\]\).,!:;]*$", re.IGNORECASE)
_WINNER_VALUES: dict[str, Winner] = {
    "a": "A", "b": "B", "1": "A", "2": "B", "output (a)": "A", "output (b)": "B",
    "output_1": "A", "output_2": "B", "output a": "A", "output b": "B",
    "tie": "tie", "draw": "tie", "equal": "tie", "0": "tie",
}
_WINNER_KEYS = ("winner", "preferred", "choice", "better", "verdict")


def parse_output_ab(text: str) -> Optional[Winner]:
    """Parse an ``Output (a)`` / ``Output (b)`` answer (see the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        return None
    m = _OUTPUT_START.match(text)
    if m:
        return "A" if m.group(1).lower() == "a" else "B"
    named = {(g1 or g2).lower() for g1, g2 in _OUTPUT_ANY.findall(text)}
    if len(named) == 1:
        return "A" if named.pop() == "a" else "B"
    return None


def _json_objects(text: str):
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch != "{":
            continue
        try:
            obj, _ = decoder.raw_decode(text, i)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def parse_json_winner(text: str) -> Optional[Winner]:
    """Parse a JSON object such as ``{"winner": "a"}`` (see the module docstring)."""
    if not isinstance(text, str):
        return None
    for obj in _json_objects(text):
        lowered = {str(k).lower(): v for k, v in obj.items()}
        for key in _WINNER_KEYS:
            if key in lowered:
                value = lowered[key]
                if isinstance(value, bool) or value is None:
                    return None
                return _WINNER_VALUES.get(str(value).strip().lower())
    return None


def parse_token_12(text: str) -> Optional[Winner]:
    """Parse a single ``1``/``2`` token (``0`` or ``tie``: a tie)."""
    if not isinstance(text, str):
        return None
    m = _TOKEN.match(text)
    if not m:
        return None
    return _WINNER_VALUES[m.group(1).lower()]


PARSERS: dict[str, Parser] = {
    "output_ab": parse_output_ab,
    "json_winner": parse_json_winner,
    "token_12": parse_token_12,
}
"""Parser name -> function; judge configs refer to these names."""


def get_parser(name: str) -> Parser:
    """Return the parser called ``name``; a UsageError with a did-you-mean hint otherwise."""
    if name in PARSERS:
        return PARSERS[name]
    close = difflib.get_close_matches(str(name), list(PARSERS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"Unknown verdict parser {name!r}.{hint} Available: {', '.join(sorted(PARSERS))}.")


def parse_verdict(parser: str, text: str) -> Optional[Winner]:
    """Parse ``text`` with the parser called ``parser``: ``"A"``, ``"B"``, ``"tie"`` or None."""
    return get_parser(parser)(text)
