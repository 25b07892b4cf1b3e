# Analysis notebooks (jupytext percent format in notebooks/), rendered per target with papermill.


rule render_notebook:
    input:
        notebook="notebooks/two_moons.py",
        table=f"{ROOT}/tables/{{target}}.csv",
        figure=f"{ROOT}/figures/{{target}}.png",
    output:
        ipynb=f"{ROOT}/notebooks/{{target}}.ipynb",
        html=f"{ROOT}/notebooks/{{target}}.html",
    log:
        f"{LOGS}/notebooks/{{target}}.log",
    wildcard_constraints:
        target=targets_with("columns"),
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        scale=SCALE,
    shell:
        "python -m lipcert.reporting.render_notebook --notebook {input.notebook} "
        "--out-ipynb {output.ipynb} --out-html {output.html} "
        "-p target {wildcards.target} -p table_csv {input.table} -p figure_png {input.figure} -p scale {params.scale} > {log} 2>&1"


rule render_table_notebook:
    input:
        notebook="notebooks/paper_table.py",
        table=f"{ROOT}/tables/{{tablename}}.csv",
    output:
        ipynb=f"{ROOT}/notebooks/{{tablename}}.ipynb",
        html=f"{ROOT}/notebooks/{{tablename}}.html",
    log:
        f"{LOGS}/notebooks/{{tablename}}.log",
    wildcard_constraints:
        tablename=f"{targets_with('rows')}|{targets_with('runs_of')}|tableD5",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        scale=SCALE,
    shell:
        "python -m lipcert.reporting.render_notebook --notebook {input.notebook} "
        "--out-ipynb {output.ipynb} --out-html {output.html} "
        "-p target {wildcards.tablename} -p table_csv {input.table} -p scale {params.scale} > {log} 2>&1"


rule render_figure_notebook:
    input:
        notebook="notebooks/paper_table.py",
        table=f"{ROOT}/figures/{{figname}}.csv",
    output:
        ipynb=f"{ROOT}/notebooks/{{figname}}.ipynb",
        html=f"{ROOT}/notebooks/{{figname}}.html",
    log:
        f"{LOGS}/notebooks/{{figname}}.log",
    wildcard_constraints:
        figname="fig5_eps_sweep|fig5_slack_sweep|figD1|figD4_lambda|figD4_delta|figD4_temperature",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        scale=SCALE,
    shell:
        "python -m lipcert.reporting.render_notebook --notebook {input.notebook} "
        "--out-ipynb {output.ipynb} --out-html {output.html} "
        "-p target {wildcards.figname} -p table_csv {input.table} -p scale {params.scale} > {log} 2>&1"
