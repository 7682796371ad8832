"""Build an edition from raw files into the cache: import, split, cap, write parquet + manifest.

``se-amazon`` reads the offline dumps of ``../shared/data`` (Stack Exchange ``Posts.xml``, FDU-MTL,
Blitzer); ``shp-amazon23`` reads local files in the SHP / Amazon Reviews 2023 schemas (see
:mod:`ood_pl_bench.data.hub`). The protocol caps of each TaskSpec are applied here, once, so every
run of a task scores the same items: test pairs per domain are cut to ``test_pairs_per_domain``
and evaluation prompts to ``eval_prompts_per_domain``, both in a fixed hash order; all ``oracle``
and ``train`` rows are kept.

The whole version folder is written through :func:`ood_pl_bench.io.atomic_path`, so a failed or
killed build leaves no half-written edition behind.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..errors import DataError, UsageError
from ..io import atomic_path, sha256_file, write_json
from ..paths import cache_dir, find_data_dir
from ..tasks import EDITIONS, SE_AMAZON, SHP_AMAZON23, TaskSpec, list_tasks
from . import blitzer, fdu_mtl, hub, stackexchange
from .edition import BUILD_INFO, EDITION_VERSION, MANIFEST, edition_root, manifest_content_hash
from .schema import (LABELED_COLUMNS, LABELED_TABLE, PAIR_COLUMNS, PAIR_SPLITS, PAIR_TABLE,
                     PROMPT_COLUMNS, PROMPT_SPLITS, PROMPT_TABLE)
from .splits import (LABELED_REVIEW_SPLITS, SE_QUESTION_SPLITS, UNLABELED_REVIEW_SPLITS, order_key)

# Version of the build code: recorded in the manifest; bumped with EDITION_VERSION when rows change.
BUILD_CODE_VERSION = "1"
FDU_DIR = Path("amazon") / "fdu-mtl"
BLITZER_DIR = Path("amazon") / "blitzer"
SE_DIR = Path("stackexchange")
HUB_RAW_CACHE = "hub-raw"


@dataclass
class TaskRows:
    """The rows of one task before they are written: three tables and per-domain import stats."""

    pairs: list[dict] = field(default_factory=list)
    prompts: list[dict] = field(default_factory=list)
    labeled: list[dict] = field(default_factory=list)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Reporter:
    """Progress for a build: a rich ``Progress`` (add_task/update), a callable(str), or nothing."""

    def __init__(self, progress: Any, description: str, total: int):
        self._progress = progress
        self._task = None
        if progress is not None and hasattr(progress, "add_task"):
            self._task = progress.add_task(description, total=total)

    def step(self, message: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, advance=1, description=message)
        elif callable(self._progress):
            self._progress(message)

    def done(self) -> None:
        if self._task is not None and hasattr(self._progress, "remove_task"):
            self._progress.remove_task(self._task)


# --- raw files ----------------------------------------------------------------------------------


def _task(edition: str, name: str) -> TaskSpec:
    return next(t for t in list_tasks(edition) if t.name == name)


def raw_files(edition: str, data_dir: str | os.PathLike | None = None) -> tuple[Path, list[Path]]:
    """``(root, files)``: the raw files a build of ``edition`` reads, paths relative to ``root``.

    Raises DataError naming the first missing file.
    """
    if edition == SE_AMAZON:
        root = find_data_dir(data_dir)
        files: list[Path] = []
        for site in _task(SE_AMAZON, "qa").domains:
            files.append(root / SE_DIR / site / "Posts.xml")
            users = root / SE_DIR / site / "Users.xml"
            if users.is_file():
                files.append(users)
        sentiment = _task(SE_AMAZON, "sentiment")
        for domain in sentiment.domains:
            files.extend(fdu_mtl.domain_files(root / FDU_DIR, domain))
        for folder, domain in blitzer.BLITZER_DOMAINS.items():
            if domain in _blitzer_domains(sentiment):
                files.extend(root / BLITZER_DIR / folder / name for name in blitzer.REVIEW_FILES)
        for path in files:
            if not path.is_file():
                raise DataError(f"Missing raw file {path}: set --data-dir or OODPL_DATA")
        return root, files
    if edition == SHP_AMAZON23:
        base = hub_data_root(data_dir)
        shp_files = hub.record_files(base / hub.SHP_DIR)
        if not shp_files:
            raise DataError(f"Missing raw files: no SHP files (jsonl/json/parquet) under {base / hub.SHP_DIR}; "
                            "set --data-dir or OODPL_DATA to a folder with shp/ and amazon23/")
        cats = hub.amazon23_files(base / hub.AMAZON23_DIR, _task(SHP_AMAZON23, "sentiment").domains)
        if not cats:
            raise DataError(f"Missing raw files: no Amazon Reviews 2023 <Category>.jsonl files under "
                            f"{base / hub.AMAZON23_DIR}; set --data-dir or OODPL_DATA")
        return base, sorted(shp_files + [p for ps in cats.values() for p in ps])
    raise UsageError(f"Unknown edition {edition!r}; choose one of: {', '.join(EDITIONS)}")


def hub_data_root(data_dir: str | os.PathLike | None) -> Path:
    """The local folder of the hub edition's files (``data_dir``/``OODPL_DATA``/…, or its ``hub/``)."""
    return hub.hub_root(find_data_dir(data_dir))


def _blitzer_domains(task: TaskSpec) -> set[str]:
    """Domains that may take Blitzer training pairs: source in every fold, held out in none."""
    held_out = set(task.held_out_domains)
    return {d for fold in task.folds for d in fold.source if d not in held_out}


# --- importing ----------------------------------------------------------------------------------


def _import_se_amazon(root: Path, report: _Reporter) -> dict[str, TaskRows]:
    qa = TaskRows()
    for site in _task(SE_AMAZON, "qa").domains:
        report.step(f"importing Stack Exchange {site}")
        data = stackexchange.import_site(root / SE_DIR / site, site)
        qa.pairs += data.pairs
        qa.prompts += data.prompts
        qa.stats[site] = {"questions": data.n_questions, "answers": data.n_answers}

    sentiment = TaskRows()
    spec = _task(SE_AMAZON, "sentiment")
    prefixes: dict[str, set[str]] = {}
    for domain in spec.domains:
        report.step(f"importing FDU-MTL {domain}")
        data = fdu_mtl.import_domain(root / FDU_DIR, domain)
        sentiment.pairs += data.pairs
        sentiment.prompts += data.prompts
        sentiment.labeled += data.labeled
        prefixes[domain] = data.prefixes
        sentiment.stats[domain] = {"labeled_reviews": len(data.labeled)}
    allowed = _blitzer_domains(spec)
    for folder, domain in blitzer.BLITZER_DOMAINS.items():
        if domain not in allowed:
            continue
        report.step(f"importing Blitzer {folder}")
        pairs, _files, dropped = blitzer.import_domain(root / BLITZER_DIR, folder, prefixes[domain])
        sentiment.pairs += pairs
        sentiment.stats[domain].update({"blitzer_pairs": len(pairs), "blitzer_dropped_overlap": dropped})
    return {"qa": qa, "sentiment": sentiment}


def _import_shp_amazon23(root: Path, report: _Reporter) -> dict[str, TaskRows]:
    qa_spec, sent_spec = _task(SHP_AMAZON23, "qa"), _task(SHP_AMAZON23, "sentiment")
    report.step("importing SHP")
    qa = TaskRows()
    for domain, rows in hub.import_shp(hub.record_files(root / hub.SHP_DIR), qa_spec.domains).items():
        qa.pairs += rows["pairs"]
        qa.prompts += rows["prompts"]
    report.step("importing Amazon Reviews 2023")
    sentiment = TaskRows()
    files = hub.amazon23_files(root / hub.AMAZON23_DIR, sent_spec.domains)
    for domain, rows in hub.import_amazon23(files).items():
        sentiment.pairs += rows["pairs"]
        sentiment.prompts += rows["prompts"]
        sentiment.labeled += rows["labeled"]
    return {"qa": qa, "sentiment": sentiment}


# --- protocol caps, order, checks ---------------------------------------------------------------


def _row_key(id_column: str, splits: tuple[str, ...]) -> Callable[[dict], tuple]:
    return lambda r: (r["domain"], splits.index(r["split"]), order_key(r["domain"], r[id_column]))


def apply_protocol(rows: TaskRows, task: TaskSpec) -> TaskRows:
    """Sort rows in the fixed hash order and cap test pairs and eval prompts per domain."""
    pairs = sorted(rows.pairs, key=_row_key("pair_id", PAIR_SPLITS))
    prompts = sorted(rows.prompts, key=_row_key("prompt_id", PROMPT_SPLITS))
    labeled = sorted(rows.labeled, key=_row_key("review_id", PAIR_SPLITS))
    seen: dict[str, int] = {}
    capped_pairs = []
    for row in pairs:
        if row["split"] == "test":
            seen[row["domain"]] = seen.get(row["domain"], 0) + 1
            if seen[row["domain"]] > task.test_pairs_per_domain:
                continue
        capped_pairs.append(row)
    seen = {}
    capped_prompts = []
    for row in prompts:
        if row["split"] == "prompts":
            seen[row["domain"]] = seen.get(row["domain"], 0) + 1
            if seen[row["domain"]] > task.eval_prompts_per_domain:
                continue
        capped_prompts.append(row)
    return TaskRows(capped_pairs, capped_prompts, labeled, rows.stats)


def _count(rows: list[dict], domains: tuple[str, ...], splits: tuple[str, ...]) -> dict[str, dict[str, int]]:
    counts = {d: {s: 0 for s in splits} for d in domains}
    for row in rows:
        counts.setdefault(row["domain"], {s: 0 for s in splits})[row["split"]] += 1
    return counts


def _check_coverage(task: TaskSpec, counts: dict[str, dict[str, dict[str, int]]], root: Path) -> None:
    """Every domain needs test pairs and eval prompts; every source domain needs train pairs."""
    problems = []
    source = {d for fold in task.folds for d in fold.source}
    for domain in task.domains:
        missing = []
        if not counts["pairs"][domain]["test"]:
            missing.append("test pairs")
        if not counts["prompts"][domain]["prompts"]:
            missing.append("evaluation prompts")
        if domain in source and not counts["pairs"][domain]["train"]:
            missing.append("train pairs")
        if missing:
            problems.append(f"{domain} ({', '.join(missing)})")
    if problems:
        raise DataError(f"Raw data under {root} gives task {task.name!r} no usable rows for: "
                        f"{'; '.join(problems)}")


# --- writing ------------------------------------------------------------------------------------


def _schemas():
    import pyarrow as pa

    def schema(columns, types):
        return pa.schema([(c, types.get(c, pa.string())) for c in columns])

    return {
        PAIR_TABLE: schema(PAIR_COLUMNS, {"chosen_score": pa.float64(), "rejected_score": pa.float64()}),
        PROMPT_TABLE: schema(PROMPT_COLUMNS, {}),
        LABELED_TABLE: schema(LABELED_COLUMNS, {"label": pa.int64()}),
    }


def _content_sha256(rows: list[dict], columns: tuple[str, ...]) -> str:
    """sha256 of the rows as canonical JSON lines (independent of the parquet writer)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([row[c] for c in columns], ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def _write_table(path: Path, rows: list[dict], kind: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schemas()[kind]
    columns = tuple(schema.names)
    for row in rows:
        missing = set(columns) - set(row)
        if missing:  # an importer bug, not a user error: fail loudly
            raise ValueError(f"{kind} row {row.get(columns[0])!r} lacks {sorted(missing)}")
    table = pa.Table.from_pylist([{c: row[c] for c in columns} for row in rows], schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size, "rows": len(rows),
            "content_sha256": _content_sha256(rows, columns)}


def _pairs(splits: tuple[tuple[str, float], ...]) -> list[list]:
    # A list, not a dict: the manifest's JSON is key-sorted and the bucket order matters.
    return [[name, fraction] for name, fraction in splits]


def _split_method() -> dict:
    return {
        "rule": "split = bucket of sha256(f'{domain}:{item_id}') (first 64 bits / 2**64) under cumulative fractions",
        "order": "rows sorted by domain, split, sha256(f'{domain}:{row_id}'); caps keep the first rows",
        "stackexchange_questions": _pairs(SE_QUESTION_SPLITS),
        "labeled_reviews": _pairs(LABELED_REVIEW_SPLITS),
        "unlabeled_reviews": _pairs(UNLABELED_REVIEW_SPLITS),
        "shp_posts": _pairs(SE_QUESTION_SPLITS),
        "amazon23_reviews": _pairs(SE_QUESTION_SPLITS),
        "max_pairs_per_question": stackexchange.MAX_PAIRS_PER_QUESTION,
        "max_pairs_per_shp_post": hub.MAX_PAIRS_PER_POST,
        "sentiment_prompt_words": fdu_mtl.PROMPT_WORDS,
        "review_match_prefix_chars": fdu_mtl.MATCH_PREFIX_CHARS,
    }


def build_edition(edition: str = "se-amazon", data_dir: str | os.PathLike | None = None,
                  force: bool = False, progress: Any = None, download: bool = False) -> Path:
    """Build ``edition`` into ``<cache>/editions/<edition>/v<EDITION_VERSION>`` and return that folder.

    A built edition is reused unless ``force``. Raw data is found by
    :func:`ood_pl_bench.paths.find_data_dir`. ``progress`` is a rich ``Progress`` or a callable
    taking a message. ``download=True`` (hub edition only, needs network) fetches the hub sources
    into ``<cache>/hub-raw`` when no local copy is found. Missing or malformed raw files raise a
    DataError naming the file; nothing is left half-written.
    """
    if edition not in EDITIONS:
        raise UsageError(f"Unknown edition {edition!r}; choose one of: {', '.join(EDITIONS)}")
    root = edition_root(edition)
    if not force and (root / MANIFEST).is_file():
        return root
    started = time.perf_counter()
    if edition == SHP_AMAZON23 and download:
        data_dir = _ensure_hub_sources(data_dir, progress)
    raw_root, files = raw_files(edition, data_dir)
    tasks = list_tasks(edition)
    steps = (len(files) + 2 * len(tasks) + 2) if edition == SE_AMAZON else 2 * len(tasks) + 4
    report = _Reporter(progress, f"building {edition}", steps)
    try:
        imported = (_import_se_amazon if edition == SE_AMAZON else _import_shp_amazon23)(raw_root, report)
        with atomic_path(root) as tmp:
            tmp.mkdir()
            manifest_files: dict[str, dict] = {}
            task_info: dict[str, dict] = {}
            for spec in tasks:
                report.step(f"writing {spec.name}")
                rows = apply_protocol(imported[spec.name], spec)
                counts = {
                    PAIR_TABLE: _count(rows.pairs, spec.domains, PAIR_SPLITS),
                    PROMPT_TABLE: _count(rows.prompts, spec.domains, PROMPT_SPLITS),
                    LABELED_TABLE: _count(rows.labeled, spec.domains if rows.labeled else (), PAIR_SPLITS),
                }
                _check_coverage(spec, counts, raw_root)
                for kind, table_rows in ((PAIR_TABLE, rows.pairs), (PROMPT_TABLE, rows.prompts),
                                         (LABELED_TABLE, rows.labeled)):
                    rel = f"{spec.name}/{kind}.parquet"
                    manifest_files[rel] = _write_table(tmp / rel, table_rows, kind)
                task_info[spec.name] = {
                    "description": spec.description,
                    "folds": [{"name": f.name, "source": list(f.source), "held_out": list(f.held_out)}
                              for f in spec.folds],
                    "protocol": {"test_pairs_per_domain": spec.test_pairs_per_domain,
                                 "eval_prompts_per_domain": spec.eval_prompts_per_domain},
                    "counts": counts,
                    "import_stats": rows.stats,
                }
            report.step("hashing raw files")
            raw = {p.relative_to(raw_root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                   for p in files}
            import pyarrow

            manifest = {
                "edition": edition,
                "version": EDITION_VERSION,
                "code_version": BUILD_CODE_VERSION,
                # Deterministic creation info only, so rebuilding the same data gives the same
                # manifest and data hash; time and place of the build are in build_info.json.
                "created": {"by": f"ood_pl_bench {__version__}", "pyarrow": pyarrow.__version__},
                "split_method": _split_method(),
                "tasks": task_info,
                "files": manifest_files,
                "content_sha256": manifest_content_hash(manifest_files),
                "raw_files": raw,
            }
            write_json(tmp / MANIFEST, manifest)
            write_json(tmp / BUILD_INFO, {
                "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "raw_dir": str(raw_root),
                "python": platform.python_version(),
                "build_seconds": round(time.perf_counter() - started, 2),
            })
    finally:
        report.done()
    return root


def _ensure_hub_sources(data_dir: str | os.PathLike | None, progress: Any) -> Path:
    """A local folder with the hub sources: the given one if it has them, else a fresh download."""
    try:
        raw_files(SHP_AMAZON23, data_dir)
        return find_data_dir(data_dir)
    except DataError:
        pass
    dest = cache_dir() / HUB_RAW_CACHE
    try:
        raw_files(SHP_AMAZON23, dest)
        return dest
    except DataError:
        pass
    say = progress if callable(progress) and not hasattr(progress, "add_task") else None
    qa, sent = _task(SHP_AMAZON23, "qa"), _task(SHP_AMAZON23, "sentiment")
    with atomic_path(dest) as tmp:
        hub.download_hub_sources(tmp, qa.domains, sent.domains, progress=say)
    return dest
