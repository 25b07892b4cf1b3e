"""``dvc.yaml``, generated from the plan: two DVC stages per paper target, with the dependencies that are true.

``python -m lipcert.dvc_pipeline`` writes ``dvc.yaml``; ``--check`` fails when the committed file differs (a test
runs it). Each target ``T`` of ``params/workflow.yaml`` gets

* ``T_runs`` (not for the per-seed views, which report another target's runs): trains and certifies the target's
  runs, ``snakemake <results>/<scale>/metrics/T.json``; its dependencies are the source files of the data,
  training, certification and run-metrics stages (:func:`lipcert.provenance.stage_sources`), the params files of
  its datasets and architectures, and the rules that run them; its metrics the certified numbers nested by method
  and configuration (:mod:`lipcert.reporting.run_metrics`);
* ``T``: the target's tables, figures and notebooks, ``snakemake T``; its dependencies are the runs stage's metrics
  file and the source files of the reporting stages the target uses (plus the tightness attack and decision grids
  the reports need), so an edit of reporting code changes only these stages.

DVC only decides which stage to run; inside it Snakemake decides which jobs to rerun, and it is as honest: every
rule carries the digest of the code it runs and every training job its run's config fingerprint as params
(``workflow/rules/common.smk``), so a stage rerun never reports results that were not recomputed. The scale, the
results folder, cores and GPUs come from ``params/build.yaml`` (templated ``vars``), so ``dvc exp run -S
params/build.yaml:scale=ci`` edits only that file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from . import plan
from .provenance import stage_sources

__all__ = ["dvc_pipeline", "main", "render"]

_ROOT = "${results}/${scale}"
_SNAKEMAKE = "snakemake {} --cores ${{cores}} --resources gpu=${{gpus}} --config scale=${{scale}} results=${{results}}"
_RUN_STAGES = ("data", "train", "certify", "run_metrics")
_RUN_RULES = ("Snakefile", "workflow/rules/common.smk", "workflow/rules/data.smk", "workflow/rules/train.smk",
              "workflow/rules/bounds.smk", "workflow/rules/run_metrics.smk", "workflow/schemas/workflow.schema.yaml")
_REPORT_RULES = ("workflow/rules/tightness.smk", "workflow/rules/tables.smk", "workflow/rules/figures.smk",
                 "workflow/rules/notebooks.smk")

_REPORTS: Mapping[str, tuple[tuple[str, ...], str]] = {
    "two_moons": (("decision_grid", "tightness", "run_summary", "two_moons_figures", "notebook"),
                  "notebooks/two_moons.py"),
    "paper_table": (("tightness", "tables", "notebook"), "notebooks/paper_table.py"),
    "sweep": (("sweeps", "notebook"), "notebooks/paper_table.py"),
}
"""The code stages (lipcert.provenance.STAGES) and the notebook each kind of target's reports run."""

_SWEEPS_WITH_TIGHTNESS = ("fig5",)
"""The sweep targets whose figure also reads tightness (Fig. 5's eps sweep; workflow/rules/figures.smk)."""


def _datasets(targets: Mapping, target: str, scales: Mapping) -> list[str]:
    runs = {run.dataset for scale in scales.values() for run in plan.target_runs(targets, target, scale)}
    return sorted(runs)


def _sources(stages) -> list[str]:
    return sorted({path for stage in stages for path in stage_sources(stage)})


def _workflow_params(*targets: str) -> dict:
    return {"params/workflow.yaml": ["retry_collapsed", "scales.${scale}", *(f"targets.{t}" for t in targets)]}


def _runs_stage(targets: Mapping, target: str, scales: Mapping) -> dict:
    datasets = _datasets(targets, target, scales)
    return {
        "cmd": _SNAKEMAKE.format(f"{_ROOT}/metrics/{target}.json"),
        "deps": [*_RUN_RULES, *(f"params/{d}.yaml" for d in datasets), "params/architectures.yaml",
                 *_sources(_RUN_STAGES)],
        "params": [_workflow_params(target), {"params/build.yaml": ["scale"]}],
        "metrics": [{f"{_ROOT}/metrics/{target}.json": {"cache": False}}],
        "plots": [{f"{_ROOT}/metrics/{target}_history": {"cache": False, "x": "epoch", "y": "loss",
                                                          "title": f"{target}: training loss per run"}}],
    }


def _report_stage(targets: Mapping, target: str) -> dict:
    spec = targets[target]
    source = spec.get("runs_of", target)
    kind = plan.target_kind(targets, target)
    stages, notebook = _REPORTS[kind]
    if target in _SWEEPS_WITH_TIGHTNESS:
        stages = (*stages, "tightness")
    deps = [f"{_ROOT}/metrics/{source}.json", *_REPORT_RULES, notebook]
    if "paper" in spec:
        deps += [spec["paper"], "params/paper_tables/sources.yaml"]
    outputs = plan.target_outputs(targets, target)
    metrics = [f for f in outputs if f.endswith("_metrics.json")]
    return {
        "cmd": _SNAKEMAKE.format(target),
        "deps": [*deps, *_sources(stages)],
        "params": [_workflow_params(*dict.fromkeys([target, source])), {"params/build.yaml": ["scale"]}],
        "outs": [{f"{_ROOT}/{f}": {"cache": False}} for f in outputs if f not in metrics],
        **({"metrics": [{f"{_ROOT}/{f}": {"cache": False}} for f in metrics]} if metrics else {}),
    }


def _figure_plots(targets: Mapping) -> list[dict]:
    """Top-level plots: the figures themselves (images) of every target."""
    images = [f for t in targets for f in plan.target_outputs(targets, t) if f.endswith(".png")]
    return [{f"{_ROOT}/{f}": {}} for f in images]


def dvc_pipeline(workflow: Mapping) -> dict:
    """The ``dvc.yaml`` content for a workflow config (``params/workflow.yaml``)."""
    targets, scales = workflow["targets"], workflow["scales"]
    stages: dict[str, dict] = {}
    for target in targets:
        if "runs_of" not in targets[target]:
            stages[f"{target}_runs"] = _runs_stage(targets, target, scales)
        stages[target] = _report_stage(targets, target)
    return {"vars": ["params/build.yaml:scale,results,cores,gpus"], "stages": stages,
            "plots": _figure_plots(targets)}


_HEADER = """\
# Generated by `python -m lipcert.dvc_pipeline` from params/workflow.yaml and the code's imports (lipcert.provenance);
# do not edit: change the plan or the code and regenerate (a test checks this file is current).
# Two stages per target: <target>_runs trains and certifies its runs, <target> draws its tables, figures and
# notebooks; each runs a Snakemake target, and Snakemake reruns exactly the jobs whose code or config changed.
# Scale, results folder, cores and GPUs: params/build.yaml (`dvc exp run -S params/build.yaml:scale=ci`).
"""


def render(workflow: Mapping) -> str:
    """``dvc.yaml`` as text: the header, then the pipeline in a stable key order."""
    return _HEADER + yaml.safe_dump(dvc_pipeline(workflow), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lipcert.dvc_pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--workflow", default="params/workflow.yaml")
    parser.add_argument("--out", default="dvc.yaml")
    parser.add_argument("--check", action="store_true", help="fail if --out differs from what would be written")
    args = parser.parse_args(argv)
    workflow = yaml.safe_load(Path(args.workflow).read_text())
    text = render(workflow)
    out = Path(args.out)
    if args.check:
        if not out.is_file() or out.read_text() != text:
            print(f"{out} is out of date: run python -m lipcert.dvc_pipeline", file=sys.stderr)
            return 1
        print(f"{out} is current")
        return 0
    from .io_utils import atomic_write_text

    atomic_write_text(out, text)
    print(f"{out}: {len(yaml.safe_load(text)['stages'])} stages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
