"""submit → leaderboard → render round trip on real smoke runs, and the committed leaderboard pages."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ood_pl_bench.cli import main
from ood_pl_bench.errors import SubmissionError
from ood_pl_bench.leaderboard import render, table
from ood_pl_bench.leaderboard.store import sha256_bytes
from ood_pl_bench.leaderboard.submission import submit
from ood_pl_bench.leaderboard.validate import validate

from .leaderboard_util import copy_tree, snapshot

pytest_plugins = ["tests.leaderboard_fixtures"]

REPO = Path(__file__).resolve().parent.parent


def test_submit_round_trip(lb_runs, lb_env):
    root = lb_env / "leaderboards"
    dest = submit(lb_runs["sft"], root=root)
    assert dest == root / "se-amazon" / "qa" / "sft-test-smoke-seed0"
    assert {p.name for p in dest.iterdir()} == {"summary.json", "config.json", "manifest.json", "submission.json",
                                                "samples"}
    summary = json.loads((dest / "summary.json").read_text())
    results = json.loads((lb_runs["sft"] / "results.json").read_text())
    # The summary is the run's results with sample paths pointing at gzip copies of the same bytes.
    for d_sum, d_run in zip(summary["domains"], results["domains"]):
        assert d_sum["metrics"] == d_run["metrics"]
        for kind, info in d_sum["samples"].items():
            run_info = d_run["samples"][kind]
            assert info["path"] == run_info["path"] + ".gz"
            assert info["sha256"] == run_info["sha256"] and info["rows"] == run_info["rows"]
            data = gzip.decompress((dest / info["path"]).read_bytes())
            assert data == (lb_runs["sft"] / run_info["path"]).read_bytes()
            assert sha256_bytes(data) == info["sha256"]
    assert summary["aggregates"] == results["aggregates"]
    assert json.loads((dest / "submission.json").read_text())["name"] == "sft-test-smoke-seed0"
    assert validate(dest).ok
    # Pages were rendered with the new row.
    assert "sft-test-smoke-seed0" in (root / "README.md").read_text()
    assert "sft-test-smoke-seed0" in (root / "index.html").read_text()


def test_name_taken_or_invalid_is_refused_and_nothing_changes(lb_base, lb_runs, lb_env):
    root = copy_tree(lb_base, lb_env / "board")
    before = snapshot(root)
    with pytest.raises(SubmissionError, match="already exists"):
        submit(lb_runs["sft"], root=root)
    with pytest.raises(SubmissionError, match="invalid submission name"):
        submit(lb_runs["sft"], name="../escape", root=root)
    assert snapshot(root) == before
    # --replace swaps it in place; a new name adds a row.
    submit(lb_runs["sft"], root=root, replace=True)
    submit(lb_runs["sft"], name="sft-again", root=root)
    names = [r.name for r in table.leaderboard(root)[0].rows]
    assert sorted(names) == ["reference-smoke-seed0", "sft-again", "sft-test-smoke-seed0"]


def test_resubmitting_a_submission_folder_works(lb_base, lb_env):
    root = lb_env / "other"
    dest = submit(lb_base / "se-amazon/qa/reference-smoke-seed0", root=root, render=False)
    assert validate(dest).ok
    assert not (root / "index.html").exists()


def test_leaderboard_table_groups_and_sections(lb_base, lb_env):
    boards = table.leaderboard(lb_base)
    assert [(b.edition, b.task, b.section) for b in boards] == [("se-amazon", "qa", "reduced")]
    board = boards[0]
    rows = board.rows
    values = [r.held_out("pl_accuracy")["value"] for r in rows]
    assert values == sorted(values, reverse=True)
    assert rows[0].group == 1 and rows[0].versus_above is None
    test = rows[1].versus_above
    assert test["against"] == rows[0].name and test["unit"] == "pair" and test["n_domains"] == 10
    # The tested difference is exactly the difference of the two macro scores.
    assert test["diff"] == pytest.approx(values[1] - values[0], abs=1e-12)
    tied = test["ci_low"] <= 0 <= test["ci_high"]
    assert rows[1].group == (1 if tied else 2)
    assert rows[1].rank_label() == ("=1" if tied else "2")
    assert any(k.startswith("win_rate[proxy:gold-rm@") for k, _ in board.columns())
    assert table.leaderboard(lb_base, task="sentiment") == []
    # A full run is never ranked beside reduced runs: it gets its own board.
    root = copy_tree(lb_base, lb_env / "mixed")
    summary_path = root / "se-amazon/qa/reference-smoke-seed0/summary.json"
    s = json.loads(summary_path.read_text())
    s["reduced"] = False
    summary_path.write_text(json.dumps(s))
    sections = [(b.section, [r.name for r in b.rows]) for b in table.leaderboard(root)]
    assert sections == [("full", ["reference-smoke-seed0"]), ("reduced", ["sft-test-smoke-seed0"])]


def test_formats(lb_base, lb_env, capsys):
    assert main(["leaderboard", "--root", str(lb_base), "--format", "json"]) == 0
    boards = json.loads(capsys.readouterr().out)
    assert boards[0]["section"] == "reduced" and len(boards[0]["rows"]) == 2
    row = boards[0]["rows"][0]
    assert set(row["domains"]) == {"beer", "ai", "stackoverflow", "iot", "italian", "coffee", "quantumcomputing",
                                   "matheducators", "cardano", "bioinformatics"}
    assert main(["leaderboard", "--root", str(lb_base), "--format", "md", "--task", "qa"]) == 0
    md = capsys.readouterr().out
    assert "| group | submission |" in md and "win rate (proxy:gold-rm@" in md
    assert main(["leaderboard", "--root", str(lb_base)]) == 0
    assert "sft-test-smoke-seed0" in capsys.readouterr().out
    assert main(["leaderboard", "--root", str(lb_base), "--format", "html"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")
    assert main(["leaderboard", "--root", str(lb_base), "--format", "xml"]) == 2
    assert main(["leaderboard", "--root", str(lb_base), "--rank-by", "kl"]) == 2
    assert main(["leaderboard", "--root", str(lb_base), "--rank-by", "gold_reward", "--format", "json"]) == 0
    ranked = json.loads(capsys.readouterr().out)[0]["rows"]
    rewards = [r["held_out"]["gold_reward"]["value"] for r in ranked]
    assert rewards == sorted(rewards, reverse=True)


def test_render_pages(lb_base, lb_env):
    root = copy_tree(lb_base, lb_env / "board")
    readme, page = render.render_leaderboard(root)
    html = page.read_text()
    assert "<script>" in html and "<style>" in html and "<svg" in html
    assert "src=" not in html and "<link" not in html and "http://" not in html and "https://" not in html
    assert html.count('class="plot heatmap"') == 2 and html.count('class="plot scatter"') == 1
    assert html.count('<tr class="detail" hidden>') == 2
    assert "sft-test-smoke-seed0" in readme.read_text()
    # Deterministic: rendering again changes nothing.
    before = snapshot(root)
    render.render_leaderboard(root)
    assert snapshot(root) == before
    # An empty leaderboard says so.
    empty = lb_env / "empty"
    readme, page = render.render_leaderboard(empty)
    assert "No submissions yet" in readme.read_text() and "No submissions yet" in page.read_text()


def test_committed_pages_match_the_committed_submissions():
    """leaderboards/README.md and index.html are what `oodpl leaderboard --render` makes of leaderboards/."""
    root = REPO / "leaderboards"
    pages = render.render_pages(root)
    for path, text in pages.items():
        assert path.is_file(), f"{path} is not committed; run `oodpl leaderboard --render`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale; run `oodpl leaderboard --render`"
