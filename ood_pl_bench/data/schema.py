"""Column schema of a built edition (one parquet table per kind, per task).

Layout under the cache: ``editions/<edition>/<version>/<task>/{pairs,prompts,labeled}.parquet``
plus ``editions/<edition>/<version>/manifest.json``.

Split names. Pairs and labeled reviews: ``train`` (source-role training pairs), ``oracle`` (gold
reward models only; never shown to a solver), ``test`` (PL metrics). Prompts: ``train`` (unlabeled
training prompts, usable for every domain of a fold, held-out ones included) and ``prompts``
(generation evaluation).
"""

from __future__ import annotations

PAIR_SPLITS = ("train", "oracle", "test")
PROMPT_SPLITS = ("train", "prompts")

# Every pair row. ``attribution`` is a JSON string (post links, author ids) kept beside CC BY-SA text.
PAIR_COLUMNS = (
    "pair_id",        # stable id, e.g. "beer:q123:a456>a789"
    "item_id",        # the question / review the split is decided by
    "domain",
    "split",
    "prompt",         # x
    "chosen",         # y_w (higher score)
    "rejected",       # y_l
    "chosen_score",   # votes or stars
    "rejected_score",
    "source",         # "stackexchange", "fdu-mtl", "blitzer", "shp", "amazon23"
    "attribution",
)
PROMPT_COLUMNS = ("prompt_id", "item_id", "domain", "split", "prompt", "source", "attribution")
# Single labeled reviews (sentiment only): trains the gold sentiment classifier on ``oracle``.
LABELED_COLUMNS = ("review_id", "domain", "split", "prompt", "text", "label", "source")

PAIR_TABLE = "pairs"
PROMPT_TABLE = "prompts"
LABELED_TABLE = "labeled"
