# Shared by all rules: the validated config, paths, and a few generic input functions over the plan
# (lipcert.plan expands every target of params/workflow.yaml; its docstring describes the grid specs).
import json
import os
import sys

from snakemake.utils import validate

from lipcert import plan, provenance
from lipcert.params import run_config_from_params

validate(config, "../schemas/workflow.schema.yaml")

# Rules call plain `python`, the interpreter of the active environment (under `--sdm conda` the rule's conda
# environment; else the one running Snakemake), and log into config `mlflow_uri` when set (lipcert.plan).
plan.set_job_environment(os.environ, sys.executable, config.get("mlflow_uri", ""))
SCALE = config["scale"]
ROOT = f"{config['results']}/{SCALE}"
SCALE_CFG = config["scales"][SCALE]
TARGETS = config["targets"]
# a run's wildcards {dataset}/{model}/{method}/eps{eps}_p{p}/{variant}/seed{seed}; RUN_KEY for logs and benchmarks
RUN = f"{ROOT}/{plan.RUN_DIR}"
RUN_KEY = plan.RUN_DIR.removeprefix("runs/")
LOGS = f"{ROOT}/logs"
BENCH = f"{ROOT}/benchmarks"
# a bad grid fails here, naming its target; the wildcards' names come from the params files
plan.check_targets(TARGETS, config["scales"], "params")
NAMES = plan.wildcard_patterns("params")


def code_version(stage):
    """Params value: digest of the code a rule's stage runs (lipcert.provenance), so a code change reruns it."""
    return provenance.code_digest(stage)


def target_files(target):
    """A target rule's inputs: the files it builds (lipcert.plan.target_outputs) and its runs' metrics (DVC)."""
    runs_of = TARGETS[target].get("runs_of", target)
    return [f"{ROOT}/{f}" for f in plan.target_outputs(TARGETS, target)] + [
        f"{ROOT}/metrics/{runs_of}.json"
    ]


def targets_with(key):
    """The targets whose spec has `key`, as a wildcard pattern (e.g. the paper tables: `rows`)."""
    return "|".join(t for t, spec in TARGETS.items() if key in spec)


wildcard_constraints:
    dataset=NAMES["dataset"],
    model=NAMES["model"],
    method=NAMES["method"],
    variant=NAMES["variant"],
    eps=r"[0-9.e-]+",
    p=r"default|[0-9.e-]+",
    seed=r"\d+",


def set_args(overrides):
    """`--set 'key=value'` arguments of the lipcert CLI."""
    return " ".join(f"--set '{o}'" for o in overrides)


def run_sets(wildcards):
    """One run's overrides: the scale's for its params family, then its axes (lipcert.plan.run_overrides)."""
    w = wildcards
    run = plan.run_overrides(
        "params", w.dataset, w.model, w.method, w.eps, w.p, w.variant
    )
    return plan.scale_overrides(SCALE_CFG, w.dataset) + run


def train_sets(wildcards):
    """Params function: a run's overrides as `--set` arguments of `lipcert train`."""
    return set_args(run_sets(wildcards))


def run_config_digest(wildcards):
    """Params function: the fingerprint of a run's resolved config (params file, scale, axes and seed), so an
    edit of a params file reruns exactly the runs whose configuration it changes."""
    w = wildcards
    return run_config_from_params(
        f"params/{w.dataset}.yaml", w.method, run_sets(w), seed=int(w.seed)
    ).fingerprint()


def dataset_scale_sets(wildcards):
    """The scale's overrides of the dataset's params family (for data preparation); an image dataset without a
    data folder fails here, while the DAG is built (lipcert.plan.check_data_root names the variable to set).
    """
    overrides = plan.scale_overrides(SCALE_CFG, wildcards.dataset)
    plan.check_data_root("params", wildcards.dataset, overrides)
    return set_args(overrides)


def planned(target, group):
    """The planned runs of a target (None: the rule's `target` wildcard) or of one group of its grids."""
    return lambda wildcards: plan.target_runs(
        TARGETS, target or wildcards.target, SCALE_CFG, group
    )


def run_files(name, target=None, group=None):
    """Input function: file `name` of every run of a target (or of one group of its grids)."""
    runs = planned(target, group)
    return lambda wildcards: [run.path(ROOT, name) for run in runs(wildcards)]


def run_dirs(target=None, group=None):
    """Params function: the run directories of a target (or group), space-separated for a CLI's --runs."""
    runs = planned(target, group)
    return lambda wildcards: " ".join(run.path(ROOT) for run in runs(wildcards))


def target_key(key):
    """Params function: one key of the `target` wildcard's spec (paper CSV, dataset, title, ...)."""
    return lambda wildcards: TARGETS[wildcards.target][key]


def table_metrics(wildcards):
    """Params function: a paper table's metric columns (the target's `metrics`; default CLL Tables 1 and 2's)."""
    from lipcert.reporting.records import METRICS

    return " ".join(TARGETS[wildcards.target].get("metrics", METRICS))


def n_columns(wildcards):
    """A two-moons figure's panel columns: one per value of the target's `columns` axis."""
    runs = plan.target_runs(TARGETS, wildcards.target, SCALE_CFG)
    return len({getattr(run, TARGETS[wildcards.target]["columns"]) for run in runs})


def manifest_json(wildcards):
    """A paper table's rows with their run directories (lipcert.plan.table_manifest) as JSON."""
    return json.dumps(plan.table_manifest(TARGETS, wildcards.target, SCALE_CFG, ROOT))


def source_table(suffix):
    """Input function of a per-seed table: a file of the main table whose runs it reports."""
    return (
        lambda wildcards: f"{ROOT}/tables/{TARGETS[wildcards.target]['runs_of']}{suffix}"
    )


def output_dir(wildcards, output):
    """Directory of a rule's first output (a run or results directory)."""
    return os.path.dirname(output[0])


def input_dir(wildcards, input):
    """Directory of a rule's first input."""
    return os.path.dirname(input[0])


def db_dir(wildcards, input):
    """The results directory holding the MLflow database and its ready-marker (a job's --results-dir)."""
    return os.path.dirname(input.db)


def output_stem(wildcards, output):
    """The first output's path without its extension (the common stem of a table's .csv/.md/.tex)."""
    return os.path.splitext(output[0])[0]


# MLflow


def mlflow_train_args(wildcards):
    """A train job's MLflow arguments: `--group` its configuration key (the run key less its seed directory: all seeds of
    one configuration share a parent run) and `--tag` the scale and the configuration's wildcards.
    """
    fields = {
        name: getattr(wildcards, name)
        for name in ("dataset", "model", "method", "eps", "p", "variant")
    }
    config_key = os.path.dirname(RUN_KEY).format(**fields)  # RUN_KEY ends in seed{seed}
    tags = [f"scale={SCALE}"] + [f"{name}={value}" for name, value in fields.items()]
    return f"--group '{config_key}' " + " ".join(f"--tag '{tag}'" for tag in tags)
