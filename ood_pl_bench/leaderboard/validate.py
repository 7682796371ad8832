"""``oodpl validate``: does every number of a results file follow from its per-sample files?

:func:`validate` takes a run directory, a submission folder, or a ``results.json`` /
``summary.json`` file and returns a :class:`Report` listing every problem, one line each. It never
raises on bad input. It checks, in order:

1. the file is strict JSON (no NaN or infinities), has this suite's ``schema_version`` and matches
   the ``results.json`` schema (:class:`ood_pl_bench.results.RunResults`, strict types), and every
   metric is well formed (:func:`ood_pl_bench.metrics.schema.check_metric`);
2. the task, profile and data edition are known; ``edition``, ``data_version`` and ``data_hash``
   (the sha256 prefix of the edition manifest) match the built edition; ``reduced`` and the
   ``protocol`` block (truncation, decoding, sample counts, folds) match the profile and task;
3. all 10 held-out domains are present once each with their fold, and source (in-distribution)
   evaluations, if any, cover exactly the folds' source domains;
4. every sample file exists inside the folder, is not truncated, has its recorded sha256 (of the
   JSONL bytes, decompressed for ``*.gz``) and row count, and parses as JSON objects;
5. pairs are exactly the edition's test pairs the profile scores, in the edition's order, each
   ``pair_hash`` equal to the edition item's; generations cover the profile's evaluation prompts,
   ``k`` samples each, in order, with matching ``prompt_hash``; judgement rows match the
   generations they judge (prompt, sample, text hashes and lengths);
6. every per-row derived number follows from the row (margins, outcomes, ``kl``, judge outcomes);
7. every per-domain metric is recomputed with :func:`ood_pl_bench.protocol.pair_metrics`,
   :func:`~ood_pl_bench.protocol.generation_metrics` and
   :func:`ood_pl_bench.judges.win_rate.judgement_metrics`, and every aggregate and CI with
   :func:`ood_pl_bench.protocol.aggregate` and :func:`~ood_pl_bench.judges.win_rate.aggregate_judgements`,
   and compared with the stored ones (relative tolerance 1e-9);
8. the judge named in ``judge`` has win-rate columns; ``config.json`` agrees with the results
   (method, task, edition, profile, seed, method config) and ``manifest.json`` records every
   evaluated domain as done.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import OodplError, SubmissionError
from . import store

REL_TOL = 1e-9
ABS_TOL = 1e-12
MAX_SCHEMA_MESSAGES = 25
SHOW_ROWS = 3


@dataclass
class Report:
    """The outcome of :func:`validate`: the problems found (empty when valid) and what was checked."""

    path: Path
    kind: str = "unknown"  # "run", "submission" or "unknown"
    problems: list[str] = field(default_factory=list)
    results: dict | None = None
    checked: dict[str, int] = field(default_factory=lambda: {"metrics": 0, "sample_files": 0, "rows": 0})

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def add(self, message: str) -> None:
        """Record one problem (one line)."""
        line = " ".join(str(message).split())
        if len(line) > 600:
            line = line[:597] + "..."
        if line not in self.problems:
            self.problems.append(line)

    def message(self) -> str:
        """The user-facing text: a headline, then one line per problem."""
        if self.ok:
            return self.summary_line()
        n = len(self.problems)
        head = f"{self.path} does not validate ({n} problem{'s' if n != 1 else ''}):"
        return "\n".join([head] + [f"  - {p}" for p in self.problems])

    def summary_line(self) -> str:
        """One line describing a valid result (what was recomputed)."""
        r = self.results or {}
        c = self.checked
        return (f"{self.path}: valid {self.kind} of {r.get('method')} on {r.get('task')} "
                f"({r.get('edition')}, profile {r.get('profile')}, seed {r.get('seed')}): "
                f"{c['metrics']} metrics recomputed from {c['rows']} rows in {c['sample_files']} sample files")

    def raise_if_invalid(self) -> None:
        """Raise :class:`SubmissionError` (exit code 5) with :meth:`message` when there are problems."""
        if not self.ok:
            raise SubmissionError(self.message())

    def to_dict(self) -> dict:
        """JSON-ready form (path, kind, ok, problems, checked)."""
        return {"path": str(self.path), "kind": self.kind, "ok": self.ok, "problems": list(self.problems),
                "checked": dict(self.checked)}


class _Stop(Exception):
    """Further checks make no sense (the input is not a results file)."""


_EDITIONS: dict[tuple[str, str], Any] = {}


def _edition(name: str, data_dir: str | None) -> Any:
    """The built edition (loaded once per process and manifest)."""
    from ..data.edition import load_edition

    ed = load_edition(name, data_dir=data_dir, build=False)
    return _EDITIONS.setdefault((str(ed.root), ed.data_hash), ed)


def validate(path: str | Path, *, data_dir: str | None = None) -> Report:
    """Validate a run directory, submission folder or results/summary file; never raises on bad input.

    Args:
        path: a run directory (``results.json``), a submission folder (``summary.json``) or either file.
        data_dir: raw-data folder, used only if the edition must be built to check against it.

    Returns:
        A :class:`Report`; ``report.ok`` is True when every check passed.
    """
    report = Report(path=Path(path))
    try:
        _Validator(report, data_dir).run()
    except _Stop:
        pass
    except RecursionError:
        report.add("the results are nested too deeply to check")
    except Exception as exc:  # a check that trips over an input nobody anticipated: refuse, never crash
        report.add(f"validation could not finish: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    return report


# --- small helpers ------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _close(a: Any, b: Any) -> bool:
    """Equal, with floats compared at REL_TOL (and ints/floats interchangeable)."""
    if _is_number(a) and _is_number(b):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _short(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    text = json.dumps(x, sort_keys=True, default=str) if not isinstance(x, str) else repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def metric_differences(stored: Any, recomputed: dict) -> list[str]:
    """Keys where a stored metric dict differs from the recomputed one, as ``key: stored != recomputed``."""
    if not isinstance(stored, dict):
        return [f"stored metric is a {type(stored).__name__}, not an object"]
    out = []
    for key in sorted(set(stored) | set(recomputed)):
        if key not in recomputed:
            out.append(f"{key}: unexpected key (value {_short(stored[key])})")
        elif key not in stored:
            out.append(f"{key}: missing (recomputed {_short(recomputed[key])})")
        elif not _close(stored[key], recomputed[key]):
            out.append(f"{key}: stored {_short(stored[key])} != recomputed {_short(recomputed[key])}")
    return out


def _jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o)))


def expected_protocol(task: Any) -> dict:
    """The ``protocol`` block a run of ``task`` (already adapted to its profile) records."""
    from ..protocol import protocol_record

    return _jsonable(protocol_record(task))


class _RowIssues:
    """Collects rows failing one check so that the check gives one message, with a few examples."""

    def __init__(self) -> None:
        self.issues: dict[str, list[str]] = {}

    def add(self, check: str, example: str) -> None:
        """Record one failing row under a check."""
        self.issues.setdefault(check, []).append(example)

    def report(self, report: Report, prefix: str) -> None:
        """Add one problem per check to ``report``, with a few example rows."""
        for check, examples in self.issues.items():
            shown = "; ".join(examples[:SHOW_ROWS]) + (f"; ... ({len(examples)} rows)" if len(examples) > SHOW_ROWS else "")
            report.add(f"{prefix}: {check} ({shown})")


def _sample_key(row: dict) -> tuple[str, int] | None:
    """``(prompt_id, sample)`` of a generation row, or None when they have the wrong types."""
    pid, k = row.get("prompt_id"), row.get("sample")
    if isinstance(pid, str) and isinstance(k, int) and not isinstance(k, bool):
        return pid, k
    return None


def _outcome(diff: float) -> float:
    return 1.0 if diff > 0 else 0.5 if diff == 0 else 0.0


# --- the checks ---------------------------------------------------------------------------------


class _Validator:
    """One validation pass over one results file (see the module docstring for the order)."""

    def __init__(self, report: Report, data_dir: str | None):
        self.report = report
        self.data_dir = data_dir
        self.r: dict = {}
        self.task = None
        self.profile = None
        self.edition = None
        self.root = Path(".")
        # (role, domain) -> kind -> rows, for the aggregates
        self.rows: dict[tuple[str, str], dict[str, list[dict]]] = {}
        self.recomputed: dict[tuple[str, str], dict[str, dict]] = {}
        self.complete = True  # False once some domain could not be recomputed

    def add(self, message: str) -> None:
        """Record one problem."""
        self.report.add(message)

    def run(self) -> None:
        """Run every check in order (raises _Stop when the rest make no sense)."""
        self.load()
        self.check_schema()
        self.check_context()
        entries = self.check_domains()
        for entry in entries:
            self.check_domain(entry)
        self.check_aggregates(entries)
        self.check_judge()
        self.check_config_and_manifest()

    # 1. file and schema

    def load(self) -> None:
        """1. Find and strictly parse the results file."""
        try:
            located = store.locate(self.report.path)
        except store.ReadError as exc:
            self.add(str(exc))
            raise _Stop
        self.root = located.root
        self.report.kind = located.kind
        try:
            data = store.read_json_strict(located.summary)
        except store.ReadError as exc:
            self.add(str(exc))
            raise _Stop
        if not isinstance(data, dict):
            self.add(f"{located.summary.name} holds a JSON {type(data).__name__}, not a results object")
            raise _Stop
        self.r = data
        self.summary_name = located.summary.name

    def check_schema(self) -> None:
        """1. Schema version, strict schema, well-formed metrics."""
        from pydantic import ValidationError

        from ..metrics.schema import check_metric
        from ..results import SCHEMA_VERSION, RunResults

        version = self.r.get("schema_version")
        if version != SCHEMA_VERSION:
            self.add(f"{self.summary_name}: schema_version {_short(version)} is not supported "
                     f"(this oodpl reads {SCHEMA_VERSION}); rerun with a matching oodpl version")
            raise _Stop
        try:
            RunResults.model_validate(self.r, strict=True)
        except ValidationError as exc:
            errors = exc.errors()
            for err in errors[:MAX_SCHEMA_MESSAGES]:
                where = ".".join(str(p) for p in err["loc"]) or "(top level)"
                self.add(f"{self.summary_name}: {where}: {err['msg']}")
            if len(errors) > MAX_SCHEMA_MESSAGES:
                self.add(f"{self.summary_name}: {len(errors) - MAX_SCHEMA_MESSAGES} more schema problems")
            raise _Stop
        self.report.results = self.r
        # Keys the schema lets a file omit get their schema defaults, so the checks below see them.
        self.r.setdefault("judge", None)
        for block in ("held_out", "in_distribution", "gap"):
            self.r["aggregates"].setdefault(block, {})
        for d in self.r["domains"]:
            d.setdefault("n_eval_prompts", 0)
            d.setdefault("samples", {})
        bad = False
        for i, d in enumerate(self.r["domains"]):
            for name, m in d["metrics"].items():
                try:
                    check_metric(m)
                except ValueError as exc:
                    self.add(f"{d['domain']} ({d['role']}): metric {name}: {exc}")
                    bad = True
        for block in ("held_out", "in_distribution"):
            for name, m in self.r["aggregates"][block].items():
                try:
                    check_metric(m)
                except ValueError as exc:
                    self.add(f"aggregates.{block}.{name}: {exc}")
                    bad = True
        if bad:
            raise _Stop

    # 2. task, profile, edition, protocol

    def check_context(self) -> None:
        """2. Task, profile, protocol and the built edition."""
        from ..profiles import get_profile
        from ..tasks import get_task

        r = self.r
        try:
            self.profile = get_profile(r["profile"])
            self.task = self.profile.apply(get_task(r["task"], r["edition"]))
        except OodplError as exc:
            self.add(exc.message)
            raise _Stop
        if self.profile.reduced and not r["reduced"]:
            self.add(f"reduced is false, but profile {r['profile']!r} scores a subset of the evaluation sets "
                     "(reduced runs are never ranked beside full runs)")
        expected = expected_protocol(self.task)
        for key in sorted(set(expected) | set(r["protocol"])):
            if key not in expected:
                self.add(f"protocol.{key}: not part of the {r['task']} protocol")
            elif not _close(r["protocol"].get(key), expected[key]):
                self.add(f"protocol.{key} is {_short(r['protocol'].get(key))}, but task {r['task']} with profile "
                         f"{r['profile']!r} uses {_short(expected[key])}")
        try:
            self.edition = _edition(r["edition"], self.data_dir)
        except OodplError as exc:
            self.add(f"cannot check against edition {r['edition']!r} ({exc.message}); build it with "
                     f"`oodpl data build --edition {r['edition']}` and validate again")
            self.complete = False
            return
        if r["data_hash"] != self.edition.data_hash:
            self.add(f"data_hash {r['data_hash']} does not match the built edition {r['edition']} "
                     f"({self.edition.data_hash}): the run used other data")
        if r["data_version"] != str(self.edition.version):
            self.add(f"data_version {r['data_version']!r} does not match the built edition (v{self.edition.version})")
        if r["task"] not in self.edition.tasks:
            self.add(f"task {r['task']!r} is not in the built edition {r['edition']}")

    # 3. the domains present

    def check_domains(self) -> list[dict]:
        """3. Every held-out domain once, with its fold; source domains complete. Returns the entries to check."""
        task = self.task
        seen: dict[tuple[str, str], int] = {}
        keep = []
        source_expected = {d: f.name for f in task.folds for d in f.source}
        for d in self.r["domains"]:
            key = (d["domain"], d["role"])
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                if seen[key] == 2:
                    self.add(f"{d['domain']} ({d['role']}) appears more than once in domains")
                continue
            if d["task"] != self.r["task"]:
                self.add(f"{d['domain']} ({d['role']}): task is {d['task']!r}, the run's task is {self.r['task']!r}")
            if d["role"] == "held_out":
                if d["domain"] not in task.held_out_domains:
                    self.add(f"{d['domain']} is not a held-out domain of {task.name} ({task.edition})")
                    continue
                fold = task.fold_of(d["domain"]).name
            else:
                if d["domain"] not in source_expected:
                    self.add(f"{d['domain']} is not a source domain of {task.name} ({task.edition})")
                    continue
                fold = source_expected[d["domain"]]
            if d["fold"] != fold:
                self.add(f"{d['domain']} ({d['role']}): fold is {d['fold']!r}, but it belongs to fold {fold!r}")
            keep.append(d)
        held = {d["domain"] for d in keep if d["role"] == "held_out"}
        missing = [d for d in task.held_out_domains if d not in held]
        if missing:
            self.add(f"{len(missing)} of the {len(task.held_out_domains)} held-out domains of {task.name} are "
                     f"missing: {', '.join(missing)} (a leaderboard row needs all of them)")
            self.complete = False
        sources = {d["domain"] for d in keep if d["role"] == "source"}
        if sources and sources != set(source_expected):
            lacking = [d for d in source_expected if d not in sources]
            self.add(f"in-distribution evaluation lacks source domains: {', '.join(lacking)}")
            self.complete = False
        return keep

    # 4-7. one domain

    def check_domain(self, d: dict) -> None:
        """4-7. One domain: its sample files, rows and recomputed metrics."""
        role, domain = d["role"], d["domain"]
        prefix = f"{domain} ({role})"
        samples = d["samples"]
        from ..judges.win_rate import JUDGEMENTS_KIND_PREFIX, judge_ids_of, win_rate_key

        judges = judge_ids_of(samples)
        required = ["pairs"] + (["generations", "reference_generations"] if role == "held_out" else [])
        allowed = set(required) | {k for k in samples if k.startswith(JUDGEMENTS_KIND_PREFIX) and k.endswith("]")}
        for kind in required:
            if kind not in samples:
                self.add(f"{prefix}: no {kind} sample file is listed")
        for kind in samples:
            if kind not in allowed:
                self.add(f"{prefix}: unexpected sample file kind {kind!r}")
        if role == "source" and judges:
            self.add(f"{prefix}: judgement files belong to held-out domains only")
        rows: dict[str, list[dict]] = {}
        for kind in sorted(allowed & set(samples)):
            loaded = self.read_samples(prefix, samples[kind])
            if loaded is not None:
                rows[kind] = loaded
        metrics = d["metrics"]
        for jid in judges:
            if win_rate_key(jid) not in metrics:
                self.add(f"{prefix}: judgement file of {jid} but no {win_rate_key(jid)} metric")
        for name in metrics:
            if name.startswith("win_rate[") and f"{JUDGEMENTS_KIND_PREFIX}{name[len('win_rate['):]}" not in samples:
                self.add(f"{prefix}: metric {name} has no judgement file to recompute it from")
        if any(k not in rows for k in required):
            self.complete = False
            return
        recomputed: dict[str, dict] = {}
        ok = self.check_pairs(prefix, d, rows["pairs"], recomputed)
        if role == "held_out":
            ok = self.check_generations(prefix, d, rows, recomputed) and ok
            for jid in judges:
                kind = f"{JUDGEMENTS_KIND_PREFIX}{jid}]"
                if kind in rows:
                    ok = self.check_judgements(prefix, d, jid, rows[kind], rows, recomputed) and ok
                else:
                    ok = False
        elif d["n_eval_prompts"] != 0:
            self.add(f"{prefix}: n_eval_prompts is {d['n_eval_prompts']}, but source domains have no prompts")
        for name in sorted(set(metrics) | set(recomputed)):
            if name not in recomputed:
                if ok:
                    self.add(f"{prefix}: metric {name} is not one the protocol computes")
                continue
            if name not in metrics:
                self.add(f"{prefix}: metric {name} is missing (recomputed {_short(recomputed[name].get('value'))})")
                continue
            self.report.checked["metrics"] += 1
            diffs = metric_differences(metrics[name], recomputed[name])
            if diffs:
                self.add(f"{prefix}: {name} does not follow from the sample files: {'; '.join(diffs[:4])}"
                         + (f"; and {len(diffs) - 4} more keys" if len(diffs) > 4 else ""))
        if not ok:
            self.complete = False
        self.rows[(role, domain)] = rows
        self.recomputed[(role, domain)] = recomputed

    def read_samples(self, prefix: str, info: dict) -> list[dict] | None:
        """4. Read one sample file: path, gzip, sha256, row count, JSON rows."""
        rel = info["path"]
        try:
            path = store.safe_relative(self.root, rel, f"{prefix} sample file")
            data = store.read_sample_bytes(path, f"{prefix}: sample file {rel}")
        except store.ReadError as exc:
            self.add(str(exc))
            return None
        self.report.checked["sample_files"] += 1
        if store.sha256_bytes(data) != info["sha256"]:
            self.add(f"{prefix}: sample file {rel} does not match its recorded sha256 "
                     "(it was edited or replaced after the run)")
        try:
            rows = store.parse_jsonl_strict(data, f"{prefix}: sample file {rel}")
        except store.ReadError as exc:
            self.add(str(exc))
            return None
        if len(rows) != info["rows"]:
            self.add(f"{prefix}: sample file {rel} has {len(rows)} rows, results record {info['rows']}")
        self.report.checked["rows"] += len(rows)
        return rows

    def _fields(self, prefix: str, what: str, rows: list[dict], numbers: Iterable[str],
                strings: Iterable[str] = (), ints: Iterable[str] = ()) -> bool:
        """Every row has the given fields with the right types (one message per field)."""
        ok = True
        for key, test, kind in ([(k, _is_number, "a finite number") for k in numbers]
                                + [(k, lambda v: isinstance(v, str), "a string") for k in strings]
                                + [(k, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer") for k in ints]):
            bad = [i for i, row in enumerate(rows) if not test(row.get(key))]
            if bad:
                ok = False
                ex = ", ".join(f"row {i + 1}: {_short(rows[i].get(key, '<missing>'))}" for i in bad[:SHOW_ROWS])
                self.add(f"{prefix}: {what} rows need {key!r} as {kind} ({len(bad)} rows, {ex})")
        return ok

    def check_pairs(self, prefix: str, d: dict, rows: list[dict], recomputed: dict) -> bool:
        """5-7. Pair rows against the edition and their log-probs; recompute the pair metrics."""
        from .. import protocol
        from ..evaluation import pair_hash

        metrics = d["metrics"]
        explicit = metrics.get("pl_accuracy", {}).get("applicable", True)
        has_rm = metrics.get("rm_accuracy", {}).get("applicable", False)
        numbers = ["ref_chosen", "ref_rejected"]
        if explicit:
            numbers += ["policy_chosen", "policy_rejected", "margin", "outcome", "likelihood_outcome"]
        if has_rm:
            numbers += ["rm_chosen", "rm_rejected", "rm_outcome"]
        ok = self._fields(prefix, "pairs", rows, numbers, strings=["pair_id", "item_id", "pair_hash"])
        if not explicit and any("policy_chosen" in row for row in rows):
            self.add(f"{prefix}: pl_accuracy is marked not applicable, yet the pairs carry policy log-probs")
        if d["n_test_pairs"] != len(rows):
            self.add(f"{prefix}: n_test_pairs is {d['n_test_pairs']}, but the pairs file has {len(rows)} rows")
        if self.edition is not None and all(isinstance(r.get("pair_id"), str) for r in rows):
            expected = self.profile.limit_test_pairs(self.edition.pairs(self.task.name, d["domain"], "test"))
            self.check_ids(prefix, "pairs", [r["pair_id"] for r in rows], [p["pair_id"] for p in expected],
                           f"test pairs of {self.task.name}/{d['domain']}")
            by_id = {p["pair_id"]: p for p in expected}
            issues = _RowIssues()
            for i, row in enumerate(rows):
                item = by_id.get(row.get("pair_id"))
                if item is None:
                    continue
                if row.get("pair_hash") != pair_hash(item):
                    issues.add("pair_hash differs from the edition's item (edited or swapped pairs)", f"row {i + 1}")
                if row.get("item_id") != item["item_id"]:
                    issues.add("item_id differs from the edition's", f"row {i + 1}")
            issues.report(self.report, prefix)
        if not ok:
            return False
        issues = _RowIssues()
        for i, row in enumerate(rows):
            tag = f"row {i + 1} {row['pair_id']}"
            if explicit:
                margin = (row["policy_chosen"] - row["ref_chosen"]) - (row["policy_rejected"] - row["ref_rejected"])
                if not _close(row["margin"], margin):
                    issues.add("margin does not follow from the log-probs", f"{tag}: {row['margin']:.6g} != {margin:.6g}")
                if row["outcome"] != _outcome(margin):
                    issues.add("outcome does not follow from the implicit margin",
                               f"{tag}: stored {row['outcome']}, recomputed {_outcome(margin)}")
                lik = _outcome(row["policy_chosen"] - row["policy_rejected"])
                if row["likelihood_outcome"] != lik:
                    issues.add("likelihood_outcome does not follow from the policy log-probs",
                               f"{tag}: stored {row['likelihood_outcome']}, recomputed {lik}")
            if has_rm:
                rm = _outcome(row["rm_chosen"] - row["rm_rejected"])
                if row["rm_outcome"] != rm:
                    issues.add("rm_outcome does not follow from the reward-model scores",
                               f"{tag}: stored {row['rm_outcome']}, recomputed {rm}")
        issues.report(self.report, f"{prefix}: pairs")
        beta = self.r["method_config"].get("beta", 1.0)
        if not _is_number(beta) or beta <= 0:
            self.add(f"method_config.beta is {_short(beta)}, not a positive number")
            return False
        try:
            recomputed.update(protocol.pair_metrics(rows, explicit_likelihood=explicit, has_reward_model=has_rm,
                                                    beta=float(beta)))
        except (ValueError, KeyError, TypeError) as exc:
            self.add(f"{prefix}: pair metrics cannot be recomputed: {exc}")
            return False
        return True

    def check_ids(self, prefix: str, what: str, got: list[str], expected: list[str], source: str) -> bool:
        """``got`` must be exactly ``expected`` (set, multiplicity and order)."""
        if got == expected:
            return True
        exp = set(expected)
        unknown = [x for x in got if x not in exp]
        dupes = sorted({x for x in got if got.count(x) > 1})
        missing = [x for x in expected if x not in set(got)]
        if unknown:
            self.add(f"{prefix}: {len(unknown)} {what} ids are not among the {source} the {self.profile.name} "
                     f"profile scores: {', '.join(map(str, unknown[:SHOW_ROWS]))}")
        if dupes:
            self.add(f"{prefix}: {what} ids appear more than once: {', '.join(map(str, dupes[:SHOW_ROWS]))}")
        if missing:
            self.add(f"{prefix}: {len(missing)} of the {len(expected)} {source} are missing from the {what}: "
                     f"{', '.join(map(str, missing[:SHOW_ROWS]))}")
        if not (unknown or dupes or missing):
            first = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
            self.add(f"{prefix}: {what} rows are reordered (row {first + 1} is {got[first]}, the edition's order "
                     f"has {expected[first]})")
        return False

    def check_generation_rows(self, prefix: str, domain: str, kind: str, rows: list[dict], explicit: bool) -> bool:
        """5-6. Generation rows against the edition's prompts and their log-probs."""
        from ..io import sha256_text

        numbers = ["gold_reward"] + (["policy_logprob", "ref_logprob", "kl"] if explicit else [])
        ok = self._fields(prefix, kind, rows, numbers, strings=["prompt_id", "prompt_hash", "text"], ints=["sample"])
        if not ok:
            return False
        if self.edition is not None:
            prompts = self.profile.limit_eval_prompts(self.edition.prompts(self.task.name, domain, "prompts"))
            k = self.task.samples_per_eval_prompt
            expected = [f"{p['prompt_id']}#{s}" for p in prompts for s in range(k)]
            got = [f"{r['prompt_id']}#{r['sample']}" for r in rows]
            self.check_ids(prefix, kind, got, expected,
                           f"evaluation prompts x {k} samples of {self.task.name}/{domain}")
            text = {p["prompt_id"]: p["prompt"] for p in prompts}
            bad = [i for i, r in enumerate(rows) if r["prompt_id"] in text
                   and r["prompt_hash"] != sha256_text(text[r["prompt_id"]])[:16]]
            if bad:
                self.add(f"{prefix}: {kind}: prompt_hash differs from the edition's prompt in {len(bad)} rows "
                         f"(row {bad[0] + 1})")
        if explicit:
            issues = _RowIssues()
            for i, row in enumerate(rows):
                kl = row["policy_logprob"] - row["ref_logprob"]
                if not _close(row["kl"], kl):
                    issues.add("kl does not follow from the log-probs", f"row {i + 1}: {row['kl']:.6g} != {kl:.6g}")
            issues.report(self.report, f"{prefix}: {kind}")
        return True

    def check_generations(self, prefix: str, d: dict, rows: dict[str, list[dict]], recomputed: dict) -> bool:
        """5-7. Both generation files; recompute gold_reward and kl."""
        from .. import protocol

        gen = rows["generations"]
        explicit = d["metrics"].get("kl", {}).get("applicable", True)
        ok = self.check_generation_rows(prefix, d["domain"], "generations", gen, explicit)
        ref_explicit = all("ref_logprob" in r for r in rows["reference_generations"])
        ok = self.check_generation_rows(prefix, d["domain"], "reference_generations", rows["reference_generations"],
                                        ref_explicit) and ok
        if not explicit and any("policy_logprob" in r for r in gen):
            self.add(f"{prefix}: kl is marked not applicable, yet the generations carry policy log-probs")
        if not ok:
            return False
        n_prompts = len({r.get("prompt_id") for r in gen})
        if d["n_eval_prompts"] != n_prompts:
            self.add(f"{prefix}: n_eval_prompts is {d['n_eval_prompts']}, but the generations cover {n_prompts} prompts")
        try:
            recomputed.update(protocol.generation_metrics(gen, explicit_likelihood=explicit))
        except (ValueError, KeyError, TypeError) as exc:
            self.add(f"{prefix}: generation metrics cannot be recomputed: {exc}")
            return False
        return ok

    def check_judgements(self, prefix: str, d: dict, jid: str, rows: list[dict], all_rows: dict,
                         recomputed: dict) -> bool:
        """5-7. Judgement rows against the generations and their verdicts; recompute the judge's columns."""
        from ..io import sha256_text
        from ..judges.base import POLICY_FIRST, REFERENCE_FIRST
        from ..judges.win_rate import judgement_metrics, judgement_outcome, side_preference, win_rate_key

        what = f"judgements of {jid}"
        ok = self._fields(prefix, what, rows, ["policy_length", "reference_length"],
                          strings=["prompt_id", "policy_hash", "reference_hash", "status"],
                          ints=["sample", "reference_sample"])
        bad_verdicts = [i for i, r in enumerate(rows) if not (isinstance(r.get(POLICY_FIRST), dict)
                                                              and isinstance(r.get(REFERENCE_FIRST), dict))]
        if bad_verdicts:
            self.add(f"{prefix}: {what}: rows need {POLICY_FIRST!r} and {REFERENCE_FIRST!r} verdict objects "
                     f"({len(bad_verdicts)} rows, row {bad_verdicts[0] + 1})")
            ok = False
        stored = d["metrics"].get(win_rate_key(jid), {})
        policy = stored.get("unparseable_policy", "tie")
        if policy not in ("tie", "exclude"):
            self.add(f"{prefix}: {win_rate_key(jid)}.unparseable_policy is {_short(policy)}, not 'tie' or 'exclude'")
            return False
        if not ok:
            return False
        gen = {_sample_key(r): r for r in all_rows.get("generations", [])}
        ref = {_sample_key(r): r for r in all_rows.get("reference_generations", [])}
        expected_keys = [_sample_key(r) for r in all_rows.get("generations", [])]
        got_keys = [(r["prompt_id"], r["sample"]) for r in rows]
        if got_keys != expected_keys:
            self.add(f"{prefix}: {what}: rows do not judge the generations one by one in order "
                     f"({len(got_keys)} judgement rows for {len(expected_keys)} generations)")
        issues = _RowIssues()
        for i, row in enumerate(rows):
            tag = f"row {i + 1}"
            try:
                outcome, status, _ = judgement_outcome(row, unparseable=policy)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                issues.add("verdicts cannot be read", f"{tag}: {exc}")
                continue
            prefs = (side_preference(row[POLICY_FIRST].get("winner"), POLICY_FIRST),
                     side_preference(row[REFERENCE_FIRST].get("winner"), REFERENCE_FIRST))
            if (row.get("preference_policy_first"), row.get("preference_reference_first")) != prefs \
                    or any(isinstance(v, bool) for v in (row.get("preference_policy_first"),
                                                         row.get("preference_reference_first"))):
                issues.add("preferences do not follow from the verdicts", f"{tag}")
            if row.get("outcome") != outcome or row.get("status") != status or isinstance(row.get("outcome"), bool):
                issues.add("outcome does not follow from the two verdicts",
                           f"{tag}: stored {row.get('status')}/{row.get('outcome')}, recomputed {status}/{outcome}")
            if row.get("judge") != jid:
                issues.add("rows name another judge", f"{tag}: {_short(row.get('judge'))}")
            g = gen.get((row["prompt_id"], row["sample"]))
            if g is not None and isinstance(g.get("text"), str):
                if row["policy_hash"] != sha256_text(g["text"])[:16] or row["policy_length"] != len(g["text"]):
                    issues.add("policy_hash/policy_length do not match the judged generation", tag)
            rf = ref.get((row["prompt_id"], row["reference_sample"]))
            if rf is None:
                issues.add("no reference generation with that reference_sample", tag)
            elif isinstance(rf.get("text"), str):
                if row["reference_hash"] != sha256_text(rf["text"])[:16] or row["reference_length"] != len(rf["text"]):
                    issues.add("reference_hash/reference_length do not match the reference generation", tag)
        issues.report(self.report, f"{prefix}: {what}")
        if "verdicts cannot be read" in issues.issues:
            return False
        try:
            recomputed.update(judgement_metrics(jid, rows, unparseable=policy))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.add(f"{prefix}: {win_rate_key(jid)} cannot be recomputed: {exc}")
            return False
        return True

    # 7. aggregates

    def check_aggregates(self, entries: list[dict]) -> None:
        """7. Recompute aggregates and gap from the recomputed domain metrics and rows."""
        from .. import protocol
        from ..judges.win_rate import aggregate_judgements

        if not self.complete:
            return  # the domain problems already reported say why
        held = {d["domain"]: self.recomputed[(d["role"], d["domain"])] for d in entries if d["role"] == "held_out"}
        source = {d["domain"]: self.recomputed[(d["role"], d["domain"])] for d in entries if d["role"] == "source"}
        held_rows = {d: self.rows[("held_out", d)] for d in held}
        source_rows = {d: self.rows[("source", d)] for d in source}
        try:
            agg = protocol.aggregate(held, held_rows, source, source_rows)
            agg["held_out"].update(aggregate_judgements(held_rows))
        except (ValueError, KeyError, TypeError) as exc:
            self.add(f"aggregates cannot be recomputed: {exc}")
            return
        stored = self.r["aggregates"]
        for block in ("held_out", "in_distribution"):
            for name in sorted(set(stored[block]) | set(agg[block])):
                if name not in agg[block]:
                    self.add(f"aggregates.{block}.{name} is not an aggregate the protocol computes")
                elif name not in stored[block]:
                    self.add(f"aggregates.{block}.{name} is missing")
                else:
                    self.report.checked["metrics"] += 1
                    diffs = metric_differences(stored[block][name], agg[block][name])
                    if diffs:
                        self.add(f"aggregates.{block}.{name} does not follow from the sample files: "
                                 f"{'; '.join(diffs[:4])}")
        for name in sorted(set(stored["gap"]) | set(agg["gap"])):
            if name not in agg["gap"]:
                self.add(f"aggregates.gap.{name} is not a gap the protocol computes")
            elif not _close(stored["gap"].get(name), agg["gap"][name]):
                self.add(f"aggregates.gap.{name} is {_short(stored['gap'].get(name))}, "
                         f"recomputed {_short(agg['gap'][name])}")

    # 8. judge, config, manifest

    def check_judge(self) -> None:
        """8. The named judge has win-rate columns, and columns have a named judge."""
        columns = sorted(k[len("win_rate["):-1] for k in self.r["aggregates"]["held_out"] if k.startswith("win_rate["))
        judge = self.r.get("judge")
        if judge is not None and judge not in columns:
            self.add(f"judge is {judge!r}, but there is no win_rate[{judge}] column")
        if judge is None and columns:
            self.add(f"judge is null, but there are win-rate columns by {', '.join(columns)}")

    def check_config_and_manifest(self) -> None:
        """8. config.json agrees with the results; manifest.json records every domain as done."""
        r = self.r
        try:
            config = store.read_json_strict(self.root / store.CONFIG_FILE)
        except store.ReadError as exc:
            self.add(f"{exc} (the run's resolved config)")
            config = None
        if config is not None:
            run = config.get("run") if isinstance(config, dict) else None
            if not isinstance(run, dict):
                self.add("config.json has no 'run' object")
            else:
                for key in ("method", "task", "edition", "profile", "seed"):
                    if run.get(key) != r[key]:
                        self.add(f"config.json says {key} {_short(run.get(key))}, the results say {_short(r[key])}")
                if run.get("domains") not in (None, []):
                    self.add(f"config.json restricts the run to domains {_short(run.get('domains'))}")
            if isinstance(config, dict) and not _close(config.get("method_config"), r["method_config"]):
                self.add("config.json's method_config differs from the results' method_config")
        try:
            manifest = store.read_json_strict(self.root / store.MANIFEST_FILE)
        except store.ReadError as exc:
            self.add(f"{exc} (the run's record of finished units)")
            return
        units = manifest.get("units") if isinstance(manifest, dict) else None
        if not isinstance(units, dict):
            self.add("manifest.json has no 'units' object")
            return
        not_done = [f"eval:{d['role']}:{d['domain']}" for d in r["domains"]
                    if not (isinstance(units.get(f"eval:{d['role']}:{d['domain']}"), dict)
                            and units[f"eval:{d['role']}:{d['domain']}"].get("state") == "done")]
        if not_done:
            self.add(f"manifest.json does not record {len(not_done)} evaluated domains as done: "
                     f"{', '.join(not_done[:SHOW_ROWS])}")


def validate_or_raise(path: str | Path, *, data_dir: str | None = None) -> Report:
    """:func:`validate`, raising :class:`SubmissionError` with one line per problem when invalid."""
    report = validate(path, data_dir=data_dir)
    report.raise_if_invalid()
    return report


__all__ = ["Report", "validate", "validate_or_raise", "metric_differences", "expected_protocol"]
