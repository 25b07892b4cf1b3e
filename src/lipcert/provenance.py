"""Which source code each workflow stage runs, and a digest of it (pipeline infrastructure, not the paper).

A result is only as current as the code that computed it. Snakemake reruns a job when its inputs are newer or
its ``params`` change, but the library's source is neither: after an edit of ``training.py`` it would call every
trained run up to date. Each rule therefore carries ``code=`` :func:`code_digest` of its stage as a param, so a
change in what the stage executes reruns exactly that stage's jobs (and, through their outputs, everything
downstream), while an edit of reporting code reruns only reports. ``dvc.yaml`` lists the same files
(:func:`stage_sources`) as each stage's dependencies, so ``dvc status`` names the stage that changed.

What a stage runs is found statically, without importing anything:

* an entry is a module (``lipcert.training``) or a function of a module (``lipcert.__main__:cmd_train``);
* a module contributes its file and every module it imports, at the top or inside a function (the library
  imports heavy modules lazily), followed transitively inside the ``lipcert`` package;
* a function contributes its own source, the module-level functions of its module that it names (again
  transitively) and the imports made by any of them or at the module's top level, but not the rest of its
  module: an edit of ``cmd_demo`` does not rerun training.

The digest is taken over the syntax tree without docstrings, so comments, docstrings and formatting never
rerun anything; any change of code does.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

__all__ = ["PACKAGE", "STAGES", "code_digest", "stage_sources"]

PACKAGE = "lipcert"
_SRC = Path(__file__).resolve().parents[1]  # the folder holding the package (src/)

_CLI = f"{PACKAGE}.__main__"
STAGES: Mapping[str, tuple[str, ...]] = {
    "data": (f"{_CLI}:cmd_prepare_data",),
    "train": (f"{_CLI}:cmd_train",),
    "certify": (f"{_CLI}:cmd_certify",),
    "tightness": (f"{_CLI}:cmd_tightness",),
    "decision_grid": (f"{PACKAGE}.decision_grid",),
    "run_metrics": (f"{PACKAGE}.reporting.run_metrics",),
    "run_summary": (f"{PACKAGE}.reporting.run_summary",),
    "tables": (f"{PACKAGE}.reporting.tables",),
    "two_moons_figures": (f"{PACKAGE}.reporting.two_moons_figures",),
    "sweeps": (f"{PACKAGE}.reporting.sweeps",),
    "notebook": (f"{PACKAGE}.reporting.render_notebook",),
}
"""The entry points of each stage: what its rule's shell runs (``python -m lipcert <command>`` or a module)."""


def _module_path(module: str, src: Path) -> Path | None:
    """The file of a module of the package, or None for a module outside it."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_package(module: str, src: Path) -> bool:
    return (src.joinpath(*module.split(".")) / "__init__.py").is_file()


def _drop_docstrings(tree: ast.Module) -> ast.Module:
    """Remove the docstrings of a module and of its classes and functions (in place)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    """A module's syntax tree without docstrings (parsed once per process)."""
    return _drop_docstrings(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))


def _imported_modules(node: ast.AST, module: str, src: Path) -> set[str]:
    """Absolute names of the modules imported anywhere inside ``node`` (relative imports resolved)."""
    package = module if _is_package(module, src) else module.rpartition(".")[0]
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            found.update(alias.name for alias in sub.names)
        elif isinstance(sub, ast.ImportFrom):
            if sub.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - sub.level + 1])
                base = f"{base}.{sub.module}" if sub.module else base
            else:
                base = sub.module or ""
            found.add(base)
            # `from pkg import sub` may name a submodule
            found.update(f"{base}.{alias.name}" for alias in sub.names)
    # importing a.b.c runs a/__init__ and a/b/__init__ too
    for name in list(found):
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return {name for name in found if _module_path(name, src) is not None}


def _top_level(tree: ast.Module) -> tuple[list[ast.stmt], dict[str, ast.stmt]]:
    """A module's statements outside its functions and classes, and its functions and classes by name."""
    defs = {s.name: s for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    return [s for s in tree.body if s not in defs.values()], defs


def _function_closure(module: str, name: str, src: Path) -> list[ast.stmt]:
    """The definitions a function of ``module`` needs: itself and the module-level definitions it names."""
    path = _module_path(module, src)
    if path is None:
        raise ValueError(f"provenance entry '{module}:{name}': no module {module} under {src}")
    _, defs = _top_level(_tree(path))
    if name not in defs:
        raise ValueError(f"provenance entry '{module}:{name}': {path} defines no function {name}")
    needed, todo = {}, [name]
    while todo:
        current = todo.pop()
        if current in needed:
            continue
        needed[current] = defs[current]
        names = {n.id for n in ast.walk(defs[current]) if isinstance(n, ast.Name)}
        todo.extend(sorted(n for n in names if n in defs and n not in needed))
    return [needed[n] for n in sorted(needed)]


def _entry_parts(entry: str, src: Path) -> tuple[list[tuple[str, ast.AST | Path]], set[str]]:
    """What an entry contributes directly (a module's file, or a function's syntax trees) and what it imports."""
    module, _, function = entry.partition(":")
    path = _module_path(module, src)
    if path is None:
        raise ValueError(f"provenance entry '{entry}': no module {module} under {src}")
    if not function:
        return [(module, path)], set(_module_imports(path, module, src))
    rest, _ = _top_level(_tree(path))
    parts = [(f"{module}:{n.name}", n) for n in _function_closure(module, function, src)]
    parts.append((f"{module}:<module level>", ast.Module(body=rest, type_ignores=[])))
    imports: set[str] = set()
    for _, node in parts:
        imports |= _imported_modules(node, module, src)
    return parts, imports


def _closure(entries: Iterable[str], src: Path) -> tuple[list[tuple[str, ast.AST | Path]], list[Path]]:
    """Everything a stage runs, named (whole modules as their file, functions as syntax trees), and every file
    it comes from, in a stable order."""
    parts: dict[str, ast.AST | Path] = {}
    files: set[Path] = set()
    modules: list[str] = []
    for entry in entries:
        own, imports = _entry_parts(entry, src)
        parts.update(own)
        module = entry.partition(":")[0]
        files.add(_module_path(module, src))
        # running a module runs its packages' __init__ first
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        modules.extend(sorted(imports | set(parents)))
    seen: set[str] = set()
    while modules:
        module = modules.pop()
        if module in seen or module in parts:
            continue
        seen.add(module)
        path = _module_path(module, src)
        parts[module] = path
        files.add(path)
        modules.extend(sorted(_module_imports(path, module, src) - seen))
    return sorted(parts.items()), sorted(files)


@lru_cache(maxsize=None)
def _module_imports(path: Path, module: str, src: Path) -> frozenset[str]:
    """The package modules a whole module imports (walked once per process)."""
    return frozenset(_imported_modules(_tree(path), module, src))


@lru_cache(maxsize=None)
def _module_dump(path: Path) -> str:
    """``ast.dump`` of a module's cached tree (dumped once per process: stages share most modules)."""
    return ast.dump(_tree(path))


def _entries(stage: str) -> tuple[str, ...]:
    try:
        return STAGES[stage]
    except KeyError:
        raise ValueError(f"unknown workflow stage '{stage}'; lipcert.provenance.STAGES has {sorted(STAGES)}") \
            from None


def stage_sources(stage: str, src: str | Path = _SRC) -> list[str]:
    """The source files (relative to ``src``'s parent, e.g. ``src/lipcert/training.py``) a stage runs."""
    src = Path(src).resolve()
    _, files = _closure(_entries(stage), src)
    return [path.relative_to(src.parent).as_posix() for path in files]


def code_digest(stage: str, src: str | Path = _SRC) -> str:
    """SHA-256 (16 hex digits) of the code a stage runs, docstrings, comments and layout left out."""
    src = Path(src).resolve()
    parts, _ = _closure(_entries(stage), src)
    digest = hashlib.sha256()
    for name, node in parts:
        digest.update(name.encode())
        digest.update((_module_dump(node) if isinstance(node, Path) else ast.dump(node)).encode())
    return digest.hexdigest()[:16]
