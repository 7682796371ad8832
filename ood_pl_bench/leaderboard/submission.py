"""``oodpl submit``: validate a run and add it to the leaderboard as a self-contained submission folder.

A submission lives in ``<root>/<edition>/<task>/<name>/`` (layout in :mod:`.store`): ``summary.json``
(the run's results, each sample path pointing at its ``.jsonl.gz`` copy; the recorded sha256 stays
that of the uncompressed JSONL), deterministic gzip copies of every per-sample file, the run's
``config.json`` and ``manifest.json``, and ``submission.json`` (name, time, where it came from).

Nothing is written unless the run validates. The folder is assembled beside its destination and
moved into place in one rename (:func:`ood_pl_bench.io.atomic_path`); then ``README.md`` and
``index.html`` of ``<root>`` are rendered in memory (if that fails the new folder is removed again)
and written atomically. A refused or failed submission leaves the leaderboard files as they were.
"""

from __future__ import annotations

import datetime as _dt
import re
import shutil
from pathlib import Path

from .. import __version__
from ..errors import SubmissionError
from ..io import atomic_path, write_json
from . import store
from .validate import validate

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
DEFAULT_ROOT = "leaderboards"


def default_name(results: dict) -> str:
    """The default submission name: ``<method>-<profile>-seed<seed>`` (made file-name safe)."""
    name = f"{results.get('method')}-{results.get('profile')}-seed{results.get('seed')}"
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._-")[:100] or "submission"


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid submission name, else raise :class:`SubmissionError`."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SubmissionError(f"invalid submission name {name!r}: use 1-100 letters, digits, '.', '_', '+' or '-', "
                              "starting with a letter or digit")
    return name


def submission_dir(root: str | Path, edition: str, task: str, name: str) -> Path:
    """The folder of a submission: ``<root>/<edition>/<task>/<name>``."""
    return Path(root) / edition / task / name


def submit(run_dir: str | Path, name: str | None = None, root: str | Path = DEFAULT_ROOT, *,
           replace: bool = False, data_dir: str | None = None, render: bool = True) -> Path:
    """Validate ``run_dir`` and add it to the leaderboard under ``root``; return the submission folder.

    Args:
        run_dir: a finished run directory (or an existing submission folder, to copy it to another root).
        name: the submission name (default :func:`default_name`).
        root: the leaderboard folder (default ``leaderboards``).
        replace: replace an existing submission of the same name (else refuse).
        data_dir: raw-data folder, if the edition must be built to validate against it.
        render: re-render ``<root>/README.md`` and ``<root>/index.html`` afterwards.

    Raises:
        SubmissionError: the run does not validate (one line per problem), the name is invalid or taken.
    """
    report = validate(run_dir, data_dir=data_dir)
    report.raise_if_invalid()
    results = report.results
    assert results is not None  # a valid report always carries its results
    name = check_name(name if name is not None else default_name(results))
    root = Path(root)
    dest = submission_dir(root, results["edition"], results["task"], name)
    existed = dest.exists()
    if existed and not replace:
        raise SubmissionError(f"a submission named {name!r} already exists at {dest}; pass --name NAME "
                              "(or --replace to overwrite it)")
    source = store.locate(run_dir).root
    backup = None
    if existed:
        backup = dest.with_name(f".{dest.name}.previous")
        shutil.rmtree(backup, ignore_errors=True)
        shutil.copytree(dest, backup)
    try:
        with atomic_path(dest) as tmp:
            tmp.mkdir()
            _write_submission(tmp, source, results, name, report.kind)
        pages = {}
        if render:
            from .render import render_pages

            pages = render_pages(root)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        if backup is not None:
            shutil.copytree(backup, dest)
        raise
    finally:
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    if pages:
        from .render import write_pages

        write_pages(pages)
    return dest


def _write_submission(folder: Path, source: Path, results: dict, name: str, source_kind: str) -> None:
    """Fill a new submission folder from a validated run (or submission) at ``source``."""
    import copy

    summary = copy.deepcopy(results)
    sizes = {"compressed_bytes": 0, "jsonl_bytes": 0}
    for domain in summary["domains"]:
        for info in domain["samples"].values():
            rel = info["path"]
            what = f"{source}/{rel}"
            data = store.read_sample_bytes(store.safe_relative(source, rel, what), what)
            new_rel = rel if rel.endswith(".gz") else rel + ".gz"
            packed = store.gzip_bytes(data)
            target = folder / new_rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(packed)
            info["path"] = new_rel
            sizes["compressed_bytes"] += len(packed)
            sizes["jsonl_bytes"] += len(data)
    write_json(folder / store.SUMMARY_FILE, summary)
    for extra in (store.CONFIG_FILE, store.MANIFEST_FILE):
        (folder / extra).write_bytes((source / extra).read_bytes())
    write_json(folder / store.SUBMISSION_FILE, {
        "name": name,
        "submitted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "validated_by": f"oodpl {__version__}",
        "source_kind": source_kind,
        "source": source.name,
        **sizes,
    })
