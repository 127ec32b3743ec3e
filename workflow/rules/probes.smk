# Convergence probes: each grid's reference cell (its `convergence` section), one seed trained
# `factor` times longer, so the report can show whether the grid's budget is near the plateau.
# A probe is a diagnostic, not a compared cell: it lives in results/probes/, outside the tables,
# the claims and MLflow.
import json


def probe_json(wildcards):
    spec = PROBES[(wildcards.family, wildcards.run)]
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


rule probe:
    input:
        data=lambda w: str(dataset_file(PROBES[(w.family, w.run)].dataset, "results/data")),
    output:
        "results/probes/{family}/{run}/result.json",
    params:
        spec=probe_json,
    threads: THREADS
    resources:
        mem_mb=2000,
        gpu=1 if SUITE.hardware["device"] == "cuda" else 0,
    log:
        "results/logs/probes/{family}/{run}.log",
    shell:
        "sparsebench run {params.spec:q} --out results/probes/{wildcards.family}/{wildcards.run}"
        " --threads {threads} --data-dir results/data --no-track 2> {log}"
