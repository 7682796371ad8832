"""Edition build: a small synthetic raw tree end to end, atomicity, loading, the data card, and
one build of the real ``../shared/data`` edition (once per session, shared with the smoke tests)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import pytest

from ood_pl_bench.data import build as build_mod
from ood_pl_bench.data.build import build_edition
from ood_pl_bench.data.card import length_rule_accuracy, render_data_card
from ood_pl_bench.data.edition import EDITION_VERSION, Edition, edition_root, load_edition
from ood_pl_bench.data.fdu_mtl import FDU_DOMAINS
from ood_pl_bench.data.schema import LABELED_COLUMNS, PAIR_COLUMNS, PROMPT_COLUMNS
from ood_pl_bench.errors import DataError, UsageError
from ood_pl_bench.io import sha256_file
from ood_pl_bench.tasks import get_task

from .test_data_importers import write_blitzer, write_fdu, write_site

SE_SITES = get_task("qa").domains
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def write_raw_tree(root: Path) -> Path:
    """A complete, small se-amazon raw tree in the real formats."""
    for i, site in enumerate(SE_SITES):
        write_site(root / "stackexchange" / site, n_questions=40, users=(i % 3 != 0))
    for domain in FDU_DOMAINS:
        write_fdu(root / "amazon" / "fdu-mtl", domain)
    for folder in ("books", "dvd", "electronics", "kitchen"):
        write_blitzer(root / "amazon" / "blitzer" / folder, {
            "positive": [(5.0, f"Loved this {folder} thing {i}, five stars.") for i in range(4)],
            "negative": [(1.0, f"Hated this {folder} thing {i}, returned it.") for i in range(4)],
        })
    return root


@pytest.fixture(scope="module")
def raw_tree(tmp_path_factory) -> Path:
    """The synthetic raw tree, written once for this module (tests copy it before changing it)."""
    return write_raw_tree(tmp_path_factory.mktemp("raw"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache root for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("OODPL_CACHE", str(path))
    return path


def _all_rows(ed: Edition, task: str) -> dict[str, list[dict]]:
    spec = get_task(task, ed.name)
    out = {"pairs": [], "prompts": [], "labeled": []}
    for d in spec.domains:
        for s in ("train", "oracle", "test"):
            out["pairs"] += ed.pairs(task, d, s)
            out["labeled"] += ed.labeled(task, s, domain=d)
        for s in ("train", "prompts"):
            out["prompts"] += ed.prompts(task, d, s)
    return out


def _split_of_items(rows: dict[str, list[dict]]) -> dict[str, set[str]]:
    splits: dict[str, set[str]] = {}
    for row in rows["pairs"] + rows["prompts"]:
        splits.setdefault(row["item_id"], set()).add(row["split"])
    for row in rows["labeled"]:
        splits.setdefault(row["review_id"], set()).add(row["split"])
    return splits


def test_build_synthetic_edition_manifest_and_tables(raw_tree, cache):
    root = build_edition("se-amazon", data_dir=raw_tree)
    assert root == cache / "editions" / "se-amazon" / f"v{EDITION_VERSION}" == edition_root("se-amazon")
    ed = Edition(root)
    m = ed.manifest
    assert m["edition"] == "se-amazon" and m["version"] == EDITION_VERSION and m["code_version"]
    assert ed.data_hash == hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()[:16]
    assert json.loads((root / "build_info.json").read_text())["raw_dir"] == str(raw_tree.resolve())

    # Every written file is in the manifest with its hash, size and row count.
    written = {p.relative_to(root).as_posix() for p in root.rglob("*.parquet")}
    assert written == set(m["files"]) == {f"{t}/{k}.parquet" for t in ("qa", "sentiment")
                                          for k in ("pairs", "prompts", "labeled")}
    for rel, info in m["files"].items():
        assert info["sha256"] == sha256_file(root / rel) and info["bytes"] == (root / rel).stat().st_size
    # Every raw file read is hashed, and nothing else.
    raw = {p.relative_to(raw_tree).as_posix() for p in raw_tree.rglob("*") if p.is_file()}
    assert set(m["raw_files"]) == raw
    for rel, info in m["raw_files"].items():
        assert info["sha256"] == sha256_file(raw_tree / rel)
    ed.verify()

    counts = ed.counts()
    assert set(counts["qa"]) == set(SE_SITES) and set(counts["sentiment"]) == set(FDU_DOMAINS)
    for task in ("qa", "sentiment"):
        rows = _all_rows(ed, task)
        assert m["files"][f"{task}/pairs.parquet"]["rows"] == len(rows["pairs"])
        for d, c in counts[task].items():
            for key, n in c.items():
                kind, split = key.split("/")
                assert n == sum(r["domain"] == d and r["split"] == split for r in rows[kind]), (task, d, key)
            assert c["pairs/test"] >= 1 and c["prompts/prompts"] >= 1
        assert all(set(r) == set(PAIR_COLUMNS) for r in rows["pairs"])
        assert all(set(r) == set(PROMPT_COLUMNS) for r in rows["prompts"])
        assert all(set(r) == set(LABELED_COLUMNS) for r in rows["labeled"])
        assert all(len(s) == 1 for s in _split_of_items(rows).values())
    sentiment = _all_rows(ed, "sentiment")
    blitzer_rows = [r for r in sentiment["pairs"] if r["source"] == "blitzer"]
    assert blitzer_rows and {r["split"] for r in blitzer_rows} == {"train"}
    assert {r["domain"] for r in blitzer_rows} == {"books", "dvd", "electronics", "kitchen_housewares"}
    assert not _all_rows(ed, "qa")["labeled"]

    # Same raw data, same code: the same bytes and the same data hash.
    again = Edition(build_edition("se-amazon", data_dir=raw_tree, force=True))
    assert again.data_hash == ed.data_hash and again.content_hash == ed.content_hash


def test_protocol_caps_keep_a_hash_prefix(raw_tree, cache, monkeypatch):
    uncapped = Edition(build_edition("se-amazon", data_dir=raw_tree))
    original = build_mod.list_tasks
    monkeypatch.setattr(build_mod, "list_tasks", lambda edition=None: [
        dataclasses.replace(t, test_pairs_per_domain=5, eval_prompts_per_domain=2) for t in original(edition)])
    capped = Edition(build_edition("se-amazon", data_dir=raw_tree, force=True))
    for task, domain in (("qa", "beer"), ("qa", "coffee"), ("sentiment", "video")):
        assert capped.pairs(task, domain, "test") == uncapped.pairs(task, domain, "test")[:5]
        assert capped.prompts(task, domain, "prompts") == uncapped.prompts(task, domain, "prompts")[:2]
        # Oracle and train rows are all kept.
        for split in ("train", "oracle"):
            assert capped.pairs(task, domain, split) == uncapped.pairs(task, domain, split)
        assert capped.prompts(task, domain, "train") == uncapped.prompts(task, domain, "train")


def test_failed_build_leaves_nothing_half_written(raw_tree, tmp_path, cache, monkeypatch):
    raw = Path(shutil.copytree(raw_tree, tmp_path / "raw"))
    posts = raw / "stackexchange" / "iot" / "Posts.xml"
    posts.write_bytes(posts.read_bytes()[:-40])  # truncated dump
    with pytest.raises(DataError, match=r"Malformed XML in .*stackexchange/iot/Posts\.xml"):
        build_edition("se-amazon", data_dir=raw)
    parent = cache / "editions" / "se-amazon"
    assert not parent.exists() or list(parent.iterdir()) == []

    # A good edition survives a forced rebuild that dies half-way through writing tables.
    good = Edition(build_edition("se-amazon", data_dir=raw_tree))
    calls = []
    real_write = build_mod._write_table

    def failing_write(path, rows, kind):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_write(path, rows, kind)

    monkeypatch.setattr(build_mod, "_write_table", failing_write)
    with pytest.raises(OSError):
        build_edition("se-amazon", data_dir=raw_tree, force=True)
    assert [p.name for p in parent.iterdir()] == [f"v{EDITION_VERSION}"]
    survivor = Edition(good.root)
    survivor.verify()
    assert survivor.data_hash == good.data_hash


def test_missing_raw_files_name_the_file(raw_tree, tmp_path, cache):
    raw = Path(shutil.copytree(raw_tree, tmp_path / "raw"))
    (raw / "amazon" / "fdu-mtl" / "toys_games.task.test").unlink()
    with pytest.raises(DataError, match=r"Missing raw file .*toys_games\.task\.test: set --data-dir or OODPL_DATA"):
        build_edition("se-amazon", data_dir=raw)
    with pytest.raises(DataError, match="does not exist"):
        build_edition("se-amazon", data_dir=tmp_path / "nowhere")


def test_load_edition_builds_checks_and_refuses(raw_tree, tmp_path, cache):
    with pytest.raises(DataError, match="not built"):
        load_edition("se-amazon", data_dir=raw_tree, build=False)
    with pytest.raises(UsageError):
        load_edition("no-such-edition")
    messages = []
    ed = load_edition("se-amazon", data_dir=raw_tree, progress=messages.append)
    assert any("Stack Exchange" in m for m in messages)
    assert load_edition("se-amazon", build=False).data_hash == ed.data_hash  # cached: no raw data needed

    with pytest.raises(UsageError, match="Unknown task"):
        ed.pairs("summarize", "beer", "test")
    with pytest.raises(UsageError, match="Unknown domain"):
        ed.pairs("qa", "books", "test")
    with pytest.raises(UsageError, match="Unknown split"):
        ed.prompts("qa", "beer", "test")
    with pytest.raises(UsageError, match="Unknown split"):
        ed.labeled("sentiment", "prompts")
    assert ed.labeled("sentiment", "oracle") and ed.labeled("qa", "oracle") == []
    rows = ed.pairs("qa", "beer", "train")
    rows[0]["chosen"] = "mutated"
    assert ed.pairs("qa", "beer", "train")[0]["chosen"] != "mutated"  # callers get copies

    # A truncated table fails the cheap size check: refused without build, rebuilt with it.
    table = ed.root / "qa" / "prompts.parquet"
    table.write_bytes(table.read_bytes()[:100])
    with pytest.raises(DataError, match="wrong size"):
        load_edition("se-amazon", build=False)
    rebuilt = load_edition("se-amazon", data_dir=raw_tree)
    assert rebuilt.data_hash == ed.data_hash
    # Same size, other bytes: only the full check sees it.
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0xFF
    table.write_bytes(bytes(data))
    load_edition("se-amazon", build=False)
    with pytest.raises(DataError, match="sha256"):
        rebuilt.verify()


def test_changed_raw_data_triggers_a_rebuild(raw_tree, tmp_path, cache):
    raw = Path(shutil.copytree(raw_tree, tmp_path / "raw"))
    first = load_edition("se-amazon", data_dir=raw)
    write_site(raw / "stackexchange" / "beer", n_questions=45)
    second = load_edition("se-amazon", data_dir=raw)
    assert second.data_hash != first.data_hash
    assert second.counts()["qa"]["beer"] != first.counts()["qa"]["beer"]


def test_length_rule_accuracy():
    pairs = [{"chosen": "long answer", "rejected": "short"}, {"chosen": "a", "rejected": "bb"},
             {"chosen": "same", "rejected": "size"}]
    assert length_rule_accuracy(pairs) == pytest.approx((1 + 0 + 0.5) / 3)
    assert math.isnan(length_rule_accuracy([]))


def test_data_card(raw_tree, cache):
    ed = load_edition("se-amazon", data_dir=raw_tree)
    card = render_data_card(ed, "qa", gold_accuracy={"beer": 0.75})
    assert "CC BY-SA" in card and ed.data_hash in card and "| A | beer, ai" in card
    c = ed.counts()["qa"]["coffee"]
    assert f"| coffee | held-out (A), source (B) | {c['pairs/train']} | {c['pairs/oracle']} | {c['pairs/test']} |" in card
    acc = length_rule_accuracy(ed.pairs("qa", "coffee", "test"))
    assert f"{acc:.3f}" in card.split("| coffee |")[1].split("\n")[0]
    assert "0.750" in card.split("| beer |")[1].split("\n")[0]
    sent = render_data_card(ed, "sentiment")
    assert "Blitzer" in sent and "labeled oracle" in sent and "gold acc." not in sent
    with pytest.raises(UsageError):
        render_data_card(ed, "nope")


# --- the real edition ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_edition(smoke_cache) -> tuple[Edition, float]:
    """The real se-amazon edition in the session's shared smoke cache (built at most once)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OODPL_CACHE", str(smoke_cache))
    try:
        started = time.perf_counter()
        ed = load_edition("se-amazon", data_dir=SHARED_DATA)
        return ed, time.perf_counter() - started
    finally:
        mp.undo()


@pytest.mark.slow
def test_real_edition(real_edition):
    ed, seconds = real_edition
    assert seconds < 120, f"building the real edition took {seconds:.0f} s"
    counts = ed.counts()
    assert len(counts["qa"]) == 10 and len(counts["sentiment"]) == 14
    for task in ("qa", "sentiment"):
        spec = get_task(task)
        assert len(spec.held_out_domains) == 10
        for d in spec.domains:
            c = counts[task][d]
            assert 1 <= c["pairs/test"] <= spec.test_pairs_per_domain
            assert 1 <= c["prompts/prompts"] <= spec.eval_prompts_per_domain
            assert c["pairs/oracle"] > 0 and c["prompts/train"] > 0
        for fold in spec.folds:
            assert all(counts[task][d]["pairs/train"] > 0 for d in fold.source)
        assert all(len(s) == 1 for s in _split_of_items(_all_rows(ed, task)).values())
    # The documented totals of SOURCES.md: every question and answer of the ten dumps was read.
    stats = ed.manifest["tasks"]["qa"]["import_stats"]
    assert sum(s["questions"] for s in stats.values()) == 5087
    assert sum(s["answers"] for s in stats.values()) == 9998
    pair = ed.pairs("qa", "stackoverflow", "test")[0]
    assert json.loads(pair["attribution"])["question"]["url"].startswith("https://stackoverflow.com/q/")


def test_build_reports_to_a_rich_progress(raw_tree, cache):
    from rich.progress import Progress

    seen = []

    class Recording(Progress):
        def update(self, task_id, **kwargs):
            seen.append(kwargs.get("description"))
            super().update(task_id, **kwargs)

    with Recording(disable=True) as progress:
        build_edition("se-amazon", data_dir=raw_tree, progress=progress)
        assert progress.tasks == []  # the build's bar is removed when it ends
    assert "importing Stack Exchange beer" in seen and "writing sentiment" in seen
