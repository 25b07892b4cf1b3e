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
        root=db_dir,
        sets=train_sets,
        run_dir=output_dir,
        retries=config["retry_collapsed"],
    shell:
        "python -m lipcert.gpu_lease -- "
        "python -m lipcert train --params params/{wildcards.dataset}.yaml "
        "--experiment {wildcards.method} --seed {wildcards.seed} {params.sets} "
        "--data {input.data} --out {params.run_dir} --threads {threads} --device auto "
        "--retry-collapsed {params.retries} "
        "--results-dir {params.root} --no-progress > {log} 2>&1"
