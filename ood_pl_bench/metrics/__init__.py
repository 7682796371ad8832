"""Metrics and statistics of SPEC section 5: small pure functions over per-sample outcomes."""
