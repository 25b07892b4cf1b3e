# lipcert: every table and figure of the CLL paper is a target of this workflow.
#   snakemake fig4 --cores 2                         (two-moons, CPU)
#   snakemake table2 --cores 8 --resources gpu=4     (target first, then --resources)
# Settings: params/workflow.yaml (targets, scales) and params/build.yaml (which scale, where results go; also
# cores and GPUs for DVC), validated against workflow/schemas/workflow.schema.yaml. Local defaults (cores, gpu,
# show-failed-logs): the workflow profile profiles/default/, loaded automatically.


configfile: "params/workflow.yaml"
configfile: "params/build.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/bounds.smk"
include: "workflow/rules/tightness.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/notebooks.smk"
include: "workflow/rules/run_metrics.smk"


# Light jobs run where Snakemake runs, never as cluster jobs (profiles/slurm): the MLflow store, run metrics, tables,
# figures and notebooks.
localrules:
    mlflow_init,
    run_metrics,
    run_summary_table,
    table_manifest,
    paper_table,
    per_seed_table,
    tableD5_table,
    two_moons_figure,
    fig5_figure,
    figD1_figure,
    figD4_figure,
    render_notebook,
    render_table_notebook,
    render_figure_notebook,


# Targets: one rule per table and figure of the paper (their runs: params/workflow.yaml `targets`; their files:
# lipcert.plan.target_outputs, plus the runs' metrics for DVC).


rule fig4:
    input:
        target_files("fig4"),


rule figD2:
    input:
        target_files("figD2"),


rule table1:
    input:
        target_files("table1"),


rule table2:
    input:
        target_files("table2"),


rule locallip_table2:
    input:
        target_files("locallip_table2"),


rule tableD6:
    input:
        target_files("tableD6"),


rule tableD7:
    input:
        target_files("tableD7"),


rule tableD8:
    input:
        target_files("tableD8"),


rule fig5:
    input:
        target_files("fig5"),


rule figD1:
    input:
        target_files("figD1"),


rule tableD5:
    input:
        target_files("tableD5"),


rule figD4:
    input:
        target_files("figD4"),


rule all:
    default_target: True
    input:
        rules.fig4.input,
        rules.figD2.input,
        rules.table1.input,
        rules.table2.input,
        rules.locallip_table2.input,
        rules.tableD6.input,
        rules.tableD7.input,
        rules.tableD8.input,
        rules.fig5.input,
        rules.figD1.input,
        rules.tableD5.input,
        rules.figD4.input,
