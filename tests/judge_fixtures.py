"""Fixtures and builders shared by the judge tests (imported by tests/test_judges_*.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .fake_openai_server import FakeOpenAIServer, score

API_KEY = "sk-test-oodpl-SECRET-0123456789abcdef"
SERVER_SCRIPT = Path(__file__).with_name("fake_openai_server.py")
FAST = {"timeout": 5.0, "backoff_base": 0.005, "backoff_max": 0.05, "max_attempts": 6}
"""Judge options that keep fault tests fast (tiny backoff; timeouts far above a normal request)."""


class FakeGold:
    """A gold reward model stand-in: reward = (#good - #bad) of the response, plus a revision key."""

    def __init__(self, key: str = "goldkey0123"):
        self.info = {"gold": {"key": key}}
        self.calls = 0
        self.scored = 0

    def score(self, prompts, responses, batch_size=16):
        self.calls += 1
        self.scored += len(responses)
        return np.asarray([float(score(r)) for r in responses])


@pytest.fixture
def server():
    """A fake OpenAI server in a thread, expecting ``API_KEY``; stopped after the test."""
    srv = FakeOpenAIServer(api_key=API_KEY).start()
    yield srv
    srv.stop()


@pytest.fixture
def judge_env(server, monkeypatch, tmp_path):
    """Environment pointing the openai client at ``server``, with a per-test cache folder."""
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OODPL_JUDGE_CONFIGS", raising=False)
    monkeypatch.delenv("OODPL_JUDGE_MODEL", raising=False)
    return server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """The fake server as a subprocess (so that it can be killed like a crashed server)."""

    def __init__(self, port: int, *extra: str):
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--port", str(port), "--api-key", API_KEY, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.port = int(line.split()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stats", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()

    def wait_exit(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.proc.poll()


def make_prompts(n: int, domain: str = "d") -> list[dict]:
    """``n`` prompt rows (``prompt_id``, ``prompt``)."""
    return [{"prompt_id": f"{domain}-{i}", "prompt": f"Question {i} about {domain}? {{braces}} kept"} for i in range(n)]


def generation_rows(prompts: list[dict], texts: list[str], k: int = 1) -> list[dict]:
    """Generation rows in the runner's shape for ``texts`` (``k`` samples per prompt, in order)."""
    from ood_pl_bench.io import sha256_text

    rows = []
    it = iter(texts)
    for p in prompts:
        for s in range(k):
            rows.append({"prompt_id": p["prompt_id"], "sample": s, "prompt_hash": sha256_text(p["prompt"])[:16],
                         "text": next(it), "gold_reward": 0.0})
    return rows


def scan_for(root: Path, needle: str) -> list[Path]:
    """Files under ``root`` whose bytes contain ``needle``."""
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]

