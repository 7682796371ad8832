"""Judge configs: one folder per judge, ``<configs dir>/<name>/config.yaml`` (AlpacaEval style).

Config folders are searched in the folders named by ``OODPL_JUDGE_CONFIGS`` (``os.pathsep``
separated; a user's own judges) and then in the package's ``ood_pl_bench/judges/configs/``. A user
folder with the same name as a shipped one takes its place.

Keys of ``config.yaml``::

    provider: openai            # the oodpl.judges plug-in that runs it (default openai)
    description: one line       # shown by listings
    version: v1                 # bump when the judge changes in a way the fingerprint cannot see
    model: gpt-4o-2024-08-06    # the model name sent to the server (null: take it from model_env)
    model_env: OODPL_JUDGE_MODEL  # optional: an environment variable naming the model; it wins
    api_key_required: true      # false for local servers that take no key
    parser: output_ab           # a parser of ood_pl_bench.judges.parsing
    decoding:                   # sent with every request
      temperature: 0.0
      max_tokens: 16
      send_seed: true           # send each item's seed as the `seed` request field
      top_p: 1.0                # optional
    price:                      # USD per 1M tokens; null or absent: unknown
      input_per_1m_tokens: 2.5
      output_per_1m_tokens: 10.0
    prompt:
      system: ...               # the system message
      user: ...                 # must hold {instruction}, {output_1} and {output_2}

The template is filled in one pass (:meth:`JudgeConfig.render`), so braces inside prompts or
responses are never interpreted. ``template_sha256`` (of the system and user templates) is part of
every cache key; ``fingerprint`` (template hash, parser and decoding) is part of the judge id.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..io import sha256_text
from .parsing import get_parser

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
CONFIGS_ENV = "OODPL_JUDGE_CONFIGS"
CONFIG_FILE = "config.yaml"
PLACEHOLDERS = ("instruction", "output_1", "output_2")
_PLACEHOLDER_RE = re.compile(r"\{(instruction|output_1|output_2)\}")
_KEYS = {"provider", "description", "version", "model", "model_env", "api_key_required", "parser",
         "decoding", "price", "prompt"}
_DECODING_KEYS = {"temperature", "max_tokens", "send_seed", "top_p"}
_PRICE_KEYS = {"input_per_1m_tokens", "output_per_1m_tokens"}


@dataclass(frozen=True)
class JudgeConfig:
    """A parsed judge config (see the module docstring for the file format)."""

    name: str
    system: str
    user: str
    model: str | None = None
    model_env: str | None = None
    provider: str = "openai"
    description: str = ""
    version: str = "v1"
    api_key_required: bool = True
    parser: str = "output_ab"
    temperature: float = 0.0
    max_tokens: int = 16
    send_seed: bool = True
    top_p: float | None = None
    price_input_per_1m: float | None = None
    price_output_per_1m: float | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def template_sha256(self) -> str:
        """sha256 of the system and user templates (part of every cache key)."""
        return sha256_text(json.dumps({"system": self.system, "user": self.user}, sort_keys=True))

    def decoding(self) -> dict[str, Any]:
        """The decoding fields that change a verdict (part of every cache key)."""
        out: dict[str, Any] = {"temperature": float(self.temperature), "max_tokens": int(self.max_tokens),
                               "send_seed": bool(self.send_seed)}
        if self.top_p is not None:
            out["top_p"] = float(self.top_p)
        return out

    @property
    def fingerprint(self) -> str:
        """8 hex digits of the template hash, parser and decoding (part of the judge id)."""
        blob = json.dumps({"template": self.template_sha256, "parser": self.parser,
                           "decoding": self.decoding()}, sort_keys=True)
        return sha256_text(blob)[:8]

    def resolved_model(self) -> str:
        """The model name to send: ``$model_env`` when set, else ``model``.

        Raises:
            UsageError: neither gives a model name.
        """
        if self.model_env and os.environ.get(self.model_env, "").strip():
            return os.environ[self.model_env].strip()
        if self.model:
            return self.model
        env = f" or set {self.model_env}" if self.model_env else ""
        raise UsageError(f"Judge config {self.name!r} names no model: give `model` in its config.yaml{env}.")

    def with_model(self, model: str) -> "JudgeConfig":
        """A copy that sends ``model`` (its price becomes unknown unless the model is the same)."""
        if model == self.model and not (self.model_env and os.environ.get(self.model_env, "").strip()):
            return self
        return dataclasses.replace(self, model=model, model_env=None, price_input_per_1m=None,
                                   price_output_per_1m=None)

    def render(self, instruction: str, output_1: str, output_2: str) -> list[dict[str, str]]:
        """The chat messages for one comparison: a system message (when set) and the user message."""
        values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
        user = _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], self.user)
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": user})
        return messages

    def price(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """USD of one call with these token counts; None when a price or a count is unknown."""
        if self.price_input_per_1m is None or self.price_output_per_1m is None:
            return None
        if input_tokens is None or output_tokens is None:
            return None
        return (input_tokens * self.price_input_per_1m + output_tokens * self.price_output_per_1m) / 1e6


def config_dirs() -> list[Path]:
    """Folders holding config folders, in search order: ``$OODPL_JUDGE_CONFIGS`` then the package's."""
    dirs = [Path(p) for p in os.environ.get(CONFIGS_ENV, "").split(os.pathsep) if p.strip()]
    return dirs + [CONFIGS_DIR]


def available_configs() -> dict[str, Path]:
    """Config name -> its ``config.yaml``, first found in :func:`config_dirs` order."""
    found: dict[str, Path] = {}
    for folder in config_dirs():
        if not folder.is_dir():
            continue
        for sub in sorted(folder.iterdir()):
            if sub.is_dir() and (sub / CONFIG_FILE).is_file() and sub.name not in found:
                found[sub.name] = sub / CONFIG_FILE
    return found


def _problem(path: Path, message: str) -> UsageError:
    return UsageError(f"Judge config {path}: {message}")


def _float_or_none(value: Any, path: Path, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _problem(path, f"{key} must be a number >= 0 or null, got {value!r}")
    return float(value)


def parse_config(name: str, data: Any, path: Path) -> JudgeConfig:
    """Validate a loaded ``config.yaml`` mapping and build its :class:`JudgeConfig`.

    Raises:
        UsageError: naming the file and the problem (unknown keys, missing placeholders, ...).
    """
    if not isinstance(data, dict):
        raise _problem(path, "must hold a mapping")
    unknown = set(data) - _KEYS
    if unknown:
        raise _problem(path, f"unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    prompt = data.get("prompt")
    if not isinstance(prompt, dict) or not isinstance(prompt.get("user"), str):
        raise _problem(path, "needs prompt.user (and optionally prompt.system) as text")
    extra_prompt = set(prompt) - {"system", "user"}
    if extra_prompt:
        raise _problem(path, f"unknown prompt keys {sorted(extra_prompt)}; allowed: system, user")
    system = prompt.get("system") or ""
    if not isinstance(system, str):
        raise _problem(path, "prompt.system must be text")
    missing = [p for p in PLACEHOLDERS if "{" + p + "}" not in prompt["user"]]
    if missing:
        raise _problem(path, f"prompt.user must contain {', '.join('{' + p + '}' for p in missing)}")
    decoding = data.get("decoding") or {}
    if not isinstance(decoding, dict) or set(decoding) - _DECODING_KEYS:
        raise _problem(path, f"decoding must be a mapping with keys among {sorted(_DECODING_KEYS)}")
    price = data.get("price") or {}
    if not isinstance(price, dict) or set(price) - _PRICE_KEYS:
        raise _problem(path, f"price must be a mapping with keys among {sorted(_PRICE_KEYS)}")
    parser = str(data.get("parser", "output_ab"))
    get_parser(parser)  # an unknown parser is a UsageError with a did-you-mean hint
    model = data.get("model")
    model_env = data.get("model_env")
    if model is None and not model_env:
        raise _problem(path, "needs `model` or `model_env`")
    max_tokens = decoding.get("max_tokens", 16)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _problem(path, f"decoding.max_tokens must be an integer >= 1, got {max_tokens!r}")
    temperature = _float_or_none(decoding.get("temperature", 0.0), path, "decoding.temperature")
    return JudgeConfig(
        name=name,
        system=system,
        user=prompt["user"],
        model=str(model) if model is not None else None,
        model_env=str(model_env) if model_env else None,
        provider=str(data.get("provider", "openai")),
        description=str(data.get("description", "")),
        version=str(data.get("version", "v1")),
        api_key_required=bool(data.get("api_key_required", True)),
        parser=parser,
        temperature=0.0 if temperature is None else temperature,
        max_tokens=max_tokens,
        send_seed=bool(decoding.get("send_seed", True)),
        top_p=_float_or_none(decoding.get("top_p"), path, "decoding.top_p"),
        price_input_per_1m=_float_or_none(price.get("input_per_1m_tokens"), path, "price.input_per_1m_tokens"),
        price_output_per_1m=_float_or_none(price.get("output_per_1m_tokens"), path, "price.output_per_1m_tokens"),
        path=path,
    )


def load_config(name: str) -> JudgeConfig:
    """Load the judge config folder ``name`` (see :func:`config_dirs` for where it is looked up).

    Raises:
        UsageError: no such folder (with a did-you-mean hint) or a malformed file.
    """
    import yaml

    configs = available_configs()
    if name not in configs:
        close = difflib.get_close_matches(name, list(configs), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"Unknown judge config {name!r}.{hint} Available: {', '.join(sorted(configs)) or 'none'}.")
    path = configs[name]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise _problem(path, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_config(name, data, path)
