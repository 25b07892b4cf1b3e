# Figures: drawn from result files only (decision grids, metrics).


rule fig4_figure:
    input:
        fig4_runs("decision_grid.npz"),
    output:
        png=f"{ROOT}/figures/fig4.png",
        pdf=f"{ROOT}/figures/fig4.pdf",
    log:
        f"{LOGS}/figures/fig4.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
        ncols=len(config["fig4"]["eps"]),
    shell:
        "{params.py} -m lipcert.reporting.two_moons_figures --npz {input} --out-png {output.png} "
        "--out-pdf {output.pdf} --ncols {params.ncols} --scale {params.scale} > {log} 2>&1"


rule figD2_figure:
    input:
        figD2_runs("decision_grid.npz"),
    output:
        png=f"{ROOT}/figures/figD2.png",
        pdf=f"{ROOT}/figures/figD2.pdf",
    log:
        f"{LOGS}/figures/figD2.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
        ncols=len(config["figD2"]["p_printed"]),
    shell:
        "{params.py} -m lipcert.reporting.two_moons_figures --npz {input} --out-png {output.png} "
        "--out-pdf {output.pdf} --ncols {params.ncols} --scale {params.scale} > {log} 2>&1"
