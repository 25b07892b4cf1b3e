"""Smoke tests of lipcert.bench on tiny models: returned keys, positivity and consistency, no timing claims."""

import json
import math

import pytest
import torch
import yaml

from lipcert.bench import (
    authors_style_convergence,
    benchmark_converge,
    benchmark_loading,
    SOC_TRUNCATION_CASES,
    benchmark_loss,
    benchmark_overhead,
    benchmark_soc_truncation,
    benchmark_tightness,
    main,
)
from lipcert.models import ArchitectureSpec, build_from_spec

TINY_CONV = {"input_shape": [3, 12, 12], "layers": "c(4,3,1,1) c(4,4,2,1) d(8) d(4)"}
TINY_MLP = {"input_shape": [2], "layers": "d(6) d(4) d(2)"}
# 12x12 inputs: the first two layers have more than 256 inputs, so Lanczos (ARPACK) runs instead of a dense SVD


def tiny_conv(seed: int = 0):
    return build_from_spec(ArchitectureSpec.from_dict("tiny_conv", TINY_CONV), seed=seed)


def dense_k_body(model) -> float:
    """Independent K_body: product of the exact spectral norms of the layers' dense matrices."""
    return math.prod(float(torch.linalg.matrix_norm(layer.dense_operator(), ord=2)) for layer in model.spectral_layers())


def test_converge_matches_dense_svd_and_reports_every_layer():
    result = benchmark_converge(tiny_conv, label="tiny", block_power_max_iter=20_000)
    expected = dense_k_body(tiny_conv())
    assert result["benchmark"] == "converge" and result["model"] == "tiny"
    assert set(result["methods"]) == {"lanczos", "arpack", "block_power"}
    for method, m in result["methods"].items():
        assert m["converged"], method
        assert m["k_body"] == pytest.approx(expected, rel=1e-8)
        assert len(m["layers"]) == 3
        assert m["iterations"] == sum(layer["iterations"] for layer in m["layers"]) > 0
        assert m["seconds"] > 0 and all(layer["sigma"] > 0 for layer in m["layers"])
        # the library's Lanczos converges all layers together: one time for the whole body
        assert all((layer["seconds"] is None) == (method == "lanczos") for layer in m["layers"])
        assert method == "lanczos" or all(layer["seconds"] > 0 for layer in m["layers"])
        assert m["k_global"] > 0
    # the pure-torch Lanczos against SciPy's ARPACK, layer by layer
    assert result["methods"]["arpack"]["max_rel_diff_sigma_vs_reference"] < 1e-10
    authors = result["authors_style_float32"]
    assert authors["sweeps"] >= 2 and authors["seconds"] > 0
    assert authors["reference_method"] == "lanczos"
    # float32 stalls near 1e-7 relative; on this tiny model it still lands within 1e-4 of the float64 value
    assert abs(authors["rel_error_k_body"]) < 1e-4
    assert authors["rel_error_k_body"] == pytest.approx(
        (result["methods"]["lanczos"]["k_body"] - authors["k_body"]) / result["methods"]["lanczos"]["k_body"])


def test_converge_rejects_unknown_or_missing_method():
    with pytest.raises(ValueError, match="unknown method 'svd'"):
        benchmark_converge(tiny_conv, methods=["svd"])
    with pytest.raises(ValueError, match="at least one"):
        benchmark_converge(tiny_conv, methods=[])


def test_authors_style_stops_at_max_sweeps_and_leaves_iterates_alone():
    model = tiny_conv()
    before = [layer.pi_vector.clone() for layer in model.spectral_layers()]
    result = authors_style_convergence(model, max_sweeps=1)
    assert result["sweeps"] == 1 and not result["stopped_by_tolerance"]
    assert all(torch.equal(b, layer.pi_vector) for b, layer in zip(before, model.spectral_layers()))
    # one sweep of power iteration from a random start is a lower estimate of every layer's norm
    exact = [float(torch.linalg.matrix_norm(layer.dense_operator(), ord=2)) for layer in model.spectral_layers()]
    assert all(s <= e * (1 + 1e-6) for s, e in zip(result["layer_sigmas"], exact))
    assert result["k_body"] == pytest.approx(math.prod(result["layer_sigmas"]), rel=1e-6)
    with pytest.raises(ValueError, match="max_sweeps"):
        authors_style_convergence(model, max_sweeps=0)


def test_overhead_and_loss_return_positive_times_and_consistent_ratios():
    over = benchmark_overhead(tiny_conv, label="tiny", batch_size=4, warmup=1, steps=2)
    assert over["plain_ce_s_per_step"] > 0 and over["ce_plus_lambda_k2_s_per_step"] > 0
    assert over["ratio"] == pytest.approx(over["ce_plus_lambda_k2_s_per_step"] / over["plain_ce_s_per_step"])
    loss = benchmark_loss(tiny_conv, label="tiny", batch_size=4, warmup=1, steps=2)
    assert loss["cll_images_per_second"] > 0 and loss["cross_entropy_images_per_second"] > 0
    assert loss["ratio"] == pytest.approx(loss["cll_images_per_second"] / loss["cross_entropy_images_per_second"])
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        benchmark_overhead(tiny_conv, steps=0)


def test_forward_backward_reports_parameters_and_rate():
    from lipcert.bench import benchmark_forward_backward

    r = benchmark_forward_backward(tiny_conv, label="tiny", batch_size=4, warmup=0, steps=2)
    assert r["parameters"] == sum(p.numel() for p in tiny_conv().parameters())
    assert r["images_per_second"] == pytest.approx(4 / r["s_per_batch"])


def test_soc_truncation_error_is_within_the_tail_bound_and_shrinks():
    (r,) = benchmark_soc_truncation(cases=((2, 2, 3, 4),), terms=(2, 6, 12))
    assert r["norm_L"] <= r["s_bound"] + 1e-12
    assert all(e <= b + 1e-12 for e, b in zip(r["operator_error"], r["tail_bound"]))
    assert r["operator_error"][0] > r["operator_error"][1] > r["operator_error"][2]
    assert r["sigma_max"][-1] <= 1 + r["tail_bound"][-1]


def test_loading_reports_consistent_rates_and_fraction():
    r = benchmark_loading(tiny_conv, label="tiny", n_images=50, batch_size=8, pad=2, warmup=1, steps=3)
    assert r["loading_images_per_second"] == pytest.approx(8 / r["loading_s_per_batch"])
    assert r["train_images_per_second"] == pytest.approx(8 / r["train_step_s_per_batch"])
    assert r["fraction"] == pytest.approx(r["loading_s_per_batch"] / r["train_step_s_per_batch"])
    with pytest.raises(ValueError, match="needs an image model"):
        benchmark_loading(lambda: build_from_spec(ArchitectureSpec.from_dict("mlp", TINY_MLP)), steps=1)


def test_tightness_reports_pair_steps_and_a_ratio_below_one():
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.rand((5, 3, 12, 12), generator=g), torch.rand((5, 3, 12, 12), generator=g)
    result = benchmark_tightness(tiny_conv, x1, x2, label="tiny", steps=3)
    assert result["n_pairs"] == 5 and result["steps"] == 3
    assert result["pair_steps_per_second"] == pytest.approx(15 / result["elapsed_s"])
    assert 0 < result["tightness"] <= 1 + 1e-6


def test_cli_all_on_tiny_architectures_prints_one_json_line_per_result(tmp_path, monkeypatch, capsys):
    archs = {name: TINY_CONV for name in ("4C3F", "4C3F_authors_code", "6C2F", "8C2F")} | {"two_moons": TINY_MLP}
    (tmp_path / "architectures.yaml").write_text(yaml.safe_dump(archs))
    monkeypatch.setenv("LIPCERT_PARAMS_DIR", str(tmp_path))
    assert main(["all", "--threads", "1", "--batch-size", "4", "--warmup", "0", "--repeats", "1",
                 "--image-pairs", "3", "--image-steps", "2", "--moons-pairs", "4", "--moons-steps", "2"]) == 0
    records = [json.loads(line[5:]) for line in capsys.readouterr().out.splitlines() if line.startswith("JSON ")]
    kinds = [(r["benchmark"], r.get("model")) for r in records]
    assert kinds == [("header", None), ("converge", "4C3F"), ("converge", "4C3F_authors_code"), ("converge", "6C2F"), ("converge", "8C2F"),
                     ("overhead", "4C3F"), ("overhead", "6C2F"), ("loss", "4C3F"),
                     ("tightness", "4C3F"), ("tightness", "two_moons"),
                     ("loading", "4C3F"), ("loading", "6C2F"), ("loading", "8C2F"),
                     ("fwdbwd", "4C3F"), ("fwdbwd", "6C2F"), ("fwdbwd", "8C2F")] + \
        [("soc_truncation", f"SOC {a}->{b} k{k} on {n}x{n}") for a, b, k, n in SOC_TRUNCATION_CASES]
    by_model = {r["model"]: r for r in records if r["benchmark"] == "converge"}
    assert set(by_model["4C3F"]["methods"]) == {"lanczos", "arpack", "block_power"}
    assert set(by_model["8C2F"]["methods"]) == {"lanczos", "arpack"} and by_model["8C2F"]["skipped_methods"] == ["block_power"]
    assert records[0]["threads"] == 1


def test_cli_rejects_bad_arguments():
    with pytest.raises(ValueError, match="--threads"):
        main(["converge", "--threads", "0"])
    with pytest.raises(SystemExit):
        main(["nonsense"])


def test_local_bound_benchmark_times_three_steps_and_counts_vector_bytes(tmp_path, monkeypatch, capsys):
    spec = {"input_shape": [3, 8, 8], "layers": "c(4,3,1,1) c(8,4,2,1) d(16) d(10)", "activation": "relu_theta"}
    (tmp_path / "architectures.yaml").write_text(yaml.safe_dump({"tiny_relu_theta": spec}))
    monkeypatch.setenv("LIPCERT_PARAMS_DIR", str(tmp_path))
    assert main(["local_bound", "--models", "tiny_relu_theta", "--threads", "1", "--batch-size", "4", "--warmup", "0",
                 "--repeats", "1"]) == 0
    records = [json.loads(line[5:]) for line in capsys.readouterr().out.splitlines() if line.startswith("JSON ")]
    (record,) = [r for r in records if r["benchmark"] == "local_bound"]
    # fp16, two buffers, the inputs of the three body layers: 3*8*8 + 4*8*8 + 8*4*4
    assert record["vector_bytes_per_sample"] == 2 * 2 * (192 + 256 + 128)
    assert record["local_bound_s_per_step"] > 0 and record["global_bound_s_per_step"] > 0
