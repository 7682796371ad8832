"""FDU-MTL importer for the ``sentiment`` task (14 Amazon product categories).

Files per domain: ``<domain>.task.train`` and ``<domain>.task.test`` hold ``label<TAB>text`` lines
(1 positive, 0 negative; text lower-cased and tokenised), ``<domain>.task.unlabel`` one raw review
per line. Labeled reviews of both files are pooled, identified by the hash of their normalised
text and split by that id (:data:`~ood_pl_bench.data.splits.LABELED_REVIEW_SPLITS`); unlabeled
reviews are split into training and evaluation prompts.

A sentiment pair is (x, positive review, negative review) with x a fixed per-domain header;
within a domain and split, positives and negatives are each sorted by hash and zipped. A prompt is
the header plus the first :data:`PROMPT_WORDS` words of an unlabeled review, which the policy
continues.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .splits import LABELED_REVIEW_SPLITS, UNLABELED_REVIEW_SPLITS, assign_split, order_key
from .text import collapse_whitespace, first_words, normalize_for_match, text_id

SOURCE = "fdu-mtl"
FDU_DOMAINS = (
    "apparel", "baby", "books", "camera_photo", "dvd", "electronics", "health_personal_care",
    "kitchen_housewares", "magazines", "music", "software", "sports_outdoors", "toys_games", "video",
)
# Human-readable category names for the review header.
CATEGORY_NAMES = {
    "apparel": "apparel", "baby": "baby", "books": "books", "camera_photo": "camera & photo",
    "dvd": "DVD", "electronics": "electronics", "health_personal_care": "health & personal care",
    "kitchen_housewares": "kitchen & housewares", "magazines": "magazines", "music": "music",
    "software": "software", "sports_outdoors": "sports & outdoors", "toys_games": "toys & games",
    "video": "video",
}
PROMPT_WORDS = 8
# Reviews shorter than this give a prompt that is nearly the whole review: nothing to continue.
MIN_PROMPT_REVIEW_WORDS = 12
# Texts whose normalised first characters agree are treated as the same review (dedup, overlap).
MATCH_PREFIX_CHARS = 60
ATTRIBUTION = json.dumps({"dataset": "FDU-MTL (Liu et al. 2017) over Blitzer et al. 2007 reviews"},
                         sort_keys=True)


def review_header(domain: str) -> str:
    """The fixed x of a sentiment domain, e.g. ``Review of a product from the Amazon category 'camera & photo':\\n``."""
    name = CATEGORY_NAMES.get(domain, domain.replace("_", " "))
    return f"Review of a product from the Amazon category '{name}':\n"


def match_prefix(text: str) -> str:
    """The normalised text prefix used to find the same review in two files."""
    return normalize_for_match(text)[:MATCH_PREFIX_CHARS]


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"Missing raw file {path}: set --data-dir or OODPL_DATA")
    # One line of the distributed dvd file holds a broken UTF-8 sequence; keep the review.
    return path.read_bytes().decode("utf-8", errors="replace").splitlines()


def read_labeled(path: str | Path) -> list[tuple[int, str]]:
    """``(label, text)`` rows of a ``.task.train``/``.task.test`` file; malformed lines raise DataError."""
    path = Path(path)
    rows = []
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep or label.strip() not in ("0", "1"):
            raise DataError(f"Malformed line {lineno} in {path}: expected 'label<TAB>text' with label 0 or 1")
        text = collapse_whitespace(text)
        if text:
            rows.append((int(label), text))
    return rows


def read_unlabeled(path: str | Path) -> list[str]:
    """The reviews of a ``.task.unlabel`` file, one per non-empty line."""
    return [t for t in (collapse_whitespace(line) for line in _read_lines(Path(path))) if t]


@dataclass
class Review:
    """A labeled review with its stable id and split."""

    review_id: str
    label: int
    text: str
    split: str


def sentiment_pairs(domain: str, reviews: list[Review], source: str, header: str,
                    score: dict[str, float] | None = None, id_prefix: str = "r",
                    attribution: str = "{}") -> list[dict]:
    """Pair positives with negatives of one split: each side sorted by hash, then zipped.

    ``score`` maps review ids to their rating (stars); without it, positive 1.0 and negative 0.0.
    ``id_prefix`` marks the review collection in ids (``r`` FDU-MTL, ``b`` Blitzer, ``z`` Amazon 2023).
    """
    rows = []
    for split in sorted({r.split for r in reviews}):
        pos = sorted((r for r in reviews if r.split == split and r.label == 1),
                     key=lambda r: order_key(domain, r.review_id))
        neg = sorted((r for r in reviews if r.split == split and r.label == 0),
                     key=lambda r: order_key(domain, r.review_id))
        for p, n in zip(pos, neg):
            rows.append({
                "pair_id": f"{domain}:{id_prefix}{p.review_id}>{id_prefix}{n.review_id}",
                "item_id": f"{domain}:{id_prefix}{p.review_id}",
                "domain": domain, "split": split, "prompt": header,
                "chosen": p.text, "rejected": n.text,
                "chosen_score": float(score[p.review_id]) if score else 1.0,
                "rejected_score": float(score[n.review_id]) if score else 0.0,
                "source": source, "attribution": attribution,
            })
    return rows


@dataclass
class DomainData:
    """The rows of one FDU-MTL domain."""

    domain: str
    pairs: list[dict]
    prompts: list[dict]
    labeled: list[dict]
    # Normalised prefixes of every review in the domain's files (for the Blitzer overlap check).
    prefixes: set[str]
    files: list[Path]


def domain_files(fdu_dir: str | Path, domain: str) -> list[Path]:
    """The three raw files of ``domain``: train, test, unlabel."""
    fdu_dir = Path(fdu_dir)
    return [fdu_dir / f"{domain}.task.{kind}" for kind in ("train", "test", "unlabel")]


def import_domain(fdu_dir: str | Path, domain: str) -> DomainData:
    """Import one FDU-MTL domain: labeled reviews, sentiment pairs and prompts, all split by hash."""
    train_path, test_path, unlabel_path = domain_files(fdu_dir, domain)
    header = review_header(domain)
    labeled_raw = read_labeled(train_path) + read_labeled(test_path)
    unlabeled_raw = read_unlabeled(unlabel_path)

    # Pool and deduplicate labeled reviews; a text seen with both labels is dropped as unreliable.
    by_id: dict[str, tuple[int, str]] = {}
    conflicted: set[str] = set()
    for label, text in labeled_raw:
        rid = text_id(text)
        if rid in by_id and by_id[rid][0] != label:
            conflicted.add(rid)
        by_id.setdefault(rid, (label, text))
    reviews = [Review(rid, label, text, assign_split(domain, rid, LABELED_REVIEW_SPLITS))
               for rid, (label, text) in sorted(by_id.items()) if rid not in conflicted]
    labeled_prefixes = {match_prefix(text) for _, text in labeled_raw}

    labeled_rows = [{
        "review_id": f"{domain}:r{r.review_id}", "domain": domain, "split": r.split,
        "prompt": header, "text": r.text, "label": r.label, "source": SOURCE,
    } for r in reviews]
    pair_rows = sentiment_pairs(domain, reviews, SOURCE, header, attribution=ATTRIBUTION)

    prompt_rows = []
    seen: set[str] = set()
    for text in unlabeled_raw:
        prefix = match_prefix(text)
        # An unlabeled copy of a labeled review would put one review in two splits.
        if prefix in labeled_prefixes:
            continue
        rid = text_id(text)
        if rid in seen or len(text.split()) < MIN_PROMPT_REVIEW_WORDS:
            continue
        seen.add(rid)
        item_id = f"{domain}:u{rid}"
        prompt_rows.append({
            "prompt_id": item_id, "item_id": item_id, "domain": domain,
            "split": assign_split(domain, rid, UNLABELED_REVIEW_SPLITS),
            "prompt": header + first_words(text, PROMPT_WORDS), "source": SOURCE,
            "attribution": ATTRIBUTION,
        })
    prefixes = labeled_prefixes | {match_prefix(t) for t in unlabeled_raw}
    return DomainData(domain, pair_rows, prompt_rows, labeled_rows, prefixes,
                      [train_path, test_path, unlabel_path])
