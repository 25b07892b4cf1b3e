"""Training engine: determinism, resume-equals-uninterrupted, failure paths, parameter validation."""

import json
import math

import pytest
import torch

from lipcert.datasets import load_data
from lipcert.params import apply_overrides, run_config_from_params
from lipcert.run_config import load_run_config
from lipcert.training import NonFiniteLossError, TensorData, load_trained_model, train_run

PARAMS = "params/two_moons.yaml"
TIMING = ("elapsed_s", "converge_s", "train_s")  # wall-clock entries: the only ones allowed to differ


def _strip(metrics):
    return {k: v for k, v in metrics.items() if k not in TIMING}


def _cfg(experiment="cll", **over):
    sets = [f"{k}={v}" for k, v in {"epochs": 3, "data.n_train": 200, "data.n_test": 300, "eval_every": 1,
                                    "batch_size": 50, **over}.items()]
    return run_config_from_params(PARAMS, experiment, sets, seed=1)


def _run(cfg, path, **kw):
    return train_run(cfg, load_data(cfg.data), path, progress=False, **kw)


@pytest.mark.parametrize("experiment", ["cll", "gloro", "ce"])
def test_same_seed_gives_bitwise_identical_metrics(tmp_path, experiment):
    cfg = _cfg(experiment)
    a = _run(cfg, tmp_path / "a")
    b = _run(cfg, tmp_path / "b")
    assert _strip(a) == _strip(b)
    assert [_strip(e) for e in json.loads((tmp_path / "a" / "history.json").read_text())] == \
        [_strip(e) for e in json.loads((tmp_path / "b" / "history.json").read_text())]
    sa = torch.load(tmp_path / "a" / "model.pt")
    sb = torch.load(tmp_path / "b" / "model.pt")
    assert all(torch.equal(sa[k], sb[k]) or (sa[k].isnan().all() and sb[k].isnan().all()) for k in sa)


def test_different_seed_differs(tmp_path):
    a = _run(_cfg(), tmp_path / "a")
    b = _run(run_config_from_params(PARAMS, "cll", ["epochs=3", "data.n_train=200", "data.n_test=300",
                                                    "batch_size=50"], seed=2), tmp_path / "b")
    assert a["loss"] != b["loss"]


def test_resume_after_interrupt_equals_uninterrupted(tmp_path):
    cfg = _cfg()
    full = _run(cfg, tmp_path / "full")
    part = _run(cfg, tmp_path / "part", max_epochs_this_call=2)  # "killed" after epoch 2 of 3
    assert part is None
    assert not (tmp_path / "part" / "metrics.json").exists()
    assert torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["epoch"] == 2
    resumed = _run(cfg, tmp_path / "part")
    full_hist = json.loads((tmp_path / "full" / "history.json").read_text())
    res_hist = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [_strip(e) for e in res_hist] == [_strip(e) for e in full_hist]
    assert _strip(resumed) == _strip(full)


def test_finished_run_is_not_retrained_and_other_params_are_refused(tmp_path):
    cfg = _cfg()
    first = _run(cfg, tmp_path / "r")
    mtime = (tmp_path / "r" / "metrics.json").stat().st_mtime_ns
    assert _run(cfg, tmp_path / "r") == first
    assert (tmp_path / "r" / "metrics.json").stat().st_mtime_ns == mtime
    with pytest.raises(RuntimeError, match="different parameters"):
        _run(_cfg(**{"loss.lam": 1e-3}), tmp_path / "r")


def test_checkpoint_of_other_params_is_refused(tmp_path):
    _run(_cfg(), tmp_path / "r", max_epochs_this_call=1)
    with pytest.raises(RuntimeError, match="different run parameters"):
        _run(_cfg(**{"loss.lam": 1e-3}), tmp_path / "r")


def test_a_checkpoint_of_other_code_or_params_is_moved_aside_and_the_run_starts_over(tmp_path, capfd):
    """The workflow passes the training code's digest: a rerun after a code (or params) change never resumes the
    old checkpoint, and the same code version resumes as before."""
    cfg = _cfg()
    full = _run(cfg, tmp_path / "full", code_version="b")
    _run(cfg, tmp_path / "r", max_epochs_this_call=2, code_version="a")  # an older code version, 2 of 3 epochs
    rerun = _run(cfg, tmp_path / "r", code_version="b")
    assert (tmp_path / "r" / "checkpoint.stale.pt").exists()
    assert "code version a != b" in capfd.readouterr().err
    assert _strip(rerun) == _strip(full)  # trained from scratch: equal to an uninterrupted run
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["extra"]["code_version"] == "b"
    _run(cfg, tmp_path / "s", max_epochs_this_call=2, code_version="b")
    other = _cfg(**{"loss.lam": 1e-3})
    _run(other, tmp_path / "s", code_version="b")  # other params under the workflow: starts over, no error
    assert "fingerprint" in capfd.readouterr().err
    _run(cfg, tmp_path / "t", max_epochs_this_call=2, code_version="b")
    assert _strip(_run(cfg, tmp_path / "t", code_version="b")) == _strip(full)  # same version: resumed
    assert not (tmp_path / "t" / "checkpoint.stale.pt").exists()


def test_non_finite_loss_names_epoch_and_iteration_and_writes_no_metrics(tmp_path):
    cfg = _cfg("ce")
    d = load_data(cfg.data)
    x = d.x_train.clone()
    x[130] = float("nan")  # lands in some batch of epoch 1
    bad = TensorData(x, d.y_train, d.x_test, d.y_test)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, iteration \d+"):
        train_run(cfg, bad, tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "metrics.json").exists()
    assert "non-finite" in json.loads((tmp_path / "r" / "failed.json").read_text())["error"]


def test_labels_beyond_the_models_outputs_fail_before_training(tmp_path):
    cfg = _cfg("ce")
    d = load_data(cfg.data)
    y = d.y_test.clone()
    y[7] = 2  # a third class: the two-moons model has 2 outputs
    with pytest.raises(ValueError, match=r"model 'two_moons' has 2 outputs, but the data .* has labels up to 2: use "
                                         r"an architecture with 3 classes"):
        train_run(cfg, TensorData(d.x_train, d.y_train, d.x_test, y, label="three moons"), tmp_path / "r",
                  progress=False)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_metrics_file_contents_and_trained_model_reload(tmp_path):
    cfg = _cfg()
    metrics = _run(cfg, tmp_path / "r")
    record = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert record["seed"] == 1 and record["params"]["loss"]["name"] == "cll"
    assert {"torch", "python"} <= set(record["versions"])
    for key in ("clean", "cra_0.15", "train_cra_0.15", "K_f", "K_hf", "loss"):
        assert math.isfinite(metrics[key])
    # K(h o f) of CLL = 1/sigma_eps(p) at the end of the p schedule (eq. (5)): logit(1 - p_T)/eps
    assert metrics["K_hf"] == pytest.approx(math.log((1 - 1e-12) / 1e-12) / 0.15, rel=1e-9)
    _, model = load_trained_model(tmp_path / "r")
    assert model.global_lipschitz() == pytest.approx(metrics["K_f"], rel=1e-12)


def test_lr_decays_at_milestone(tmp_path):
    cfg = _cfg(**{"optim.lr_milestones": "[2]"})
    _run(cfg, tmp_path / "r")
    lrs = [e["lr"] for e in json.loads((tmp_path / "r" / "history.json").read_text())]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4])


def test_triangular_lr_per_iteration_with_sgd(tmp_path, monkeypatch):
    from lipcert.schedules import piecewise_linear_lr

    seen = []
    original = torch.optim.SGD.step

    def spy(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *a, **kw)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    cfg = _cfg(experiment="ce", **{"optim.name": "sgd", "optim.lr_schedule": "triangular", "optim.lr": 0.01,
                                   "optim.lr_milestones": "[]"})
    _run(cfg, tmp_path / "r")
    total = 3 * (200 // 50)
    assert len(seen) == total
    assert seen == pytest.approx([piecewise_linear_lr(t, total, 0.01) for t in range(total)])
    # hand values: t = 2 of 12 is 1/6 of training, 5/12 of the way up; t = 5 is just past the 40 % peak
    assert seen[2] == pytest.approx(0.01 * (1 / 6) / 0.4) and seen[5] == pytest.approx(0.01 * (1 - 0.95 * (5 / 12 - 0.4) / 0.4))


# --- parameter validation -------------------------------------------------------------------------
def _base():
    return {"model": "two_moons", "data": {"name": "two_moons"}, "epochs": 2, "batch_size": 10,
            "loss": {"name": "cll", "eps": 0.15, "p": 0.01}}


def test_valid_minimal_config_and_constant_shorthand():
    cfg = load_run_config(_base())
    assert cfg.loss.settings.p.kind == "constant" and cfg.loss.settings.p.start == 0.01


@pytest.mark.parametrize("patch,message", [
    ({"epoch": 3}, "unknown key 'epoch' .*did you mean 'epochs'"),
    ({"loss": {"name": "cll", "eps": 0.15, "p": 0.01, "lamda": 1}}, "unknown key 'lamda'.*did you mean 'lam'"),
    ({"loss": {"name": "cll", "eps": 0.15}}, "loss.p .* required"),
    ({"loss": {"name": "cll", "eps": 0.15, "p": 0.7}}, "loss.p must be in"),
    ({"loss": {"name": "hinge"}}, "name"),
    ({"epochs": 0}, "epochs must be in"),
    ({"epochs": "ten"}, "epochs"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"optim": {"lr": -1}}, "optim.lr must be in"),
    ({"optim": {"lr_milestones": [600, 400]}}, "lr_milestones"),
    ({"optim": {"lr_schedule": "triangular", "lr_milestones": [4]}}, "apply to lr_schedule 'step' only"),
    ({"optim": {"betas": [0.5, 1.5]}}, "optim.betas"),
    ({"head": "normalized"}, "head"),
    ({"loss": {"name": "ce", "p": 0.1}}, "p applies only"),
    ({"data": {"name": "svhn"}}, "name"),
])
def test_bad_params_fail_naming_the_problem(patch, message):
    data = {**_base(), **patch}
    with pytest.raises(ValueError, match=message):
        load_run_config(data, where="test.yaml")


def test_unknown_experiment_and_bad_override():
    with pytest.raises(ValueError, match="unknown experiment 'cl'.*available"):
        run_config_from_params(PARAMS, "cl")
    with pytest.raises(ValueError, match="key.sub=value"):
        apply_overrides({}, ["epochs"])
    assert apply_overrides({"loss": {"lam": 0}}, ["loss.lam=1e-6"])["loss"]["lam"] == 1e-6


def test_cli_train_and_certify_and_tightness(tmp_path, capsys):
    from lipcert.__main__ import main

    run = tmp_path / "run"
    sets = ["--set", "epochs=2", "--set", "data.n_train=200", "--set", "data.n_test=200"]
    assert main(["train", "--params", PARAMS, "--experiment", "cll", "--seed", "0", "--out", str(run),
                 "--no-progress", "--no-mlflow", *sets]) == 0
    assert main(["certify", "--run", str(run)]) == 0
    cert = json.loads((run / "certify.json").read_text())
    assert 0 <= cert["clean_accuracy"] <= 1 and cert["converged"]
    assert main(["tightness", "--run", str(run), "--pairs", "50", "--steps", "20"]) == 0
    tight = json.loads((run / "tightness.json").read_text())
    assert 0 < tight["tightness"] <= 1
    assert main(["train", "--params", PARAMS, "--experiment", "nope", "--out", str(run), "--no-mlflow"]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_cli_train_logs_to_mlflow(tmp_path, monkeypatch):
    """Params, per-epoch metrics, final metrics, metrics.json and a figure end up in the sqlite store."""
    from lipcert.__main__ import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    results = tmp_path / "results"
    for seed in (0, 1):
        assert main(["train", "--params", PARAMS, "--experiment", "ce", "--seed", str(seed), "--out",
                     str(results / f"s{seed}"), "--results-dir", str(results), "--no-progress",
                     "--set", "epochs=2", "--set", "data.n_train=100", "--set", "data.n_test=100"]) == 0
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("two_moons")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    # one configuration (the same --set overrides, two seeds): one parent, two children named apart
    assert len(parents) == 1 and len(children) == 2
    assert sorted(r.info.run_name for r in children) == [f"{parents[0].info.run_name} seed{s}" for s in (0, 1)]
    assert {r.data.tags["method"] for r in children} == {"ce"}
    run = children[0]
    assert run.data.params["loss.name"] == "ce" and run.data.params["epochs"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2
    assert any(k.startswith("final/") for k in run.data.metrics)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"metrics.json", "history.png"}
    assert len({r.data.tags.get("mlflow.parentRunId") for r in children}) == 1


@pytest.mark.slow
def test_two_moons_cll_paper_settings_reach_full_training_cra(tmp_path):
    """Table B1 settings (2 eps = 0.3, p 1e-3 -> 1e-12, gamma 50, lambda 1e-6, 1000 epochs): Fig. 4's 100 % CRA."""
    cfg = run_config_from_params(PARAMS, "cll", seed=0)
    metrics = train_run(cfg, load_data(cfg.data), tmp_path / "r", progress=False)
    assert metrics["train_cra_0.15"] == 100.0


def test_lr_reference_batch_scales_the_rate_linearly_and_keeps_old_fingerprints():
    from lipcert.training import base_learning_rate, learning_rate

    paper = run_config_from_params("params/cifar10.yaml", "lbdn", [], seed=1)  # LBDN: 1e-2 at batch 256
    assert paper.optim.lr_reference_batch == 256 and paper.batch_size == 256
    assert base_learning_rate(paper) == 1e-2
    quick = run_config_from_params("params/cifar10.yaml", "lbdn", ["batch_size=64"], seed=1)
    assert base_learning_rate(quick) == pytest.approx(2.5e-3, rel=1e-15)
    total = 1000  # the triangular schedule peaks at 40 % of training with the scaled rate
    assert learning_rate(quick, 0, 400, total) == pytest.approx(2.5e-3, rel=1e-12)
    unscaled = run_config_from_params("params/cifar10.yaml", "lbdn", ["batch_size=64", "optim.lr_reference_batch=null"])
    assert base_learning_rate(unscaled) == 1e-2
    # a recipe without the option: lr as given, and the fingerprint is the one of a config lacking the key
    cll = run_config_from_params("params/cifar10.yaml", "cll", ["batch_size=64"], seed=1)
    assert cll.optim.lr_reference_batch is None and base_learning_rate(cll) == cll.optim.lr
    old = cll.to_dict()
    del old["optim"]["lr_reference_batch"]
    assert load_run_config(old).fingerprint() == cll.fingerprint()
    assert quick.fingerprint() != unscaled.fingerprint()
    with pytest.raises(ValueError, match="optim.lr_reference_batch must be a positive integer"):
        run_config_from_params("params/cifar10.yaml", "lbdn", ["optim.lr_reference_batch=0"])


def test_override_appends_to_a_list_and_keeps_the_fingerprint():
    """``eval_eps+=[e]`` (the axes of params/cifar10.yaml) certifies at the training eps without copying the radii:
    the same config, and fingerprint, as the full list."""
    full = run_config_from_params("params/cifar10.yaml", "cll",
                                  ["loss.eps=0.25", "eval_eps=[0.1411764705882353, 0.2823529411764706, "
                                   "0.4235294117647059, 0.25]"], seed=0)
    appended = run_config_from_params("params/cifar10.yaml", "cll", ["loss.eps=0.25", "eval_eps+=[0.25]"], seed=0)
    assert appended.eval_eps == full.eval_eps and appended.fingerprint() == full.fingerprint()
    assert apply_overrides({"a": [1]}, ["a+=2", "a+=[3, 1e-3]"])["a"] == [1, 2, 3, 1e-3]
    with pytest.raises(ValueError, match=r"'epochs' is 5, not a list to append to"):
        apply_overrides({"epochs": 5}, ["epochs+=[1]"])
