"""Where raw data, built editions and caches live.

Raw data is found in this documented order:
1. the ``--data-dir`` flag (passed in as ``explicit``),
2. the ``OODPL_DATA`` environment variable,
3. ``../shared/data`` relative to the repository (source checkouts only).

Caches (built editions, converted models, reference samples, gold reward models) live under
``OODPL_CACHE`` or ``~/.cache/oodpl``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent


def find_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Return the raw-data folder, searching flag, ``OODPL_DATA``, then ``../shared/data``."""
    candidates: list[tuple[str, Path]] = []
    if explicit:
        candidates.append(("--data-dir", Path(explicit)))
    elif os.environ.get("OODPL_DATA"):
        candidates.append(("OODPL_DATA", Path(os.environ["OODPL_DATA"])))
    else:
        candidates.append(("../shared/data", REPO_ROOT.parent / "shared" / "data"))
    origin, path = candidates[0]
    if path.is_dir():
        return path.resolve()
    if origin == "../shared/data":
        raise DataError(
            "No raw data found: pass --data-dir DIR or set OODPL_DATA to the folder holding "
            "stackexchange/ and amazon/ (looked for ../shared/data beside the repository)."
        )
    raise DataError(f"Raw data folder given by {origin} does not exist: {path}")


def cache_dir() -> Path:
    """Return (and create) the cache root: ``OODPL_CACHE`` or ``~/.cache/oodpl``."""
    root = Path(os.environ.get("OODPL_CACHE") or Path.home() / ".cache" / "oodpl")
    root.mkdir(parents=True, exist_ok=True)
    return root


def training_device_key(device) -> dict:
    """Cache-key fields naming where a cached model was trained: ``{}`` on the CPU (keys made before
    GPUs were supported stay valid), ``{"device": "cuda"}`` etc. elsewhere, since a model trained
    there differs from a CPU-trained one in rounding."""
    kind = device.type if hasattr(device, "type") else str(device).split(":")[0]
    return {} if kind == "cpu" else {"device": kind}


def runs_dir() -> Path:
    """Default parent folder for run directories: ``OODPL_RUNS`` or ``./runs``."""
    return Path(os.environ.get("OODPL_RUNS") or "runs")
