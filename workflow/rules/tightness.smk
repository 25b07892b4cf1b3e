# Tightness attack: empirical lower Lipschitz bound (CLL supplement C, eqs. (19)-(20)).


rule tightness:
    input:
        metrics=f"{RUN}/metrics.json",
        data=f"{ROOT}/data/{{dataset}}.npz",
        db=f"{ROOT}/mlflow.ready",
    output:
        f"{RUN}/tightness.json",
    log:
        f"{LOGS}/tightness/{RUN_KEY}.log",
    benchmark:
        f"{BENCH}/tightness/{RUN_KEY}.tsv"
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        code=code_version("tightness"),
        run_dir=input_dir,
        pairs=SCALE_CFG["tightness"]["pairs"],
        steps=SCALE_CFG["tightness"]["steps"],
        root=db_dir,
    shell:
        "python -m lipcert.gpu_lease -- "
        "python -m lipcert tightness --run {params.run_dir} --data {input.data} "
        "--pairs {params.pairs} --steps {params.steps} --threads {threads} --device auto --out {output} "
        "--results-dir {params.root} > {log} 2>&1"
