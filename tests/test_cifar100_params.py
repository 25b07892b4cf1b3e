"""CIFAR-100 experiments (issue 13, item 6): params/cifar100.yaml against the paper, and a CPU check at ci scale.

Fast: every experiment is a valid CIFAR-100 run on a 100-class variant of its CIFAR-10 architecture; the CLL
recipes reproduce table 2's CIFAR-100 K(h o f) = 1/sigma_eps(p) and, where table B4 has a block (6 and 8), its
printed values; the paper-size XL models build with 100 logits.
Slow: a miniature CIFAR-100 in the official pickle layout goes through the CLI (prepare-data, train, certify) for
each of the six experiments on tiny 100-class stand-ins of the small size variants (32 x 32 inputs).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml

from lipcert.data.tensor_data import as_model_input, load_cache
from lipcert.losses.registry import calibrated_model_constant
from lipcert.models import FAMILY_PARAMETER_COUNTS, build_model, load_architectures
from lipcert.one_lipschitz_nets.lipconvnet import layer_plan, resolve_options
from lipcert.params import load_params_file, run_config_from_params
from lipcert.run_record import (CLEAN_KEY, K_F_KEY, K_HF_KEY, PAPER_RADII, cra_key, printed_p, read_certify,
                                read_metrics)
from lipcert.training import load_trained_model
from tiny_architectures import TINY_ONE_LIPSCHITZ

PARAMS = "params/cifar100.yaml"
TABLES = Path("params/paper_tables")
EXPERIMENTS = ("soc", "cll_lipconv", "cpl", "cll_cpl", "sll", "cll_sll")
# CLL experiment -> (model, variant) of its CIFAR-100 row in table2.csv, and its table B4 block (None: no block)
CLL_ROWS = {"cll_lipconv": ("LipConv-20", "", None), "cll_cpl": ("XL", "CPL-XL", "6"), "cll_sll": ("XL", "SLL-XL", "8")}
# the quick-scale stand-in of each experiment's model (the CPU check swaps in a tiny one of the same name)
SMALL = {"soc": "LipConv-10_cifar100", "cll_lipconv": "LipConv-10_cifar100", "cpl": "CPL-S_cifar100",
         "cll_cpl": "CPL-S_cifar100", "sll": "SLL-S_cifar100", "cll_sll": "SLL-S_cifar100"}


def _csv_rows(name: str) -> list[dict]:
    with open(TABLES / name, newline="") as fh:
        return list(csv.DictReader(fh))


def _logit(q: float) -> float:
    return math.log(q / (1.0 - q))


# ---------------------------------------------------------------- fast: the params file against the paper

def test_the_six_experiments_are_cifar100_runs_of_the_cifar10_architectures_with_100_classes():
    assert sorted(load_params_file(PARAMS)["experiments"]) == sorted(EXPERIMENTS)
    archs = load_architectures()
    for name in EXPERIMENTS:
        cfg = run_config_from_params(PARAMS, name, [], seed=1)
        cifar10 = run_config_from_params("params/cifar10.yaml", name, [], seed=1)
        assert cfg.data.name == "cifar100" and cfg.eval_eps == PAPER_RADII, name
        assert cfg.head == ("linear" if name.startswith("cll") else "lln"), name  # supplement B / LLN for 100 classes
        spec, spec10 = archs[cfg.model], archs[cifar10.model]
        assert (spec.num_classes, spec10.num_classes) == (100, 10), name
        assert spec.input_shape == spec10.input_shape == (3, 32, 32), name
        assert (spec.family, spec.options) == (spec10.family, spec10.options), name  # the same network otherwise
        small = archs[SMALL[name]]
        assert small.num_classes == 100 and small.family == spec.family, name


def test_head_of_each_cifar100_model_has_100_rows_over_the_features():
    """Parameter counts (nothing allocated): the 100-class model has 90 more head rows of F weights + 1 bias than
    its CIFAR-10 twin; F by hand: CPL/SLL 120 channels x (32/4)^2 = 7680, LipConv-20 32 x 2^5 = 1024 channels at 1x1."""
    archs = load_architectures()
    features = {"CPL-XL_cifar100": 120 * 8 * 8, "SLL-XL_cifar100": 120 * 8 * 8, "LipConv-20_cifar100": 32 * 2 ** 5}
    twin = {"CPL-XL_cifar100": "CPL-XL", "SLL-XL_cifar100": "SLL-XL", "LipConv-20_cifar100": "LipConv-20"}
    assert layer_plan((3, 32, 32), resolve_options({"size": "LipConv-20"}))[1] == features["LipConv-20_cifar100"]
    for name, f in features.items():
        def count(spec):
            return FAMILY_PARAMETER_COUNTS[spec.family](spec.input_shape, spec.num_classes, **dict(spec.options))
        assert count(archs[name]) - count(archs[twin[name]]) == 90 * (f + 1), name


@pytest.mark.parametrize("experiment", sorted(CLL_ROWS))
def test_cll_recipes_reproduce_table2_k_hf_and_table_b4(experiment):
    model, variant, block = CLL_ROWS[experiment]
    cfg = run_config_from_params(PARAMS, experiment, [], seed=1)
    (row,) = [r for r in _csv_rows("table2.csv")
              if (r["dataset"], r["method"], r["model"], r["variant"]) == ("CIFAR-100", "CLL", model, variant)]
    eps, p = cfg.loss.get("eps").start, cfg.loss.get("p").start
    k_hf = calibrated_model_constant(cfg.loss, 1.0, 0, 1)  # K(h o f) = 1/sigma_eps(p), whatever K(f)
    assert k_hf == pytest.approx(_logit(1.0 - p) / eps, rel=1e-12)  # eq. (5) by hand
    assert calibrated_model_constant(cfg.loss, 45.4, 7, 10) == k_hf
    assert f"{k_hf:.1f}" == row["K_hf"], (k_hf, row["K_hf"])  # printed precision (7.6, 6.5, 9.2)
    assert cfg.loss.get("lam") == 1e-3 and cfg.loss.get("eps").kind == cfg.loss.get("p").kind == "constant"
    if block is None:  # no table B4 block for LipConv on CIFAR-100: eps of blocks 6 / 8, printed p 2e-4
        assert (eps, printed_p(p)) == (1.0, 2e-4)
        return
    (b4,) = [r for r in _csv_rows("tableB4_hyperparameters.csv") if r["block"] == block]
    assert b4["dataset"] == "CIFAR-100" and b4["LLN"] == "no"
    assert eps == float(b4["eps_train"]) and printed_p(p) == pytest.approx(float(b4["p"]), rel=1e-12)
    assert cfg.loss.get("lam") == float(b4["lambda"]) and cfg.optim.lr == float(b4["lr"])
    assert (cfg.batch_size, cfg.epochs) == (int(b4["batch_size"]), int(b4["epochs"]))
    assert cfg.optim.lr_schedule == "triangular"


def test_a_10_class_model_on_cifar100_labels_fails_naming_the_label_range(tmp_path, monkeypatch):
    """``--set model=CPL-S`` (the CIFAR-10 stand-in) on CIFAR-100 data fails before training, naming both sides."""
    from lipcert.data.tensor_data import TensorData
    from lipcert.training import train_run

    (tmp_path / "architectures.yaml").write_text(yaml.safe_dump(
        {"CPL-S": {**TINY_ONE_LIPSCHITZ["CPL-S"], "input_shape": [3, 32, 32]}}))  # 10 classes
    monkeypatch.setenv("LIPCERT_PARAMS_DIR", str(tmp_path))
    x = torch.zeros(40, 3, 32, 32, dtype=torch.uint8)
    y = torch.arange(40) % 100 + 50  # CIFAR-100 labels 50..89
    data = TensorData(x[:20], y[:20], x[20:], y[20:], domain=(0.0, 1.0), label="generated")
    cfg = run_config_from_params(PARAMS, "cpl", ["model=CPL-S", "epochs=1", "batch_size=10"], seed=1)
    with pytest.raises(ValueError, match=r"model 'CPL-S' has 10 outputs, but the data \(generated\) has labels up to "
                                         r"89: use an architecture with 90 classes"):
        train_run(cfg, data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # before any training step


@pytest.mark.parametrize("model", ["CPL-XL_cifar100", "SLL-XL_cifar100"])
def test_paper_size_xl_models_build_with_100_logits(model):
    """Built on the meta device (no memory, no arithmetic): the builders wire 100 classes through at full size."""
    with torch.device("meta"):
        logits = build_model(model, seed=0, head="lln")(torch.empty(2, 3, 32, 32))
    assert logits.shape == (2, 100)


# ---------------------------------------------------------------- slow: the CPU check through the CLI

TINY_CIFAR100 = {f"{name}_cifar100": {**spec, "input_shape": [3, 32, 32], "classes": 100}
                 for name, spec in TINY_ONE_LIPSCHITZ.items() if f"{name}_cifar100" in SMALL.values()}
# the workflow's ci scale for 100 classes: one epoch, batch 16, one image per class (as tiny_imagenet's ci scale)
CI_SETS = ["epochs=1", "batch_size=16", "eval_every=1", "data.subset_train=1", "data.subset_test=1"]


@pytest.fixture(scope="module")
def cifar100_runs(tmp_path_factory):
    """Six trained and certified runs on a generated CIFAR-100 (cifar-100-python pickles, 2 + 1 images per class)."""
    from lipcert.__main__ import main
    from test_image_data import _cifar, write_cifar_pickle

    root = tmp_path_factory.mktemp("cifar100")
    write_cifar_pickle(root / "data", *_cifar(100, train_per_class=2, test_per_class=1, seed=5), num_classes=100)
    (root / "archs").mkdir()
    (root / "archs" / "architectures.yaml").write_text(yaml.safe_dump(TINY_CIFAR100))
    sets = [f"data.root={root / 'data'}", "data.format=pickle", *CI_SETS]
    cache = root / "cifar100.npz"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIPCERT_PARAMS_DIR", str(root / "archs"))
        assert main(["prepare-data", "--params", PARAMS, *[a for s in sets for a in ("--set", s)],
                     "--out", str(cache)]) == 0
        runs = {}
        for name in EXPERIMENTS:
            run_sets = [*sets, f"model={SMALL[name]}"]
            out = root / name
            assert main(["train", "--params", PARAMS, "--experiment", name, "--seed", "1",
                         *[a for s in run_sets for a in ("--set", s)], "--data", str(cache), "--out", str(out),
                         "--threads", "1", "--no-mlflow", "--no-progress"]) == 0, name
            assert main(["certify", "--run", str(out), "--data", str(cache)]) == 0, name
            cfg, model = load_trained_model(out)
            runs[name] = (cfg, model, read_metrics(out), read_certify(out))
        data, _ = load_cache(cache)
    return runs, data


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_trains_and_certifies_on_generated_cifar100(cifar100_runs, experiment):
    runs, data = cifar100_runs
    assert data.label == "CIFAR-100" and data.x_test.shape == (100, 3, 32, 32)
    assert sorted(set(data.y_train.tolist())) == list(range(100))  # one image of every class (subset 1)
    cfg, model, record, certified = runs[experiment]
    assert cfg.data.name == "cifar100" and cfg.model == SMALL[experiment] and cfg.epochs == 1
    metrics = record["metrics"]
    with torch.no_grad():
        logits = model(as_model_input(data.x_test[:5]))
    assert logits.shape == (5, 100) and bool(torch.isfinite(logits).all())
    for key in (CLEAN_KEY, K_F_KEY, K_HF_KEY, "loss", *(cra_key(e) for e in PAPER_RADII)):
        assert math.isfinite(metrics[key]), key
    for radius in PAPER_RADII:
        assert 0.0 <= certified[cra_key(radius)] <= certified[CLEAN_KEY] <= 100.0
        assert metrics[cra_key(radius)] <= metrics[CLEAN_KEY]
    assert certified["n_samples"] == 100
    assert certified[K_F_KEY] == pytest.approx(metrics[K_F_KEY], rel=1e-6)  # the trained model's converged K(f)
    if experiment.startswith("cll"):  # K(h o f) = 1/sigma_eps(p) = logit(1 - p)/eps, independent of K(f)
        eps, p = cfg.loss.get("eps").start, cfg.loss.get("p").start
        assert metrics[K_HF_KEY] == pytest.approx(_logit(1.0 - p) / eps, rel=1e-9)
        assert metrics[K_HF_KEY] != pytest.approx(metrics[K_F_KEY], rel=1e-3)
    else:  # the methods' own losses: K(h o f) = K(f); with LLN rows every pairwise constant is at most 2 K_body
        assert metrics[K_HF_KEY] == pytest.approx(metrics[K_F_KEY], rel=1e-12)
        assert metrics[K_F_KEY] <= 2.0 * 1.01
