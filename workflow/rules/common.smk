# Helpers shared by all rules: config validation, paths, per-scale overrides.
import os
import sys

from snakemake.utils import validate

validate(config, "../schemas/workflow.schema.yaml")

# The interpreter running Snakemake (the project's venv), so jobs never pick up another python.
PYTHON = sys.executable
SCALE = config["scale"]
ROOT = f"{config['results']}/{SCALE}"
SCALE_CFG = config["scales"][SCALE]
RUN = f"{ROOT}/runs/{{dataset}}/{{method}}/eps{{eps}}_p{{p}}/seed{{seed}}"
LOGS = f"{ROOT}/logs"
BENCH = f"{ROOT}/benchmarks"


wildcard_constraints:
    dataset="two_moons",
    method="cll|gloro|ce",
    eps=r"[0-9.]+",
    p=r"default|[0-9.e-]+",
    seed=r"\d+",


def scale_sets(family):
    """The scale's overrides of a params family as `--set key=value` arguments."""
    return " ".join(f"--set '{k}={v}'" for k, v in SCALE_CFG[family].items())


def train_sets(wildcards):
    """Overrides of one run: the scale's, the grid axes eps (training and certification) and p."""
    sets = [f"loss.eps={wildcards.eps}", f"eval_eps=[{wildcards.eps}]"]
    if wildcards.p != "default":
        sets.append(f"loss.p={wildcards.p}")
    return scale_sets(wildcards.dataset) + " " + " ".join(f"--set '{s}'" for s in sets)


def run_file(name, dataset, method, eps, p="default", seed=0):
    """Path of one file of one run directory."""
    return f"{ROOT}/runs/{dataset}/{method}/eps{eps}_p{p}/seed{seed}/{name}"


def p_eq5(p_printed):
    """Eq. (5)'s p from a printed (authors' code convention) p."""
    return f"{p_printed / 2:g}"


def fig4_runs(name):
    """Files `name` of every Fig. 4 run (methods x eps x seeds)."""
    spec = config["fig4"]
    return [
        run_file(name, "two_moons", m, e, "default", s)
        for m in spec["methods"]
        for e in spec["eps"]
        for s in spec["seeds"]
    ]


def figD2_runs(name):
    """Files `name` of every Fig. D2 run (printed p x seeds, CLL at eps = 0.15)."""
    spec = config["figD2"]
    return [
        run_file(name, "two_moons", "cll", spec["eps"], p_eq5(p), s)
        for p in spec["p_printed"]
        for s in spec["seeds"]
    ]


def output_dir(wildcards, output):
    """Directory of a rule's first output (a run or results directory)."""
    return os.path.dirname(output[0])


def input_dir(wildcards, input):
    """Directory of a rule's first input."""
    return os.path.dirname(input[0])


def db_dir(wildcards, input):
    """The results directory holding the MLflow database and its ready-marker (a job's --results-dir)."""
    return os.path.dirname(input.db)
