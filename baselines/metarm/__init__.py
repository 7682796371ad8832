"""The ``metarm`` solver: the meta-learned reward model of SPEC section 4.

Public API: :class:`MetaRMSolver` (registered as ``metarm``), :class:`MetaRMConfig`,
:func:`meta_train`, the hypergradients in :mod:`baselines.metarm.hypergrad`, the meta-test
:func:`weighted_meta_test` (shared with ``rwr``) and :func:`plot_curves`.
"""

from .config import MetaRMConfig
from .metatest import WeightedUpdate, weighted_meta_test
from .plots import plot_curves
from .solver import MetaRMSolver, meta_train

__all__ = ["MetaRMConfig", "MetaRMSolver", "WeightedUpdate", "meta_train", "plot_curves", "weighted_meta_test"]
