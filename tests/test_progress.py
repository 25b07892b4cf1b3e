"""Progress lines of training runs (issue 14, item 4): exact formatting, ETA, the default interval, and the lines
a tiny two-moons training prints to a captured stderr (one per N epochs, no carriage returns)."""

import re

import pytest

from lipcert.progress import (default_progress_every, eta_seconds, format_duration, is_progress_epoch,
                              progress_every, progress_line, start_line)

LINE = re.compile(r"^epoch (\d+)/(\d+)  loss \S+  K\(f\) \S+  CRA@\S+ (\S+)  elapsed \d+:\d\d:\d\d  "
                  r"ETA \d+:\d\d:\d\d$")


def test_progress_line_exact_text():
    assert progress_line(450, 800, 0.3125, 1.25, 0.15, 87.5, 4500.0, 3150.0) == \
        "epoch 450/800  loss 0.3125  K(f) 1.25  CRA@0.15 87.5%  elapsed 1:15:00  ETA 0:52:30"
    assert progress_line(3, 800, 1.234567, 12.3456, 36 / 255, None, 59.6, 259200.4) == \
        "epoch 3/800  loss 1.235  K(f) 12.35  CRA@0.1412 –  elapsed 0:01:00  ETA 72:00:00"
    assert progress_line(10, 10, 2.5e-05, 1.0, 0.5, 100.0, 0.0, 0.0) == \
        "epoch 10/10  loss 2.5e-05  K(f) 1  CRA@0.5 100.0%  elapsed 0:00:00  ETA 0:00:00"


def test_format_duration():
    assert format_duration(0.4) == "0:00:00"
    assert format_duration(61) == "0:01:01"
    assert format_duration(3599.6) == "1:00:00"
    assert format_duration(100 * 3600 + 5) == "100:00:05"
    assert format_duration(float("nan")) == "?"


def test_eta_is_the_mean_epoch_time_of_this_process_times_the_epochs_left():
    assert eta_seconds(30.0, 3, 7) == 70.0  # 10 s per epoch, 7 left
    assert eta_seconds(12.0, 4, 1) == 3.0
    assert eta_seconds(30.0, 3, 0) == 0.0
    assert eta_seconds(5.0, 0, 2) == 10.0  # no epoch yet: the time so far counts as one


@pytest.mark.parametrize("epochs, eval_every, expected", [
    (800, 50, 50),    # divisors of 50: 25 gives 32 lines, 50 gives 16: 16 is closer to 20
    (1000, 50, 50),   # 20 lines
    (300, 50, 25),    # 12 lines (10 would give 30)
    (200, 50, 10),    # 20 lines
    (30, 10, 2),      # 15 lines
    (3, 1, 1),
    (1000, 1, 1),     # every epoch is evaluated: every epoch gets its line
    (3, 50, 1),       # fewer epochs than eval_every: divisors above the epoch count are not considered
    (800, 53, 53),    # a prime eval_every: 1 (800 lines) or 53 (15 lines)
    (40, 4, 2),       # 40, 20 or 10 lines: 20
    (30, 2, 2),       # 30 lines (10 off) or 15 (5 off)
    (25, 25, 1),      # 25 lines (5 off), 5 (15 off) or 1
    (30, 3, 1),       # 30 or 10 lines, both 10 off: the tie goes to the smaller N
])
def test_default_interval(epochs, eval_every, expected):
    assert default_progress_every(epochs, eval_every) == expected
    assert eval_every % expected == 0 and 1 <= expected <= eval_every


def test_progress_argument():
    assert progress_every(False, 800, 50) is None
    assert progress_every(None, 800, 50) is None
    assert progress_every(True, 800, 50) == 50
    assert progress_every(7, 800, 50) == 7
    assert progress_every(1, 800, 50) == 1
    for bad in (0, -3, 2.5, "5"):
        with pytest.raises(ValueError, match="--progress-every"):
            progress_every(bad, 800, 50)


def test_which_epochs_get_a_line():
    picked = [e for e in range(1, 11) if is_progress_epoch(e, 10, 4, first_in_process=e == 1)]
    assert picked == [1, 4, 8, 10]
    resumed = [e for e in range(6, 11) if is_progress_epoch(e, 10, 4, first_in_process=e == 6)]
    assert resumed == [6, 8, 10]


def test_start_line():
    assert start_line(0, 800, 50) == "training 800 epochs; a progress line every 50 epochs"
    assert start_line(400, 800, 1) == "resuming after epoch 400/800 from the checkpoint; a progress line every epoch"


def test_progress_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, lipcert.progress; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the lines of a real (tiny) training run ----------------------------------------------------------------------
PARAMS = "params/two_moons.yaml"


def _cfg(**over):
    from lipcert.params import run_config_from_params

    sets = [f"{k}={v}" for k, v in {"epochs": 5, "data.n_train": 200, "data.n_test": 200, "eval_every": 2,
                                    "batch_size": 50, **over}.items()]
    return run_config_from_params(PARAMS, "cll", sets, seed=1)


def _progress_lines(err: str) -> list[tuple[int, int, str]]:
    """(epoch, total, CRA field) of each progress line in ``err``; every line starting "epoch " must match LINE."""
    out = []
    for line in err.splitlines():
        if line.startswith("epoch "):
            m = LINE.match(line)
            assert m, line
            out.append((int(m[1]), int(m[2]), m[3]))
    return out


def test_training_prints_one_line_per_n_epochs(tmp_path, capfd):
    from lipcert.datasets import load_data
    from lipcert.training import train_run

    cfg = _cfg()
    data = load_data(cfg.data)
    assert train_run(cfg, data, tmp_path / "r", progress=2, max_epochs_this_call=3) is None
    first = capfd.readouterr()
    assert "\r" not in first.err + first.out
    assert first.err.splitlines()[0] == "training 5 epochs; a progress line every 2 epochs"
    # epoch 1 (the first of the process), then every 2nd; evaluated every 2nd epoch: CRA on those lines only
    lines = _progress_lines(first.err)
    assert [(e, total) for e, total, _ in lines] == [(1, 5), (2, 5)]
    assert lines[0][2] == "–" and lines[1][2].endswith("%")

    train_run(cfg, data, tmp_path / "r", progress=2)  # resumes after epoch 3
    second = capfd.readouterr()
    assert "\r" not in second.err + second.out
    assert second.err.splitlines()[0] == "resuming after epoch 3/5 from the checkpoint; a progress line every 2 epochs"
    lines = _progress_lines(second.err)
    assert [e for e, _, _ in lines] == [4, 5]  # 4: first of this process and a multiple of 2; 5: the last
    assert all(cra.endswith("%") for _, _, cra in lines)  # 4 is an eval epoch, 5 the last (always evaluated)
    assert second.err.splitlines()[-1].endswith("ETA 0:00:00")


def test_training_default_interval_and_silence(tmp_path, capfd):
    from lipcert.datasets import load_data
    from lipcert.training import train_run

    cfg = _cfg(epochs=4, eval_every=1)
    data = load_data(cfg.data)
    train_run(cfg, data, tmp_path / "a", progress=True)
    assert [e for e, _, _ in _progress_lines(capfd.readouterr().err)] == [1, 2, 3, 4]  # eval_every 1: N = 1
    train_run(cfg, data, tmp_path / "b", progress=False)
    assert capfd.readouterr().err == ""


def test_cli_progress_every_and_no_progress(tmp_path, capfd):
    from lipcert.__main__ import main

    sets = ["--set", "epochs=3", "--set", "eval_every=3", "--set", "data.n_train=100", "--set", "data.n_test=100"]
    common = ["train", "--params", PARAMS, "--experiment", "ce", "--seed", "0", "--no-mlflow", *sets]
    assert main([*common, "--out", str(tmp_path / "a"), "--progress-every", "2"]) == 0
    err = capfd.readouterr().err
    assert "\r" not in err
    assert [(e, cra.endswith("%")) for e, _, cra in _progress_lines(err)] == [(1, False), (2, False), (3, True)]
    assert main([*common, "--out", str(tmp_path / "b")]) == 0  # default: 3 lines (N=1) beat 1 line (N=3)
    assert [e for e, _, _ in _progress_lines(capfd.readouterr().err)] == [1, 2, 3]
    assert main([*common, "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert _progress_lines(capfd.readouterr().err) == []
    assert main([*common, "--out", str(tmp_path / "d"), "--progress-every", "0"]) == 2
    assert "--progress-every" in capfd.readouterr().err


def test_the_cra_is_rounded_down_like_every_displayed_accuracy():
    assert "CRA@0.15 99.9%" in progress_line(10, 10, 1.0, 2.0, 0.15, 99.96, 1.0, 0.0)
