"""Two-moons figure pipeline (CLL paper Fig. 4 / Fig. D2): grid evaluation of a run, then the panels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lipcert.__main__ import main as lipcert_main
from lipcert.decision_grid import evaluate_run_grid, grid_bounds, grid_evaluation, read_grid_metadata
from lipcert.decision_grid import main as grid_main
from lipcert.reporting.two_moons_figures import load_panel, plot_panels
from lipcert.reporting.two_moons_figures import main as figures_main
from lipcert.training import load_trained_model

PARAMS = Path(__file__).resolve().parents[1] / "params" / "two_moons.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RESOLUTION = 40


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "cll"
    rc = lipcert_main(["train", "--params", str(PARAMS), "--experiment", "cll", "--set", "epochs=3",
                       "--set", "data.n_train=200", "--set", "data.n_test=200", "--out", str(out),
                       "--no-mlflow", "--no-progress"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def grid_file(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grids") / "cll.npz"
    assert grid_main(["--run", str(run_dir), "--out", str(out), "--resolution", str(RESOLUTION)]) == 0
    return out


def _brute_force_radius(logits: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per-point loop: min over i != j of (f_j - f_i) / K_ji with j the first argmax (eq. (18))."""
    out = np.empty(logits.shape[0])
    for n, f in enumerate(logits.astype(np.float64)):
        j = int(np.argmax(f))
        out[n] = min((f[j] - f[i]) / k[j, i] for i in range(f.shape[0]) if i != j)
    return out


def test_grid_file_shapes_and_radius_matches_brute_force(run_dir, grid_file):
    with np.load(grid_file, allow_pickle=False) as npz:
        z = {key: npz[key] for key in npz.files}
        meta = read_grid_metadata(npz)
    assert z["xs"].shape == (RESOLUTION,) and z["ys"].shape == (RESOLUTION,)
    assert z["logits"].shape == (RESOLUTION, RESOLUTION, 2)
    assert z["predicted"].shape == z["radius"].shape == (RESOLUTION, RESOLUTION)
    assert z["x_train"].shape == (200, 2) and z["train_radius"].shape == (200,)

    cfg, model = load_trained_model(run_dir)
    model.converge(1e-9)
    k = model.pairwise_lipschitz().numpy()
    np.testing.assert_allclose(z["k_pairwise"], k, rtol=1e-12)
    # Grid covers the training data's bounding box widened by the default pad 0.5.
    x = z["x_train"]
    assert z["xs"][0] == pytest.approx(x[:, 0].min() - 0.5) and z["xs"][-1] == pytest.approx(x[:, 0].max() + 0.5)
    assert z["ys"][0] == pytest.approx(x[:, 1].min() - 0.5) and z["ys"][-1] == pytest.approx(x[:, 1].max() + 0.5)

    # Logits stored at grid point (r, c) are the model's output at (xs[c], ys[r]).
    r, c = 7, 23
    with torch.no_grad():
        direct = model(torch.tensor([[z["xs"][c], z["ys"][r]]], dtype=torch.float32)).numpy()[0]
    np.testing.assert_allclose(z["logits"][r, c], direct, rtol=1e-5, atol=1e-5)

    flat = z["logits"].reshape(-1, 2)
    np.testing.assert_allclose(z["radius"].ravel(), _brute_force_radius(flat, k), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(z["predicted"].ravel(), flat.argmax(axis=1))
    # Binary case: the radius is |f_1 - f_0| / K_01, finite and non-negative.
    flat64 = flat.astype(np.float64)
    np.testing.assert_allclose(z["radius"].ravel(), np.abs(flat64[:, 1] - flat64[:, 0]) / k[0, 1], rtol=1e-12)
    assert np.isfinite(z["radius"]).all() and (z["radius"] >= 0).all()

    # Training points: certified iff correct and radius > eps; CRA/clean agree with metrics.json.
    assert z["eps"] == pytest.approx(0.15) and meta["eps"] == pytest.approx(0.15)
    np.testing.assert_array_equal(z["train_certified"],
                                  (z["train_predicted"] == z["y_train"]) & (z["train_radius"] > 0.15))
    assert meta["train_cra"] == pytest.approx(100.0 * z["train_certified"].mean())
    assert meta["cra"] == pytest.approx(meta["run_metrics"]["cra_0.15"])
    assert meta["clean"] == pytest.approx(meta["run_metrics"]["clean"])
    assert meta["train_clean"] == pytest.approx(meta["run_metrics"]["train_clean"])
    assert meta["K_f"] == pytest.approx(meta["run_metrics"]["K_f"], rel=1e-6)
    assert meta["K_hf"] == pytest.approx(meta["run_metrics"]["K_hf"], rel=1e-12)
    assert meta["method"] == "cll" and meta["method_label"] == "CLL"
    assert meta["p"] == pytest.approx(1e-12) and meta["p_printed"] is None  # annealed p: no single printed p


def test_grid_evaluation_on_linear_model_matches_closed_form():
    """nn.Linear: K_ji = ||W_j - W_i|| exactly, so the radius is the distance to the nearest rival hyperplane."""

    class LinearModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 3)
            with torch.no_grad():
                self.head.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.5], [0.0, -2.0]]))
                self.head.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))

        def forward(self, x):
            return self.head(x)

        def pairwise_lipschitz(self):
            w = self.head.weight.detach().double()
            return torch.cdist(w, w)

    model = LinearModel()
    grid = grid_evaluation(model, (-1.0, 2.0), (0.5, 1.5), 5)
    np.testing.assert_allclose(grid["xs"], np.linspace(-1, 2, 5))
    np.testing.assert_allclose(grid["ys"], np.linspace(0.5, 1.5, 5))
    w = model.head.weight.detach().double().numpy()
    b = model.head.bias.detach().double().numpy()
    for r, y in enumerate(grid["ys"]):
        for c, x in enumerate(grid["xs"]):
            f = w @ np.array([x, y]) + b
            j = int(np.argmax(f))
            # Distance to the hyperplane f_j = f_i, minimised over rivals i.
            expected = min((f[j] - f[i]) / np.linalg.norm(w[j] - w[i]) for i in range(3) if i != j)
            assert grid["predicted"][r, c] == j
            assert grid["radius"][r, c] == pytest.approx(expected, rel=1e-6)


def test_grid_input_errors():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="resolution"):
        grid_evaluation(model, (0, 1), (0, 1), 1)
    with pytest.raises(ValueError, match="x_range"):
        grid_evaluation(model, (1, 0), (0, 1), 4)
    with pytest.raises(ValueError, match="y_range"):
        grid_evaluation(model, (0, 1), (0, float("nan")), 4)
    with pytest.raises(ValueError, match="pad"):
        grid_bounds(np.zeros((3, 2)), 0.0)
    assert grid_bounds(np.array([[0.0, 1.0], [2.0, -1.0]]), 0.25) == ((-0.25, 2.25), (-1.25, 1.25))


def test_unfinished_run_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        evaluate_run_grid(tmp_path, tmp_path / "x.npz", 10)
    assert grid_main(["--run", str(tmp_path), "--out", str(tmp_path / "x.npz")]) == 2
    assert not (tmp_path / "x.npz").exists()


def test_eps_override_changes_certified_points(run_dir, tmp_path):
    out = evaluate_run_grid(run_dir, tmp_path / "small_eps.npz", 10, eps=1e-6)
    with np.load(out, allow_pickle=False) as npz:
        meta = read_grid_metadata(npz)
        certified = npz["train_certified"]
        expected = (npz["train_predicted"] == npz["y_train"]) & (npz["train_radius"] > 1e-6)
    assert meta["eps"] == 1e-6
    np.testing.assert_array_equal(certified, expected)
    assert [p.name for p in tmp_path.iterdir()] == ["small_eps.npz"]  # no temp file left behind


def test_figure_files_written(grid_file, tmp_path):
    png, pdf = plot_panels([grid_file, grid_file, grid_file], tmp_path / "f.png", tmp_path / "f.pdf", ncols=2,
                           titles=["a", "b", "c"])
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000
    rc = figures_main(["--npz", str(grid_file), "--out-png", str(tmp_path / "g.png"),
                       "--out-pdf", str(tmp_path / "g.pdf"), "--ncols", "4"])
    assert rc == 0 and (tmp_path / "g.png").read_bytes()[:8] == PNG_MAGIC


def test_figure_input_errors(grid_file, tmp_path):
    with pytest.raises(ValueError, match="titles has 1 entries for 2"):
        plot_panels([grid_file, grid_file], tmp_path / "f.png", tmp_path / "f.pdf", 2, titles=["x"])
    with pytest.raises(ValueError, match="ncols"):
        plot_panels([grid_file], tmp_path / "f.png", tmp_path / "f.pdf", 0)
    with pytest.raises(ValueError, match="npz_paths is empty"):
        plot_panels([], tmp_path / "f.png", tmp_path / "f.pdf", 1)
    with pytest.raises(FileNotFoundError, match="grid file not found"):
        plot_panels([tmp_path / "missing.npz"], tmp_path / "f.png", tmp_path / "f.pdf", 1)
    broken = tmp_path / "broken.npz"
    np.savez(broken, xs=np.zeros(3))
    with pytest.raises(ValueError, match="missing arrays"):
        load_panel(broken)
    assert not (tmp_path / "f.png").exists()


def test_reporting_does_not_import_models_or_training():
    code = ("import sys, lipcert.reporting.two_moons_figures as m; "
            "print([k for k in ('lipcert.training', 'lipcert.models', 'torch') if k in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []
