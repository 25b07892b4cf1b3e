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
        target="fig4|figD2",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
    shell:
        "{params.py} -m lipcert.reporting.render_notebook --notebook {input.notebook} "
        "--out-ipynb {output.ipynb} --out-html {output.html} "
        "-p target {wildcards.target} -p table_csv {input.table} -p figure_png {input.figure} -p scale {params.scale} > {log} 2>&1"


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
        tablename="table1|table2|tableD5|tableD6|tableD7|tableD8",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
    shell:
        "{params.py} -m lipcert.reporting.render_notebook --notebook {input.notebook} "
        "--out-ipynb {output.ipynb} --out-html {output.html} "
        "-p target {wildcards.tablename} -p table_csv {input.table} -p scale {params.scale} > {log} 2>&1"


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
        py=PYTHON,
        scale=SCALE,
    shell:
        "{params.py} -m lipcert.reporting.render_notebook --notebook {input.notebook} "
        "--out-ipynb {output.ipynb} --out-html {output.html} "
        "-p target {wildcards.figname} -p table_csv {input.table} -p scale {params.scale} > {log} 2>&1"
