# Analysis notebooks (jupytext percent format in notebooks/), rendered per target with papermill: the target's
# table (its Markdown next to the CSV) and figure, the paper's claims checked against them (lipcert.reporting.claims), the runs' training curves
# (history.json of every run, passed as `run_dirs`; the runs' metrics.json are inputs so that they are finished).
# Every notebook is in the Snakemake report (`snakemake <target> --report report.zip`; captions: workflow/report/).


report: "../report/workflow.rst"


# the figure notebooks: the target and group of grids whose runs each one reads (params/workflow.yaml)
FIGURE_NOTEBOOKS = {
    "fig5_eps_sweep": ("fig5", "eps"),
    "fig5_slack_sweep": ("fig5", "slack"),
    "figD1": ("figD1", None),
    "figD4_lambda": ("figD4", "lam"),
    "figD4_delta": ("figD4", "delta"),
    "figD4_temperature": ("figD4", "output_scale"),
}


rule render_notebook:
    input:
        notebook="notebooks/two_moons.py",
        table=f"{ROOT}/tables/{{target}}.csv",
        markdown=f"{ROOT}/tables/{{target}}.md",
        figure=f"{ROOT}/figures/{{target}}.png",
        metrics=run_files("metrics.json"),
    output:
        ipynb=f"{ROOT}/notebooks/{{target}}.ipynb",
        html=report(
            f"{ROOT}/notebooks/{{target}}.html",
            caption="../report/notebook.rst",
            category="{target}",
            subcategory="notebook",
        ),
    log:
        f"{LOGS}/notebooks/{{target}}.log",
    wildcard_constraints:
        target=targets_with("columns"),
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        scale=SCALE,
        runs=run_dirs(),
    shell:
        "python -m lipcert.reporting.render_notebook --notebook {input.notebook} "
        "--out-ipynb {output.ipynb} --out-html {output.html} "
        "-p target {wildcards.target} -p table_csv {input.table} -p figure_png {input.figure} "
        "-p scale {params.scale} -p run_dirs '{params.runs}' > {log} 2>&1"


rule render_table_notebook:
    input:
        notebook="notebooks/paper_table.py",
        table=f"{ROOT}/tables/{{tablename}}.csv",
        markdown=f"{ROOT}/tables/{{tablename}}.md",
        metrics=lambda w: [
            run.path(ROOT, "metrics.json")
            for run in plan.target_runs(TARGETS, w.tablename, SCALE_CFG)
        ],
    output:
        ipynb=f"{ROOT}/notebooks/{{tablename}}.ipynb",
        html=report(
            f"{ROOT}/notebooks/{{tablename}}.html",
            caption="../report/notebook.rst",
            category="{tablename}",
            subcategory="notebook",
        ),
    log:
        f"{LOGS}/notebooks/{{tablename}}.log",
    wildcard_constraints:
        tablename=f"{targets_with('rows')}|{targets_with('runs_of')}|tableD5",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        scale=SCALE,
        runs=lambda w: " ".join(
            run.path(ROOT) for run in plan.target_runs(TARGETS, w.tablename, SCALE_CFG)
        ),
    shell:
        "python -m lipcert.reporting.render_notebook --notebook {input.notebook} "
        "--out-ipynb {output.ipynb} --out-html {output.html} "
        "-p target {wildcards.tablename} -p table_csv {input.table} -p figure_png '' "
        "-p scale {params.scale} -p run_dirs '{params.runs}' > {log} 2>&1"


rule render_figure_notebook:
    input:
        notebook="notebooks/paper_table.py",
        table=f"{ROOT}/figures/{{figname}}.csv",
        markdown=f"{ROOT}/figures/{{figname}}.md",
        figure=f"{ROOT}/figures/{{figname}}.png",
        metrics=lambda w: [
            run.path(ROOT, "metrics.json")
            for run in plan.target_runs(
                TARGETS,
                FIGURE_NOTEBOOKS[w.figname][0],
                SCALE_CFG,
                FIGURE_NOTEBOOKS[w.figname][1],
            )
        ],
    output:
        ipynb=f"{ROOT}/notebooks/{{figname}}.ipynb",
        html=report(
            f"{ROOT}/notebooks/{{figname}}.html",
            caption="../report/notebook.rst",
            category=lambda wildcards: FIGURE_NOTEBOOKS[wildcards.figname][0],
            subcategory="notebook",
        ),
    log:
        f"{LOGS}/notebooks/{{figname}}.log",
    wildcard_constraints:
        figname="|".join(FIGURE_NOTEBOOKS),
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        scale=SCALE,
        runs=lambda w: " ".join(
            run.path(ROOT)
            for run in plan.target_runs(
                TARGETS,
                FIGURE_NOTEBOOKS[w.figname][0],
                SCALE_CFG,
                FIGURE_NOTEBOOKS[w.figname][1],
            )
        ),
    shell:
        "python -m lipcert.reporting.render_notebook --notebook {input.notebook} "
        "--out-ipynb {output.ipynb} --out-html {output.html} "
        "-p target {wildcards.figname} -p table_csv {input.table} -p figure_png {input.figure} "
        "-p scale {params.scale} -p run_dirs '{params.runs}' > {log} 2>&1"
