"""``python -m lipcert.gpu_check`` on the CPU, with the packages a GPU machine lacks made unimportable (issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lipcert.devices import resolve_device
from lipcert.gpu_check import render_markdown

ROOT = Path(__file__).resolve().parents[1]
# what the GPU machines here have besides torch: numpy, scipy, pyyaml, tqdm, pytest
ABSENT_ON_GPU_MACHINES = ("mlflow", "pandas", "matplotlib", "PIL", "sklearn", "snakemake", "dvc", "papermill",
                          "jupytext", "nbformat")

BLOCKER = f'''
import importlib.abc
import importlib.machinery
import sys
BLOCKED = {ABSENT_ON_GPU_MACHINES!r}


class _AbsentLoader(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {{spec.name!r}} (absent on the GPU machine: tests/test_gpu_check.py)",
                                  name=spec.name)

    def exec_module(self, module):
        raise AssertionError("unreachable")


class _Absent:
    """Import fails; probes such as torch._dynamo's find_spec(...) see a spec without an origin and skip it."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, _AbsentLoader(), origin=None)
        return None


sys.meta_path.insert(0, _Absent())
'''


def _blocked_env(tmp_path: Path) -> dict:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")])}


def test_the_blocker_blocks(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import mlflow"], env=_blocked_env(tmp_path),
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "absent on the GPU machine" in proc.stderr


@pytest.mark.slow
def test_gpu_check_runs_on_the_cpu_without_the_registry_packages(tmp_path):
    out = tmp_path / "gpu_check"
    cmd = [sys.executable, "-m", "lipcert.gpu_check", "--device", "cpu", "--models", "4C3F", "--epochs", "2",
           "--train-size", "128", "--test-size", "50", "--certify-images", "100", "--shared", "2", "--probe-models", "4C3F", "--probe-steps", "1", "--out", str(out)]
    proc = subprocess.run(cmd, env=_blocked_env(tmp_path), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    # pytest -m gpu ran on the files holding gpu tests (they collect without the blocked packages; skipped here)
    assert report["pytest_gpu"]["ran"] and report["pytest_gpu"]["exit_code"] == 0
    assert "test_gpu.py" in report["pytest_gpu"]["files"] and "skipped" in report["pytest_gpu"]["summary"]
    (model,) = report["models"]
    single, shared = model["single"], model["shared"]
    assert single["epochs"] == 2 and len(single["s_per_epoch"]) == 2 and single["iterations_per_epoch"] == 1
    assert single["s_per_epoch_after_first"] > 0 and single["certify_s_per_10000"] > 0
    assert single["numerics"]["device_type"] == "cpu" and single["numerics"]["converge_dtype"] == "float64"
    assert shared["runs"] == 2 and len(shared["results"]) == 2 and shared["wall_s"] > 0
    (probe,) = report["probes"]
    assert probe["model"] == "4C3F" and probe["batch_size"] == 128 and probe["s_per_step"] > 0
    assert probe["converge_after_steps_iterations"] > 0 and probe["peak_memory_bytes"] is None  # CPU
    table = (out / "gpu_check.md").read_text()
    assert table == render_markdown(report) and "| 4C3F | 2 |" in table and table in proc.stdout


def test_gpu_check_without_cuda_fails_at_once_naming_the_problem(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"--device 'cuda': CUDA is not available on this machine"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu0")
    assert resolve_device("auto").type == "cpu"


def test_cli_train_with_cuda_on_a_cpu_machine_fails_before_loading(tmp_path, monkeypatch, capsys):
    import torch

    from lipcert.__main__ import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["train", "--params", "params/two_moons.yaml", "--experiment", "cll", "--out", str(tmp_path / "r"),
                 "--no-mlflow", "--device", "cuda"])
    assert code == 2 and "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing was started
