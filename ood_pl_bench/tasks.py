"""Tasks, domains, folds and editions: the fixed part of the benchmark protocol.

A *task* is a list of folds; a fold names source domains (preference labels may reach a solver)
and held-out domains (none may). Every domain of a task is held out in exactly one fold.
The sizes and lengths below are part of the benchmark, not of a run profile: every full run of a
task is scored on the same items with the same truncation and decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UsageError


@dataclass(frozen=True)
class Fold:
    """One training of a solver: it sees labels of ``source`` and must align on ``held_out``."""

    name: str
    source: tuple[str, ...]
    held_out: tuple[str, ...]


@dataclass(frozen=True)
class Decoding:
    """Decoding used for generation; recorded in every result and cache key."""

    max_new_tokens: int = 48
    temperature: float = 1.0  # 1.0 so the KL estimate on samples from pi_theta is unbiased
    top_p: float = 1.0
    top_k: int = 0


@dataclass(frozen=True)
class TaskSpec:
    """A task of an edition: its domains, folds, protocol sizes and text format."""

    name: str
    edition: str
    description: str
    folds: tuple[Fold, ...]
    # Protocol sizes (per domain, fixed in the edition).
    test_pairs_per_domain: int = 64
    eval_prompts_per_domain: int = 32
    samples_per_eval_prompt: int = 1
    # Token truncation at scoring time (policy tokenizer): part of the protocol.
    max_prompt_tokens: int = 128
    max_response_tokens: int = 96
    eval_decoding: Decoding = field(default_factory=Decoding)
    # Reference samples per training prompt (the Y_m(x) of SPEC section 4), shared by all methods.
    reference_samples_per_prompt: int = 4
    reference_decoding: Decoding = field(default_factory=Decoding)
    # True: wrap prompts in the policy's chat template (qa); False: raw continuation (sentiment).
    chat_format: bool = True

    @property
    def domains(self) -> tuple[str, ...]:
        """All domains of the task, in fold order."""
        seen: list[str] = []
        for fold in self.folds:
            for d in fold.source + fold.held_out:
                if d not in seen:
                    seen.append(d)
        return tuple(seen)

    @property
    def held_out_domains(self) -> tuple[str, ...]:
        """The held-out domains over all folds (10 per task)."""
        return tuple(d for fold in self.folds for d in fold.held_out)

    def fold_of(self, held_out_domain: str) -> Fold:
        """The fold in which ``held_out_domain`` is held out."""
        for fold in self.folds:
            if held_out_domain in fold.held_out:
                return fold
        raise UsageError(f"{held_out_domain!r} is not a held-out domain of task {self.name!r}")


SENTIMENT_SOURCE = ("books", "dvd", "electronics", "kitchen_housewares")
SENTIMENT_HELD_OUT = (
    "apparel", "baby", "camera_photo", "health_personal_care", "magazines",
    "music", "software", "sports_outdoors", "toys_games", "video",
)
QA_GROUP_A = ("beer", "ai", "stackoverflow", "iot", "italian")
QA_GROUP_B = ("coffee", "quantumcomputing", "matheducators", "cardano", "bioinformatics")

SE_AMAZON = "se-amazon"
SHP_AMAZON23 = "shp-amazon23"

# SHP has 18 subreddits: 8 source, 10 held out (see SPEC section 2).
SHP_DOMAINS_SOURCE = (
    "askacademia", "askanthropology", "askbaking", "askcarguys",
    "askculinary", "askdocs", "askengineers", "askhr",
)
SHP_DOMAINS_HELD_OUT = (
    "askphilosophy", "askphysics", "askscience", "asksciencefiction", "asksocialscience",
    "askvet", "changemyview", "explainlikeimfive", "legaladvice", "askhistorians",
)
AMAZON23_SOURCE = ("Books", "Movies_and_TV", "Electronics", "Home_and_Kitchen")
AMAZON23_HELD_OUT = (
    "Clothing_Shoes_and_Jewelry", "Baby_Products", "Cell_Phones_and_Accessories",
    "Health_and_Household", "Magazine_Subscriptions", "CDs_and_Vinyl", "Software",
    "Sports_and_Outdoors", "Toys_and_Games", "Video_Games",
)

_TASKS: dict[tuple[str, str], TaskSpec] = {}


def _register(spec: TaskSpec) -> None:
    _TASKS[(spec.edition, spec.name)] = spec


_register(TaskSpec(
    name="sentiment", edition=SE_AMAZON,
    description="Controlled sentiment generation: continue an Amazon review prefix positively.",
    folds=(Fold("main", SENTIMENT_SOURCE, SENTIMENT_HELD_OUT),),
    chat_format=False,
))
_register(TaskSpec(
    name="qa", edition=SE_AMAZON,
    description="Knowledge answer generation: answer a Stack Exchange question.",
    folds=(Fold("A", QA_GROUP_A, QA_GROUP_B), Fold("B", QA_GROUP_B, QA_GROUP_A)),
))
_register(TaskSpec(
    name="qa", edition=SHP_AMAZON23,
    description="Reddit answer generation on SHP (stanfordnlp/SHP) subreddits.",
    folds=(Fold("main", SHP_DOMAINS_SOURCE, SHP_DOMAINS_HELD_OUT),),
))
_register(TaskSpec(
    name="sentiment", edition=SHP_AMAZON23,
    description="Controlled sentiment generation on Amazon Reviews 2023 categories.",
    folds=(Fold("main", AMAZON23_SOURCE, AMAZON23_HELD_OUT),),
    chat_format=False,
))

DEFAULT_EDITION = SE_AMAZON
EDITIONS = (SE_AMAZON, SHP_AMAZON23)


def get_task(name: str, edition: str = DEFAULT_EDITION) -> TaskSpec:
    """Return the task spec ``name`` of ``edition``; a clear UsageError for an unknown name."""
    if edition not in EDITIONS:
        raise UsageError(f"Unknown edition {edition!r}; choose one of: {', '.join(EDITIONS)}")
    spec = _TASKS.get((edition, name))
    if spec is None:
        names = sorted(t for (e, t) in _TASKS if e == edition)
        raise UsageError(f"Unknown task {name!r}; choose one of: {', '.join(names)}")
    return spec


def list_tasks(edition: str | None = None) -> list[TaskSpec]:
    """All task specs, optionally of one edition."""
    return [s for (e, _), s in sorted(_TASKS.items()) if edition in (None, e)]
