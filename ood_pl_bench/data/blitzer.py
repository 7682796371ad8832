"""Blitzer multi-domain sentiment (``.review`` XML) importer: graded-rating training pairs.

Per ``SPLITS.md`` these reviews only add training pairs to the sentiment task's *source* domains
(books, dvd, electronics, kitchen → kitchen_housewares), split ``train`` only, and any review whose
normalised text prefix also occurs in an FDU-MTL file of the same domain is dropped first, so no
Blitzer copy of an FDU-MTL oracle/test review can reach training. Pairs put a 4-5 star review
(chosen) against a 1-2 star review (rejected); the scores are the star ratings.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import DataError
from .fdu_mtl import Review, match_prefix, review_header, sentiment_pairs
from .text import collapse_whitespace, text_id

SOURCE = "blitzer"
# Blitzer folder name → FDU-MTL domain name.
BLITZER_DOMAINS = {
    "books": "books", "dvd": "dvd", "electronics": "electronics", "kitchen": "kitchen_housewares",
}
REVIEW_FILES = ("positive.review", "negative.review")
POSITIVE_MIN_STARS = 4.0
NEGATIVE_MAX_STARS = 2.0
ATTRIBUTION = json.dumps({"dataset": "Blitzer et al. 2007, sorted_data_acl"}, sort_keys=True)


def read_reviews(path: str | Path) -> list[dict]:
    """The reviews of a ``.review`` file: ``unique_id``, ``rating`` (float), ``title``, ``text``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Missing raw file {path}: set --data-dir or OODPL_DATA")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"Malformed XML in {path}: {exc}") from exc
    rows = []
    for elem in root.iter("review"):
        rating_text = (elem.findtext("rating") or "").strip()
        try:
            rating = float(rating_text)
        except ValueError:
            raise DataError(f"Malformed rating {rating_text!r} in {path}") from None
        rows.append({
            "unique_id": (elem.findtext("unique_id") or "").strip(),
            "rating": rating,
            "title": collapse_whitespace(elem.findtext("title")),
            "text": collapse_whitespace(elem.findtext("review_text")),
        })
    return rows


def import_domain(blitzer_dir: str | Path, folder: str, exclude_prefixes: set[str]) -> tuple[list[dict], list[Path], int]:
    """Training pairs of one Blitzer category, without reviews whose prefix is in ``exclude_prefixes``.

    Returns ``(pair_rows, files_read, n_dropped_as_overlap)``.
    """
    domain = BLITZER_DOMAINS[folder]
    files = [Path(blitzer_dir) / folder / name for name in REVIEW_FILES]
    reviews: dict[str, Review] = {}
    stars: dict[str, float] = {}
    dropped = 0
    for path in files:
        for row in read_reviews(path):
            if not row["text"]:
                continue
            if match_prefix(row["text"]) in exclude_prefixes:
                dropped += 1
                continue
            rating = row["rating"]
            if rating >= POSITIVE_MIN_STARS:
                label = 1
            elif rating <= NEGATIVE_MAX_STARS:
                label = 0
            else:  # 3 stars is neither; the distributed files hold none, but others might
                continue
            rid = text_id(row["text"])
            if rid in reviews:
                continue
            reviews[rid] = Review(rid, label, row["text"], "train")
            stars[rid] = rating
    pairs = sentiment_pairs(domain, list(reviews.values()), SOURCE, review_header(domain),
                            score=stars, id_prefix="b", attribution=ATTRIBUTION)
    return pairs, files, dropped
