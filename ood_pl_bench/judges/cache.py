"""Persistent verdict cache (SQLite, WAL mode): a rerun of the same judgements makes no API call.

The key (:func:`verdict_key`) is the sha256 of everything that changes a verdict: the judge's model
and version, the template hash, the parser, the decoding, the instruction, both texts, the order
and the seed. Each verdict is committed on its own transaction as soon as it arrives, with
``synchronous=FULL``, so a crash or a kill loses no finished verdict. WAL mode lets several
processes read and write the same file; writers wait up to ``busy_timeout`` for each other.

Only the judge's output and accounting are stored (winner, raw text, tokens, price, latency): no
prompts or responses (they are hashed into the key) and never an API key or a base URL.

The default file is ``<cache>/judges/verdicts.sqlite`` (``OODPL_CACHE`` or ``~/.cache/oodpl``).
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Optional

from ..io import sha256_text
from ..paths import cache_dir
from .base import Verdict

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    judge_id TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    template_sha256 TEXT NOT NULL,
    item_order TEXT NOT NULL,
    winner TEXT,
    raw TEXT NOT NULL,
    parse_ok INTEGER NOT NULL,
    price_usd REAL,
    latency_s REAL NOT NULL,
    attempts INTEGER NOT NULL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def default_cache_path() -> Path:
    """``<cache>/judges/verdicts.sqlite`` under :func:`ood_pl_bench.paths.cache_dir`."""
    return cache_dir() / "judges" / "verdicts.sqlite"


def verdict_key(*, model: str, version: str, template_sha256: str, parser: str, decoding: dict[str, Any],
                prompt: str, text_a: str, text_b: str, order: str, seed: int) -> str:
    """The cache key of one verdict: sha256 of a canonical JSON of every input that changes it."""
    blob = json.dumps({
        "cache_schema": SCHEMA_VERSION, "model": model, "version": version, "template_sha256": template_sha256,
        "parser": parser, "decoding": decoding, "prompt": prompt, "text_a": text_a, "text_b": text_b,
        "order": order, "seed": int(seed),
    }, sort_keys=True, ensure_ascii=False)
    return sha256_text(blob)


class VerdictCache:
    """A SQLite file of verdicts keyed by :func:`verdict_key`.

    Safe to share between threads of one process (one connection behind a lock) and between
    processes (WAL mode, busy timeout).
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout_s: float = 30.0):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: Optional[sqlite3.Connection] = sqlite3.connect(
            str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        self._conn.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"verdict cache {self.path} is closed")
        return self._conn

    def get(self, key: str) -> Optional[Verdict]:
        """The cached verdict of ``key`` (with ``cached=True``), or None."""
        with self._lock:
            row = self._connection().execute(
                "SELECT winner, raw, parse_ok, price_usd, latency_s, attempts, input_tokens, output_tokens "
                "FROM verdicts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        winner, raw, parse_ok, price, latency, attempts, tin, tout = row
        return Verdict(winner=winner, raw=raw, parse_ok=bool(parse_ok), price=price, latency=float(latency),
                       cached=True, attempts=int(attempts), input_tokens=tin, output_tokens=tout)

    def put(self, key: str, verdict: Verdict, *, judge_id: str, model: str, version: str,
            template_sha256: str, order: str) -> None:
        """Store ``verdict`` under ``key`` and commit at once (an existing row is kept)."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat()
        with self._lock:
            self._connection().execute(
                "INSERT OR IGNORE INTO verdicts(key, judge_id, model, version, template_sha256, item_order, "
                "winner, raw, parse_ok, price_usd, latency_s, attempts, input_tokens, output_tokens, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, judge_id, model, version, template_sha256, order, verdict.winner, verdict.raw,
                 int(verdict.parse_ok), verdict.price, float(verdict.latency), int(verdict.attempts),
                 verdict.input_tokens, verdict.output_tokens, now))

    def __len__(self) -> int:
        """Number of cached verdicts."""
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def count(self, judge_id: str | None = None) -> int:
        """Number of cached verdicts, of one judge id when given."""
        if judge_id is None:
            return len(self)
        with self._lock:
            return int(self._connection().execute(
                "SELECT COUNT(*) FROM verdicts WHERE judge_id = ?", (judge_id,)).fetchone()[0])

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "VerdictCache":
        """Use as a context manager that closes the cache on exit."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close the cache."""
        self.close()
