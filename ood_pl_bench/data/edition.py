"""A built, versioned edition: lazy table access, counts, manifest checks, and load-or-build.

Layout: ``<cache>/editions/<edition>/v<EDITION_VERSION>/`` with ``manifest.json``,
``build_info.json`` and ``<task>/{pairs,prompts,labeled}.parquet``. Rows of a table are sorted by
domain, split and a hash of their id, so the first ``k`` rows of a (domain, split) are a fixed
pseudo-random subset (what a reduced profile scores) and the capped evaluation sets are prefixes
of the uncapped hash order.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError
from ..io import read_json, sha256_file
from ..paths import cache_dir
from ..tasks import EDITIONS, TaskSpec, get_task, list_tasks
from .schema import (LABELED_TABLE, PAIR_SPLITS, PAIR_TABLE, PROMPT_SPLITS, PROMPT_TABLE)

# Bump when the rows an edition holds change for the same raw files (split rule, caps, cleaning).
EDITION_VERSION = 1
MANIFEST = "manifest.json"
BUILD_INFO = "build_info.json"


def edition_root(edition: str, version: int = EDITION_VERSION) -> Path:
    """The folder of a built edition in the cache (it may not exist yet)."""
    return cache_dir() / "editions" / edition / f"v{version}"


class Edition:
    """A built edition on disk. Tables are read lazily with pyarrow and cached in memory."""

    def __init__(self, root: str | os.PathLike):
        """Open the edition at ``root`` (a folder with ``manifest.json``); DataError if there is none."""
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise DataError(f"No edition at {self.root}: {MANIFEST} is missing; build it with `oodpl data build`")
        try:
            self.manifest: dict[str, Any] = read_json(manifest_path)
        except (OSError, ValueError) as exc:
            raise DataError(f"Malformed edition manifest {manifest_path}: {exc}") from exc
        try:
            self.name: str = self.manifest["edition"]
            self.version: int = int(self.manifest["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"Malformed edition manifest {manifest_path}: no edition/version") from exc
        self._manifest_sha256 = sha256_file(manifest_path)
        self._groups: dict[tuple[str, str], dict[tuple[str, str], list[dict]]] = {}

    def __repr__(self) -> str:
        return f"Edition({self.name!r}, v{self.version}, {self.data_hash}, {str(self.root)!r})"

    # --- identity -------------------------------------------------------------------------

    @property
    def data_hash(self) -> str:
        """sha256 of ``manifest.json`` (first 16 hex digits): names the data in every result."""
        return self._manifest_sha256[:16]

    @property
    def content_hash(self) -> str:
        """A hash of the rows only (not of parquet bytes), equal across pyarrow versions."""
        return self.manifest["content_sha256"][:16]

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names this edition holds."""
        return tuple(sorted(self.manifest["tasks"]))

    def task(self, task: str) -> TaskSpec:
        """The TaskSpec of ``task`` in this edition (UsageError for an unknown task)."""
        spec = get_task(task, self.name)
        if task not in self.manifest["tasks"]:
            raise UsageError(f"Task {task!r} is not in edition {self.name!r} at {self.root}")
        return spec

    def domains(self, task: str) -> tuple[str, ...]:
        """The domains of ``task``, in fold order."""
        return self.task(task).domains

    # --- tables ---------------------------------------------------------------------------

    def _check(self, task: str, domain: str | None, split: str, splits: tuple[str, ...]) -> None:
        spec = self.task(task)
        if domain is not None and domain not in spec.domains:
            raise UsageError(f"Unknown domain {domain!r} of task {task!r}; choose one of: {', '.join(spec.domains)}")
        if split not in splits:
            raise UsageError(f"Unknown split {split!r}; choose one of: {', '.join(splits)}")

    def _table(self, task: str, kind: str) -> dict[tuple[str, str], list[dict]]:
        key = (task, kind)
        if key not in self._groups:
            import pyarrow.parquet as pq

            rel = f"{task}/{kind}.parquet"
            path = self.root / rel
            if not path.is_file():
                raise DataError(f"Edition file {path} is missing; rebuild with `oodpl data build --force`")
            try:
                rows = pq.read_table(path).to_pylist()
            except Exception as exc:  # pyarrow raises several types for a damaged file
                raise DataError(f"Malformed edition file {path}: {exc}; rebuild with `oodpl data build --force`") from exc
            groups: dict[tuple[str, str], list[dict]] = {}
            for row in rows:
                groups.setdefault((row["domain"], row["split"]), []).append(row)
            self._groups[key] = groups
        return self._groups[key]

    def pairs(self, task: str, domain: str, split: str) -> list[dict]:
        """Preference pairs (PAIR_COLUMNS) of one domain and split, in the edition's fixed order."""
        self._check(task, domain, split, PAIR_SPLITS)
        return [dict(r) for r in self._table(task, PAIR_TABLE).get((domain, split), [])]

    def prompts(self, task: str, domain: str, split: str) -> list[dict]:
        """Prompts (PROMPT_COLUMNS) of one domain; split ``train`` (unlabeled) or ``prompts`` (eval)."""
        self._check(task, domain, split, PROMPT_SPLITS)
        return [dict(r) for r in self._table(task, PROMPT_TABLE).get((domain, split), [])]

    def labeled(self, task: str, split: str, domain: str | None = None) -> list[dict]:
        """Single labeled reviews (LABELED_COLUMNS) of a split, of one domain or all (sentiment only)."""
        self._check(task, domain, split, PAIR_SPLITS)
        groups = self._table(task, LABELED_TABLE)
        domains = [domain] if domain is not None else sorted({d for d, _ in groups})
        return [dict(r) for d in domains for r in groups.get((d, split), [])]

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """Row counts ``{task: {domain: {"pairs/train": n, …, "prompts/prompts": n, "labeled/test": n}}}``."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for task, info in self.manifest["tasks"].items():
            per_domain: dict[str, dict[str, int]] = {}
            for kind, by_domain in info["counts"].items():
                for domain, by_split in by_domain.items():
                    for split, n in by_split.items():
                        per_domain.setdefault(domain, {})[f"{kind}/{split}"] = int(n)
            out[task] = per_domain
        return out

    # --- integrity ------------------------------------------------------------------------

    def check(self) -> None:
        """Cheap integrity check: every file of the manifest exists with its recorded size."""
        for rel, info in self.manifest.get("files", {}).items():
            path = self.root / rel
            if not path.is_file():
                raise DataError(f"Edition file {path} is missing; rebuild with `oodpl data build --force`")
            if path.stat().st_size != int(info["bytes"]):
                raise DataError(f"Edition file {path} has the wrong size (corrupt or partial); "
                                "rebuild with `oodpl data build --force`")

    def verify(self) -> None:
        """Full integrity check: the sha256 of every file matches the manifest (DataError if not)."""
        self.check()
        for rel, info in self.manifest.get("files", {}).items():
            path = self.root / rel
            if sha256_file(path) != info["sha256"]:
                raise DataError(f"Edition file {path} does not match its sha256 in the manifest; "
                                "rebuild with `oodpl data build --force`")


def _raw_fingerprint_matches(edition: Edition, data_dir: str | os.PathLike) -> bool:
    """True when the raw files a build would read now have the paths and sizes the edition used."""
    from .build import raw_files

    try:
        root, files = raw_files(edition.name, data_dir)
    except DataError:
        return False
    now = {p.relative_to(root).as_posix(): p.stat().st_size for p in files}
    used = {rel: int(info["bytes"]) for rel, info in edition.manifest.get("raw_files", {}).items()}
    return now == used


def load_edition(edition: str = "se-amazon", data_dir: str | os.PathLike | None = None,
                 build: bool = True, progress: Any = None, download: bool = False) -> Edition:
    """Open the cached edition, building it first when it is missing (and ``build`` is True).

    Raw data is found by :func:`ood_pl_bench.paths.find_data_dir` (``data_dir``, ``OODPL_DATA``,
    ``../shared/data``). When ``data_dir`` is given and its files differ (paths or sizes) from
    those the cached edition was built from, the edition is rebuilt. A cached edition whose files
    fail the cheap size check is rebuilt too (or refused with ``build=False``).
    ``download=True`` lets the hub edition fetch its sources when no local copy exists.
    """
    if edition not in EDITIONS:
        raise UsageError(f"Unknown edition {edition!r}; choose one of: {', '.join(EDITIONS)}")
    root = edition_root(edition)
    reason = None
    if (root / MANIFEST).is_file():
        try:
            ed = Edition(root)
            ed.check()
            if data_dir is None or _raw_fingerprint_matches(ed, data_dir):
                return ed
            reason = f"the raw files in {data_dir} differ from those edition {edition!r} was built from"
        except DataError as exc:
            reason = exc.message
    if not build:
        raise DataError(reason or f"Edition {edition!r} is not built; run `oodpl data build --edition {edition}`")
    from .build import build_edition

    path = build_edition(edition, data_dir=data_dir, force=True, progress=progress, download=download)
    return Edition(path)


def manifest_content_hash(files: dict[str, dict]) -> str:
    """The edition content hash: sha256 over the sorted (file, row-content sha256) list."""
    payload = json.dumps(sorted((rel, info["content_sha256"]) for rel, info in files.items()))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def edition_tasks(edition: str) -> list[TaskSpec]:
    """The task specs of ``edition`` (UsageError for an unknown edition)."""
    if edition not in EDITIONS:
        raise UsageError(f"Unknown edition {edition!r}; choose one of: {', '.join(EDITIONS)}")
    return list_tasks(edition)
