"""The ``reference`` solver: pi_ref unchanged, the null row of every leaderboard."""

from .solver import ReferenceConfig, ReferenceSolver

__all__ = ["ReferenceConfig", "ReferenceSolver"]
