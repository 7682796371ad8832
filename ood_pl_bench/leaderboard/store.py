"""Reading run directories and leaderboard submissions: strict JSON and per-sample files.

Two layouts hold the same results:

* a **run directory** (``oodpl run``): ``results.json``, ``config.json``, ``manifest.json`` and plain
  JSONL per-sample files ``samples/<role>/<domain>.<kind>.jsonl`` (see :mod:`ood_pl_bench.runner`);
* a **submission folder** (``oodpl submit``), ``leaderboards/<edition>/<task>/<name>/``:
  ``summary.json`` (the run's ``results.json`` with every sample path pointing at its gzip copy),
  ``config.json``, ``manifest.json``, ``submission.json`` (name, time, source) and gzip JSONL
  per-sample files ``samples/<role>/<domain>.<kind>.jsonl.gz``.

In both, a sample file's recorded ``sha256`` is that of its (decompressed) JSONL bytes, so the hash a
run recorded stays valid after compression. Every reader here turns a damaged input (bad JSON, NaN
or infinite numbers, truncated gzip, unsafe paths) into a one-line :class:`ReadError`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import SubmissionError

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.json"
SUBMISSION_FILE = "submission.json"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
MAX_SAMPLE_BYTES = 1 << 30  # decompressed size cap of one sample file (1 GiB)


class ReadError(Exception):
    """A file cannot be read as what it should be; ``str(exc)`` is one line for the user."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of the range of a finite number")
    return value


def _bounded_int(text: str) -> int:
    value = int(text)
    if abs(value) >= 2 ** 1023:
        raise ValueError(f"{text[:20]}... is too large a number for a results file")
    return value


def parse_json_strict(data: bytes | str, what: str) -> Any:
    """Parse JSON, refusing NaN, Infinity and numbers too large for a float.

    Raises:
        ReadError: not UTF-8, not JSON, a non-finite number, or nested too deeply.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except UnicodeDecodeError:
        raise ReadError(f"{what} is not UTF-8 text") from None
    except RecursionError:
        raise ReadError(f"{what} is nested too deeply to be a results file") from None
    except ValueError as exc:
        raise ReadError(f"{what} is not valid JSON: {str(exc).splitlines()[0]}") from None


def read_json_strict(path: Path, what: str | None = None) -> Any:
    """Read and strictly parse a JSON file (see :func:`parse_json_strict`)."""
    what = what or path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReadError(f"{what} is missing") from None
    except OSError as exc:
        raise ReadError(f"{what} cannot be read: {exc.strerror or exc}") from None
    return parse_json_strict(data, what)


def parse_jsonl_strict(data: bytes, what: str) -> list[dict]:
    """Parse JSON lines (blank lines skipped); every row must be a JSON object.

    Raises:
        ReadError: naming the first bad line.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ReadError(f"{what} is not UTF-8 text (damaged or not a JSONL file)") from None
    rows: list[dict] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = parse_json_strict(line, f"{what} line {number}")
        if not isinstance(row, dict):
            raise ReadError(f"{what} line {number} is a JSON {type(row).__name__}, not an object")
        rows.append(row)
    return rows


def safe_relative(root: Path, rel: Any, what: str) -> Path:
    """``root / rel`` for a relative POSIX path that stays inside ``root``.

    Raises:
        ReadError: ``rel`` is not a string, is absolute, or climbs out of ``root``.
    """
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise ReadError(f"{what} has an invalid path {rel!r}")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or any(p in ("", ".") for p in pure.parts):
        raise ReadError(f"{what} path {rel!r} must be relative and stay inside the run folder")
    path = root.joinpath(*pure.parts)
    if path.is_symlink() or (path.exists() and not path.resolve().is_relative_to(root.resolve())):
        raise ReadError(f"{what} path {rel!r} is a link; sample files must be plain files inside the run folder")
    return path


def read_sample_bytes(path: Path, what: str) -> bytes:
    """The JSONL bytes of a sample file; ``*.gz`` files are decompressed.

    Raises:
        ReadError: missing, unreadable, truncated or corrupt gzip, or larger than MAX_SAMPLE_BYTES.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ReadError(f"{what} is missing") from None
    except IsADirectoryError:
        raise ReadError(f"{what} is a folder, not a file") from None
    except OSError as exc:
        raise ReadError(f"{what} cannot be read: {exc.strerror or exc}") from None
    if not path.name.endswith(".gz"):
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as fh:
            data = fh.read(MAX_SAMPLE_BYTES + 1)
    except EOFError:
        raise ReadError(f"{what} is a truncated gzip file") from None
    except (OSError, zlib.error) as exc:
        raise ReadError(f"{what} is not a valid gzip file ({exc})") from None
    if len(data) > MAX_SAMPLE_BYTES:
        raise ReadError(f"{what} is larger than {MAX_SAMPLE_BYTES} bytes uncompressed")
    return data


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (no file name, mtime 0): the same JSONL always compresses the same."""
    return gzip.compress(data, compresslevel=9, mtime=0)


@dataclass
class Located:
    """Where a results file lives: the folder holding its sample files, the file, and the layout."""

    root: Path
    summary: Path
    kind: str  # "run" or "submission"


def locate(path: str | Path) -> Located:
    """Find the results file of a run directory, a submission folder, or a results/summary file.

    Raises:
        ReadError: the path does not exist or holds neither ``summary.json`` nor ``results.json``.
    """
    p = Path(path)
    if not p.exists():
        raise ReadError(f"{p} does not exist")
    if p.is_dir():
        if (p / SUMMARY_FILE).is_file():
            return Located(p, p / SUMMARY_FILE, "submission")
        if (p / RESULTS_FILE).is_file():
            return Located(p, p / RESULTS_FILE, "run")
        raise ReadError(f"{p} holds neither {SUMMARY_FILE} (a submission) nor {RESULTS_FILE} (a finished run)")
    kind = "submission" if p.name == SUMMARY_FILE else "run"
    return Located(p.parent, p, kind)


@dataclass
class LoadedRun:
    """A run or submission loaded for tables and comparisons (sample rows read lazily, hash-checked)."""

    root: Path
    kind: str
    results: dict
    name: str
    _rows: dict[tuple[str, str, str], list[dict]] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """A short human name: the submission name, else ``method (seed N)``."""
        return self.name

    def domains(self, role: str = "held_out") -> dict[str, dict]:
        """The domain entries of ``role`` by domain name, in results order."""
        return {d["domain"]: d for d in self.results.get("domains", []) if d.get("role") == role}

    def rows(self, role: str, domain: str, kind: str) -> list[dict]:
        """The per-sample rows of one domain's sample file ``kind`` (``pairs``, ``generations``, ...).

        Raises:
            SubmissionError: no such file, or it does not match its recorded sha256 / row count.
        """
        key = (role, domain, kind)
        if key not in self._rows:
            entry = self.domains(role).get(domain)
            if entry is None or kind not in entry.get("samples", {}):
                raise SubmissionError(f"{self.root}: {domain} ({role}) has no {kind} sample file")
            info = entry["samples"][kind]
            what = f"{self.root}/{info.get('path')}"
            try:
                data = read_sample_bytes(safe_relative(self.root, info.get("path"), what), what)
                if sha256_bytes(data) != info.get("sha256"):
                    raise ReadError(f"{what} does not match its recorded sha256 (edited after the run)")
                rows = parse_jsonl_strict(data, what)
            except ReadError as exc:
                raise SubmissionError(str(exc)) from None
            if len(rows) != info.get("rows"):
                raise SubmissionError(f"{what} has {len(rows)} rows, results record {info.get('rows')}")
            self._rows[key] = rows
        return self._rows[key]


def load_run(path: str | Path, name: str | None = None) -> LoadedRun:
    """Load a run directory or submission folder (schema-checked; sample rows are read on demand).

    Raises:
        SubmissionError: the path holds no readable, schema-valid results.
    """
    from pydantic import ValidationError

    from ..results import SCHEMA_VERSION, RunResults

    try:
        located = locate(path)
        results = read_json_strict(located.summary, str(located.summary))
    except ReadError as exc:
        raise SubmissionError(str(exc)) from None
    if not isinstance(results, dict):
        raise SubmissionError(f"{located.summary} holds a JSON {type(results).__name__}, not a results object")
    if results.get("schema_version") != SCHEMA_VERSION:
        raise SubmissionError(f"{located.summary}: schema version {results.get('schema_version')!r} is not "
                              f"supported (this oodpl reads {SCHEMA_VERSION})")
    try:
        RunResults.model_validate(results, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SubmissionError(f"{located.summary}: {where}: {first['msg']} "
                              f"({exc.error_count()} schema problem(s); run `oodpl validate` for all)") from None
    if name is None:
        submission = located.root / SUBMISSION_FILE
        if located.kind == "submission" and submission.is_file():
            try:
                meta = read_json_strict(submission)
                name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
            except ReadError:
                name = None
        name = name or (located.root.name if located.kind == "submission"
                        else f"{results['method']}-{results['profile']}-seed{results['seed']}")
    return LoadedRun(located.root, located.kind, results, name)
