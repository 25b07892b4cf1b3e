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


rule fig5_figure:
    input:
        eps_metrics=fig5_eps_runs,
        eps_tightness=fig5_eps_tightness,
        slack_metrics=fig5_slack_runs,
    output:
        eps=multiext(f"{ROOT}/figures/fig5_eps_sweep", ".csv", ".md", ".png", ".pdf"),
        slack=multiext(
            f"{ROOT}/figures/fig5_slack_sweep", ".csv", ".md", ".png", ".pdf"
        ),
    log:
        f"{LOGS}/figures/fig5.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
        eps_dirs=fig5_eps_dirs,
        slack_dirs=fig5_slack_dirs,
        eps_stem=fig5_eps_stem,
        slack_stem=fig5_slack_stem,
    shell:
        "({params.py} -m lipcert.reporting.sweeps eps-sweep --runs {params.eps_dirs} "
        "--paper params/paper_tables/fig5_eps_sweep.csv --scale {params.scale} --out {params.eps_stem} && "
        "{params.py} -m lipcert.reporting.sweeps slack-sweep --runs {params.slack_dirs} "
        "--scale {params.scale} --out {params.slack_stem}) > {log} 2>&1"


rule figD1_figure:
    input:
        figD1_histories,
    output:
        multiext(f"{ROOT}/figures/figD1", ".csv", ".md", ".png", ".pdf"),
    log:
        f"{LOGS}/figures/figD1.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
        dirs=figD1_dirs,
        stem=first_output_stem,
    shell:
        "{params.py} -m lipcert.reporting.sweeps curves --runs {params.dirs} --scale {params.scale} "
        "--out {params.stem} > {log} 2>&1"


rule figD4_figure:
    input:
        figD4_all_runs,
    output:
        multiext(f"{ROOT}/figures/figD4_lambda", ".csv", ".md", ".png", ".pdf"),
        multiext(f"{ROOT}/figures/figD4_delta", ".csv", ".md", ".png", ".pdf"),
        multiext(f"{ROOT}/figures/figD4_temperature", ".csv", ".md", ".png", ".pdf"),
    log:
        f"{LOGS}/figures/figD4.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
        lam_dirs=figD4_dirs("lam"),
        delta_dirs=figD4_dirs("delta"),
        scale_dirs=figD4_dirs("output_scale"),
        stem=figD4_stem,
    shell:
        "({params.py} -m lipcert.reporting.sweeps param-sweep --runs {params.lam_dirs} --param loss.lam "
        "--scale {params.scale} --out {params.stem}_lambda && "
        "{params.py} -m lipcert.reporting.sweeps param-sweep --runs {params.delta_dirs} --param loss.delta "
        "--scale {params.scale} --out {params.stem}_delta && "
        "{params.py} -m lipcert.reporting.sweeps param-sweep --runs {params.scale_dirs} "
        "--param loss.output_scale --scale {params.scale} --out {params.stem}_temperature) > {log} 2>&1"
