# Data preparation: each dataset is generated or converted once into a verified cache.


rule prepare_data:
    output:
        f"{ROOT}/data/{{dataset}}.npz",
    log:
        f"{LOGS}/data/{{dataset}}.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        code=code_version("data"),
        sets=dataset_scale_sets,
    shell:
        "python -m lipcert prepare-data --params params/{wildcards.dataset}.yaml {params.sets} "
        "--out {output} > {log} 2>&1"


rule mlflow_init:
    output:
        f"{ROOT}/mlflow.ready",
    log:
        f"{LOGS}/mlflow_init.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        root=output_dir,
    shell:
        "python -m lipcert mlflow-init --results-dir {params.root} --marker {output} > {log} 2>&1"
