"""lipcert.provenance: which files a stage runs and the digest that reruns it (on a small package written here,
and on the real one)."""

import textwrap

import pytest

from lipcert import provenance


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture()
def toy(tmp_path, monkeypatch):
    """A package `lipcert` under tmp_path/src with a CLI module, a training module and a reporting module."""
    src = tmp_path / "src"
    _write(src, {
        "lipcert/__init__.py": '"""The package."""\n',
        "lipcert/__main__.py": '''\
            """CLI."""
            import argparse


            def _helper():
                return 1


            def cmd_train(args):
                """Train."""
                from .training import train
                return train() + _helper()


            def cmd_report(args):
                from .reporting import tables
                return tables.draw()
            ''',
        "lipcert/training.py": '''\
            """Training."""
            from . import bounds


            def train():
                return bounds.K  # the bound
            ''',
        "lipcert/bounds.py": "K = 2\n",
        "lipcert/reporting/__init__.py": "",
        "lipcert/reporting/tables.py": "import math\n\n\ndef draw():\n    return math.pi\n",
    })
    monkeypatch.setattr(provenance, "STAGES", {"train": ("lipcert.__main__:cmd_train",),
                                               "tables": ("lipcert.reporting.tables",)})
    provenance._tree.cache_clear()
    provenance._module_imports.cache_clear()
    provenance._module_dump.cache_clear()
    yield src
    provenance._tree.cache_clear()
    provenance._module_imports.cache_clear()
    provenance._module_dump.cache_clear()


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    provenance._tree.cache_clear()
    provenance._module_imports.cache_clear()
    provenance._module_dump.cache_clear()


def test_sources_follow_lazy_imports_and_stop_at_the_package(toy):
    assert provenance.stage_sources("train", toy) == ["src/lipcert/__init__.py", "src/lipcert/__main__.py",
                                                      "src/lipcert/bounds.py", "src/lipcert/training.py"]
    assert provenance.stage_sources("tables", toy) == ["src/lipcert/__init__.py", "src/lipcert/reporting/__init__.py",
                                                       "src/lipcert/reporting/tables.py"]


def test_a_code_edit_changes_the_digest_of_the_stages_that_run_it_only(toy):
    train, tables = provenance.code_digest("train", toy), provenance.code_digest("tables", toy)
    _edit(toy / "lipcert" / "bounds.py", "K = 2", "K = 3")
    assert provenance.code_digest("train", toy) != train
    assert provenance.code_digest("tables", toy) == tables
    _edit(toy / "lipcert" / "reporting" / "tables.py", "math.pi", "math.e")
    assert provenance.code_digest("tables", toy) != tables


def test_a_helper_the_entry_calls_counts_and_another_command_does_not(toy):
    train = provenance.code_digest("train", toy)
    _edit(toy / "lipcert" / "__main__.py", "tables.draw()", "tables.draw() + 1")  # cmd_report: not training
    assert provenance.code_digest("train", toy) == train
    _edit(toy / "lipcert" / "__main__.py", "return 1", "return 2")  # _helper, called by cmd_train
    assert provenance.code_digest("train", toy) != train


def test_comments_docstrings_and_layout_never_change_the_digest(toy):
    train = provenance.code_digest("train", toy)
    _edit(toy / "lipcert" / "training.py", '"""Training."""', '"""Training, with a longer docstring."""')
    _edit(toy / "lipcert" / "training.py", "# the bound", "# the bound, a comment")
    _edit(toy / "lipcert" / "__main__.py", '"""Train."""', '"""Train one run."""')
    _edit(toy / "lipcert" / "training.py", "return bounds.K", "return (bounds.K)")
    assert provenance.code_digest("train", toy) == train


def test_bad_entries_name_the_problem(toy, monkeypatch):
    with pytest.raises(ValueError, match="unknown workflow stage 'nope'"):
        provenance.code_digest("nope", toy)
    monkeypatch.setattr(provenance, "STAGES", {"x": ("lipcert.__main__:cmd_missing",)})
    with pytest.raises(ValueError, match="defines no function cmd_missing"):
        provenance.code_digest("x", toy)


def test_the_real_stages_split_training_from_reporting():
    provenance._tree.cache_clear()
    train = provenance.stage_sources("train")
    assert "src/lipcert/training.py" in train and "src/lipcert/power_iteration.py" in train
    assert "src/lipcert/data/cifar.py" in train  # the data code reruns training
    assert not any(path.startswith("src/lipcert/reporting/tables") for path in train)
    tables = provenance.stage_sources("tables")
    assert "src/lipcert/reporting/tables.py" in tables and "src/lipcert/training.py" not in tables
    assert "src/lipcert/certification.py" in provenance.stage_sources("certify")
    assert all(len(provenance.code_digest(stage)) == 16 for stage in provenance.STAGES)
