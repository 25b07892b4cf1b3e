# Data preparation: each dataset is generated or converted once into a compact cache.


rule two_moons_data:
    output:
        f"{ROOT}/data/two_moons.npz",
    log:
        f"{LOGS}/data/two_moons.log",
    conda:
        "../envs/lipcert.yaml"
    threads: 1
    params:
        py=PYTHON,
        sets=scale_sets("two_moons"),
    shell:
        "{params.py} -m lipcert prepare-data --params params/two_moons.yaml {params.sets} "
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
        py=PYTHON,
        root=output_dir,
    shell:
        "{params.py} -m lipcert mlflow-init --results-dir {params.root} --marker {output} > {log} 2>&1"
