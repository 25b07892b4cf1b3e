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


rule table_manifest:
    output:
        f"{ROOT}/tables/{{table}}_manifest.json",
    log:
        f"{LOGS}/tables/{{table}}_manifest.log",
    wildcard_constraints:
        table="table1|table2",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        manifest=table_manifest,
    shell:
        "{params.py} -m lipcert.reporting.tables write-manifest --json '{params.manifest}' "
        "--out {output} > {log} 2>&1"


rule paper_table:
    input:
        manifest=f"{ROOT}/tables/{{table}}_manifest.json",
        metrics=table_runs,
        certify=table_certify_runs,
        tightness=table_tightness_runs,
    output:
        csv=f"{ROOT}/tables/{{table}}.csv",
        md=f"{ROOT}/tables/{{table}}.md",
        tex=f"{ROOT}/tables/{{table}}.tex",
    log:
        f"{LOGS}/tables/{{table}}.log",
    wildcard_constraints:
        table="table1|table2",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
        paper=paper_table_csv,
        stem=output_stem,
    shell:
        "{params.py} -m lipcert.reporting.tables table --manifest {input.manifest} --paper {params.paper} "
        "--scale {params.scale} --out {params.stem} > {log} 2>&1"


rule per_seed_table:
    input:
        manifest=per_seed_manifest,
        table=per_seed_main_table,
    output:
        csv=f"{ROOT}/tables/{{ptable}}.csv",
        md=f"{ROOT}/tables/{{ptable}}.md",
        tex=f"{ROOT}/tables/{{ptable}}.tex",
    log:
        f"{LOGS}/tables/{{ptable}}.log",
    wildcard_constraints:
        ptable="tableD6|tableD7|tableD8",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
        paper=per_seed_paper_csv,
        dataset=per_seed_dataset,
        stem=output_stem,
    shell:
        "{params.py} -m lipcert.reporting.tables per-seed --manifest {input.manifest} "
        "--paper {params.paper} --dataset '{params.dataset}' --scale {params.scale} "
        "--out {params.stem} > {log} 2>&1"


rule tableD5_table:
    input:
        tableD5_metrics,
    output:
        multiext(f"{ROOT}/tables/tableD5", ".csv", ".md"),
    log:
        f"{LOGS}/tables/tableD5.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        scale=SCALE,
        dirs=tableD5_dirs,
        stem=first_output_stem,
    shell:
        "{params.py} -m lipcert.reporting.sweeps grid-table --runs {params.dirs} "
        "--paper params/paper_tables/tableD5_eps_p_grid.csv --scale {params.scale} --out {params.stem} "
        "> {log} 2>&1"
