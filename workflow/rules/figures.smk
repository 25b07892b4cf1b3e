# Figures: drawn from result files only (decision grids, metrics).


rule two_moons_figure:
    input:
        run_files("decision_grid.npz"),
    output:
        png=report(
            f"{ROOT}/figures/{{target}}.png",
            caption="../report/two_moons_figure.rst",
            category="{target}",
            subcategory="figure",
        ),
        pdf=report(
            f"{ROOT}/figures/{{target}}.pdf",
            caption="../report/figure_pdf.rst",
            category="{target}",
            subcategory="figure",
        ),
    log:
        f"{LOGS}/figures/{{target}}.log",
    wildcard_constraints:
        target=targets_with("columns"),
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("two_moons_figures"),
        scale=SCALE,
        ncols=n_columns,
    shell:
        "python -m lipcert.reporting.two_moons_figures --npz {input} --out-png {output.png} "
        "--out-pdf {output.pdf} --ncols {params.ncols} --scale {params.scale} > {log} 2>&1"


rule fig5_figure:
    input:
        eps_metrics=run_files("metrics.json", "fig5", "eps"),
        eps_certify=run_files("certify.json", "fig5", "eps"),
        eps_tightness=run_files("tightness.json", "fig5", "eps"),
        slack_metrics=run_files("metrics.json", "fig5", "slack"),
        slack_certify=run_files("certify.json", "fig5", "slack"),
    output:
        eps=[
            *report(
                multiext(f"{ROOT}/figures/fig5_eps_sweep", ".png", ".pdf", ".csv"),
                caption="../report/fig5_eps_sweep.rst",
                category="fig5",
                subcategory="figure",
            ),
            f"{ROOT}/figures/fig5_eps_sweep.md",
        ],
        slack=[
            *report(
                multiext(f"{ROOT}/figures/fig5_slack_sweep", ".png", ".pdf", ".csv"),
                caption="../report/fig5_slack_sweep.rst",
                category="fig5",
                subcategory="figure",
            ),
            f"{ROOT}/figures/fig5_slack_sweep.md",
        ],
    log:
        f"{LOGS}/figures/fig5.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("sweeps"),
        scale=SCALE,
        eps_dirs=run_dirs("fig5", "eps"),
        slack_dirs=run_dirs("fig5", "slack"),
        paper=TARGETS["fig5"]["paper"],
        eps_stem=lambda wildcards, output: os.path.splitext(output.eps[0])[0],
        slack_stem=lambda wildcards, output: os.path.splitext(output.slack[0])[0],
    shell:
        "(python -m lipcert.reporting.sweeps eps-sweep --runs {params.eps_dirs} "
        "--paper {params.paper} --scale {params.scale} --out {params.eps_stem} && "
        "python -m lipcert.reporting.sweeps slack-sweep --runs {params.slack_dirs} "
        "--scale {params.scale} --out {params.slack_stem}) > {log} 2>&1"


rule figD1_figure:
    input:
        run_files("metrics.json", "figD1"),
    output:
        [
            *report(
                multiext(f"{ROOT}/figures/figD1", ".png", ".pdf", ".csv"),
                caption="../report/figD1.rst",
                category="figD1",
                subcategory="figure",
            ),
            f"{ROOT}/figures/figD1.md",
        ],
    log:
        f"{LOGS}/figures/figD1.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("sweeps"),
        scale=SCALE,
        dirs=run_dirs("figD1"),
        stem=output_stem,
    shell:
        "python -m lipcert.reporting.sweeps curves --runs {params.dirs} --scale {params.scale} "
        "--out {params.stem} > {log} 2>&1"


rule figD4_figure:
    input:
        metrics=run_files("metrics.json", "figD4"),
        certify=run_files("certify.json", "figD4"),
    output:
        [
            *report(
                multiext(f"{ROOT}/figures/figD4_lambda", ".png", ".pdf", ".csv"),
                caption="../report/figD4.rst",
                category="figD4",
                subcategory="figure",
            ),
            f"{ROOT}/figures/figD4_lambda.md",
        ],
        [
            *report(
                multiext(f"{ROOT}/figures/figD4_delta", ".png", ".pdf", ".csv"),
                caption="../report/figD4.rst",
                category="figD4",
                subcategory="figure",
            ),
            f"{ROOT}/figures/figD4_delta.md",
        ],
        [
            *report(
                multiext(f"{ROOT}/figures/figD4_temperature", ".png", ".pdf", ".csv"),
                caption="../report/figD4.rst",
                category="figD4",
                subcategory="figure",
            ),
            f"{ROOT}/figures/figD4_temperature.md",
        ],
    log:
        f"{LOGS}/figures/figD4.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("sweeps"),
        scale=SCALE,
        lam_dirs=run_dirs("figD4", "lam"),
        delta_dirs=run_dirs("figD4", "delta"),
        scale_dirs=run_dirs("figD4", "output_scale"),
        stem=lambda wildcards, output: os.path.join(os.path.dirname(output[0]), "figD4"),
    shell:
        "(python -m lipcert.reporting.sweeps param-sweep --runs {params.lam_dirs} --param loss.lam "
        "--scale {params.scale} --out {params.stem}_lambda && "
        "python -m lipcert.reporting.sweeps param-sweep --runs {params.delta_dirs} --param loss.delta "
        "--scale {params.scale} --out {params.stem}_delta && "
        "python -m lipcert.reporting.sweeps param-sweep --runs {params.scale_dirs} "
        "--param loss.output_scale --scale {params.scale} --out {params.stem}_temperature) > {log} 2>&1"
