# Training: one job per (dataset, method, eps, p, seed). Interrupted runs resume from their
# per-epoch checkpoint (kept in the run directory, not a declared output).


rule train:
    input:
        data=f"{ROOT}/data/{{dataset}}.npz",
        db=f"{ROOT}/mlflow.ready",
    output:
        metrics=f"{RUN}/metrics.json",
        model=f"{RUN}/model.pt",
    log:
        f"{LOGS}/train/{RUN_KEY}.log",
    benchmark:
        f"{BENCH}/train/{RUN_KEY}.tsv"
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        code=code_version("train"),
        root=db_dir,
        config=run_config_digest,
        sets=train_sets,
        run_dir=output_dir,
        retries=config["retry_collapsed"],
        mlflow=mlflow_train_args,
    shell:
        "python -m lipcert.gpu_lease -- "
        "python -m lipcert train --params params/{wildcards.dataset}.yaml "
        "--experiment {wildcards.method} --seed {wildcards.seed} {params.sets} "
        "--data {input.data} --out {params.run_dir} --threads {threads} --device auto "
        "--retry-collapsed {params.retries} --code-version {params.code} "
        "--results-dir {params.root} {params.mlflow} > {log} 2>&1"
