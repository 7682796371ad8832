"""ood-pl-bench: a benchmark suite for out-of-distribution preference learning of language models."""

__version__ = "0.1.0"
