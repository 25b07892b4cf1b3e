# Shared by all rules: the validated config, paths, and a few generic input functions over the plan
# (lipcert.plan expands every target of params/workflow.yaml; its docstring describes the grid specs).
import json
import os
import sys

from snakemake.utils import validate

from lipcert import plan

validate(config, "../schemas/workflow.schema.yaml")

# Rules call plain `python`: the interpreter of the active environment. Under `--sdm conda` that is the rule's
# conda environment (activated in front of PATH); otherwise it is the one running Snakemake (the project's venv,
# even when Snakemake was started as .venv/bin/snakemake without activating it): its directory goes first on PATH.
os.environ["PATH"] = os.pathsep.join(
    [os.path.dirname(sys.executable), os.environ.get("PATH", "")]
)
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


def train_sets(wildcards):
    """One run's overrides: the scale's for its params family, then its axes (lipcert.plan.run_overrides)."""
    w = wildcards
    run = plan.run_overrides(
        "params", w.dataset, w.model, w.method, w.eps, w.p, w.variant
    )
    return set_args(plan.scale_overrides(SCALE_CFG, w.dataset) + run)


def dataset_scale_sets(wildcards):
    """The scale's overrides of the dataset's params family (for data preparation)."""
    return set_args(plan.scale_overrides(SCALE_CFG, wildcards.dataset))


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
