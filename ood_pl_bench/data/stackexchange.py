"""Stack Exchange ``Posts.xml`` / ``Users.xml`` importer for the ``qa`` task.

A *pair* is two answers to the same question whose ``Score`` differs; the higher-scored answer is
chosen. Ties give no pair. A question with many answers yields many pairs, so at most
:data:`MAX_PAIRS_PER_QUESTION` are kept per question, picked by a hash so the choice is fixed.
The question decides the split of all its pairs (:data:`~ood_pl_bench.data.splits.SE_QUESTION_SPLITS`).

Every row keeps the CC BY-SA attribution (post links, author links and names, licence version)
as a JSON string, as ``SOURCES.md`` requires for anything that carries question or answer text.
"""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .splits import SE_QUESTION_SPLITS, assign_split, order_key
from .text import html_to_text

SOURCE = "stackexchange"
# Enough to use a thread's answers without letting one long thread dominate a small site.
MAX_PAIRS_PER_QUESTION = 4
QUESTION_TYPE = "1"
ANSWER_TYPE = "2"
# CC BY-SA version by contribution date, for dumps that pre-date the ContentLicense attribute.
LICENSE_DATES = (("2011-04-08", "CC BY-SA 2.5"), ("2018-05-02", "CC BY-SA 3.0"))
LATEST_LICENSE = "CC BY-SA 4.0"


@dataclass
class Post:
    """One question or answer row of ``Posts.xml`` (only the fields the suite uses)."""

    id: int
    post_type: str
    parent_id: int | None
    score: int
    title: str
    body_html: str
    creation_date: str
    owner_user_id: str | None
    owner_display_name: str | None
    content_license: str | None


def site_host(site: str) -> str:
    """The web host of a site: ``<site>.stackexchange.com``, except ``stackoverflow.com``."""
    return "stackoverflow.com" if site == "stackoverflow" else f"{site}.stackexchange.com"


def post_license(post: Post) -> str:
    """The CC BY-SA version of a post: its ``ContentLicense``, else the one in force at its date."""
    if post.content_license:
        return post.content_license
    for until, name in LICENSE_DATES:
        if post.creation_date < until:  # ISO dates compare correctly as strings
            return name
    return LATEST_LICENSE


def _iter_rows(path: Path):
    """Yield the attribute dicts of the ``<row>`` elements of a dump file, streaming."""
    if not path.is_file():
        raise DataError(f"Missing raw file {path}: set --data-dir or OODPL_DATA")
    try:
        # Binary input: expat reads the encoding declaration and skips the UTF-8 byte-order mark.
        with open(path, "rb") as fh:
            for _event, elem in ET.iterparse(fh, events=("end",)):
                if elem.tag == "row":
                    yield dict(elem.attrib)
                    elem.clear()
    except ET.ParseError as exc:
        raise DataError(f"Malformed XML in {path}: {exc}") from exc


def read_users(path: str | Path) -> dict[str, str]:
    """Map user id → ``DisplayName`` from a ``Users.xml`` dump."""
    return {row["Id"]: row.get("DisplayName", "") for row in _iter_rows(Path(path)) if "Id" in row}


def _int(value: str | None, what: str, path: Path, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DataError(f"Malformed {what} {value!r} in {path}") from None


def read_posts(path: str | Path) -> tuple[dict[int, Post], dict[int, list[Post]]]:
    """Questions by id and answers by question id from a ``Posts.xml`` dump.

    Rows of other post types (tag wikis, moderator nominations, …) are skipped.
    """
    path = Path(path)
    questions: dict[int, Post] = {}
    answers: dict[int, list[Post]] = {}
    for row in _iter_rows(path):
        kind = row.get("PostTypeId")
        if kind not in (QUESTION_TYPE, ANSWER_TYPE):
            continue
        if "Id" not in row:
            raise DataError(f"Malformed post row without Id in {path}")
        post = Post(
            id=_int(row["Id"], "post Id", path),
            post_type=kind,
            parent_id=_int(row.get("ParentId"), "ParentId", path),
            score=_int(row.get("Score"), "Score", path, default=0),
            title=(row.get("Title") or "").strip(),
            body_html=row.get("Body") or "",
            creation_date=row.get("CreationDate") or "",
            owner_user_id=row.get("OwnerUserId") or None,
            owner_display_name=row.get("OwnerDisplayName") or None,
            content_license=row.get("ContentLicense") or None,
        )
        if kind == QUESTION_TYPE:
            questions[post.id] = post
        elif post.parent_id is not None:
            answers.setdefault(post.parent_id, []).append(post)
    return questions, answers


def post_attribution(site: str, post: Post, users: dict[str, str]) -> dict:
    """Attribution of one post: its link, its author's link and name, and its licence."""
    host = site_host(site)
    kind = "q" if post.post_type == QUESTION_TYPE else "a"
    author = users.get(post.owner_user_id or "") or post.owner_display_name
    return {
        "url": f"https://{host}/{kind}/{post.id}",
        "author": author,
        "author_url": f"https://{host}/users/{post.owner_user_id}" if post.owner_user_id else None,
        "license": post_license(post),
    }


def question_pairs(site: str, question: Post, answers: list[Post],
                   cap: int | None = MAX_PAIRS_PER_QUESTION) -> list[tuple[Post, Post]]:
    """(chosen, rejected) answer pairs of one question: scores differ, at most ``cap``, hash-picked."""
    pairs = []
    for a, b in itertools.combinations(answers, 2):
        if a.score == b.score:
            continue
        pairs.append((a, b) if a.score > b.score else (b, a))
    pairs.sort(key=lambda p: order_key(site, question.id, p[0].id, p[1].id))
    return pairs if cap is None else pairs[:cap]


@dataclass
class SiteData:
    """The rows of one site: pairs (train/oracle/test) and prompts (train/prompts)."""

    site: str
    pairs: list[dict]
    prompts: list[dict]
    n_questions: int
    n_answers: int


def import_site(site_dir: str | Path, site: str | None = None,
                max_pairs_per_question: int | None = MAX_PAIRS_PER_QUESTION) -> SiteData:
    """Import one site folder (``Posts.xml`` and, when present, ``Users.xml``) into rows.

    Questions are split by :func:`~ood_pl_bench.data.splits.assign_split`; ``test``/``oracle``/
    ``train`` questions give pairs, ``train`` and ``prompts`` questions give prompts.
    """
    site_dir = Path(site_dir)
    site = site or site_dir.name
    questions, answers = read_posts(site_dir / "Posts.xml")
    users_path = site_dir / "Users.xml"
    users = read_users(users_path) if users_path.exists() else {}

    cleaned: dict[int, str] = {}

    def text_of(post: Post) -> str:
        # Only posts that end up in a row are converted: HTML parsing is the slow part.
        if post.id not in cleaned:
            cleaned[post.id] = html_to_text(post.body_html)
        return cleaned[post.id]

    pair_rows: list[dict] = []
    prompt_rows: list[dict] = []
    for qid in sorted(questions):
        question = questions[qid]
        split = assign_split(site, str(qid), SE_QUESTION_SPLITS)
        body = text_of(question)
        prompt = f"{question.title}\n\n{body}" if body else question.title
        if not prompt.strip():
            continue
        q_attr = post_attribution(site, question, users)
        item_id = f"{site}:q{qid}"
        if split in ("train", "prompts"):
            prompt_rows.append({
                "prompt_id": item_id, "item_id": item_id, "domain": site, "split": split,
                "prompt": prompt, "source": SOURCE,
                "attribution": json.dumps({"question": q_attr}, sort_keys=True),
            })
        if split == "prompts":
            continue
        usable = [a for a in answers.get(qid, []) if text_of(a)]
        candidates = question_pairs(site, question, usable, cap=None)
        kept = 0
        for chosen, rejected in candidates:
            if max_pairs_per_question is not None and kept >= max_pairs_per_question:
                break
            if text_of(chosen) == text_of(rejected):  # duplicate answers teach nothing
                continue
            kept += 1
            pair_rows.append({
                "pair_id": f"{item_id}:a{chosen.id}>a{rejected.id}",
                "item_id": item_id, "domain": site, "split": split, "prompt": prompt,
                "chosen": text_of(chosen), "rejected": text_of(rejected),
                "chosen_score": float(chosen.score), "rejected_score": float(rejected.score),
                "source": SOURCE,
                "attribution": json.dumps({
                    "question": q_attr,
                    "chosen": post_attribution(site, chosen, users),
                    "rejected": post_attribution(site, rejected, users),
                }, sort_keys=True),
            })
    n_answers = sum(len(v) for v in answers.values())
    return SiteData(site, pair_rows, prompt_rows, len(questions), n_answers)
