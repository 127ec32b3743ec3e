# Tidy tables per family, then one self-contained HTML page (figures also filed for
# `snakemake --report`).


rule tables:
    input:
        lambda w: all_results(w.family),
    output:
        "results/tables/{family}.parquet",
    log:
        "results/logs/tables/{family}.log",
    shell:
        "sparsebench tables --family {wildcards.family} > {log} 2>&1"


rule report:
    input:
        expand("results/tables/{family}.parquet", family=FAMILIES_IN_SUITE),
        KERNEL_RESULTS,
        BENCHMARK_RESULTS,
        PROBE_RESULTS,
        FINAL_LOOK,
        "results/mlflow/synced.txt",
    output:
        html=report(
            "reports/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
        figures=report(
            expand("results/figures/{family}.png", family=FAMILIES_IN_SUITE),
            caption="../report/figure.rst",
            category="Figures",
        ),
    params:
        suite=SUITE_FILE,
    log:
        "results/logs/report.log",
    shell:
        "sparsebench report --suite {params.suite} > {log} 2>&1"
