# The regression gate: `snakemake -c all regress --config suite=configs/suite-regress.yaml`
# compares the suite's fresh results with configs/baselines/<hardware>.json, and its speed
# benchmarks' engine/bare ratios with their floors, and fails on a regression (the table is
# printed and kept in results/regression/).


rule regress:
    input:
        [f"results/runs/{family}/{run}/result.json" for family, run in RUNS],
        BENCHMARK_RESULTS,
    output:
        f"results/regression/{SUITE.hardware['name']}.json",
    params:
        suite=SUITE_FILE,
    shell:
        "sparsebench regress --suite {params.suite} --out {output}"
