"""The parts of src/lipcert and which imports which: the README's table (section "Parts and their imports") is the
actual import graph, and the one-way rules of the project hold (issue 13: the README's architecture matches the
imports)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "lipcert"
HEADING = "### Parts and their imports"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """lipcert modules imported anywhere in a file (module level or inside functions), relative to the package."""
    package = _module_name(path).split(".") if path.name == "__init__.py" else _module_name(path).split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                target = [p for p in base if p] + ([node.module] if node.module else [])
            elif node.module and node.module.split(".")[0] == "lipcert":
                target = node.module.split(".")[1:]
            else:
                continue
            if node.module is None or not target:  # from . import x / from lipcert import x
                found.update(".".join([*target, alias.name]) for alias in node.names)
            else:
                found.add(".".join(target))
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("lipcert."))
    return found


def _readme_parts() -> dict[str, tuple[list[str], set[str]]]:
    text = (ROOT / "README.md").read_text()
    assert HEADING in text, f"README.md has no section {HEADING!r}"
    table = text.split(HEADING, 1)[1].split("\n\n", 2)[1]
    parts = {}
    for line in table.splitlines()[2:]:
        name, modules, imports = (cell.strip() for cell in line.strip().strip("|").split("|"))
        deps = set() if imports == "—" else {d.strip() for d in imports.split(",")}
        parts[name] = (re.findall(r"`([^`]+)`", modules), deps)
    return parts


def _part_of(module: str, parts) -> str | None:
    best = None
    for name, (modules, _) in parts.items():
        for prefix in modules:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (name, prefix)
    return best[0] if best else None


def _actual_graph(parts) -> dict[str, set[str]]:
    graph = {name: set() for name in parts}
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if not module:
            continue
        source = _part_of(module, parts)
        assert source is not None, f"src/lipcert/{path.relative_to(PACKAGE)} belongs to no part of the README table"
        for imported in _imports(path):
            target = _part_of(imported, parts)
            if target is not None and target != source:
                graph[source].add(target)
    return graph


def test_readme_table_is_the_import_graph():
    parts = _readme_parts()
    actual = _actual_graph(parts)
    for name, (_, documented) in parts.items():
        assert documented == actual[name], (f"README part {name!r}: documented imports {sorted(documented)}, "
                                            f"actual {sorted(actual[name])}")


def test_dependencies_point_one_way():
    graph = _actual_graph(_readme_parts())

    def reaches(source: str) -> set[str]:
        seen, todo = set(), [source]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    assert not any(name in reaches(name) for name in graph), "the parts import each other in a cycle"
    assert "training" not in reaches("certification") | reaches("trained run") | reaches("evaluation tools")
    assert "models" not in reaches("data")
    assert reaches("reporting") <= {"run record", "utilities"}
    assert reaches("run record") <= {"utilities"}
    assert not any("entry points" in deps for deps in graph.values()), "something imports an entry point"
    assert reaches("bounds") == set() and reaches("models") == {"bounds"}


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    path = PACKAGE / "reporting" / "render.py"  # imports siblings relatively
    assert any(name.startswith("reporting.") for name in _imports(path))
    assert "trained_run" in _imports(PACKAGE / "decision_grid.py")
