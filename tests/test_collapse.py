"""Collapsed runs (issue 13, item 5): the detector, the flag in metrics.json, the optional retry under seed + 1000 k."""

import json
import math
import subprocess
import sys

import pytest
import torch

from lipcert import training
from lipcert.collapse import chance_threshold, collapse_reason, retry_seed
from lipcert.datasets import load_data
from lipcert.params import run_config_from_params
from lipcert.run_record import collapse_of, retry_of

PARAMS = "params/two_moons.yaml"
TIMING = ("elapsed_s", "converge_s", "train_s")


def _h(*epochs):
    """A hand-made history: (loss, clean or None) per epoch."""
    return [{"epoch": i + 1, "loss": loss, **({} if clean is None else {"clean": clean})}
            for i, (loss, clean) in enumerate(epochs)]


# --- the detector --------------------------------------------------------------------------------------------
def test_chance_threshold_hand_values():
    assert chance_threshold(10, 10_000) == pytest.approx(11.5)  # margin 1.5 > 3 sd = 0.9
    assert chance_threshold(2, 20_000) == pytest.approx(57.5)   # margin 7.5 > 3 sd = 1.06
    assert chance_threshold(100, 10_000) == pytest.approx(1 + 300 * math.sqrt(0.01 * 0.99 / 10_000))  # 1.2985
    assert chance_threshold(200, 10_000) == pytest.approx(0.5 + 300 * math.sqrt(0.005 * 0.995 / 10_000))
    assert chance_threshold(10, 500) == pytest.approx(10 + 300 * math.sqrt(0.09 / 500))  # 14.02: small test set
    assert chance_threshold(2, 100) == pytest.approx(65.0)


def test_learning_run_is_not_flagged():
    assert collapse_reason(_h((2.3, 30.0), (1.5, 45.0), (1.1, 60.0)), n_classes=10, n_test=10_000) is None
    # a scheduled loss that rises while the model learns (CLL's p schedule on two-moons, 3 epochs) never dipped
    assert collapse_reason(_h((14.8, None), (20.0, None), (27.0, 82.3)), n_classes=2, n_test=300) is None


@pytest.mark.parametrize("clean,n_classes,n_test,flagged", [
    (10.0, 10, 10_000, True), (11.2, 10, 10_000, True), (11.6, 10, 10_000, False),  # Sandwich-S was 11.2 %
    (57.0, 2, 20_000, True), (58.0, 2, 20_000, False), (64.0, 2, 100, True), (66.0, 2, 100, False),
    (1.2, 100, 10_000, True), (1.4, 100, 10_000, False), (0.0, 200, 10_000, True), (0.8, 200, 10_000, False),
])
def test_chance_accuracy_at_the_threshold(clean, n_classes, n_test, flagged):
    flag = collapse_reason(_h((2.3, None), (2.2, clean)), n_classes=n_classes, n_test=n_test)
    assert (flag is not None) == flagged
    if flagged:
        assert flag["kind"] == "chance_accuracy" and flag["final_clean"] == clean
        assert flag["chance"] == pytest.approx(100 / n_classes) and flag["n_test"] == n_test
        assert flag["reason"].startswith(f"final clean accuracy {clean:.1f}% is at chance level")
        assert f"for {n_classes} classes" in flag["reason"]


def test_chance_reason_names_the_numbers():
    flag = collapse_reason(_h((2.3, 10.0)), n_classes=10, n_test=10_000)
    assert flag["reason"] == ("final clean accuracy 10.0% is at chance level (10% for 10 classes, flagged at or "
                              "below 11.5% on 10000 test points)")
    assert collapse_of({"extra": {"collapse": flag}}) == flag  # the run-record contract: a mapping with a reason


def test_loss_returned_to_its_first_epoch_value():
    flag = collapse_reason(_h((8.1, None), (4.0, None), (8.0, 35.0)), n_classes=10, n_test=10_000)
    assert flag["kind"] == "loss_returned"
    assert (flag["first_loss"], flag["final_loss"], flag["min_loss"], flag["epochs"]) == (8.1, 8.0, 4.0, 3)
    assert flag["reason"] == ("training loss 8 in the final epoch is back at its first-epoch value 8.1 "
                              "(it had fallen to 4)")
    # 7.9 < 0.98 * 8.1 = 7.938: not back; a dip to 7.3 > 0.9 * 8.1 = 7.29 is no dip
    assert collapse_reason(_h((8.1, None), (4.0, None), (7.9, 35.0)), n_classes=10, n_test=10_000) is None
    assert collapse_reason(_h((8.1, None), (7.3, None), (8.1, 35.0)), n_classes=10, n_test=10_000) is None


def test_both_criteria_give_the_chance_kind_and_both_reasons():
    flag = collapse_reason(_h((8.1, None), (4.0, None), (8.1, 10.0)), n_classes=10, n_test=10_000)
    assert flag["kind"] == "chance_accuracy"
    chance, loss = flag["reason"].split("; ")
    assert chance.startswith("final clean accuracy 10.0%") and loss.startswith("training loss 8.1")
    assert flag["final_clean"] == 10.0 and flag["first_loss"] == 8.1


def test_edge_cases_one_epoch_no_eval_non_finite():
    # one epoch: the accuracy criterion alone (first == final loss is no return)
    assert collapse_reason(_h((2.3, 10.0)), n_classes=10, n_test=10_000)["kind"] == "chance_accuracy"
    assert collapse_reason(_h((2.3, 50.0)), n_classes=10, n_test=10_000) is None
    # no evaluation in the final epoch: the loss criterion alone
    no_eval = collapse_reason(_h((8.0, None), (4.0, None), (8.0, None)), n_classes=2, n_test=100)
    assert no_eval["kind"] == "loss_returned"
    assert collapse_reason(_h((8.0, 10.0), (4.0, None)), n_classes=10, n_test=10_000) is None
    # a non-finite final or first loss never flags (training stops on it before the detector runs)
    assert collapse_reason(_h((8.0, None), (4.0, None), (float("nan"), 90.0)), n_classes=2, n_test=100) is None
    assert collapse_reason(_h((float("inf"), None), (4.0, None), (8.0, 90.0)), n_classes=2, n_test=100) is None


@pytest.mark.parametrize("history,n_classes,n_test,message", [
    ([], 10, 100, "at least one epoch, got an empty one"),
    ([{"epoch": 1, "loss": 1.0}, {"epoch": 2, "clean": 5.0}], 10, 100, r"history entry 1 \(epoch 2\) has no 'loss'"),
    (_h((1.0, 5.0)), 1, 100, "n_classes must be an integer >= 2, got 1"),
    (_h((1.0, 5.0)), 10, 0, "n_test must be a positive integer, got 0"),
])
def test_bad_input_names_the_problem(history, n_classes, n_test, message):
    with pytest.raises(ValueError, match=message):
        collapse_reason(history, n_classes=n_classes, n_test=n_test)


def test_retry_seed_rule_never_meets_a_table_seed():
    assert [retry_seed(1, k) for k in (1, 2, 3)] == [1001, 2001, 3001] and retry_seed(0, 1) == 1000
    retried = {retry_seed(s, k) for s in range(10) for k in (1, 2, 3)}
    assert len(retried) == 30 and retried.isdisjoint(range(1000))
    with pytest.raises(ValueError, match=r"needs a seed in \[0, 1000\).*got seed 1000"):
        retry_seed(1000, 1)
    with pytest.raises(ValueError, match="retry attempt must be an integer >= 1, got 0"):
        retry_seed(1, 0)


def test_detector_imports_no_torch():
    code = "import sys, lipcert.collapse; assert 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- training: the flag in metrics.json and the retry ------------------------------------------------------------
FLAG = {"kind": "chance_accuracy", "reason": "final clean accuracy 50.0% is at chance level (scripted)"}


def _cfg(seed=1, **over):
    sets = [f"{k}={v}" for k, v in {"epochs": 2, "data.n_train": 100, "data.n_test": 100, "eval_every": 2,
                                    "batch_size": 50, **over}.items()]
    return run_config_from_params(PARAMS, "ce", sets, seed=seed)


def _scripted(monkeypatch, outcomes):
    """Replace the detector: the i-th finished attempt gets outcomes[i] (the last one repeats)."""
    calls = []

    def detector(history, n_classes, n_test):
        calls.append((len(history), n_classes, n_test))
        return outcomes[min(len(calls), len(outcomes)) - 1]

    monkeypatch.setattr(training, "collapse_reason", detector)
    return calls


def _record(path):
    return json.loads((path / "metrics.json").read_text())


def _strip(history):
    return [{k: v for k, v in e.items() if k not in TIMING} for e in history]


def test_every_metrics_file_holds_the_detectors_flag(tmp_path):
    cfg = _cfg(**{"optim.lr": 0.01})  # cross-entropy at 1e-2 learns two-moons in 2 epochs (86 % clean)
    metrics = training.train_run(cfg, load_data(cfg.data), tmp_path / "r", progress=False)
    record = _record(tmp_path / "r")
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert metrics["clean"] > chance_threshold(2, 100)
    assert "collapse" in record["extra"] and collapse_of(record) is None
    assert collapse_of(record) == collapse_reason(history, n_classes=2, n_test=100)
    assert record["extra"]["fingerprint"] == cfg.fingerprint()  # the flag is an output, not a parameter


def test_flagged_run_without_retries_stays_flagged(tmp_path, monkeypatch, capsys):
    calls = _scripted(monkeypatch, [FLAG])
    cfg = _cfg()
    training.train_with_retries(cfg, load_data(cfg.data), tmp_path / "r", progress=False)
    record = _record(tmp_path / "r")
    assert calls == [(2, 2, 100)]  # the model's classes and the test set's size reach the detector
    assert collapse_of(record) == FLAG and retry_of(record) is None and record["seed"] == 1
    assert f"warning: {tmp_path / 'r'}: the run collapsed: {FLAG['reason']}" in capsys.readouterr().err
    assert not (tmp_path / "r" / "retries").exists() and not (tmp_path / "r" / "collapsed_attempts").exists()


def test_collapsed_run_is_retried_under_the_next_seed_and_not_retrained(tmp_path, monkeypatch):
    calls = _scripted(monkeypatch, [FLAG, None])
    cfg, run = _cfg(), tmp_path / "r"
    data = load_data(cfg.data)
    metrics = training.train_with_retries(cfg, data, run, retries=2, progress=False)
    record = _record(run)
    assert len(calls) == 2 and record["seed"] == 1001 and record["params"]["seed"] == 1001
    assert record["metrics"] == metrics and collapse_of(record) is None
    assert retry_of(record) == {"requested_seed": 1, "trained_seed": 1001,
                                "attempts": [{"seed": 1, "collapse": FLAG}, {"seed": 1001, "collapse": None}]}
    assert record["extra"]["fingerprint"] == _cfg(seed=1001).fingerprint()
    kept = run / "collapsed_attempts" / "seed1"  # the first attempt, complete
    assert _record(kept)["seed"] == 1 and collapse_of(_record(kept)) == FLAG
    assert {p.name for p in kept.iterdir()} == {"config.json", "history.json", "model.pt", "metrics.json"}
    assert not (run / "retries").exists() and not (run / "checkpoint.pt").exists()
    cfg_loaded, model = training.load_trained_model(run)
    assert cfg_loaded.seed == 1001 and model.global_lipschitz() == pytest.approx(metrics["K_f"], rel=1e-12)
    # the root holds exactly the run seed 1001 gives (history and model)
    direct = tmp_path / "direct"
    training.train_run(_cfg(seed=1001), data, direct, progress=False)
    assert _strip(json.loads((run / "history.json").read_text())) == \
        _strip(json.loads((direct / "history.json").read_text()))
    a, b = torch.load(run / "model.pt"), torch.load(direct / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # re-running the same command trains nothing and writes nothing
    mtime = (run / "metrics.json").stat().st_mtime_ns
    monkeypatch.setattr(training, "train_run", lambda *a, **k: pytest.fail("a finished retried run was retrained"))
    assert training.train_with_retries(cfg, data, run, retries=2, progress=False) == metrics
    assert training.train_with_retries(cfg, data, run, progress=False) == metrics
    assert (run / "metrics.json").stat().st_mtime_ns == mtime
    with pytest.raises(RuntimeError, match="requested with seed 1, not 2"):
        training.train_with_retries(_cfg(seed=2), data, run, progress=False)
    with pytest.raises(RuntimeError, match="different parameters"):
        training.train_with_retries(_cfg(**{"optim.lr": 0.01}), data, run, progress=False)


def test_retries_stop_when_used_up_and_go_on_when_more_are_allowed(tmp_path, monkeypatch, capsys):
    calls = _scripted(monkeypatch, [FLAG])  # every attempt collapses
    cfg, run = _cfg(), tmp_path / "r"
    data = load_data(cfg.data)
    training.train_with_retries(cfg, data, run, retries=1, progress=False)
    assert len(calls) == 2 and "seed 1 collapsed; retry 1 of 1 under seed 1001" in capsys.readouterr().err
    assert retry_of(_record(run))["attempts"] == [{"seed": 1, "collapse": FLAG}, {"seed": 1001, "collapse": FLAG}]
    assert collapse_of(_record(run)) == FLAG  # used up: the last attempt stays, flagged
    training.train_with_retries(cfg, data, run, retries=1, progress=False)
    assert len(calls) == 2  # no loop, no retraining
    training.train_with_retries(cfg, data, run, retries=2, progress=False)
    assert len(calls) == 3 and retry_of(_record(run))["trained_seed"] == 2001
    assert [a["seed"] for a in retry_of(_record(run))["attempts"]] == [1, 1001, 2001]
    assert sorted(p.name for p in (run / "collapsed_attempts").iterdir()) == ["seed1", "seed1001"]
    assert _record(run / "collapsed_attempts" / "seed1001")["seed"] == 1001


def test_interrupted_retry_resumes_from_its_own_checkpoint(tmp_path, monkeypatch):
    calls = _scripted(monkeypatch, [FLAG, None])
    cfg, run = _cfg(), tmp_path / "r"
    data = load_data(cfg.data)
    step = dict(retries=1, progress=False, max_epochs_this_call=1)
    assert training.train_with_retries(cfg, data, run, **step) is None  # seed 1, epoch 1 of 2
    assert training.train_with_retries(cfg, data, run, **step) is None  # seed 1 done (flagged); seed 1001 epoch 1
    attempt = run / "retries" / "seed1001"
    assert torch.load(attempt / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert _record(run)["seed"] == 1 and collapse_of(_record(run)) == FLAG  # the root is untouched meanwhile
    training.train_with_retries(cfg, data, run, **step)
    assert len(calls) == 2 and retry_of(_record(run))["trained_seed"] == 1001
    whole = tmp_path / "whole"
    calls.clear()
    training.train_with_retries(cfg, data, whole, retries=1, progress=False)
    assert _strip(json.loads((run / "history.json").read_text())) == \
        _strip(json.loads((whole / "history.json").read_text()))


def test_retry_arguments_are_checked(tmp_path):
    cfg = _cfg()
    with pytest.raises(ValueError, match=r"retries \(--retry-collapsed\) must be a non-negative integer, got -1"):
        training.train_with_retries(cfg, None, tmp_path / "r", retries=-1)
    with pytest.raises(ValueError, match=r"needs a seed in \[0, 1000\).*got seed 1000"):
        training.train_with_retries(_cfg(seed=1000), None, tmp_path / "r", retries=1)
    assert not (tmp_path / "r").exists()  # both fail before anything is trained


def test_cli_retry_collapsed(tmp_path, monkeypatch, capsys):
    from lipcert.__main__ import main

    _scripted(monkeypatch, [FLAG, None])
    run = tmp_path / "run"
    args = ["train", "--params", PARAMS, "--experiment", "ce", "--seed", "3", "--out", str(run), "--no-progress",
            "--no-mlflow", "--set", "epochs=1", "--set", "data.n_train=100", "--set", "data.n_test=100"]
    assert main(args + ["--retry-collapsed", "1"]) == 0
    assert retry_of(_record(run))["trained_seed"] == 1003
    assert main(args + ["--retry-collapsed", "-1"]) == 2
    assert "must be a non-negative integer, got -1" in capsys.readouterr().err
