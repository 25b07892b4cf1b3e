# Tables: aggregate finished runs (metrics, certification, tightness) into CSV / Markdown / LaTeX.


rule run_summary_table:
    input:
        metrics=run_files("metrics.json"),
        certify=run_files("certify.json"),
        tightness=run_files("tightness.json"),
    output:
        csv=report(
            f"{ROOT}/tables/{{target}}.csv",
            caption="../report/run_summary.rst",
            category="{target}",
            subcategory="table",
        ),
        md=f"{ROOT}/tables/{{target}}.md",
        metrics=f"{ROOT}/tables/{{target}}_metrics.json",
    log:
        f"{LOGS}/tables/{{target}}.log",
    wildcard_constraints:
        target=targets_with("columns"),
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("run_summary"),
        scale=SCALE,
        title=target_key("title"),
    shell:
        "python -m lipcert.reporting.run_summary --scale {params.scale} --title '{params.title}' "
        "--runs {input.metrics} --out-csv {output.csv} --out-md {output.md} --out-json {output.metrics} > {log} 2>&1"


rule table_manifest:
    output:
        f"{ROOT}/tables/{{target}}_manifest.json",
    log:
        f"{LOGS}/tables/{{target}}_manifest.log",
    wildcard_constraints:
        target=targets_with("rows"),
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("tables"),
        manifest=manifest_json,
    shell:
        "python -m lipcert.reporting.tables write-manifest --json '{params.manifest}' "
        "--out {output} > {log} 2>&1"


rule paper_table:
    input:
        manifest=f"{ROOT}/tables/{{target}}_manifest.json",
        metrics=run_files("metrics.json"),
        certify=run_files("certify.json"),
        tightness=run_files("tightness.json"),
    output:
        csv=report(
            f"{ROOT}/tables/{{target}}.csv",
            caption="../report/paper_table.rst",
            category="{target}",
            subcategory="table",
        ),
        md=f"{ROOT}/tables/{{target}}.md",
        tex=report(
            f"{ROOT}/tables/{{target}}.tex",
            caption="../report/latex_table.rst",
            category="{target}",
            subcategory="table",
        ),
    log:
        f"{LOGS}/tables/{{target}}.log",
    wildcard_constraints:
        target=targets_with("rows"),
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("tables"),
        scale=SCALE,
        paper=target_key("paper"),
        metrics=table_metrics,
        stem=output_stem,
    shell:
        "python -m lipcert.reporting.tables table --manifest {input.manifest} --paper {params.paper} "
        "--metrics {params.metrics} --scale {params.scale} --out {params.stem} > {log} 2>&1"


rule per_seed_table:
    input:
        manifest=source_table("_manifest.json"),
        table=source_table(".csv"),
    output:
        csv=report(
            f"{ROOT}/tables/{{target}}.csv",
            caption="../report/per_seed_table.rst",
            category="{target}",
            subcategory="table",
        ),
        md=f"{ROOT}/tables/{{target}}.md",
        tex=report(
            f"{ROOT}/tables/{{target}}.tex",
            caption="../report/latex_table.rst",
            category="{target}",
            subcategory="table",
        ),
    log:
        f"{LOGS}/tables/{{target}}.log",
    wildcard_constraints:
        target=targets_with("runs_of"),
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("tables"),
        scale=SCALE,
        paper=target_key("paper"),
        dataset=target_key("dataset"),
        stem=output_stem,
    shell:
        "python -m lipcert.reporting.tables per-seed --manifest {input.manifest} "
        "--paper {params.paper} --dataset '{params.dataset}' --scale {params.scale} "
        "--out {params.stem} > {log} 2>&1"


rule tableD5_table:
    input:
        metrics=run_files("metrics.json", "tableD5"),
        certify=run_files("certify.json", "tableD5"),
    output:
        report(
            f"{ROOT}/tables/tableD5.csv",
            caption="../report/tableD5.rst",
            category="tableD5",
            subcategory="table",
        ),
        f"{ROOT}/tables/tableD5.md",
    log:
        f"{LOGS}/tables/tableD5.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("sweeps"),
        scale=SCALE,
        dirs=run_dirs("tableD5"),
        paper=TARGETS["tableD5"]["paper"],
        stem=output_stem,
    shell:
        "python -m lipcert.reporting.sweeps grid-table --runs {params.dirs} "
        "--paper {params.paper} --scale {params.scale} --out {params.stem} > {log} 2>&1"
