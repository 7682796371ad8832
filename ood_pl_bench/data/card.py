"""Data cards: a markdown summary of one task of a built edition.

The card states where the data comes from, its licence and how to attribute it (facts from
``../shared/data/SOURCES.md``), the folds and roles, the split method, per-domain counts per split,
how far the trivial "longer response wins" rule gets on each domain's test pairs (a check that
length alone does not solve the benchmark) and, when given, the gold reward model's accuracy.
"""

from __future__ import annotations

import math
from typing import Iterable

from .edition import Edition
from .schema import PAIR_SPLITS

_SOURCES = {
    ("se-amazon", "qa"): """\
**Source.** Ten Stack Exchange sites, `Posts.xml` (and `Users.xml` where available) from the public
data-dump format, each an unmodified copy of a file in a public GitHub repository (repository and
commit per site in `SOURCES.md` of the raw data folder). The dumps are snapshots from 2008 to 2021.
A pair is two answers of the same question with different `Score` (net votes at dump time); the
higher-scored answer is chosen, ties are dropped.

**Licence and attribution.** Stack Exchange user content is licensed CC BY-SA by contribution date:
2.5 before 2011-04-08, 3.0 until 2018-05-02, 4.0 from then on (the `ContentLicense` attribute gives
the version per post where present). Every row carries its attribution in the `attribution` column:
links to the question and answers (`https://<host>/q/<id>`, `https://<host>/a/<id>`), the authors'
links (`https://<host>/users/<id>`) and names where known, and each post's licence. Derived data must
be shared under the same licence. Results and submissions refer to items by id and hash only.
Notes: `italian` is mixed Italian/English; `stackoverflow` covers only the site's first five days
(2008) and `matheducators` and `coffee` only their first weeks.""",
    ("se-amazon", "sentiment"): """\
**Source.** Amazon product reviews of 14 categories from the FDU-MTL splits (labeled `train`/`test`
files pooled and re-split; `unlabel` files give the prompts) and, for the four source categories
only, the Blitzer multi-domain sentiment reviews with star ratings (training pairs only; any review
whose normalised text prefix also occurs in an FDU-MTL file of its category is dropped first).
A pair is (category header, positive review, negative review).

**Licence and citation.** Research datasets distributed without an explicit licence; the review
texts are Amazon customer reviews, for research use only. Cite J. Blitzer, M. Dredze and F. Pereira,
"Biographies, Bollywood, Boom-boxes and Blenders: Domain Adaptation for Sentiment Classification",
ACL 2007, and P. Liu, X. Qiu and X. Huang, "Adversarial Multi-task Learning for Text Classification",
ACL 2017.""",
    ("shp-amazon23", "qa"): """\
**Source.** Stanford Human Preferences (`stanfordnlp/SHP`): pairs of root comments of Reddit posts
where one comment was preferred (more upvotes although posted later). Cite K. Ethayarajh, Y. Choi
and S. Swayamdipta, "Understanding Dataset Difficulty with V-Usable Information", ICML 2022.

**Licence and attribution.** See the `stanfordnlp/SHP` dataset card for its terms; Reddit content
is subject to Reddit's terms. Rows carry links to the post and comments in `attribution`.""",
    ("shp-amazon23", "sentiment"): """\
**Source.** Amazon Reviews 2023 (`McAuley-Lab/Amazon-Reviews-2023`), one review file per category;
4-5 stars positive, 1-2 stars negative, 3 stars used for prompts only. Cite Y. Hou, J. Li, Z. He,
A. Yan, X. Chen and J. McAuley, "Bridging Language and Items for Retrieval and Recommendation", 2024.

**Licence.** See the dataset card of `McAuley-Lab/Amazon-Reviews-2023`; customer reviews, for
research use.""",
}


def length_rule_accuracy(pairs: Iterable[dict]) -> float:
    """Accuracy of "the longer response (in characters) is preferred"; ties count 0.5.

    Returns NaN for no pairs.
    """
    total = 0.0
    n = 0
    for pair in pairs:
        chosen, rejected = len(pair["chosen"]), len(pair["rejected"])
        total += 1.0 if chosen > rejected else 0.5 if chosen == rejected else 0.0
        n += 1
    return total / n if n else math.nan


def _fmt(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def render_data_card(edition: Edition, task: str, gold_accuracy: dict[str, float] | None = None) -> str:
    """A markdown data card for ``task`` of ``edition``; ``gold_accuracy`` maps domain → accuracy."""
    spec = edition.task(task)
    manifest = edition.manifest
    info = manifest["tasks"][task]
    counts = edition.counts()[task]
    method = manifest.get("split_method", {})
    lines = [
        f"# Data card: {edition.name} / {task}",
        "",
        spec.description,
        "",
        f"- edition `{edition.name}` version {edition.version} (build code {manifest.get('code_version')}), "
        f"data hash `{edition.data_hash}`, content hash `{edition.content_hash}`",
        f"- protocol: at most {spec.test_pairs_per_domain} test pairs and "
        f"{spec.eval_prompts_per_domain} evaluation prompts per domain (fewer where a domain has less)",
        "",
        "## Source, licence and attribution",
        "",
        _SOURCES.get((edition.name, task), "See the raw data folder's SOURCES.md."),
        "",
        "## Folds and roles",
        "",
        "| fold | source domains (preference labels used) | held-out domains (no labels) |",
        "| --- | --- | --- |",
    ]
    for fold in spec.folds:
        lines.append(f"| {fold.name} | {', '.join(fold.source)} | {', '.join(fold.held_out)} |")
    lines += ["", "## Split method", ""]
    if task == "qa":
        fractions = method.get("stackexchange_questions" if edition.name == "se-amazon" else "shp_posts", [])
        unit = "question" if edition.name == "se-amazon" else "post"
        cap = method.get("max_pairs_per_question" if edition.name == "se-amazon" else "max_pairs_per_shp_post")
        lines.append(
            f"Each {unit} goes to one split by the hash `sha256(\"<domain>:<id>\")` with fractions "
            f"{_fractions(fractions)}; all its pairs follow it (at most {cap} pairs per {unit}, picked by "
            f"hash). {unit.capitalize()}s in `train` are also unlabeled training prompts; those in "
            "`prompts` are evaluation prompts only.")
    elif edition.name == "se-amazon":
        lines.append(
            "Each labeled review (identified by the hash of its normalised text; duplicates merged) goes "
            f"to one split by `sha256(\"<domain>:<id>\")` with fractions {_fractions(method.get('labeled_reviews', []))}; "
            "within a split, positives and negatives are sorted by hash and paired. Unlabeled reviews "
            f"split {_fractions(method.get('unlabeled_reviews', []))} into training and evaluation prompts "
            f"(the header plus the first {method.get('sentiment_prompt_words')} words); unlabeled copies of "
            "labeled reviews are dropped.")
    else:
        lines.append(
            "Each review (identified by the hash of its normalised text) goes to one split by "
            f"`sha256(\"<domain>:<id>\")` with fractions {_fractions(method.get('amazon23_reviews', []))}; "
            "positives and negatives of a split are sorted by hash and paired; reviews in `train` and "
            "`prompts` also give training and evaluation prompts.")
    lines.append("Test pairs and evaluation prompts are then capped per domain in the same hash order; "
                 "`oracle` rows train the gold reward model only and never reach a solver.")

    has_labeled = any(k.startswith("labeled/") for c in counts.values() for k in c)
    header = ["domain", "role", "train pairs", "oracle pairs", "test pairs", "train prompts", "eval prompts"]
    keys = ["pairs/train", "pairs/oracle", "pairs/test", "prompts/train", "prompts/prompts"]
    if has_labeled:
        header += [f"labeled {s}" for s in PAIR_SPLITS]
        keys += [f"labeled/{s}" for s in PAIR_SPLITS]
    header += ["length-rule acc. (test)"] + (["gold acc."] if gold_accuracy else [])
    lines += ["", "## Counts per domain and split", "",
              "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    length_acc: dict[str, float] = {}
    for domain in spec.domains:
        roles = [f"held-out ({f.name})" for f in spec.folds if domain in f.held_out]
        roles += [f"source ({f.name})" for f in spec.folds if domain in f.source]
        length_acc[domain] = length_rule_accuracy(edition.pairs(task, domain, "test"))
        c = counts.get(domain, {})
        cells = [domain, ", ".join(roles)] + [str(c.get(k, 0)) for k in keys] + [_fmt(length_acc[domain])]
        if gold_accuracy:
            cells.append(_fmt(gold_accuracy.get(domain)))
        lines.append("| " + " | ".join(cells) + " |")
    finite = [v for v in length_acc.values() if not math.isnan(v)]
    lines += ["", f"Length rule (\"the longer response wins\", ties 0.5) on test pairs, macro average: "
                  f"{_fmt(sum(finite) / len(finite) if finite else math.nan)}."]
    if gold_accuracy:
        vals = [gold_accuracy[d] for d in spec.domains if d in gold_accuracy]
        lines.append(f"Gold reward model accuracy on test pairs, macro average: "
                     f"{_fmt(sum(vals) / len(vals) if vals else math.nan)}.")
    stats = info.get("import_stats") or {}
    if stats:
        lines += ["", "## Import statistics", "", "| domain | " + " | ".join(sorted({k for s in stats.values() for k in s})) + " |"]
        cols = sorted({k for s in stats.values() for k in s})
        lines.append("|" + " --- |" * (len(cols) + 1))
        for domain in sorted(stats):
            lines.append("| " + " | ".join([domain] + [str(stats[domain].get(k, "")) for k in cols]) + " |")
    return "\n".join(lines) + "\n"


def _fractions(fractions: list) -> str:
    """``[[name, fraction], …]`` (as in the manifest) → ``test 0.30, oracle 0.25, …``."""
    return ", ".join(f"{name} {frac:.2f}" for name, frac in fractions) or "(see manifest)"
