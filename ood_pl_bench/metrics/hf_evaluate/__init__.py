"""Hugging Face ``evaluate`` modules shipped with the package, for use inside training loops.

Each module is a folder ``<name>/<name>.py`` beside this file, installed as package data. Load one
offline with::

    import evaluate
    from ood_pl_bench.metrics.hf_evaluate import module_path

    metric = evaluate.load(module_path("pl_accuracy"))

The module scripts import :mod:`ood_pl_bench` by absolute name (``evaluate`` copies a script into
its own cache before importing it, so relative imports would break).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UsageError

_HERE = Path(__file__).resolve().parent


def available_modules() -> list[str]:
    """Sorted names of the shipped modules (folders holding ``<name>/<name>.py``)."""
    return sorted(p.name for p in _HERE.iterdir() if p.is_dir() and (p / f"{p.name}.py").is_file())


def module_path(name: str) -> str:
    """Return the folder of the shipped ``evaluate`` module ``name``, to pass to ``evaluate.load``.

    Raises:
        UsageError: no module of that name is shipped (the message lists the ones that are).
    """
    folder = _HERE / name
    if not name or "/" in name or "\\" in name or not (folder / f"{name}.py").is_file():
        raise UsageError(
            f"no evaluate module named {name!r}; available: {', '.join(available_modules()) or 'none'}"
        )
    return str(folder)
