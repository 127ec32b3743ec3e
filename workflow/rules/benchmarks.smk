# Speed benchmarks of the pipeline itself (the suite's `benchmarks:` list). The job asks for every
# core so that nothing else runs beside it and shares its timing; it measures with one thread.
BENCHMARK_RESULTS = expand("results/benchmarks/{benchmark}.json", benchmark=SUITE.benchmarks)


rule federated_throughput:
    output:
        "results/benchmarks/federated_throughput.json",
    threads: lambda wildcards: workflow.cores or 1
    log:
        "results/logs/benchmarks/federated_throughput.log",
    shell:
        "sparsebench throughput --threads 1 --out {output} > {log} 2>&1"


rule seed_batching:
    output:
        "results/benchmarks/seed_batching.json",
    threads: lambda wildcards: workflow.cores or 1
    log:
        "results/logs/benchmarks/seed_batching.log",
    shell:
        "sparsebench seed-throughput --out {output} > {log} 2>&1"
