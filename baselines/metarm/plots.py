"""Plot metarm's meta-training curves as one PNG (matplotlib, headless ``Agg`` backend)."""

from __future__ import annotations

import math
from pathlib import Path

# (curve key, panel title, y-range or None)
PANELS = (
    ("outer_loss", "outer loss ℓ_PL", None),
    ("pl_accuracy", "source PL accuracy (implicit reward)", (0.0, 1.0)),
    ("pl_likelihood_accuracy", "source PL accuracy (A > 0)", (0.0, 1.0)),
    ("rm_accuracy", "RM accuracy (outer pairs)", (0.0, 1.0)),
)


def _running_mean(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_curves(curves: dict, path: str | Path, title: str = "metarm meta-training") -> Path:
    """Write a PNG with one panel per curve (per step, with a running mean) to ``path``.

    ``curves`` maps names to per-step lists (as :meth:`MetaRMSolver.training_curves` returns);
    panels without data are drawn empty with a note. Returns the written path.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ood_pl_bench.io import atomic_path

    path = Path(path)
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), constrained_layout=True)
    for ax, (key, label, ylim) in zip(axes.flat, PANELS):
        values = [float(v) for v in curves.get(key, []) if v is not None and not math.isnan(float(v))]
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("meta step k")
        if not values:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        steps = list(range(len(values)))
        ax.plot(steps, values, marker="o", markersize=3, linewidth=1, alpha=0.6, label="per step")
        window = max(1, min(5, len(values) // 3))
        if window > 1:
            ax.plot(steps, _running_mean(values, window), linewidth=2, label=f"mean of {window}")
            ax.legend(fontsize=8)
        if ylim:
            ax.set_ylim(*ylim)
            ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
