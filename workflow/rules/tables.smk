# Tables: aggregate finished runs (metrics, certification, tightness) into CSV / Markdown / LaTeX.


rule fig4_table:
    input:
        metrics=fig4_runs("metrics.json"),
        certify=fig4_runs("certify.json"),
        tightness=fig4_runs("tightness.json"),
    output:
        csv=f"{ROOT}/tables/fig4.csv",
        md=f"{ROOT}/tables/fig4.md",
        metrics=f"{ROOT}/tables/fig4_metrics.json",
    log:
        f"{LOGS}/tables/fig4.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
    shell:
        "{params.py} -m lipcert.reporting.run_summary --scale {params.scale} --title 'Fig. 4 (two-moons)' "
        "--runs {input.metrics} --out-csv {output.csv} --out-md {output.md} --out-json {output.metrics} > {log} 2>&1"


rule figD2_table:
    input:
        metrics=figD2_runs("metrics.json"),
        certify=figD2_runs("certify.json"),
        tightness=figD2_runs("tightness.json"),
    output:
        csv=f"{ROOT}/tables/figD2.csv",
        md=f"{ROOT}/tables/figD2.md",
        metrics=f"{ROOT}/tables/figD2_metrics.json",
    log:
        f"{LOGS}/tables/figD2.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
    shell:
        "{params.py} -m lipcert.reporting.run_summary --scale {params.scale} --title 'Fig. D2 (two-moons slack)' "
        "--runs {input.metrics} --out-csv {output.csv} --out-md {output.md} --out-json {output.metrics} > {log} 2>&1"
