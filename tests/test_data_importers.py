"""Importers on small files written in the real raw formats (Posts.xml, FDU-MTL, Blitzer)."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest

from ood_pl_bench.data import blitzer, fdu_mtl, stackexchange
from ood_pl_bench.data.splits import LABELED_REVIEW_SPLITS, assign_split
from ood_pl_bench.errors import DataError

# --- writers of the raw formats (also used by test_data_build.py) ------------------------------


def write_posts(path: Path, rows: list[dict], bom: bool = True) -> Path:
    """Write a Posts.xml / Users.xml style dump: attribute-only <row/> elements, escaped HTML."""
    root = "users" if path.name == "Users.xml" else "posts"
    lines = ['<?xml version="1.0" encoding="utf-8"?>', f"<{root}>"]
    for row in rows:
        attrs = " ".join(f"{k}={quoteattr(str(v), {chr(10): '&#xA;'})}" for k, v in row.items())
        lines.append(f"  <row {attrs} />")
    lines.append(f"</{root}>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "\n".join(lines).encode("utf-8"))
    return path


def question(qid: int, title: str = "", body: str = "<p>How?</p>", date: str = "2016-01-01T00:00:00.000",
             user: int | None = 5, **extra) -> dict:
    """A question row (PostTypeId 1)."""
    row = {"Id": qid, "PostTypeId": 1, "CreationDate": date, "Score": 3, "Body": body,
           "Title": title or f"Question {qid}?"}
    if user is not None:
        row["OwnerUserId"] = user
    row.update(extra)
    return row


def answer(aid: int, qid: int, score: int, body: str | None = None, date: str = "2016-01-02T00:00:00.000",
           user: int | None = 6, **extra) -> dict:
    """An answer row (PostTypeId 2, ParentId)."""
    row = {"Id": aid, "PostTypeId": 2, "ParentId": qid, "CreationDate": date, "Score": score,
           "Body": body if body is not None else f"<p>Answer {aid} says <code>x = {aid}</code>.</p>"}
    if user is not None:
        row["OwnerUserId"] = user
    row.update(extra)
    return row


def write_site(folder: Path, n_questions: int, answers_per_question: int = 3, users: bool = True,
               first_id: int = 1) -> Path:
    """A small site: questions with answers of distinct scores, plus a tag-wiki row to skip."""
    rows = [{"Id": 99999, "PostTypeId": 4, "CreationDate": "2016-01-01T00:00:00.000", "Score": 0,
             "Body": "<p>tag wiki</p>"}]
    next_id = first_id + 10 * n_questions
    for i in range(n_questions):
        qid = first_id + i
        rows.append(question(qid, title=f"{folder.name} question {qid}?",
                             body=f"<p>Body of {qid} in {folder.name}.</p>"))
        for k in range(answers_per_question):
            rows.append(answer(next_id, qid, score=k, user=100 + k))
            next_id += 1
    write_posts(folder / "Posts.xml", rows)
    if users:
        write_posts(folder / "Users.xml", [{"Id": 100 + k, "DisplayName": f"User {k}"} for k in range(10)]
                    + [{"Id": 5, "DisplayName": "Asker"}])
    return folder


def write_fdu(folder: Path, domain: str, n_labeled: int = 40, n_unlabeled: int = 30) -> list[Path]:
    """FDU-MTL files of one domain: tokenised labeled lines (train/test) and raw unlabeled lines."""
    folder.mkdir(parents=True, exist_ok=True)
    labeled = [f"{i % 2}\tthis {domain} item number {i} is {'great' if i % 2 else 'bad'} , i do n't "
               f"{'regret' if i % 2 else 'like'} it at all and would say so again" for i in range(n_labeled)]
    half = n_labeled * 3 // 4
    (folder / f"{domain}.task.train").write_text("\n".join(labeled[:half]) + "\n", encoding="utf-8")
    (folder / f"{domain}.task.test").write_text("\n".join(labeled[half:]) + "\n", encoding="utf-8")
    unlabeled = [f"I bought this {domain} thing number {i} last spring and it has been fine so far for me"
                 for i in range(n_unlabeled)]
    (folder / f"{domain}.task.unlabel").write_text("\n".join(unlabeled) + "\n", encoding="utf-8")
    return [folder / f"{domain}.task.{k}" for k in ("train", "test", "unlabel")]


def write_blitzer(folder: Path, reviews: dict[str, list[tuple[float, str]]]) -> None:
    """Blitzer ``positive.review``/``negative.review`` files, wrapped as in the shared copy."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, items in reviews.items():
        parts = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>', "<reviews>"]
        for i, (rating, text) in enumerate(items):
            parts.append(f"<review>\n<unique_id>\n{name}:{i}\n</unique_id>\n<rating>\n{rating}\n</rating>\n"
                         f"<title>\nT{i}\n</title>\n<review_text>\n{escape(text)}\n</review_text>\n</review>")
        parts.append("</reviews>")
        (folder / f"{name}.review").write_text("\n".join(parts), encoding="utf-8")


# --- Stack Exchange ------------------------------------------------------------------------------


def test_posts_pairs_ties_cap_and_prompt(tmp_path):
    site = tmp_path / "beer"
    rows = [
        question(1, title="Why hops?", body="<p>Tell me <code>why</code>.</p>&#xA;"),
        answer(10, 1, 5), answer(11, 1, 2), answer(12, 1, 2),          # 10>11, 10>12; 11=12 tie
        question(2, title="Many answers?"),
        *[answer(20 + k, 2, score=k) for k in range(6)],               # 15 pairs → capped to 4
        {"Id": 50, "PostTypeId": 5, "Body": "<p>wiki</p>", "CreationDate": "2016-01-01T00:00:00.000"},
    ]
    write_posts(site / "Posts.xml", rows)
    questions, answers = stackexchange.read_posts(site / "Posts.xml")
    assert sorted(questions) == [1, 2] and sorted(len(v) for v in answers.values()) == [3, 6]

    pairs = stackexchange.question_pairs("beer", questions[1], answers[1])
    assert {(c.id, r.id) for c, r in pairs} == {(10, 11), (10, 12)}
    capped = stackexchange.question_pairs("beer", questions[2], answers[2])
    assert len(capped) == stackexchange.MAX_PAIRS_PER_QUESTION
    assert all(c.score > r.score for c, r in capped)
    # The cap keeps a fixed, hash-chosen subset: same answer in any input order.
    again = stackexchange.question_pairs("beer", questions[2], list(reversed(answers[2])))
    assert [(c.id, r.id) for c, r in capped] == [(c.id, r.id) for c, r in again]

    data = stackexchange.import_site(site)
    by_q = {}
    for row in data.pairs + data.prompts:
        by_q.setdefault(row["item_id"], set()).add(row["split"])
        if "chosen" in row:
            assert row["chosen_score"] > row["rejected_score"]
    assert all(len(s) == 1 for s in by_q.values())  # one question, one split
    for row in data.pairs:
        assert row["split"] == assign_split("beer", row["item_id"].split(":q")[1])
        if row["item_id"] == "beer:q1":
            assert row["prompt"] == "Why hops?\n\nTell me `why`."
            assert row["chosen"] == "Answer 10 says `x = 10`."


def _import(site_dir: Path) -> dict:
    data = stackexchange.import_site(site_dir)
    return {"pairs": data.pairs, "prompts": data.prompts}


def test_import_is_independent_of_file_order(tmp_path):
    rows = [question(q) for q in range(1, 31)] + [answer(100 + 3 * q + k, q, k) for q in range(1, 31) for k in range(3)]
    write_posts(tmp_path / "a" / "coffee" / "Posts.xml", rows)
    write_posts(tmp_path / "b" / "coffee" / "Posts.xml", list(reversed(rows)), bom=False)
    a, b = _import(tmp_path / "a" / "coffee"), _import(tmp_path / "b" / "coffee")
    key = lambda r: r.get("pair_id") or r["prompt_id"]  # noqa: E731
    assert sorted(a["pairs"], key=key) == sorted(b["pairs"], key=key)
    assert sorted(a["prompts"], key=key) == sorted(b["prompts"], key=key)
    assert {r["split"] for r in a["pairs"]} <= {"train", "oracle", "test"}
    assert {r["split"] for r in a["prompts"]} <= {"train", "prompts"}


def test_attribution_links_authors_and_licences(tmp_path):
    so = tmp_path / "stackoverflow"
    write_posts(so / "Posts.xml", [
        question(4, date="2008-07-31T21:42:52.667", user=8),
        answer(7, 4, 9, date="2008-08-01T00:00:00.000", user=None, OwnerDisplayName="Old Timer"),
        answer(9, 4, 1, date="2019-01-01T00:00:00.000", user=33),
    ], bom=False)
    posts, answers = stackexchange.read_posts(so / "Posts.xml")
    q_attr = stackexchange.post_attribution("stackoverflow", posts[4], {})
    assert q_attr == {"url": "https://stackoverflow.com/q/4", "author": None,
                      "author_url": "https://stackoverflow.com/users/8", "license": "CC BY-SA 2.5"}
    a7, a9 = answers[4]
    assert stackexchange.post_attribution("stackoverflow", a7, {})["author"] == "Old Timer"
    assert stackexchange.post_attribution("stackoverflow", a7, {})["author_url"] is None
    assert stackexchange.post_license(a9) == "CC BY-SA 4.0"

    beer = tmp_path / "beer"
    write_posts(beer / "Posts.xml", [
        question(1, date="2014-01-21T20:26:05.383", user=7, ContentLicense="CC BY-SA 3.0"),
        answer(2, 1, 4, user=7, date="2019-05-01T00:00:00.000", ContentLicense="CC BY-SA 4.0"),
        answer(3, 1, 1, user=8, date="2014-02-01T00:00:00.000"),
    ])
    write_posts(beer / "Users.xml", [{"Id": 7, "DisplayName": "Hop Head"}, {"Id": 8, "DisplayName": "Ale"}])
    data = stackexchange.import_site(beer)
    assert assign_split("beer", "1") == "train"  # so question 1 gives both a pair and a prompt
    assert len(data.pairs) == 1 and len(data.prompts) == 1
    attr = json.loads(data.pairs[0]["attribution"])
    assert attr["question"] == {"url": "https://beer.stackexchange.com/q/1", "author": "Hop Head",
                                "author_url": "https://beer.stackexchange.com/users/7", "license": "CC BY-SA 3.0"}
    assert json.loads(data.prompts[0]["attribution"]) == {"question": attr["question"]}
    assert attr["chosen"]["url"] == "https://beer.stackexchange.com/a/2"
    assert attr["chosen"]["license"] == "CC BY-SA 4.0"
    assert attr["rejected"] == {"url": "https://beer.stackexchange.com/a/3", "author": "Ale",
                                "author_url": "https://beer.stackexchange.com/users/8",
                                "license": "CC BY-SA 3.0"}


def test_malformed_and_missing_posts_raise_data_error(tmp_path):
    bad = tmp_path / "iot" / "Posts.xml"
    bad.parent.mkdir()
    bad.write_text('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n  <row Id="1" PostTypeId="1" \n', encoding="utf-8")
    with pytest.raises(DataError, match="Malformed XML in .*iot.*Posts.xml"):
        stackexchange.import_site(bad.parent)
    with pytest.raises(DataError, match=r"Missing raw file .*ai.*Posts\.xml: set --data-dir or OODPL_DATA"):
        stackexchange.import_site(tmp_path / "ai")
    write_posts(tmp_path / "x" / "Posts.xml", [{"Id": "seven", "PostTypeId": 1}])
    with pytest.raises(DataError, match="Posts.xml"):
        stackexchange.read_posts(tmp_path / "x" / "Posts.xml")


# --- FDU-MTL ---------------------------------------------------------------------------------------


def test_fdu_labeled_pairs_prompts(tmp_path):
    folder = tmp_path / "fdu"
    write_fdu(folder, "baby", n_labeled=60, n_unlabeled=40)
    # A duplicate of a labeled review (other tokenisation) in the unlabeled file must not become a prompt.
    with open(folder / "baby.task.unlabel", "a", encoding="utf-8") as fh:
        fh.write("This baby item number 3 is great, I don't regret it at all and would say so again\n")
    # And a labeled duplicate across train/test is counted once.
    with open(folder / "baby.task.test", "a", encoding="utf-8") as fh:
        fh.write("1\tthis baby item number 3 is great , i do n't regret it at all and would say so again\n")
    data = fdu_mtl.import_domain(folder, "baby")

    assert len(data.labeled) == 60
    assert {r["label"] for r in data.labeled} == {0, 1}
    for row in data.labeled:
        rid = row["review_id"].split(":r")[1]
        assert row["split"] == assign_split("baby", rid, LABELED_REVIEW_SPLITS)
        assert row["prompt"] == fdu_mtl.review_header("baby")
    split_of = {r["review_id"]: r["split"] for r in data.labeled}
    label_of = {r["text"]: r["label"] for r in data.labeled}
    for pair in data.pairs:
        assert pair["prompt"] == "Review of a product from the Amazon category 'baby':\n"
        assert label_of[pair["chosen"]] == 1 and label_of[pair["rejected"]] == 0
        pos, neg = pair["pair_id"].split(":", 1)[1].split(">")
        assert split_of[f"baby:{pos}"] == split_of[f"baby:{neg}"] == pair["split"]
    per_split = {s: sum(r["split"] == s for r in data.pairs) for s in ("train", "oracle", "test")}
    for s, n in per_split.items():
        pos = sum(r["split"] == s and r["label"] == 1 for r in data.labeled)
        neg = sum(r["split"] == s and r["label"] == 0 for r in data.labeled)
        assert n == min(pos, neg)
    assert len(data.prompts) == 40
    for p in data.prompts:
        assert p["prompt"].startswith("Review of a product from the Amazon category 'baby':\nI bought this baby")
        assert len(p["prompt"].split("\n", 1)[1].split()) == fdu_mtl.PROMPT_WORDS
        assert p["split"] in ("train", "prompts")
    assert fdu_mtl.review_header("camera_photo") == "Review of a product from the Amazon category 'camera & photo':\n"


def test_fdu_malformed_and_missing(tmp_path):
    folder = tmp_path / "fdu"
    write_fdu(folder, "music")
    (folder / "music.task.train").write_text("1\tfine review\nno label here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Malformed line 2 in .*music\.task\.train"):
        fdu_mtl.import_domain(folder, "music")
    (folder / "music.task.train").write_text("1\tfine review\n", encoding="utf-8")
    (folder / "music.task.unlabel").unlink()
    with pytest.raises(DataError, match=r"Missing raw file .*music\.task\.unlabel"):
        fdu_mtl.import_domain(folder, "music")


def test_fdu_tolerates_one_broken_utf8_sequence(tmp_path):
    folder = tmp_path / "fdu"
    write_fdu(folder, "dvd")
    with open(folder / "dvd.task.train", "ab") as fh:
        fh.write(b"0\tyet another clich\xef\xbf '' of a film\n")
    texts = [t for _, t in fdu_mtl.read_labeled(folder / "dvd.task.train")]
    assert any(t.startswith("yet another clich\ufffd") for t in texts)


# --- Blitzer ---------------------------------------------------------------------------------------


def test_blitzer_pairs_drop_overlap_and_keep_stars(tmp_path):
    fdu = tmp_path / "fdu"
    write_fdu(fdu, "kitchen_housewares")
    fdu_data = fdu_mtl.import_domain(fdu, "kitchen_housewares")
    overlap = "I bought this kitchen_housewares thing number 3 last spring and it has been fine so far for me"
    write_blitzer(tmp_path / "blitzer" / "kitchen", {
        "positive": [(5.0, "A superb pan & lid, heats evenly."), (4.0, "Good kettle, quiet."), (5.0, overlap)],
        "negative": [(1.0, "Broke after one week."), (2.0, "Handle gets hot <ouch>."), (1.0, "Rusted.")],
    })
    pairs, files, dropped = blitzer.import_domain(tmp_path / "blitzer", "kitchen", fdu_data.prefixes)
    assert dropped == 1 and len(files) == 2
    assert len(pairs) == 2  # two positives left after the overlap, three negatives
    for p in pairs:
        assert p["domain"] == "kitchen_housewares" and p["split"] == "train" and p["source"] == "blitzer"
        assert p["chosen_score"] >= 4.0 and p["rejected_score"] <= 2.0
        assert p["prompt"] == fdu_mtl.review_header("kitchen_housewares")
        assert overlap not in (p["chosen"], p["rejected"])
    assert {p["chosen"] for p in pairs} == {"A superb pan & lid, heats evenly.", "Good kettle, quiet."}


def test_blitzer_malformed_xml(tmp_path):
    folder = tmp_path / "blitzer" / "dvd"
    folder.mkdir(parents=True)
    (folder / "positive.review").write_text("<reviews><review><rating>5.0</rating>", encoding="utf-8")
    (folder / "negative.review").write_text("<reviews></reviews>", encoding="utf-8")
    with pytest.raises(DataError, match=r"Malformed XML in .*dvd.*positive\.review"):
        blitzer.import_domain(tmp_path / "blitzer", "dvd", set())
