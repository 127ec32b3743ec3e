# One job per grid cell, for every family: `sparsebench run` writes result.json atomically.
# The folder name is a hash of the run key; the key is inside result.json. MLflow logging is one
# job after the runs (`track`), so each run job stays free of MLflow's start-up cost and lock.


def run_inputs(wildcards):
    spec = spec_of(wildcards.family, wildcards.run)
    inputs = {"data": str(dataset_file(spec.dataset, "results/data"))}
    if wildcards.family == "federated":
        inputs["partition"] = f"results/partitions/{wildcards.run}.json"
    return inputs


def partition_flag(wildcards, input):
    return f"--partition {input.partition}" if wildcards.family == "federated" else ""


rule run:
    input:
        unpack(run_inputs),
    output:
        "results/runs/{family}/{run}/result.json",
    params:
        spec=lambda w: spec_of(w.family, w.run).to_json(),
        partition=partition_flag,
    threads: THREADS
    resources:
        mem_mb=2000,
        gpu=1 if SUITE.hardware["device"] == "cuda" else 0,
    log:
        "results/logs/runs/{family}/{run}.log",
    shell:
        "sparsebench run {params.spec:q} --out results/runs/{wildcards.family}/{wildcards.run}"
        " --threads {threads} --data-dir results/data --no-track {params.partition}"
        " 2> {log}"


rule track:
    input:
        lambda w: all_results(),
    output:
        "results/mlflow/synced.txt",
    params:
        tracking=TRACKING,
    log:
        "results/logs/track.log",
    shell:
        "sparsebench sync --allow-failure {params.tracking} > {output}.tmp 2> {log}"
        " && mv {output}.tmp {output}"
