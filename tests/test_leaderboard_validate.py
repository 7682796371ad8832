"""``validate`` against real smoke runs and submissions: accepted as made, refused once tampered.

The property tests start from a real submission folder and throw malformed, truncated, reordered and
tampered variants at it. Each variant goes through the CLI (``oodpl submit`` via
``ood_pl_bench.cli.main``), which validates first: it must exit 5 with ``error:`` and one line per
problem, print no traceback, and leave the leaderboard folder byte for byte as it was. Every change
drawn is *material* (it changes a number, an id, a hash, a file or a recorded fact that validation
can check); provenance that cannot be checked (times, device, verdict ``raw`` text) is not drawn.
Set ``LB_HYPOTHESIS_EXAMPLES`` to draw more examples locally.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ood_pl_bench.cli import main
from ood_pl_bench.io import sha256_text
from ood_pl_bench.leaderboard.store import gzip_bytes, sha256_bytes
from ood_pl_bench.leaderboard.validate import validate

from .leaderboard_util import copy_tree, snapshot

pytest_plugins = ["tests.leaderboard_fixtures"]

EXAMPLES = int(os.environ.get("LB_HYPOTHESIS_EXAMPLES", "10"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("LB_HYPOTHESIS_EXAMPLES"),
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
SFT = "se-amazon/qa/sft-test-smoke-seed0"

# Row fields that metrics or consistency checks depend on, per sample-file kind.
MATERIAL_ROW_FIELDS = {
    "pairs": ("pair_id", "item_id", "pair_hash", "ref_chosen", "ref_rejected", "policy_chosen", "policy_rejected",
              "margin", "outcome", "likelihood_outcome"),
    "generations": ("prompt_id", "sample", "prompt_hash", "text", "gold_reward", "policy_logprob", "ref_logprob", "kl"),
    "reference_generations": ("prompt_id", "sample", "prompt_hash", "text", "policy_logprob", "ref_logprob", "kl"),
    "judgements": ("prompt_id", "sample", "reference_sample", "policy_hash", "reference_hash", "policy_length",
                   "reference_length", "outcome", "status", "judge", "preference_policy_first",
                   "preference_reference_first", "policy_first.winner", "reference_first.winner"),
}
TOP_LEVEL_MATERIAL = ("schema_version", "task", "edition", "data_version", "data_hash", "profile", "reduced",
                      "method", "seed", "judge", "method_config", "protocol")
DOMAIN_MATERIAL = ("domain", "fold", "role", "task", "n_test_pairs", "n_eval_prompts")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def materially_different(new, old) -> bool:
    """False when ``new`` would read back as ``old`` (same type and value, or numbers within 1e-6)."""
    num = (int, float)
    if isinstance(new, num) and isinstance(old, num) and not isinstance(new, bool) and not isinstance(old, bool):
        try:
            a, b = float(new), float(old)
        except OverflowError:
            return True
        return not (math.isfinite(a) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9))
    return not (type(new) is type(old) and new == old)


def summary_paths(summary: dict) -> list[tuple]:
    """Material JSON paths of a summary: metric entries, domain facts, sample entries, top-level facts."""
    paths: list[tuple] = [(k,) for k in TOP_LEVEL_MATERIAL if k in summary]
    paths += [("protocol", k) for k in summary["protocol"]]
    for i, d in enumerate(summary["domains"]):
        paths += [("domains", i, k) for k in DOMAIN_MATERIAL]
        for name, m in d["metrics"].items():
            paths += [("domains", i, "metrics", name, k) for k in m]
        for kind, info in d["samples"].items():
            paths += [("domains", i, "samples", kind, k) for k in info]
    for block in ("held_out", "in_distribution"):
        for name, m in summary["aggregates"][block].items():
            paths += [("aggregates", block, name, k) for k in m]
    paths += [("aggregates", "gap", k) for k in summary["aggregates"]["gap"]]
    return paths


def get_path(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def sample_files(summary: dict) -> list[tuple[int, str]]:
    """``(domain index, sample kind)`` of every sample file."""
    return [(i, kind) for i, d in enumerate(summary["domains"]) for kind in d["samples"]]


def row_kind(kind: str) -> str:
    return "judgements" if kind.startswith("judgements[") else kind


def read_rows(folder: Path, info: dict) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress((folder / info["path"]).read_bytes()).decode().splitlines()]


def write_rows(folder: Path, summary: dict, i: int, kind: str, rows: list[dict], update_hash: bool) -> None:
    """Write rows (JSON with NaN allowed) into a sample file; optionally record the new hash and count."""
    info = summary["domains"][i]["samples"][kind]
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    (folder / info["path"]).write_bytes(gzip_bytes(data))
    if update_hash:
        info["sha256"], info["rows"] = sha256_bytes(data), len(rows)
        write_summary(folder, summary)


def write_summary(folder: Path, summary: dict) -> None:
    (folder / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")


def load_summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


@pytest.fixture
def board(lb_base, lb_env) -> Path:
    """A writable leaderboard folder (copy of the session's) for refused submissions to leave untouched."""
    return copy_tree(lb_base, lb_env / "board")


def assert_refused(folder: Path, board: Path, capsys) -> str:
    """``oodpl validate`` and ``oodpl submit`` refuse FOLDER (exit 5, one line per problem, no traceback),
    with the same problems, and the leaderboard folder is untouched."""
    before = snapshot(board)
    capsys.readouterr()
    errors = []
    for argv in (["validate", str(folder)], ["submit", str(folder), "--root", str(board), "--name", "tampered"]):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 5, (argv[0], code, out, err)
        assert "Traceback" not in out + err
        assert err.startswith("error: ")
        lines = err.strip().splitlines()
        assert len(lines) >= 2 and all(line.startswith("  - ") for line in lines[1:]), err
        assert not any("validation could not finish" in line for line in lines), err
        errors.append(err)
    assert errors[0] == errors[1]
    assert snapshot(board) == before
    return errors[1]


# --- valid inputs --------------------------------------------------------------------------------


def test_real_runs_and_submissions_validate(lb_runs, lb_base, lb_env):
    for path in (lb_runs["reference"], lb_runs["sft"], lb_runs["sft"] / "results.json",
                 lb_base / SFT, lb_base / SFT / "summary.json"):
        report = validate(path)
        assert report.ok, report.message()
        assert report.checked["metrics"] >= 150 and report.checked["sample_files"] == 50
    assert validate(lb_base / SFT).kind == "submission" and validate(lb_runs["sft"]).kind == "run"


def test_cli_validate_valid_and_invalid(lb_runs, lb_env, capsys):
    assert main(["validate", str(lb_runs["sft"])]) == 0
    assert "valid run of sft-test on qa" in capsys.readouterr().out
    assert main(["validate", str(lb_env / "nope")]) == 5
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err
    assert main(["validate", "--json", str(lb_env)]) == 5
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and len(out["problems"]) == 1


# --- the check: outcomes edited after the run -------------------------------------------


@pytest.mark.parametrize("variant", ["outcome only", "outcome and hash", "log-probs, margin, outcome and hash"])
def test_outcomes_edited_after_the_run_are_refused(lb_base, lb_env, board, capsys, variant):
    folder = copy_tree(lb_base / SFT, lb_env / "edited")
    summary = load_summary(folder)
    i = next(i for i, d in enumerate(summary["domains"]) if d["role"] == "held_out" and d["domain"] == "beer")
    rows = read_rows(folder, summary["domains"][i]["samples"]["pairs"])
    j = next(j for j, r in enumerate(rows) if r["outcome"] == 0.0)
    if variant.startswith("log-probs"):
        # A consistent lie: the row says the chosen answer won, and everything on the row agrees.
        rows[j]["policy_chosen"] = rows[j]["policy_rejected"] + rows[j]["ref_chosen"] - rows[j]["ref_rejected"] + 1.0
        rows[j]["margin"] = (rows[j]["policy_chosen"] - rows[j]["ref_chosen"]) - (rows[j]["policy_rejected"] - rows[j]["ref_rejected"])
        rows[j]["likelihood_outcome"] = 1.0 if rows[j]["policy_chosen"] > rows[j]["policy_rejected"] else 0.0
    rows[j]["outcome"] = 1.0
    write_rows(folder, summary, i, "pairs", rows, update_hash=variant != "outcome only")
    report = validate(folder)
    assert not report.ok
    text = "\n".join(report.problems)
    if variant == "outcome only":
        assert "does not match its recorded sha256" in text
    if variant == "outcome and hash":
        assert "outcome does not follow from the implicit margin" in text
    if variant.startswith("log-probs"):
        assert "beer (held_out): pl_accuracy does not follow from the sample files" in text
        assert "aggregates.held_out.pl_accuracy does not follow" in text
    assert_refused(folder, board, capsys)


# --- targeted refusals ---------------------------------------------------------------------------


def _mutate_summary(folder: Path, fn) -> None:
    summary = load_summary(folder)
    fn(summary)
    write_summary(folder, summary)


TARGETED = {
    "missing domain": (lambda s: s["domains"].pop(0), "held-out domains of qa are missing: beer"),
    "data hash": (lambda s: s.__setitem__("data_hash", "0" * 16), "does not match the built edition"),
    "schema version": (lambda s: s.__setitem__("schema_version", "0.9"), "schema_version '0.9' is not supported"),
    "reduced flag": (lambda s: s.__setitem__("reduced", False), "reduced is false"),
    "protocol": (lambda s: s["protocol"]["eval_decoding"].__setitem__("temperature", 0.7), "protocol.eval_decoding"),
    "duplicate domain": (lambda s: s["domains"].append(s["domains"][0]), "appears more than once"),
    "wrong fold": (lambda s: s["domains"][0].__setitem__("fold", "A"), "it belongs to fold 'B'"),
    "unsafe path": (lambda s: s["domains"][0]["samples"]["pairs"].__setitem__("path", "../../etc/passwd"),
                    "must be relative and stay inside"),
    "gap": (lambda s: s["aggregates"]["gap"].__setitem__("pl_accuracy", 0.0), "aggregates.gap.pl_accuracy"),
}


@pytest.mark.parametrize("name", sorted(TARGETED))
def test_targeted_refusals(lb_base, lb_env, name):
    folder = copy_tree(lb_base / SFT, lb_env / "t")
    fn, expected = TARGETED[name]
    _mutate_summary(folder, fn)
    report = validate(folder)
    assert not report.ok
    assert any(expected in p for p in report.problems), report.problems


def test_nan_and_truncated_gzip_give_one_line_reasons(lb_base, lb_env):
    folder = copy_tree(lb_base / SFT, lb_env / "t")
    text = (folder / "summary.json").read_text()
    (folder / "summary.json").write_text(re.sub(r'"value": -?[0-9][0-9.e+-]*', '"value": NaN', text, count=1))
    assert validate(folder).problems == ["summary.json is not valid JSON: NaN is not a number JSON allows"]
    folder = copy_tree(lb_base / SFT, lb_env / "t")
    path = next((folder / "samples" / "held_out").glob("ai.pairs.jsonl.gz"))
    path.write_bytes(path.read_bytes()[:-12])
    problems = validate(folder).problems
    assert any("is a truncated gzip file" in p for p in problems), problems


def test_reordered_rows_with_updated_hash_are_refused(lb_base, lb_env):
    folder = copy_tree(lb_base / SFT, lb_env / "t")
    summary = load_summary(folder)
    i = next(i for i, d in enumerate(summary["domains"]) if d["domain"] == "ai" and d["role"] == "held_out")
    rows = read_rows(folder, summary["domains"][i]["samples"]["pairs"])
    write_rows(folder, summary, i, "pairs", rows[::-1], update_hash=True)
    problems = validate(folder).problems
    assert any("ai (held_out): pairs rows are reordered" in p for p in problems), problems


def test_pair_hash_is_checked_against_the_edition(lb_base, lb_env):
    folder = copy_tree(lb_base / SFT, lb_env / "t")
    summary = load_summary(folder)
    i = next(i for i, d in enumerate(summary["domains"]) if d["domain"] == "iot" and d["role"] == "source")
    rows = read_rows(folder, summary["domains"][i]["samples"]["pairs"])
    rows[2]["pair_hash"] = sha256_text("another item")[:16]
    write_rows(folder, summary, i, "pairs", rows, update_hash=True)
    problems = validate(folder).problems
    assert problems == ["iot (source): pair_hash differs from the edition's item (edited or swapped pairs) (row 3)"]


# --- properties ----------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data())
def test_malformed_or_truncated_summary_is_refused(lb_base, lb_env, board, capsys, data):
    folder = copy_tree(lb_base / SFT, lb_env / "p")
    raw = (folder / "summary.json").read_bytes()
    how = data.draw(st.sampled_from(["truncate", "bytes", "json"]))
    if how == "truncate":
        new = raw[: data.draw(st.integers(0, len(raw.rstrip()) - 1))]  # trailing whitespace is not content
    elif how == "bytes":
        new = data.draw(st.binary(max_size=200))
    else:
        new = json.dumps(data.draw(json_values)).encode()
    (folder / "summary.json").write_bytes(new)
    assert not validate(folder).ok
    assert_refused(folder, board, capsys)


@PROPERTY
@given(data=st.data())
def test_tampered_summary_is_refused(lb_base, lb_env, board, capsys, data):
    folder = copy_tree(lb_base / SFT, lb_env / "p")
    summary = load_summary(folder)
    path = data.draw(st.sampled_from(summary_paths(summary)), label="path")
    parent, key = get_path(summary, path[:-1]), path[-1]
    if data.draw(st.booleans(), label="delete"):
        assume(not (key == "n_eval_prompts" and parent[key] == 0))  # deleting a default is no change
        del parent[key]
    else:
        new = data.draw(json_values, label="value")
        assume(materially_different(new, parent[key]))
        parent[key] = new
    write_summary(folder, summary)
    assert_refused(folder, board, capsys)


@PROPERTY
@given(data=st.data())
def test_tampered_rows_are_refused(lb_base, lb_env, board, capsys, data):
    folder = copy_tree(lb_base / SFT, lb_env / "p")
    summary = load_summary(folder)
    i, kind = data.draw(st.sampled_from(sample_files(summary)), label="file")
    rows = read_rows(folder, summary["domains"][i]["samples"][kind])
    j = data.draw(st.integers(0, len(rows) - 1), label="row")
    fields = [f for f in MATERIAL_ROW_FIELDS[row_kind(kind)] if f.split(".")[0] in rows[j]]
    field = data.draw(st.sampled_from(fields), label="field")
    parent = rows[j]
    if "." in field:
        outer, field = field.split(".")
        parent = rows[j][outer]
    new = data.draw(json_values, label="value")
    assume(materially_different(new, parent.get(field)))
    parent[field] = new
    write_rows(folder, summary, i, kind, rows, update_hash=data.draw(st.booleans(), label="update hash"))
    assert_refused(folder, board, capsys)


@PROPERTY
@given(data=st.data())
def test_reordered_truncated_or_missing_sample_files_are_refused(lb_base, lb_env, board, capsys, data):
    folder = copy_tree(lb_base / SFT, lb_env / "p")
    summary = load_summary(folder)
    i, kind = data.draw(st.sampled_from(sample_files(summary)), label="file")
    info = summary["domains"][i]["samples"][kind]
    path = folder / info["path"]
    how = data.draw(st.sampled_from(["reorder", "truncate", "flip", "drop rows", "delete", "other file"]))
    if how == "reorder":
        rows = read_rows(folder, info)
        order = data.draw(st.permutations(range(len(rows))))
        assume(list(order) != list(range(len(rows))))
        write_rows(folder, summary, i, kind, [rows[k] for k in order], update_hash=data.draw(st.booleans()))
    elif how == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    elif how == "flip":
        raw = bytearray(path.read_bytes())
        k = data.draw(st.integers(10, len(raw) - 10))  # inside the deflate stream, before its last byte
        raw[k] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(raw))
    elif how == "drop rows":
        rows = read_rows(folder, info)
        keep = data.draw(st.integers(0, len(rows) - 1))
        write_rows(folder, summary, i, kind, rows[:keep], update_hash=data.draw(st.booleans()))
    elif how == "delete":
        path.unlink()
    else:
        victim = data.draw(st.sampled_from(["config.json", "manifest.json"]))
        (folder / victim).unlink()
    assert_refused(folder, board, capsys)
