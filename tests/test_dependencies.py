"""Every third-party package the library imports is declared in pyproject.toml (issue 13, item 7)."""

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml"}


def _imported_top_level_names() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "lipcert").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("lipcert", "__future__")}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
    return {re.split(r"[<>=!\[ ;]", spec, maxsplit=1)[0].lower() for spec in specs}


def test_every_imported_package_is_declared():
    missing = sorted(n for n in _imported_top_level_names() if DISTRIBUTIONS.get(n, n).lower() not in _declared())
    assert not missing, f"imported by src/lipcert but not declared in pyproject.toml: {missing}"


def test_every_declared_package_is_in_the_lock():
    lock = (ROOT / "requirements.lock").read_text().lower()
    pinned = {m.group(1).replace("_", "-") for m in re.finditer(r"^([a-z0-9_.-]+)==", lock, flags=re.M)}
    missing = sorted(d for d in _declared() if d != "lipcert" and d.replace("_", "-") not in pinned)
    assert not missing, f"declared in pyproject.toml but not pinned in requirements.lock: {missing}"
