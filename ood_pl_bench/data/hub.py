"""Adapters for the hub edition ``shp-amazon23``: SHP and Amazon Reviews 2023 → edition rows.

The build reads *local* files in the hub datasets' own schemas, so it is testable and offline:

```
<hub root>/shp/**/*.{jsonl,json,parquet}        rows of stanfordnlp/SHP (any file layout below shp/)
<hub root>/amazon23/**/<Category>.{jsonl,json,parquet}   review rows of McAuley-Lab/Amazon-Reviews-2023
```

``<hub root>`` is the data folder itself when it holds ``shp/`` or ``amazon23/``, else its ``hub/``
subfolder. :func:`download_hub_sources` fills such a folder from the Hugging Face hub; it is only
ever called when a user asks for it (never at import time, never in tests).

SHP (``qa``): one row is one preference between two root comments of a Reddit post; the post is
the item that decides the split (:data:`~ood_pl_bench.data.splits.SE_QUESTION_SPLITS`, as for
Stack Exchange questions), at most :data:`MAX_PAIRS_PER_POST` pairs per post, picked by hash.
Amazon Reviews 2023 (``sentiment``): 4-5 stars positive, 1-2 stars negative, 3 stars prompt-only;
reviews are split by text hash with the same four buckets, and pairs, prompts and labeled rows are
made as for FDU-MTL.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import DataError
from .fdu_mtl import MIN_PROMPT_REVIEW_WORDS, PROMPT_WORDS, Review, sentiment_pairs
from .splits import SE_QUESTION_SPLITS, assign_split, order_key
from .text import clean_review_text, first_words, text_id

SHP_SOURCE = "shp"
AMAZON23_SOURCE = "amazon23"
SHP_DIR = "shp"
AMAZON23_DIR = "amazon23"
SHP_HUB_ID = "stanfordnlp/SHP"
AMAZON23_HUB_ID = "McAuley-Lab/Amazon-Reviews-2023"
MAX_PAIRS_PER_POST = 4
RECORD_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")
POSITIVE_MIN_RATING = 4.0
NEGATIVE_MAX_RATING = 2.0
# Reviews taken per category by download_hub_sources: categories hold up to tens of millions.
DOWNLOAD_REVIEWS_PER_CATEGORY = 20_000
SHP_ATTRIBUTION_DATASET = "stanfordnlp/SHP (Ethayarajh et al. 2022)"
AMAZON23_ATTRIBUTION = json.dumps(
    {"dataset": "McAuley-Lab/Amazon-Reviews-2023 (Hou et al. 2024)"}, sort_keys=True)


def hub_root(data_dir: str | Path) -> Path:
    """The folder holding ``shp/`` and ``amazon23/``: ``data_dir`` itself or its ``hub/``."""
    data_dir = Path(data_dir)
    if (data_dir / SHP_DIR).is_dir() or (data_dir / AMAZON23_DIR).is_dir():
        return data_dir
    return data_dir / "hub"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in RECORD_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def record_files(folder: str | Path) -> list[Path]:
    """All record files (jsonl/json/parquet, optionally gzipped json) below ``folder``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and _suffix(p))


def iter_records(path: str | Path) -> Iterator[dict]:
    """Yield the rows of a JSON-lines, JSON-array or parquet file; malformed files raise DataError."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise DataError(f"Malformed parquet file {path}: {exc}") from exc
        yield from table.to_pylist()
        return
    opener = gzip.open if suffix.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            first = ""
            # A JSON array (a whole-file document) or JSON lines: peek at the first character.
            while not first:
                ch = fh.read(1)
                if not ch or not ch.isspace():
                    first = ch or "EOF"
            if first == "EOF":
                return
            if first == "[":
                rows = json.loads(first + fh.read())
                if not isinstance(rows, list):
                    raise DataError(f"Malformed JSON in {path}: expected a list of records")
                yield from rows
                return
            line = first + fh.readline()
            lineno = 1
            while line:
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"Malformed JSON on line {lineno} of {path}: {exc.msg}") from exc
                    if not isinstance(row, dict):
                        raise DataError(f"Malformed JSON on line {lineno} of {path}: expected an object")
                    yield row
                line = fh.readline()
                lineno += 1
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"Cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"Malformed JSON in {path}: {exc.msg}") from exc


def _require(row: dict, keys: Iterable[str], path: Path) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(f"{path}: a row lacks the field(s) {', '.join(missing)} of its hub schema")


# --- SHP ----------------------------------------------------------------------------------------

SHP_FIELDS = ("post_id", "domain", "history", "c_root_id_A", "c_root_id_B", "score_A", "score_B",
              "human_ref_A", "human_ref_B", "labels")


def shp_subreddit(domain_field: str) -> str:
    """The subreddit of an SHP ``domain`` value: ``askculinary_train`` → ``askculinary``."""
    base, sep, tail = domain_field.rpartition("_")
    return base if sep and tail in ("train", "validation", "test") else domain_field


def _reddit_url(subreddit: str, post_id: str, comment_id: str | None = None) -> str:
    url = f"https://www.reddit.com/r/{subreddit}/comments/{post_id}/"
    return f"{url}_/{comment_id}/" if comment_id else url


def import_shp(files: list[Path], domains: Iterable[str]) -> dict[str, dict[str, list[dict]]]:
    """SHP rows of ``files`` → ``{domain: {"pairs": [...], "prompts": [...]}}`` for ``domains``."""
    wanted = set(domains)
    posts: dict[tuple[str, str], dict] = {}
    for path in files:
        for row in iter_records(path):
            _require(row, SHP_FIELDS, path)
            sub = shp_subreddit(str(row["domain"]))
            if sub not in wanted:
                continue
            key = (sub, str(row["post_id"]))
            post = posts.setdefault(key, {"history": str(row["history"] or "").strip(), "prefs": {}})
            a, b = str(row["c_root_id_A"]), str(row["c_root_id_B"])
            score_a, score_b = float(row["score_A"]), float(row["score_B"])
            if int(row["labels"]) == 1:
                chosen = (a, str(row["human_ref_A"] or "").strip(), score_a)
                rejected = (b, str(row["human_ref_B"] or "").strip(), score_b)
            else:
                chosen = (b, str(row["human_ref_B"] or "").strip(), score_b)
                rejected = (a, str(row["human_ref_A"] or "").strip(), score_a)
            if chosen[1] and rejected[1] and chosen[1] != rejected[1] and score_a != score_b:
                # The same comment pair can occur twice (both orders); keep one, keyed unordered.
                post["prefs"].setdefault(tuple(sorted((a, b))), (chosen, rejected))

    out: dict[str, dict[str, list[dict]]] = {d: {"pairs": [], "prompts": []} for d in sorted(wanted)}
    for (sub, post_id), post in sorted(posts.items()):
        if not post["history"]:
            continue
        split = assign_split(sub, post_id, SE_QUESTION_SPLITS)
        item_id = f"{sub}:p{post_id}"
        post_attr = {"url": _reddit_url(sub, post_id), "dataset": SHP_ATTRIBUTION_DATASET}
        if split in ("train", "prompts"):
            out[sub]["prompts"].append({
                "prompt_id": item_id, "item_id": item_id, "domain": sub, "split": split,
                "prompt": post["history"], "source": SHP_SOURCE,
                "attribution": json.dumps({"post": post_attr}, sort_keys=True),
            })
        if split == "prompts":
            continue
        prefs = sorted(post["prefs"].values(),
                       key=lambda p: order_key(sub, post_id, p[0][0], p[1][0]))[:MAX_PAIRS_PER_POST]
        for chosen, rejected in prefs:
            out[sub]["pairs"].append({
                "pair_id": f"{item_id}:c{chosen[0]}>c{rejected[0]}", "item_id": item_id,
                "domain": sub, "split": split, "prompt": post["history"],
                "chosen": chosen[1], "rejected": rejected[1],
                "chosen_score": chosen[2], "rejected_score": rejected[2], "source": SHP_SOURCE,
                "attribution": json.dumps({
                    "post": post_attr,
                    "chosen": {"url": _reddit_url(sub, post_id, chosen[0])},
                    "rejected": {"url": _reddit_url(sub, post_id, rejected[0])},
                }, sort_keys=True),
            })
    return out


# --- Amazon Reviews 2023 ------------------------------------------------------------------------

AMAZON23_FIELDS = ("rating", "text")


def amazon23_header(category: str) -> str:
    """The fixed x of an Amazon Reviews 2023 category, e.g. ``… category 'Baby Products':\\n``."""
    return f"Review of a product from the Amazon category '{category.replace('_', ' ')}':\n"


def amazon23_category(path: Path) -> str:
    """The category of a review file: its name without the record suffix (``Baby_Products.jsonl``)."""
    return path.name[: -len(_suffix(path))] if _suffix(path) else path.stem


def amazon23_files(folder: str | Path, categories: Iterable[str]) -> dict[str, list[Path]]:
    """Review files below ``folder`` per wanted category (a category may be split over files)."""
    wanted = set(categories)
    found: dict[str, list[Path]] = {}
    for path in record_files(folder):
        category = amazon23_category(path)
        if category in wanted:
            found.setdefault(category, []).append(path)
    return found


def import_amazon23(files: dict[str, list[Path]]) -> dict[str, dict[str, list[dict]]]:
    """Amazon Reviews 2023 files per category → ``{category: {"pairs", "prompts", "labeled"}}``."""
    out: dict[str, dict[str, list[dict]]] = {}
    for category in sorted(files):
        header = amazon23_header(category)
        texts: dict[str, tuple[float, str]] = {}
        for path in files[category]:
            for row in iter_records(path):
                _require(row, AMAZON23_FIELDS, path)
                text = clean_review_text(row.get("text"))
                if not text:
                    continue
                try:
                    rating = float(row["rating"])
                except (TypeError, ValueError):
                    raise DataError(f"Malformed rating {row['rating']!r} in {path}") from None
                texts.setdefault(text_id(text), (rating, text))  # first copy of a text wins

        reviews: list[Review] = []
        prompts: list[dict] = []
        for rid, (rating, text) in sorted(texts.items()):
            split = assign_split(category, rid, SE_QUESTION_SPLITS)
            if split in ("train", "prompts") and len(text.split()) >= MIN_PROMPT_REVIEW_WORDS:
                item_id = f"{category}:z{rid}"
                prompts.append({
                    "prompt_id": item_id, "item_id": item_id, "domain": category, "split": split,
                    "prompt": header + first_words(text, PROMPT_WORDS), "source": AMAZON23_SOURCE,
                    "attribution": AMAZON23_ATTRIBUTION,
                })
            if split == "prompts":
                continue
            if rating >= POSITIVE_MIN_RATING:
                reviews.append(Review(rid, 1, text, split))
            elif rating <= NEGATIVE_MAX_RATING:
                reviews.append(Review(rid, 0, text, split))
        stars = {rid: rating for rid, (rating, _) in texts.items()}
        out[category] = {
            "pairs": sentiment_pairs(category, reviews, AMAZON23_SOURCE, header, score=stars,
                                     id_prefix="z", attribution=AMAZON23_ATTRIBUTION),
            "prompts": prompts,
            "labeled": [{
                "review_id": f"{category}:z{r.review_id}", "domain": category, "split": r.split,
                "prompt": header, "text": r.text, "label": r.label, "source": AMAZON23_SOURCE,
            } for r in reviews],
        }
    return out


# --- download (network; only on request) ---------------------------------------------------------


def download_hub_sources(dest: str | Path, shp_domains: Iterable[str], categories: Iterable[str],
                         reviews_per_category: int = DOWNLOAD_REVIEWS_PER_CATEGORY,
                         progress=None) -> Path:
    """Fetch SHP and Amazon Reviews 2023 with ``datasets`` into ``dest`` in the local layout.

    Needs network. Writes ``dest/shp/<subreddit>/<split>.jsonl`` and
    ``dest/amazon23/<Category>.jsonl`` (the first ``reviews_per_category`` reviews of each file,
    streamed, so a category of millions of reviews is not downloaded whole). Returns ``dest``.
    """
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise DataError("Downloading the hub edition needs the `datasets` package") from exc
    from ..io import write_jsonl

    dest = Path(dest)
    shp_domains, categories = list(shp_domains), list(categories)
    say = progress if callable(progress) else (lambda msg: None)
    try:
        for sub in shp_domains:
            for split in ("train", "validation", "test"):
                say(f"downloading {SHP_HUB_ID} {sub}/{split}")
                ds = datasets.load_dataset(SHP_HUB_ID, data_dir=sub, split=split)
                write_jsonl(dest / SHP_DIR / sub / f"{split}.jsonl", (dict(r) for r in ds))
        for category in categories:
            say(f"downloading {AMAZON23_HUB_ID} {category}")
            url = f"hf://datasets/{AMAZON23_HUB_ID}/raw/review_categories/{category}.jsonl"
            ds = datasets.load_dataset("json", data_files=url, split="train", streaming=True)
            write_jsonl(dest / AMAZON23_DIR / f"{category}.jsonl",
                        (dict(r) for r in ds.take(reviews_per_category)))
    except DataError:
        raise
    except Exception as exc:  # network, hub or schema failures: one clear line for the user
        raise DataError(f"Could not download the hub edition's sources into {dest}: {exc}") from exc
    return dest
