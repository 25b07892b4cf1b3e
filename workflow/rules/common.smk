# Helpers shared by all rules: config validation, paths, per-scale overrides.
import json
import os
import re
import sys

import yaml

from snakemake.utils import validate

from lipcert.plan import check_table_rows, wildcard_patterns
from lipcert.run_record import p_from_printed, path_number

validate(config, "../schemas/workflow.schema.yaml")

# The interpreter running Snakemake (the project's venv), so jobs never pick up another python.
PYTHON = sys.executable
SCALE = config["scale"]
ROOT = f"{config['results']}/{SCALE}"
SCALE_CFG = config["scales"][SCALE]
RUN = f"{ROOT}/runs/{{dataset}}/{{model}}/{{method}}/eps{{eps}}_p{{p}}/{{variant}}/seed{{seed}}"
LOGS = f"{ROOT}/logs"
BENCH = f"{ROOT}/benchmarks"


# dataset, model and method names come from the params files (lipcert.plan), not from lists kept here
NAMES = wildcard_patterns("params")
check_table_rows(config["paper_tables"], "params")


wildcard_constraints:
    dataset=NAMES["dataset"],
    model=NAMES["model"],
    method=NAMES["method"],
    eps=r"[0-9.]+",
    p=r"default|[0-9.e-]+",
    seed=r"\d+",
    variant=r"base|(lam|delta|output_scale)[0-9.e+-]+",


def scale_sets(family):
    """The scale's overrides of a params family as `--set key=value` arguments."""
    return " ".join(f"--set '{k}={v}'" for k, v in SCALE_CFG[family].items())


def axis_templates(dataset, method):
    """How the grid axes map onto run keys, from the `axes` section of params/<dataset>.yaml."""
    with open(f"params/{dataset}.yaml") as f:
        axes = yaml.safe_load(f).get("axes", {})
    return axes.get(method, {})


def train_sets(wildcards):
    """Overrides of one run: the scale's, the model and the grid axes eps and p (p: 'default' keeps the params')."""
    templates = axis_templates(wildcards.dataset, wildcards.method)
    sets = [f"model={wildcards.model}"]
    sets += [t.format(wildcards.eps) for t in templates.get("eps", [])]
    if wildcards.p != "default":
        if "p" not in templates:
            raise ValueError(
                f"method {wildcards.method} has no p axis in params/{wildcards.dataset}.yaml"
            )
        sets += [t.format(wildcards.p) for t in templates["p"]]
    if (
        wildcards.variant != "base"
    ):  # one-parameter sweeps (Fig. D4): lam<v>, delta<v>, output_scale<v>
        key, value = re.fullmatch(
            r"(lam|delta|output_scale)(.+)", wildcards.variant
        ).groups()
        sets.append(f"loss.{key}={value}")
    return scale_sets(wildcards.dataset) + " " + " ".join(f"--set '{s}'" for s in sets)


def run_file(name, dataset, model, method, eps, p="default", seed=0, variant="base"):
    """Path of one file of one run directory (`variant`: base, or a one-parameter sweep value).
    Numbers are spelled by the one formatter (lipcert.run_record.path_number)."""
    eps, p = path_number(eps), path_number(p)
    return f"{ROOT}/runs/{dataset}/{model}/{method}/eps{eps}_p{p}/{variant}/seed{seed}/{name}"


def p_eq5(p_printed):
    """Eq. (5)'s p from a printed (authors' code convention) p, as a path segment."""
    return path_number(p_from_printed(p_printed))


def fig4_runs(name):
    """Files `name` of every Fig. 4 run (methods x eps x seeds)."""
    spec = config["fig4"]
    return [
        run_file(name, "two_moons", "two_moons", m, e, "default", s)
        for m in spec["methods"]
        for e in spec["eps"]
        for s in spec["seeds"]
    ]


def figD2_runs(name):
    """Files `name` of every Fig. D2 run (printed p x seeds, CLL at eps = 0.15)."""
    spec = config["figD2"]
    return [
        run_file(name, "two_moons", "two_moons", "cll", spec["eps"], p_eq5(p), s)
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


def row_arch(row):
    """The architecture a table row trains at this scale (`arch`, else `model`, through the scale's
    `substitute` map); None when the scale does not train it."""
    arch = row.get("arch", row["model"])
    return SCALE_CFG.get("substitute", {}).get(arch, arch)


def table_row_runs(row, name):
    """Files `name` of the runs of one configured paper-table row, one per seed of the scale."""
    arch = row_arch(row)
    if arch is None:
        return []
    return [
        run_file(name, row["data"], arch, row["loss"], row["eps"], row["p"], s)
        for s in SCALE_CFG["seeds"]
    ]


def table_runs(wildcards, name="metrics.json"):
    """Files `name` of every run of a paper table (all rows, all seeds)."""
    rows = config["paper_tables"][wildcards.table]["rows"]
    return [f for row in rows for f in table_row_runs(row, name)]


def table_manifest(wildcards):
    """The run manifest of a paper table (rows with their run directories) as JSON."""
    keys = ("dataset", "method", "model", "variant")
    rows = [
        {
            **{k: row[k] for k in keys},
            "runs": [os.path.dirname(f) for f in table_row_runs(row, "metrics.json")],
            "planned_runs": len(SCALE_CFG["seeds"]) if row_arch(row) else None,
        }
        for row in config["paper_tables"][wildcards.table]["rows"]
    ]
    return json.dumps(rows)


def per_seed_source(wildcards):
    """The main table whose runs a per-seed table (D6-D8) reports."""
    return config["per_seed_tables"][wildcards.ptable]["source"]


def dataset_scale_sets(wildcards):
    """The scale's overrides of the dataset's params family (for data preparation)."""
    return scale_sets(wildcards.dataset)


def table_certify_runs(wildcards):
    return table_runs(wildcards, "certify.json")


def table_tightness_runs(wildcards):
    return table_runs(wildcards, "tightness.json")


def paper_table_csv(wildcards):
    """The paper's numbers for a main table (params/paper_tables)."""
    return config["paper_tables"][wildcards.table]["paper"]


def output_stem(wildcards, output):
    """The common stem of a table's .csv/.md/.tex outputs."""
    return output.csv[: -len(".csv")]


def per_seed_manifest(wildcards):
    return f"{ROOT}/tables/{per_seed_source(wildcards)}_manifest.json"


def per_seed_main_table(wildcards):
    return f"{ROOT}/tables/{per_seed_source(wildcards)}.csv"


def per_seed_paper_csv(wildcards):
    return config["per_seed_tables"][wildcards.ptable]["paper"]


def per_seed_dataset(wildcards):
    return config["per_seed_tables"][wildcards.ptable]["dataset"]


def fig5_runs(name):
    """Files `name` of the Fig. 5 eps sweep (methods x eps) and slack sweep (printed p) runs."""
    spec = config["fig5"]
    p_of = {"cll": spec["cll_p"]}
    eps_runs = [
        run_file(name, spec["data"], spec["model"], m, e, p_of.get(m, "default"), s)
        for m in spec["methods"]
        for e in spec["eps"]
        for s in spec["seeds"]
    ]
    slack_runs = [
        run_file(
            name,
            spec["data"],
            spec["model"],
            "cll",
            spec["slack_eps"],
            p_eq5(p),
            s,
        )
        for p in spec["slack_p_printed"]
        for s in spec["seeds"]
    ]
    return eps_runs, slack_runs


def fig5_eps_runs(wildcards=None, name="metrics.json"):
    return fig5_runs(name)[0]


def fig5_slack_runs(wildcards=None, name="metrics.json"):
    return fig5_runs(name)[1]


def tableD5_runs(name="metrics.json"):
    """Files `name` of the Table D5 grid (eps x printed p) runs."""
    spec = config["tableD5"]
    return [
        run_file(name, spec["data"], spec["model"], "cll", e, p_eq5(p), s)
        for e in spec["eps"]
        for p in spec["p_printed"]
        for s in spec["seeds"]
    ]


def figD1_runs(name="metrics.json"):
    """Files `name` of the Fig. D1 runs (one configuration per method, the scale's seeds)."""
    spec = config["figD1"]
    return [
        run_file(
            name,
            spec["data"],
            spec["model"],
            r["method"],
            r["eps"],
            r["p"],
            s,
        )
        for r in spec["runs"]
        for s in SCALE_CFG["seeds"]
    ]


def run_dirs(files):
    """Run directories of a list of run files."""
    return " ".join(os.path.dirname(f) for f in files)


def fig5_eps_tightness(wildcards):
    return fig5_runs("tightness.json")[0]


def fig5_eps_dirs(wildcards):
    return run_dirs(fig5_runs("metrics.json")[0])


def fig5_slack_dirs(wildcards):
    return run_dirs(fig5_runs("metrics.json")[1])


def tableD5_metrics(wildcards):
    return tableD5_runs("metrics.json")


def tableD5_dirs(wildcards):
    return run_dirs(tableD5_runs("metrics.json"))


def figD1_histories(wildcards):
    return figD1_runs("metrics.json")


def figD1_dirs(wildcards):
    return run_dirs(figD1_runs("metrics.json"))


def first_output_stem(wildcards, output):
    """The first output's path without its extension (outputs made with multiext)."""
    return os.path.splitext(output[0])[0]


def fig5_eps_stem(wildcards, output):
    return os.path.splitext(output.eps[0])[0]


def fig5_slack_stem(wildcards, output):
    return os.path.splitext(output.slack[0])[0]


def figD4_runs(sweep, name="metrics.json"):
    """Files `name` of one Fig. D4 sweep: `lam` or `delta` (CLL) or `output_scale` (GloRo temperature)."""
    spec = config["figD4"]
    method, p = (
        ("gloro_fixed", "default") if sweep == "output_scale" else ("cll", spec["p"])
    )
    return [
        run_file(
            name,
            spec["data"],
            spec["model"],
            method,
            spec["eps"],
            p,
            s,
            f"{sweep}{path_number(v)}",
        )
        for v in spec[sweep]
        for s in spec["seeds"]
    ]


def figD4_all_runs(wildcards):
    return [f for sweep in ("lam", "delta", "output_scale") for f in figD4_runs(sweep)]


def figD4_dirs(sweep):
    def dirs(wildcards):
        return run_dirs(figD4_runs(sweep))

    return dirs


def figD4_stem(wildcards, output):
    """The common prefix of the Fig. D4 outputs (`<figures>/figD4`)."""
    return os.path.join(os.path.dirname(output[0]), "figD4")
