# lipcert: every table and figure of the CLL paper is a target of this workflow.
#   snakemake fig4 --cores 2                         (two-moons, CPU)
#   snakemake table2 --cores 8 --resources gpu=4     (target first, then --resources)
# Settings: params/workflow.yaml (validated against workflow/schemas/workflow.schema.yaml).


configfile: "params/workflow.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/bounds.smk"
include: "workflow/rules/tightness.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/notebooks.smk"


# Targets: one rule per table and figure of the paper (their runs: params/workflow.yaml `targets`).


rule fig4:
    input:
        f"{ROOT}/figures/fig4.png",
        f"{ROOT}/figures/fig4.pdf",
        f"{ROOT}/tables/fig4.csv",
        f"{ROOT}/tables/fig4.md",
        f"{ROOT}/tables/fig4_metrics.json",
        f"{ROOT}/notebooks/fig4.html",


rule figD2:
    input:
        f"{ROOT}/figures/figD2.png",
        f"{ROOT}/figures/figD2.pdf",
        f"{ROOT}/tables/figD2.csv",
        f"{ROOT}/tables/figD2.md",
        f"{ROOT}/tables/figD2_metrics.json",
        f"{ROOT}/notebooks/figD2.html",


rule table1:
    input:
        expand(f"{ROOT}/tables/table1.{{ext}}", ext=["csv", "md", "tex"]),
        f"{ROOT}/notebooks/table1.html",


rule table2:
    input:
        expand(f"{ROOT}/tables/table2.{{ext}}", ext=["csv", "md", "tex"]),
        f"{ROOT}/notebooks/table2.html",


rule tableD6:
    input:
        expand(f"{ROOT}/tables/tableD6.{{ext}}", ext=["csv", "md", "tex"]),
        f"{ROOT}/notebooks/tableD6.html",


rule tableD7:
    input:
        expand(f"{ROOT}/tables/tableD7.{{ext}}", ext=["csv", "md", "tex"]),
        f"{ROOT}/notebooks/tableD7.html",


rule tableD8:
    input:
        expand(f"{ROOT}/tables/tableD8.{{ext}}", ext=["csv", "md", "tex"]),
        f"{ROOT}/notebooks/tableD8.html",


rule fig5:
    input:
        rules.fig5_figure.output,
        f"{ROOT}/notebooks/fig5_eps_sweep.html",
        f"{ROOT}/notebooks/fig5_slack_sweep.html",


rule figD1:
    input:
        rules.figD1_figure.output,
        f"{ROOT}/notebooks/figD1.html",


rule tableD5:
    input:
        rules.tableD5_table.output,
        f"{ROOT}/notebooks/tableD5.html",


rule figD4:
    input:
        rules.figD4_figure.output,
        expand(
            f"{ROOT}/notebooks/figD4_{{sweep}}.html",
            sweep=["lambda", "delta", "temperature"],
        ),


rule all:
    default_target: True
    input:
        rules.fig4.input,
        rules.figD2.input,
        rules.table1.input,
        rules.table2.input,
        rules.tableD6.input,
        rules.tableD7.input,
        rules.tableD8.input,
        rules.tableD5.input,
        rules.fig5.input,
        rules.figD1.input,
        rules.figD4.input,
