"""``oodpl new-solver NAME``: write a working skeleton package for a new method.

The package (``<dir>/oodpl-<name>/``) holds a ``pyproject.toml`` registering the solver under the
``oodpl.solvers`` entry-point group, a typed config dataclass with help text, a solver class (a
small but real method: SFT of the LoRA adapters on chosen source responses), a test (config help
and a one-domain smoke run) and a README. After ``pip install -e <folder>`` the method runs with
``oodpl run --method NAME`` like a built-in one. Templates: :mod:`ood_pl_bench.scaffold_templates`.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

import typer

from .errors import UsageError
from .scaffold_templates import FILES

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


def solver_names(name: str) -> dict[str, str]:
    """The identifiers derived from a method name: distribution, module, class and config names.

    ``my-method`` -> dist ``oodpl-my-method``, module ``oodpl_my_method``, class ``MyMethodSolver``,
    config ``MyMethodConfig``. Raises UsageError for a name that is not lower-case letters, digits
    and single ``-``/``_`` separators starting with a letter.
    """
    if not NAME_RE.match(name or ""):
        raise UsageError(f"Invalid method name {name!r}: use lower-case letters, digits, '-' or '_', "
                         "starting with a letter (e.g. my-method)")
    words = re.split(r"[-_]", name)
    camel = "".join(w[:1].upper() + w[1:] for w in words)
    module = "oodpl_" + "_".join(words)
    if keyword.iskeyword(module):  # pragma: no cover - the prefix makes this impossible
        raise UsageError(f"Invalid method name {name!r}")
    return {"name": name, "dist": "oodpl-" + "-".join(words), "module": module,
            "cls": f"{camel}Solver", "config_cls": f"{camel}Config"}


def new_solver(name: str, directory: str | Path = ".", *, check_registry: bool = True) -> Path:
    """Write the skeleton package of method ``name`` into ``directory`` and return its folder.

    The folder is ``<directory>/oodpl-<name>``; it must not exist or be empty. With
    ``check_registry``, a name already taken by an installed solver is refused (two plug-ins with
    one name would shadow each other). Raises UsageError with a one-line reason.
    """
    names = solver_names(name)
    if check_registry:
        from .registry import solvers

        if name in solvers.names() or name in solvers.failed():
            raise UsageError(f"A method named {name!r} is already installed (oodpl ls methods); choose another name")
    root = Path(directory).expanduser() / names["dist"]
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UsageError(f"{root} already exists and is not empty; pass another --dir or remove it")
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in FILES.items():
        path = root / Template(rel).substitute(names)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(names), encoding="utf-8")
    return root


def next_steps(name: str, root: Path) -> list[str]:
    """The commands to run after :func:`new_solver`, in order."""
    return [f"pip install -e {root}",
            f"oodpl run --method {name} --task qa --profile smoke",
            f"python -m pytest {root / 'tests'}",
            f"oodpl run --method {name} --task qa",
            f"edit {root / solver_names(name)['module'] / 'solver.py'} (fit and policy_for)"]


def new_solver_command(
    name: str = typer.Argument(..., help="Method name, e.g. my-method (what --method will take)."),
    directory: Path = typer.Option(Path("."), "--dir", help="Folder to create the package in."),
) -> None:
    """Write a working skeleton package for a new method (config, solver, entry point, test)."""
    from rich.console import Console

    root = new_solver(name, directory)
    console = Console(highlight=False)
    console.print(f"wrote {root}")
    console.print("next:")
    for step in next_steps(name, root):
        console.print(f"  {step}")
