"""Hub edition ``shp-amazon23``: adapters and build on small local files in the hub schemas.

No network: ``datasets.load_dataset`` is made to fail, so any attempt to reach the hub shows.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ood_pl_bench.data import hub
from ood_pl_bench.data.edition import load_edition
from ood_pl_bench.data.splits import assign_split
from ood_pl_bench.errors import DataError
from ood_pl_bench.tasks import get_task

SHP_SUBS = get_task("qa", "shp-amazon23").domains
CATEGORIES = get_task("sentiment", "shp-amazon23").domains


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """A fresh cache, and a hub loader that fails loudly if anything tries to use it."""
    import datasets

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the Hugging Face hub")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    monkeypatch.setenv("OODPL_CACHE", str(tmp_path / "cache"))


def shp_rows(sub: str, n_posts: int, split: str = "train", comments: int = 3) -> list[dict]:
    """SHP rows: every pair of a post's root comments, ``labels`` 1 when A has the higher score."""
    rows = []
    for p in range(n_posts):
        post_id = f"{sub[:3]}{p:04d}"
        scores = [10 * (k + 1) for k in range(comments)]
        for i in range(comments):
            for j in range(i + 1, comments):
                a, b = (i, j) if (p + i + j) % 2 else (j, i)  # both orders of A/B occur
                rows.append({
                    "post_id": post_id, "domain": f"{sub}_{split}", "upvote_ratio": 0.9,
                    "history": f"[{sub}] Question {p}: what do you think about topic {p}?",
                    "c_root_id_A": f"c{a}{post_id}", "c_root_id_B": f"c{b}{post_id}",
                    "created_at_utc_A": 1600000000 + a, "created_at_utc_B": 1600000000 + b,
                    "score_A": scores[a], "score_B": scores[b],
                    "human_ref_A": f"Comment {a} on post {p} of {sub}.",
                    "human_ref_B": f"Comment {b} on post {p} of {sub}.",
                    "labels": int(scores[a] > scores[b]), "seconds_difference": 3.0,
                    "score_ratio": max(scores[a], scores[b]) / min(scores[a], scores[b]),
                })
    return rows


def amazon_rows(category: str, n: int) -> list[dict]:
    """Amazon Reviews 2023 review rows, ratings cycling 1-5, with the <br /> tags the dump has."""
    return [{
        "rating": float(1 + i % 5), "title": f"Title {i}",
        "text": f"Review {i} of a {category} item.<br />It did what I expected in every way for the money spent here",
        "images": [], "asin": f"B{i:09d}", "parent_asin": f"B{i:09d}", "user_id": f"U{i}",
        "timestamp": 1600000000000 + i, "helpful_vote": i % 3, "verified_purchase": True,
    } for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    """Write rows as a parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_hub_tree(root: Path, n_posts: int = 40, n_reviews: int = 80) -> Path:
    """All 18 SHP subreddits (jsonl, parquet and gzipped files) and all 14 Amazon categories."""
    for i, sub in enumerate(SHP_SUBS):
        rows = shp_rows(sub, n_posts)
        if i % 3 == 0:
            write_parquet(root / "shp" / sub / "train.parquet", rows)
        elif i % 3 == 1:
            write_jsonl(root / "shp" / sub / "train.json", rows)
        else:
            path = root / "shp" / sub / "train.jsonl.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(path, "wt", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in rows)
    for cat in CATEGORIES:
        write_jsonl(root / "amazon23" / f"{cat}.jsonl", amazon_rows(cat, n_reviews))
    return root


def test_shp_pairs_follow_labels_cap_and_split(tmp_path):
    rows = shp_rows("askculinary", 30, comments=5)  # 10 preferences per post → capped at 4
    rows.append({**rows[0], "score_B": rows[0]["score_A"]})  # a tie: no pair
    rows.append({**rows[1], "domain": "askculinary_test"})    # a repeat from another split file
    path = write_jsonl(tmp_path / "shp" / "askculinary" / "train.json", rows)
    out = hub.import_shp([path], ["askculinary", "askvet"])
    assert set(out) == {"askculinary", "askvet"} and out["askvet"] == {"pairs": [], "prompts": []}
    pairs, prompts = out["askculinary"]["pairs"], out["askculinary"]["prompts"]
    per_post: dict[str, list[dict]] = {}
    for pair in pairs:
        per_post.setdefault(pair["item_id"], []).append(pair)
        assert pair["chosen_score"] > pair["rejected_score"] and pair["source"] == "shp"
        chosen_k = int(pair["chosen"].split()[1])
        rejected_k = int(pair["rejected"].split()[1])
        assert chosen_k > rejected_k  # higher comment index = higher score in shp_rows
        post_id = pair["item_id"].split(":p")[1]
        assert pair["split"] == assign_split("askculinary", post_id) in ("train", "oracle", "test")
        attr = json.loads(pair["attribution"])
        assert attr["post"]["url"] == f"https://www.reddit.com/r/askculinary/comments/{post_id}/"
    assert per_post and all(len(v) == hub.MAX_PAIRS_PER_POST for v in per_post.values())
    assert len({p["pair_id"] for p in pairs}) == len(pairs)
    for p in prompts:
        assert p["split"] in ("train", "prompts") and p["prompt"].startswith("[askculinary] Question")
    assert hub.shp_subreddit("explainlikeimfive_validation") == "explainlikeimfive"
    assert hub.shp_subreddit("askhr") == "askhr"


def test_amazon23_labels_prompts_and_cleaning(tmp_path):
    files = {"Software": [write_jsonl(tmp_path / "amazon23" / "Software.jsonl", amazon_rows("Software", 100))]}
    out = hub.import_amazon23(files)["Software"]
    header = "Review of a product from the Amazon category 'Software':\n"
    assert all("<br" not in r["text"] for r in out["labeled"])
    assert out["labeled"] and all(r["split"] in ("train", "oracle", "test") for r in out["labeled"])
    for pair in out["pairs"]:
        assert pair["prompt"] == header and pair["chosen_score"] >= 4 and pair["rejected_score"] <= 2
        assert pair["source"] == "amazon23"
    for row in out["labeled"]:
        assert row["label"] in (0, 1)
    # 3-star reviews (i % 5 == 2) are never labeled; the others are, wherever they are not prompts-only.
    labeled_numbers = {int(r["text"].split()[1]) for r in out["labeled"]}
    assert labeled_numbers and all(i % 5 != 2 for i in labeled_numbers)
    assert out["prompts"] and all(p["prompt"].startswith(header + "Review ") for p in out["prompts"])
    assert {p["split"] for p in out["prompts"]} <= {"train", "prompts"}
    assert hub.amazon23_category(Path("x/Baby_Products.jsonl.gz")) == "Baby_Products"


def test_record_formats_and_malformed_files(tmp_path):
    rows = [{"a": 1}, {"a": 2}]
    write_jsonl(tmp_path / "r.jsonl", rows)
    (tmp_path / "arr.json").write_text(json.dumps(rows), encoding="utf-8")
    write_parquet(tmp_path / "r.parquet", rows)
    with gzip.open(tmp_path / "r.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows))
    for name in ("r.jsonl", "arr.json", "r.parquet", "r.jsonl.gz"):
        assert list(hub.iter_records(tmp_path / name)) == rows, name
    assert [p.name for p in hub.record_files(tmp_path)] == ["arr.json", "r.jsonl", "r.jsonl.gz", "r.parquet"]

    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"Malformed JSON on line 2 of .*bad\.jsonl"):
        list(hub.iter_records(tmp_path / "bad.jsonl"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"Malformed parquet file .*bad\.parquet"):
        list(hub.iter_records(tmp_path / "bad.parquet"))
    path = write_jsonl(tmp_path / "shp" / "x.jsonl", [{"post_id": "p", "domain": "askhr_train"}])
    with pytest.raises(DataError, match=r"x\.jsonl: a row lacks the field\(s\) history"):
        hub.import_shp([path], ["askhr"])


def test_build_hub_edition_from_local_files(tmp_path):
    root = write_hub_tree(tmp_path / "data" / "hub")
    # The data folder may hold shp/ and amazon23/ itself or in its hub/ subfolder.
    ed = load_edition("shp-amazon23", data_dir=tmp_path / "data")
    assert ed.name == "shp-amazon23" and ed.data_hash
    counts = ed.counts()
    assert set(counts["qa"]) == set(SHP_SUBS) and len(SHP_SUBS) == 18
    assert set(counts["sentiment"]) == set(CATEGORIES) and len(CATEGORIES) == 14
    for task in ("qa", "sentiment"):
        spec = get_task(task, "shp-amazon23")
        assert len(spec.held_out_domains) == 10
        seen: dict[str, set[str]] = {}
        for d in spec.domains:
            assert 1 <= counts[task][d]["pairs/test"] <= spec.test_pairs_per_domain
            assert 1 <= counts[task][d]["prompts/prompts"] <= spec.eval_prompts_per_domain
            for s in ("train", "oracle", "test"):
                for r in ed.pairs(task, d, s):
                    seen.setdefault(r["item_id"], set()).add(s)
            for s in ("train", "prompts"):
                for r in ed.prompts(task, d, s):
                    seen.setdefault(r["item_id"], set()).add(s)
        assert all(len(v) == 1 for v in seen.values())
    assert ed.labeled("sentiment", "oracle", domain="Software")
    assert set(ed.manifest["raw_files"]) == {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert load_edition("shp-amazon23", data_dir=root).data_hash == ed.data_hash  # same files, no rebuild


def test_hub_edition_missing_files_and_domains(tmp_path):
    with pytest.raises(DataError, match="no SHP files"):
        load_edition("shp-amazon23", data_dir=tmp_path)
    root = write_hub_tree(tmp_path / "partial")
    for path in (root / "shp" / "askvet").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"askvet \(test pairs, evaluation prompts\)"):
        load_edition("shp-amazon23", data_dir=root)
