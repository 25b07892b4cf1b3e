"""lipcert.plan (issue 13 item 3, first step): wildcard names derived from the params files, table rows checked."""

import re
import shutil
from pathlib import Path

import pytest
import yaml

from lipcert.plan import check_table_rows, experiments_by_dataset, wildcard_patterns

PARAMS = Path(__file__).resolve().parents[1] / "params"


def _full(pattern: str, text: str) -> bool:
    return re.fullmatch(f"(?:{pattern})", text) is not None


def test_patterns_cover_every_architecture_and_experiment_and_nothing_else():
    names = wildcard_patterns(PARAMS)
    for arch in yaml.safe_load((PARAMS / "architectures.yaml").read_text()):
        assert _full(names["model"], arch), arch
    for dataset, experiments in experiments_by_dataset(PARAMS).items():
        assert _full(names["dataset"], dataset)
        for experiment in experiments:
            assert _full(names["method"], experiment), experiment
    assert _full(names["dataset"], "cifar100")  # a known dataset without a params file yet
    for bad in ("LipConv-30", "4C3", "cll_", "xcll"):
        assert not _full(names["model"], bad) and not _full(names["method"], bad)
    assert "|" in names["method"] and r"LipConv\-10_64" in names["model"]  # escaped, longest names first


def test_a_new_params_experiment_is_a_new_method(tmp_path):
    params = tmp_path / "params"
    shutil.copytree(PARAMS, params, ignore=shutil.ignore_patterns("paper_tables"))
    data = yaml.safe_load((params / "two_moons.yaml").read_text())
    data["experiments"]["toy_method"] = {"loss": {"name": "ce"}}
    (params / "two_moons.yaml").write_text(yaml.safe_dump(data))
    assert _full(wildcard_patterns(params)["method"], "toy_method")
    assert not _full(wildcard_patterns(PARAMS)["method"], "toy_method")


def test_table_rows_name_known_experiments():
    workflow = yaml.safe_load((PARAMS / "workflow.yaml").read_text())
    check_table_rows(workflow["paper_tables"], PARAMS)  # the committed tables are consistent
    bad_loss = {"table2": {"rows": [{"data": "cifar10", "loss": "cll"}, {"data": "cifar10", "loss": "clll"}]}}
    with pytest.raises(ValueError, match=r"paper_tables.table2.rows\[1\]: loss 'clll' is not an experiment of "
                                         r"params/cifar10.yaml"):
        check_table_rows(bad_loss, PARAMS)
    with pytest.raises(ValueError, match=r"rows\[0\]: data 'mnist' has no params/mnist.yaml"):
        check_table_rows({"t": {"rows": [{"data": "mnist", "loss": "cll"}]}}, PARAMS)
