"""The schema of ``results.json`` (versioned, pydantic).

A run directory holds::

    config.json             resolved run config (method config included)
    manifest.json           unit states for resume (see runner.py)
    results.json            this schema
    samples/<domain>.pairs.jsonl        per-pair log-probs, margins and outcomes (ids and hashes, no source text)
    samples/<domain>.generations.jsonl  generations with gold rewards, log-probs and judge verdicts
    solver/<fold>/          the solver's checkpoint for each fold (reused on resume)

Every metric is a ``MetricValue``. Every domain is tagged with its task, fold and role
(``source`` for in-distribution evaluation on source test pairs, ``held_out`` otherwise).
Aggregates: ``held_out`` is the macro average over held-out domains (each domain counts once),
``in_distribution`` the macro average over source-role evaluations, ``gap`` = in − held.
Bump ``SCHEMA_VERSION`` on any incompatible change; ``oodpl validate`` refuses unknown versions.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0"


class MetricValue(BaseModel):
    """One metric: value with a 95% CI, the number of units it is computed from, or not applicable."""

    model_config = ConfigDict(extra="allow")

    value: float | None = Field(None, description="point estimate; None when not applicable or empty")
    ci_low: float | None = Field(None, description="lower end of the 95% CI")
    ci_high: float | None = Field(None, description="upper end of the 95% CI")
    n: int = Field(0, description="number of pairs / prompts / domains it is computed from")
    applicable: bool = Field(True, description="False: the metric does not apply to this method")
    ci_method: str | None = Field(None, description="bootstrap, wilson, ...")
    reason: str | None = Field(None, description="why not applicable")


class SampleFile(BaseModel):
    """A per-sample file of a domain, relative to the run directory, with its sha256."""

    path: str
    sha256: str
    rows: int


class DomainResult(BaseModel):
    """Metrics of one domain in one role."""

    domain: str
    task: str
    fold: str
    role: Literal["source", "held_out"]
    metrics: dict[str, MetricValue]
    n_test_pairs: int
    n_eval_prompts: int = 0
    samples: dict[str, SampleFile] = Field(default_factory=dict)
    wall_time_s: float = 0.0


class ModelInfo(BaseModel):
    """A resolved model: the id as given, where it came from and a revision fingerprint."""

    model_id: str
    revision: str
    source: str


class Aggregates(BaseModel):
    """Macro averages over held-out domains, in-distribution averages, and their gap."""

    held_out: dict[str, MetricValue] = Field(default_factory=dict)
    in_distribution: dict[str, MetricValue] = Field(default_factory=dict)
    gap: dict[str, float | None] = Field(default_factory=dict)


class RunResults(BaseModel):
    """The whole ``results.json`` of a run."""

    model_config = ConfigDict(extra="forbid")

    schema_version: str = SCHEMA_VERSION
    suite_version: str
    task: str
    edition: str
    data_version: str
    data_hash: str = Field(description="sha256 prefix of the edition manifest")
    profile: str
    reduced: bool = Field(description="True for subset profiles (smoke): never ranked beside full runs")
    method: str
    method_config: dict[str, Any]
    seed: int
    models: dict[str, ModelInfo]
    judge: str | None = None
    protocol: dict[str, Any] = Field(description="truncation, decoding, sizes used")
    package_versions: dict[str, str]
    git_commit: str | None
    device: str
    phase_times_s: dict[str, float]
    wall_time_s: float
    created_at: str
    domains: list[DomainResult]
    aggregates: Aggregates

    def domain(self, name: str, role: str = "held_out") -> DomainResult:
        """The result of ``name`` in ``role``."""
        for d in self.domains:
            if d.domain == name and d.role == role:
                return d
        raise KeyError(f"{name} ({role})")


def results_json_schema() -> dict:
    """The JSON Schema of results.json (documentation and external validators)."""
    return RunResults.model_json_schema()
