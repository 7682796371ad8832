"""The ``rwr`` baseline: the Bradley-Terry reward model plus exactly metarm's meta-test."""

from .solver import RWRConfig, RWRSolver

__all__ = ["RWRConfig", "RWRSolver"]
