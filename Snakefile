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
