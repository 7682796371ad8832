"""Shared fixtures: a session-wide cache for smoke runs (edition built once, tiny models made once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Tests run tiny models, whose cost is per-op overhead: one intra-op thread is several times faster
# than two fighting over a small (and often shared) machine.
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> Path:
    """A cache folder shared by every smoke-profile test of the session."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return tmp_path_factory.mktemp("oodpl-cache")


@pytest.fixture
def smoke_env(smoke_cache, monkeypatch, tmp_path):
    """Environment for a smoke run: shared cache, raw data from ../shared/data, runs in tmp_path."""
    monkeypatch.setenv("OODPL_CACHE", str(smoke_cache))
    monkeypatch.setenv("OODPL_DATA", str(SHARED_DATA))
    monkeypatch.setenv("OODPL_RUNS", str(tmp_path / "runs"))
    return tmp_path
