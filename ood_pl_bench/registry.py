"""Typed plug-in registries backed by entry points (``oodpl.solvers``, ``oodpl.judges``).

Built-in solvers register exactly as third-party ones do, through ``[project.entry-points]`` in
their package metadata; the core never imports a solver by name. A plug-in that fails to import
gives a warning naming it, and the others keep working.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import UsageError

T = TypeVar("T")

SOLVER_GROUP = "oodpl.solvers"
JUDGE_GROUP = "oodpl.judges"


class PluginImportWarning(UserWarning):
    """A registered plug-in could not be imported."""


@dataclass
class Registry(Generic[T]):
    """Name -> object registry filled from an entry-point group, plus in-process registrations."""

    group: str
    kind: str  # "method", "judge": used in messages
    _extra: dict[str, Any] = field(default_factory=dict)
    _loaded: dict[str, Any] | None = None
    _failed: dict[str, str] = field(default_factory=dict)

    def register(self, name: str, obj: Any) -> None:
        """Register ``obj`` under ``name`` in this process (tests, notebooks)."""
        self._extra[name] = obj
        self._loaded = None

    def _load(self) -> dict[str, Any]:
        if self._loaded is None:
            loaded: dict[str, Any] = {}
            self._failed = {}
            for ep in entry_points(group=self.group):
                if ep.name in loaded:
                    continue
                try:
                    loaded[ep.name] = ep.load()
                except Exception as exc:  # a broken plug-in must not take the others down
                    self._failed[ep.name] = f"{type(exc).__name__}: {exc}"
                    warnings.warn(
                        f"{self.kind} plug-in {ep.name!r} ({ep.value}) failed to import and is "
                        f"skipped: {type(exc).__name__}: {exc}",
                        PluginImportWarning,
                        stacklevel=2,
                    )
            loaded.update(self._extra)
            self._loaded = loaded
        return self._loaded

    def names(self) -> list[str]:
        """Sorted names of all importable plug-ins."""
        return sorted(self._load())

    def failed(self) -> dict[str, str]:
        """Plug-ins that failed to import, with the reason."""
        self._load()
        return dict(self._failed)

    def get(self, name: str) -> Any:
        """Return the plug-in ``name`` or raise a UsageError with a did-you-mean hint."""
        items = self._load()
        if name in items:
            return items[name]
        if name in self._failed:
            raise UsageError(f"{self.kind} {name!r} is installed but failed to import: {self._failed[name]}")
        close = difflib.get_close_matches(name, list(items), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(
            f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(items)) or 'none'}."
        )

    def reset(self) -> None:
        """Forget loaded entry points (after installing a plug-in in-process)."""
        self._loaded = None


solvers: Registry = Registry(SOLVER_GROUP, "method")
judges: Registry = Registry(JUDGE_GROUP, "judge")
