# Converged bounds and certification of finished runs (CLL supplement C, eq. (18)).


rule certify:
    input:
        metrics=f"{RUN}/metrics.json",
        data=f"{ROOT}/data/{{dataset}}.npz",
        db=f"{ROOT}/mlflow.ready",
    output:
        f"{RUN}/certify.json",
    log:
        f"{LOGS}/certify/{RUN_KEY}.log",
    benchmark:
        f"{BENCH}/certify/{RUN_KEY}.tsv"
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("certify"),
        run_dir=input_dir,
        root=db_dir,
    shell:
        "python -m lipcert certify --run {params.run_dir} --data {input.data} "
        "--threads {threads} --out {output} --results-dir {params.root} > {log} 2>&1"


rule decision_grid:
    input:
        f"{RUN}/metrics.json",
    output:
        f"{RUN}/decision_grid.npz",
    log:
        f"{LOGS}/grid/{RUN_KEY}.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("decision_grid"),
        run_dir=input_dir,
        resolution=SCALE_CFG["grid_resolution"],
    shell:
        "python -m lipcert.decision_grid --run {params.run_dir} --out {output} "
        "--resolution {params.resolution} > {log} 2>&1"
