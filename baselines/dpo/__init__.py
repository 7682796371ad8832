"""The ``dpo`` baseline: Direct Preference Optimization on the pooled source-domain pairs."""

from .solver import DPOConfig, DPOSolver, DPOStepOutput, dpo_loss

__all__ = ["DPOConfig", "DPOSolver", "DPOStepOutput", "dpo_loss"]
