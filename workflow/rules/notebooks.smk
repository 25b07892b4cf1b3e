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
