# Federated runs read their client partition from a checksummed manifest (LEAF-style): the
# manifests are a workflow output, written in one local job (partitioning is cheap), and a run
# fails if the partition it used differs from its manifest.
import json

from sparsebench.data.base import load_dataset
from sparsebench.engines.federated.clients import write_partition_manifest

FEDERATED = [run for family, run in RUNS if family == "federated"]


rule partitions:
    input:
        sorted({str(dataset_file(RUNS[("federated", run)].dataset, "results/data"))
                for run in FEDERATED}),
    output:
        expand("results/partitions/{run}.json", run=FEDERATED),
    run:
        for run_id, path in zip(FEDERATED, output):
            spec = RUNS[("federated", run_id)]
            write_partition_manifest(spec, load_dataset(spec.dataset, "results/data"), path)


# A federated run an adaptive-seeding look added gets its manifest from this rule (a shell job:
# a `run:` block costs Snakemake a second or more per job).
ruleorder: partitions > partition


rule partition:
    input:
        lambda w: str(dataset_file(spec_of("federated", w.run).dataset, "results/data")),
    output:
        "results/partitions/{run}.json",
    params:
        spec=lambda w: json.dumps(spec_of("federated", w.run).to_dict(), separators=(",", ":")),
    shell:
        "sparsebench partition {params.spec:q} --out {output} --data-dir results/data"
