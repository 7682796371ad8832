"""A judge on any OpenAI-compatible chat-completions server, through the official ``openai`` client.

Credentials and endpoint come from the environment only: ``OPENAI_API_KEY`` and
``OPENAI_BASE_URL`` (unset: the OpenAI API; set it to ``http://host:port/v1`` for vLLM, llama.cpp's
server or TGI). Neither value is ever written to a file, the cache or a result; both are redacted
from every error message (:func:`redact`) and from the ``openai``/``httpx`` loggers' records
(:class:`RedactingFilter`), which log request URLs when an application turns logging on.

Requests run concurrently on one ``AsyncOpenAI`` client, at most ``concurrency`` at a time
(``asyncio.Semaphore``). Retries are ours alone: the client is built with ``max_retries=0`` so that
the attempt count, backoff and price/time accounting here are the single source of truth. A request
is retried, up to ``max_attempts`` attempts in all, on

* 429 (rate limit): waiting at least the server's ``Retry-After`` / ``retry-after-ms`` (capped at
  ``max_retry_after`` seconds), else exponential backoff;
* 408, 409 and 5xx answers;
* timeouts (``timeout`` seconds per attempt) and dropped or refused connections;
* malformed bodies (not JSON, or no ``choices[0].message``).

Exponential backoff with jitter: before attempt ``k + 1`` it waits ``d/2 + U(0, d/2)`` seconds with
``d = min(backoff_max, backoff_base * 2**(k-1))``. Other 4xx answers (bad key, unknown model, bad
request) are not retried. When a request still fails, :class:`~ood_pl_bench.errors.JudgeError` is
raised after the in-flight requests are cancelled; every verdict finished before that is already in
the cache, so rerunning the same command resumes where it stopped.

A text the parser cannot read is a verdict with ``winner=None`` (cached and counted like any other
verdict: the judge said it, and asking again at temperature 0 would say it again).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Coroutine, Optional, Sequence, TypeVar

from ..errors import JudgeError, UsageError
from .base import Judge, JudgeItem, Verdict
from .cache import VerdictCache, verdict_key
from .config import JudgeConfig, available_configs, load_config
from .parsing import get_parser

T = TypeVar("T")

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
DEFAULT_CONFIG = "local-openai-compatible"
"""The config whose prompt, parser and decoding ``openai:MODEL`` uses when no folder is named MODEL."""
NO_KEY_PLACEHOLDER = "no-key"
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")


def redact(text: str) -> str:
    """``text`` with the values of ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` (and any ``sk-...``
    key-like string) replaced by placeholders."""
    out = str(text)
    for env in (API_KEY_ENV, BASE_URL_ENV):
        value = os.environ.get(env, "")
        variants = {value, value.rstrip("/")}
        for v in sorted((v for v in variants if len(v) >= 4), key=len, reverse=True):
            out = out.replace(v, f"[{env}]")
    return _KEY_LIKE.sub("[redacted key]", out)


class RedactingFilter(logging.Filter):
    """Rewrites log records of the HTTP libraries so that they never carry the key or base URL.

    The ``openai`` client and ``httpx`` log request URLs at INFO/DEBUG level when an application
    enables logging; this filter passes every record but replaces those values (see :func:`redact`,
    plus the base URL's ``host:port``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's message in place; never drop it."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is left to the logging machinery
            return True
        clean = _redact_netloc(redact(message))
        if clean != message:
            record.msg, record.args = clean, ()
        return True


def _redact_netloc(text: str) -> str:
    from urllib.parse import urlsplit

    base = os.environ.get(BASE_URL_ENV, "")
    netloc = urlsplit(base).netloc if base else ""
    return text.replace(netloc, f"[{BASE_URL_ENV}]") if len(netloc) >= 4 else text


_LIBRARY_LOGGERS = ("openai", "openai._base_client", "httpx", "httpx2", "httpcore", "httpcore2")
_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Attach :class:`RedactingFilter` to the loggers of ``openai`` and ``httpx`` (idempotent)."""
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request (see the module docstring)."""

    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Exponential backoff with jitter, ``d/2 + U(0, d/2)`` with ``d = min(backoff_max,
        backoff_base * 2**(attempt-1))``; a server's ``retry_after`` is a lower bound (capped at
        ``max_retry_after``).
        """
        rng = rng or random
        d = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1)))
        wait = d / 2 + rng.uniform(0, d / 2)
        if retry_after is not None and retry_after > 0:
            wait = max(wait, min(float(retry_after), self.max_retry_after))
        return wait


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date); None if absent."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class MalformedResponse(Exception):
    """The server answered 2xx with a body that is not a chat completion."""


def extract_completion(body: str) -> tuple[str, Optional[int], Optional[int], Optional[str]]:
    """``(content, prompt_tokens, completion_tokens, model)`` of a chat-completion JSON body.

    A missing ``content`` (e.g. a refusal) gives the refusal text or ``""`` (an unparseable verdict,
    not an error). Raises :class:`MalformedResponse` when the body is not a chat completion.
    """
    try:
        data = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedResponse(f"response body is not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise MalformedResponse("response body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse("response has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise MalformedResponse("response choice has no message")
    content = message.get("content")
    if content is None:
        content = message.get("refusal") or ""
    if not isinstance(content, str):
        raise MalformedResponse("response message content is not text")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}

    def _int(v: Any) -> Optional[int]:
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    model = data.get("model") if isinstance(data.get("model"), str) else None
    return content, _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")), model


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code (in a worker thread inside a running loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class OpenAIJudge(Judge):
    """Pairwise judge on an OpenAI-compatible chat model (see the module docstring).

    Args:
        config: the judge config (prompt, parser, decoding, price, version).
        concurrency: requests in flight at most.
        timeout: seconds per attempt (connect, read, write).
        max_attempts, backoff_base, backoff_max, max_retry_after: the :class:`RetryPolicy`.
        cache: a :class:`VerdictCache`, a path to one, None for the default file, or False for none.
    """

    def __init__(self, config: JudgeConfig, *, concurrency: int = 8, timeout: float = 60.0,
                 max_attempts: int = 6, backoff_base: float = 1.0, backoff_max: float = 60.0,
                 max_retry_after: float = 120.0, cache: VerdictCache | str | Path | None | bool = None):
        super().__init__()
        if int(concurrency) < 1:
            raise UsageError(f"judge concurrency must be >= 1, got {concurrency}")
        if int(max_attempts) < 1:
            raise UsageError(f"judge max_attempts must be >= 1, got {max_attempts}")
        if float(timeout) <= 0:
            raise UsageError(f"judge timeout must be > 0 seconds, got {timeout}")
        install_log_redaction()
        self.config = config
        self.model = config.resolved_model()
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.retry = RetryPolicy(int(max_attempts), float(backoff_base), float(backoff_max), float(max_retry_after))
        self._parser = get_parser(config.parser)
        self._rng = random.Random()
        self._owns_cache = False
        if cache is False:
            self.cache: VerdictCache | None = None
        elif isinstance(cache, VerdictCache):
            self.cache = cache
        else:
            self.cache = VerdictCache(None if cache in (None, True) else cache)
            self._owns_cache = True

    @property
    def judge_id(self) -> str:
        """``openai:<model>@<version>-<fingerprint>``: the model, the config version, and 8 hex of
        the template hash, parser and decoding."""
        return f"openai:{self.model}@{self.config.version}-{self.config.fingerprint}"

    def info(self) -> dict[str, Any]:
        """Provenance for results: id, model, config name, version, template hash, parser, decoding,
        prices (never the key or the base URL)."""
        c = self.config
        return {"judge_id": self.judge_id, "kind": "openai", "model": self.model, "config": c.name,
                "version": c.version, "template_sha256": c.template_sha256, "parser": c.parser,
                "decoding": c.decoding(), "price_input_per_1m_tokens": c.price_input_per_1m,
                "price_output_per_1m_tokens": c.price_output_per_1m,
                "custom_base_url": bool(os.environ.get(BASE_URL_ENV))}

    def key(self, item: JudgeItem) -> str:
        """The cache key of ``item`` for this judge."""
        c = self.config
        return verdict_key(model=self.model, version=c.version, template_sha256=c.template_sha256,
                           parser=c.parser, decoding=c.decoding(), prompt=item.prompt, text_a=item.text_a,
                           text_b=item.text_b, order=item.order, seed=item.seed)

    def compare(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """Judge every item (cache first, then the server); one verdict per item, in order."""
        return run_sync(self.acompare(items))

    async def acompare(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """Asynchronous :meth:`compare` (for callers that already run an event loop)."""
        start = time.perf_counter()
        keys = [self.key(it) for it in items]
        found: dict[str, Verdict] = {}
        todo: dict[str, JudgeItem] = {}
        for key, item in zip(keys, items):
            if key in found or key in todo:
                continue
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                found[key] = hit
            else:
                todo[key] = item
        if todo:
            found.update(await self._call_all(todo))
        out: list[Verdict] = []
        seen: set[str] = set()
        for key in keys:
            v = found[key]
            if key in seen and not v.cached:  # a duplicate within the batch costs nothing more
                v = Verdict(**{**v.__dict__, "cached": True})
            seen.add(key)
            self.usage.add(v)
            out.append(v)
        self.usage.wall_s += time.perf_counter() - start
        return out

    def _client(self) -> Any:
        from openai import AsyncOpenAI

        api_key = os.environ.get(API_KEY_ENV, "")
        if not api_key:
            if self.config.api_key_required:
                raise UsageError(f"Judge {self.judge_id} needs {API_KEY_ENV} in the environment "
                                 f"(and {BASE_URL_ENV} for a server other than the OpenAI API).")
            api_key = NO_KEY_PLACEHOLDER
        # max_retries=0: our retry loop is the single source of truth (attempts, backoff, accounting).
        return AsyncOpenAI(api_key=api_key, max_retries=0, timeout=self.timeout)

    async def _call_all(self, todo: dict[str, JudgeItem]) -> dict[str, Verdict]:
        client = self._client()
        sem = asyncio.Semaphore(self.concurrency)
        try:
            tasks = {key: asyncio.ensure_future(self._one(client, sem, key, item)) for key, item in todo.items()}
            try:
                await asyncio.gather(*tasks.values())
            except BaseException:
                for t in tasks.values():
                    t.cancel()
                await asyncio.gather(*tasks.values(), return_exceptions=True)
                raise
            return {key: t.result() for key, t in tasks.items()}
        finally:
            await client.close()

    async def _one(self, client: Any, sem: asyncio.Semaphore, key: str, item: JudgeItem) -> Verdict:
        async with sem:
            verdict = await self._request(client, item)
        if self.cache is not None:
            self.cache.put(key, verdict, judge_id=self.judge_id, model=self.model, version=self.config.version,
                           template_sha256=self.config.template_sha256, order=item.order)
        return verdict

    def _request_kwargs(self, item: JudgeItem) -> dict[str, Any]:
        c = self.config
        kwargs: dict[str, Any] = {"model": self.model, "messages": c.render(item.prompt, item.text_a, item.text_b),
                                  "temperature": c.temperature, "max_tokens": c.max_tokens}
        if c.top_p is not None:
            kwargs["top_p"] = c.top_p
        if c.send_seed:
            kwargs["seed"] = int(item.seed)
        return kwargs

    async def _request(self, client: Any, item: JudgeItem) -> Verdict:
        import openai

        kwargs = self._request_kwargs(item)
        last = "no attempt made"
        for attempt in range(1, self.retry.max_attempts + 1):
            retry_after: float | None = None
            t0 = time.perf_counter()
            try:
                raw = await client.chat.completions.with_raw_response.create(**kwargs)
                text = raw.text
                if asyncio.iscoroutine(text) or callable(text):  # AsyncAPIResponse.text() is a coroutine
                    text = await (text() if callable(text) else text)
                latency = time.perf_counter() - t0
                content, tin, tout, _ = extract_completion(text)
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status == 429:
                    retry_after = parse_retry_after(exc.response.headers)
                elif not (status in (408, 409) or status >= 500):
                    raise JudgeError(self._message(item, f"HTTP {status} (not retried): {exc.message}")) from None
                last = f"HTTP {status}: {exc.message}"
            except openai.APITimeoutError:
                last = f"timed out after {self.timeout:g} s"
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc.__context__
                last = f"connection failed ({type(cause).__name__ if cause else 'connection error'})"
            except MalformedResponse as exc:
                last = f"malformed response: {exc}"
            else:
                winner = self._parser(content)
                return Verdict(winner=winner, raw=content, parse_ok=winner is not None,
                               price=self.config.price(tin, tout), latency=latency, cached=False,
                               attempts=attempt, input_tokens=tin, output_tokens=tout)
            if attempt < self.retry.max_attempts:
                await asyncio.sleep(self.retry.delay(attempt, retry_after, self._rng))
        raise JudgeError(self._message(item, f"failed after {self.retry.max_attempts} attempts; last error: {last}. "
                                             "Finished verdicts are cached: rerun the same command to resume."))

    def _message(self, item: JudgeItem, detail: str) -> str:
        where = f" on item {item.item_id}" if item.item_id else ""
        return redact(f"Judge {self.judge_id}{where}: {detail}")

    def close(self) -> None:
        """Close the verdict cache if this judge opened it."""
        if self._owns_cache and self.cache is not None:
            self.cache.close()
            self.cache = None


def config_for_spec(spec: str) -> JudgeConfig:
    """The config an ``openai:`` spec names: the config folder called ``spec``, else a config whose
    ``model`` is ``spec`` (so a judge id's model resolves back to its folder), else the
    :data:`DEFAULT_CONFIG` prompt with ``spec`` as the model (price unknown)."""
    if not spec:
        raise UsageError("The openai judge needs a model or a config name: --judge openai:MODEL "
                         f"(configs: {', '.join(sorted(available_configs()))}).")
    configs = available_configs()
    if spec in configs:
        return load_config(spec)
    for name in sorted(configs):
        if name == DEFAULT_CONFIG:
            continue
        config = load_config(name)
        if config.model == spec and not config.model_env:
            return config
    return load_config(DEFAULT_CONFIG).with_model(spec)


_JUDGE_OPTIONS = {"concurrency", "timeout", "max_attempts", "backoff_base", "backoff_max", "max_retry_after", "cache"}


def from_spec(spec: str, *, gold: Any = None, **options: Any) -> OpenAIJudge:
    """The ``openai`` entry point of ``oodpl.judges``: ``openai:MODEL`` or ``openai:CONFIG``.

    ``spec`` may end in ``@<version>-<fingerprint>`` as printed in a judge id; the built judge must
    then have exactly that id. ``gold`` is not used. Options: ``concurrency``, ``timeout``,
    ``max_attempts``, ``backoff_base``, ``backoff_max``, ``max_retry_after``, ``cache``; others
    (meant for other judges) are ignored.
    """
    name, _, tag = spec.partition("@")
    config = config_for_spec(name)
    judge = OpenAIJudge(config, **{k: v for k, v in options.items() if k in _JUDGE_OPTIONS and v is not None})
    if tag:
        if judge.judge_id != f"openai:{judge.model}@{tag}":
            judge.close()
            raise UsageError(f"Judge id {spec!r} does not match the installed config: it builds "
                             f"{judge.judge_id!r} (the prompt, parser, decoding or version changed).")
    return judge
