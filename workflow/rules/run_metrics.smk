# Run metrics: the certified numbers of a target's runs nested by method and configuration, and their training
# histories (the metrics and plots of the target's DVC runs stage, dvc.yaml).


rule run_metrics:
    input:
        metrics=run_files("metrics.json"),
        certify=run_files("certify.json"),
    output:
        metrics=f"{ROOT}/metrics/{{target}}.json",
        histories=directory(f"{ROOT}/metrics/{{target}}_history"),
    log:
        f"{LOGS}/metrics/{{target}}.log",
    wildcard_constraints:
        target="|".join(t for t, spec in TARGETS.items() if "runs_of" not in spec),
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("run_metrics"),
        scale=SCALE,
        dirs=run_dirs(),
    shell:
        "python -m lipcert.reporting.run_metrics --runs {params.dirs} --scale {params.scale} "
        "--out {output.metrics} --history-dir {output.histories} > {log} 2>&1"
