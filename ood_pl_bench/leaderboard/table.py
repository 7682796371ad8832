"""The leaderboard table: submissions ranked into statistically tied groups, per edition, task and section.

One :class:`Board` per (edition, task, section). The section is ``full`` for runs of the full
evaluation sets and ``reduced`` for subset profiles (``smoke``): reduced runs are never ranked beside
full runs. A row shows the macro held-out score with its 95% CI for each metric
(``pl_accuracy``, ``rm_accuracy``, ``gold_reward``, ``kl``), one win-rate column per judge (named;
judges never share a column), the in-distribution ``pl_accuracy`` and the gap (in − held).

Ranking. Rows are sorted by the rank metric (default ``pl_accuracy``, higher is better). Instead of
bare ranks, each row is compared with the row above by a paired bootstrap of the difference
(this row − the row above, so ≤ 0) of their macro scores on the shared per-sample units (:func:`.paired.paired_macro`); when the 95% CI of
the difference contains 0 the row joins the group of the row above, else it starts a new group
numbered by its position (competition style: ``=1, =1, 3``). Ties chain: A~B and B~C put all three in
one group even if A and C differ. When two rows' units do not pair up, the per-domain scores are
paired by domain instead (``unit: domain``). Rows without the rank metric are listed last, unranked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SubmissionError, UsageError
from . import paired
from .store import SUMMARY_FILE, LoadedRun, load_run

RANK_METRIC = "pl_accuracy"
MAIN_METRICS = ("pl_accuracy", "rm_accuracy", "gold_reward", "kl")
IN_DISTRIBUTION_METRIC = "pl_accuracy"
FORMATS = ("rich", "md", "html", "json")
SECTIONS = ("full", "reduced")
SECTION_TITLES = {
    "full": "full runs",
    "reduced": "reduced runs (subset profiles such as smoke; never ranked beside full runs)",
}


@dataclass
class Row:
    """One submission in a board: its scores, its group, and its test against the row above."""

    run: LoadedRun
    path: str
    group: int | None = None
    group_size: int = 1
    versus_above: dict | None = None

    @property
    def results(self) -> dict:
        """The submission's results (summary.json)."""
        return self.run.results

    @property
    def name(self) -> str:
        """The submission name."""
        return self.run.label

    def held_out(self, metric: str) -> dict | None:
        """The held-out macro metric dict, or None."""
        m = self.results["aggregates"]["held_out"].get(metric)
        return m if isinstance(m, dict) else None

    def in_distribution(self, metric: str) -> dict | None:
        """The in-distribution macro metric dict, or None."""
        m = self.results["aggregates"].get("in_distribution", {}).get(metric)
        return m if isinstance(m, dict) else None

    def gap(self, metric: str) -> float | None:
        """In-distribution minus held-out score of ``metric`` (None when either is missing)."""
        return self.results["aggregates"].get("gap", {}).get(metric)

    def rank_label(self) -> str:
        """``"1"``, ``"=2"`` (tied group) or ``"-"`` (not ranked)."""
        if self.group is None:
            return "-"
        return f"={self.group}" if self.group_size > 1 else str(self.group)

    def domain_scores(self, role: str = "held_out") -> dict[str, dict[str, Any]]:
        """Per-domain metric dicts of ``role``: ``{domain: {"fold": ..., "metrics": {...}}}``."""
        return {d["domain"]: {"fold": d["fold"], "metrics": d["metrics"]} for d in self.results["domains"]
                if d["role"] == role}

    def to_dict(self, columns: list[tuple[str, str]]) -> dict:
        """JSON-ready row: identity, group, shown metrics, test against the row above, per-domain values."""
        r = self.results
        return {
            "name": self.name, "path": self.path, "method": r["method"], "seed": r["seed"], "profile": r["profile"],
            "judge": r.get("judge"), "reduced": r["reduced"], "created_at": r["created_at"],
            "group": self.group, "rank": self.rank_label(), "versus_above": self.versus_above,
            "held_out": {k: self.held_out(k) for k, _ in columns if not k.startswith(("in_distribution:", "gap:"))},
            "in_distribution": {IN_DISTRIBUTION_METRIC: self.in_distribution(IN_DISTRIBUTION_METRIC)},
            "gap": {IN_DISTRIBUTION_METRIC: self.gap(IN_DISTRIBUTION_METRIC)},
            "domains": {d: {"fold": v["fold"], "metrics": {k: v["metrics"].get(k) for k, _ in columns
                                                           if k in v["metrics"]}}
                        for d, v in self.domain_scores().items()},
        }


@dataclass
class Board:
    """The ranked rows of one edition, task and section."""

    edition: str
    task: str
    section: str
    rank_metric: str
    rows: list[Row] = field(default_factory=list)

    @property
    def title(self) -> str:
        """``<edition> / <task>: <section title>``."""
        return f"{self.edition} / {self.task}: {SECTION_TITLES[self.section]}"

    @property
    def judges(self) -> list[str]:
        """Judge ids with a win-rate column in any row, sorted."""
        found = {paired.judge_of(k) for row in self.rows for k in row.results["aggregates"]["held_out"]}
        return sorted(j for j in found if j)

    @property
    def domains(self) -> list[str]:
        """The held-out domains, in the first row's order."""
        return list(self.rows[0].domain_scores()) if self.rows else []

    def columns(self) -> list[tuple[str, str]]:
        """``(key, label)`` of the score columns: main metrics, one win rate per judge, ID score, gap."""
        cols = [(m, m) for m in MAIN_METRICS]
        cols += [(f"win_rate[{j}]", f"win rate ({j})") for j in self.judges]
        cols += [(f"in_distribution:{IN_DISTRIBUTION_METRIC}", f"in-dist {IN_DISTRIBUTION_METRIC}"),
                 (f"gap:{IN_DISTRIBUTION_METRIC}", f"gap {IN_DISTRIBUTION_METRIC} (in - held)")]
        return cols

    def cell(self, row: Row, key: str) -> dict | float | None:
        """The metric dict (or gap number) behind a column of ``row``."""
        if key.startswith("in_distribution:"):
            return row.in_distribution(key.split(":", 1)[1])
        if key.startswith("gap:"):
            return row.gap(key.split(":", 1)[1])
        return row.held_out(key)

    def to_dict(self) -> dict:
        """JSON-ready board."""
        cols = self.columns()
        return {"edition": self.edition, "task": self.task, "section": self.section, "title": self.title,
                "rank_metric": self.rank_metric, "judges": self.judges, "domains": self.domains,
                "columns": [{"key": k, "label": label} for k, label in cols],
                "rows": [row.to_dict(cols) for row in self.rows]}


def load_submissions(root: str | Path = "leaderboards") -> tuple[list[tuple[str, LoadedRun]], list[str]]:
    """All submissions under ``root`` as ``(relative path, run)``, and a warning per unreadable one."""
    root = Path(root)
    found: list[tuple[str, LoadedRun]] = []
    warnings: list[str] = []
    if not root.is_dir():
        return found, warnings
    for summary in sorted(root.glob(f"*/*/*/{SUMMARY_FILE}")):
        if any(part.startswith(".") for part in summary.relative_to(root).parts):
            continue  # a submission being written or a backup
        try:
            found.append((summary.parent.relative_to(root).as_posix(), load_run(summary.parent)))
        except SubmissionError as exc:
            warnings.append(f"skipped {summary.parent}: {exc.message}")
    return found, warnings


def _value(m: Any) -> float | None:
    if isinstance(m, dict) and m.get("applicable", True) and isinstance(m.get("value"), (int, float)):
        return float(m["value"])
    return None


def _per_domain_test(a: Row, b: Row, metric: str) -> dict:
    """Paired bootstrap over domains of the per-domain scores (fallback when units do not pair)."""
    from ..metrics.stats import paired_bootstrap

    da, db = a.domain_scores(), b.domain_scores()
    common = [d for d in da if d in db]
    va = [_value(da[d]["metrics"].get(metric)) for d in common]
    vb = [_value(db[d]["metrics"].get(metric)) for d in common]
    keep = [(x, y) for x, y in zip(va, vb) if x is not None and y is not None]
    out = paired_bootstrap([x for x, _ in keep], [y for _, y in keep], n_resamples=paired.N_RESAMPLES, seed=paired.SEED)
    out.update(n_domains=len(keep), unit="domain")
    return out


def rank(rows: list[Row], metric: str) -> list[Row]:
    """Sort ``rows`` by ``metric`` (best first) and assign tied groups (see the module docstring)."""
    scored = sorted((r for r in rows if _value(r.held_out(metric)) is not None),
                    key=lambda r: (-_value(r.held_out(metric)), r.name))
    unscored = sorted((r for r in rows if _value(r.held_out(metric)) is None), key=lambda r: r.name)
    for i, row in enumerate(scored):
        if i == 0:
            row.group = 1
            continue
        above = scored[i - 1]
        try:
            test = paired.paired_macro(row.run, above.run, metric) if paired.is_supported(metric) \
                else _per_domain_test(row, above, metric)
        except SubmissionError:
            test = _per_domain_test(row, above, metric)
        test["against"] = above.name
        row.versus_above = test
        row.group = above.group if paired.tied(test) else i + 1
    sizes: dict[int, int] = {}
    for row in scored:
        sizes[row.group] = sizes.get(row.group, 0) + 1
    for row in scored:
        row.group_size = sizes[row.group]
    for row in unscored:
        row.group, row.group_size, row.versus_above = None, 1, None
    return scored + unscored


def leaderboard(root: str | Path = "leaderboards", task: str | None = None, edition: str | None = None,
                rank_metric: str = RANK_METRIC) -> list[Board]:
    """The ranked boards of the submissions under ``root`` (optionally one task and/or edition).

    Boards are ordered by edition, task, then full before reduced; a board exists only where there
    are submissions.
    """
    runs, _ = load_submissions(root)
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for rel, run in runs:
        r = run.results
        if (task and r["task"] != task) or (edition and r["edition"] != edition):
            continue
        section = "reduced" if r["reduced"] else "full"
        groups.setdefault((r["edition"], r["task"], section), []).append(Row(run, rel))
    boards = []
    for (ed, tk, section) in sorted(groups, key=lambda k: (k[0], k[1], SECTIONS.index(k[2]))):
        boards.append(Board(ed, tk, section, rank_metric, rank(groups[(ed, tk, section)], rank_metric)))
    return boards


# --- formatting ---------------------------------------------------------------------------------


def fmt_metric(m: Any, digits: int = 3) -> str:
    """``value [lo, hi]``, ``n/a`` (not applicable), or ``-`` (absent); a bare number is signed."""
    if m is None:
        return "-"
    if isinstance(m, (int, float)) and not isinstance(m, bool):
        return f"{m:+.{digits}f}"
    if not isinstance(m, dict):
        return "-"
    if not m.get("applicable", True):
        return "n/a"
    v = m.get("value")
    if not isinstance(v, (int, float)):
        return "-"
    lo, hi = m.get("ci_low"), m.get("ci_high")
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else ""
    return f"{v:.{digits}f}{ci}"


def fmt_test(test: dict | None) -> str:
    """The paired test against the row above: ``-0.012 [-0.030, 0.005] p=0.21`` (or ``-``)."""
    if not test or test.get("diff") is None:
        return "-"
    lo, hi = test.get("ci_low"), test.get("ci_high")
    ci = f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else ""
    p = f" p={test['p_value']:.3g}" if test.get("p_value") is not None else ""
    return f"{test['diff']:+.3f}{ci}{p}"


def board_header(board: Board) -> list[str]:
    """Column labels of the text tables."""
    return (["group", "submission", "method", "seed"] + [label for _, label in board.columns()]
            + [f"vs above ({board.rank_metric})"])


def board_cells(board: Board, row: Row) -> list[str]:
    """One row of the text tables."""
    return ([row.rank_label(), row.name, row.results["method"], str(row.results["seed"])]
            + [fmt_metric(board.cell(row, k)) for k, _ in board.columns()] + [fmt_test(row.versus_above)])


def to_markdown(boards: list[Board], heading: str = "###") -> str:
    """The boards as Markdown tables (one per board), or a line saying there are none."""
    if not boards:
        return "No submissions yet.\n"
    out = []
    for board in boards:
        header = board_header(board)
        out.append(f"{heading} {board.title}\n")
        out.append(f"Ranked by held-out macro `{board.rank_metric}`; `=k` marks a statistically tied group "
                   "(paired bootstrap against the row above, 95% CI of the difference contains 0).\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
        for row in board.rows:
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in board_cells(board, row)) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def to_json(boards: list[Board]) -> str:
    """The boards as indented JSON."""
    return json.dumps([b.to_dict() for b in boards], indent=2, sort_keys=True) + "\n"


def rich_tables(boards: list[Board]) -> list[Any]:
    """The boards as rich Tables (or a single note when there are none)."""
    from rich.table import Table
    from rich.text import Text

    if not boards:
        return [Text("No submissions yet: add one with `oodpl submit RUN_DIR`.")]
    tables = []
    for board in boards:
        table = Table(title=board.title, caption=f"ranked by held-out macro {board.rank_metric}; =k: tied group "
                                                 "(paired bootstrap vs the row above)")
        for i, label in enumerate(board_header(board)):
            table.add_column(label, justify="left" if i < 3 else "right", no_wrap=True)
        for row in board.rows:
            table.add_row(*board_cells(board, row))
        tables.append(table)
    return tables


def format_boards(boards: list[Board], fmt: str) -> str:
    """``md``, ``json`` or ``html`` text of the boards (``rich`` is printed by :func:`rich_tables`)."""
    if fmt == "md":
        return to_markdown(boards)
    if fmt == "json":
        return to_json(boards)
    if fmt == "html":
        from .render import render_html

        return render_html(boards)
    raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
