"""dvc.yaml is generated from the plan (lipcert.dvc_pipeline) with true dependencies; the committed one is current."""

import yaml

from lipcert import dvc_pipeline

WORKFLOW = yaml.safe_load(open("params/workflow.yaml"))


def test_the_committed_dvc_yaml_is_current():
    assert dvc_pipeline.main(["--check"]) == 0, "run: python -m lipcert.dvc_pipeline"


def test_a_stale_dvc_yaml_is_reported(tmp_path, capsys):
    stale = tmp_path / "dvc.yaml"
    stale.write_text("stages: {}\n")
    assert dvc_pipeline.main(["--check", "--out", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err


def test_training_code_is_a_dependency_of_the_runs_stages_and_reporting_code_of_the_report_stages():
    stages = dvc_pipeline.dvc_pipeline(WORKFLOW)["stages"]
    runs, report = stages["fig4_runs"], stages["fig4"]
    assert "src/lipcert/training.py" in runs["deps"] and "src/lipcert/training.py" not in report["deps"]
    assert "src/lipcert/reporting/two_moons_figures.py" in report["deps"]
    assert "src/lipcert/reporting/two_moons_figures.py" not in runs["deps"]
    assert "params/two_moons.yaml" in runs["deps"] and "params/cifar10.yaml" not in runs["deps"]
    assert "${results}/${scale}/metrics/fig4.json" in report["deps"]  # the report stage follows the runs stage
    # table 2 trains CIFAR-10 and CIFAR-100 runs; its per-seed views have no runs stage of their own
    assert {"params/cifar10.yaml", "params/cifar100.yaml"} <= set(stages["table2_runs"]["deps"])
    assert "tableD6_runs" not in stages and "${results}/${scale}/metrics/table2.json" in stages["tableD6"]["deps"]
    assert "src/lipcert/reporting/tables.py" in stages["table2"]["deps"]


def test_scale_cores_and_gpus_come_from_the_build_params_file():
    pipeline = dvc_pipeline.dvc_pipeline(WORKFLOW)
    assert pipeline["vars"] == ["params/build.yaml:scale,results,cores,gpus"]
    for name, stage in pipeline["stages"].items():
        assert "--cores ${cores} --resources gpu=${gpus}" in stage["cmd"], name
        assert {"params/build.yaml": ["scale"]} in stage["params"], name
        workflow_keys = next(p["params/workflow.yaml"] for p in stage["params"] if "params/workflow.yaml" in p)
        assert "scales.${scale}" in workflow_keys and "scales" not in workflow_keys, name


def test_metrics_and_plots_are_declared():
    pipeline = dvc_pipeline.dvc_pipeline(WORKFLOW)
    runs = pipeline["stages"]["fig4_runs"]
    assert runs["metrics"] == [{"${results}/${scale}/metrics/fig4.json": {"cache": False}}]
    (history,) = runs["plots"]
    assert history["${results}/${scale}/metrics/fig4_history"]["x"] == "epoch"
    assert {"${results}/${scale}/figures/fig4.png": {}} in pipeline["plots"]
