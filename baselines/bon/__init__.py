"""The ``bon`` baseline: best-of-n sampling from π_ref, ranked by the Bradley-Terry reward model."""

from .solver import BoNConfig, BoNSolver, best_of_n

__all__ = ["BoNConfig", "BoNSolver", "best_of_n"]
