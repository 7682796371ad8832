"""Data: raw-dump importers, deterministic splits, edition build and loading."""
