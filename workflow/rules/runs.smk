# One job per seed group (`sparsebench run-seeds`): the seeds of a cell run in one process (as
# one batched computation where the method allows), a run that keeps mid-run checkpoints
# alone. Each seed's result.json is written atomically into the group's folder,
# results/seeds/<family>/<group>/<run-id>/; then a local `run` job per seed copies it to
# results/runs/<family>/<run-id>/result.json (a shell `cp`: a `run:` block costs Snakemake a
# second or more per job), where everything downstream reads it (the folder
# name is a hash of the run key; the key is inside result.json). Deleting a result.json
# restores it from its group; `snakemake -R results/seeds/<family>/<group>` reruns the group
# (a deleted group folder alone does not: the results it made are still there). A run of its own
# keeps its resumable checkpoint beside its result, which a rerun of its killed job resumes
# from. MLflow logging is one job after the runs (`track`), so each run job stays free of
# MLflow's start-up cost and lock.
import json


def seeds_inputs(wildcards):
    specs = group_specs(wildcards.family, wildcards.group)
    inputs = {"data": str(dataset_file(specs[0].dataset, "results/data"))}
    if wildcards.family == "federated":
        inputs["partitions"] = [f"results/partitions/{s.run_id()}.json" for s in specs]
    return inputs


def partition_flag(wildcards):
    return "--partition-dir results/partitions" if wildcards.family == "federated" else ""


def specs_json(wildcards):
    specs = group_specs(wildcards.family, wildcards.group)
    return json.dumps([s.to_dict() for s in specs], sort_keys=True, separators=(",", ":"))


rule seeds:
    input:
        unpack(seeds_inputs),
    output:
        directory("results/seeds/{family}/{group}"),
    params:
        specs=specs_json,
        partition=partition_flag,
    threads: THREADS
    resources:
        mem_mb=2000,
        gpu=1 if SUITE.hardware["device"] == "cuda" else 0,
    log:
        "results/logs/seeds/{family}/{group}.log",
    shell:
        "sparsebench run-seeds {params.specs:q} --out {output}"
        " --checkpoint-dir results/runs/{wildcards.family}"
        " --threads {threads} --data-dir results/data --no-track {params.partition}"
        " 2> {log}"


rule run:
    input:
        lambda w: f"results/seeds/{w.family}/{group_of(w.family, w.run)}",
    output:
        "results/runs/{family}/{run}/result.json",
    shell:
        "cp {input}/{wildcards.run}/result.json {output}"


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
