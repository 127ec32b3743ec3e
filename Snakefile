# sparsebench: `snakemake -c all` from the repository root runs configs/suite.yaml;
# `--config suite=PATH` picks another suite. The workflow itself is workflow/Snakefile (rules in
# workflow/rules/ by topic); this file includes it. Rule inputs and outputs stay relative to the
# directory Snakemake runs in (this one); includes and report captions to the file naming them.
include: "workflow/Snakefile"


# Snakemake takes the default target from the Snakefile it runs, never from an included one
# (snakemake/snakemake#2773), so the target is named again here.
rule default:
    input:
        rules.all.input,
    default_target: True


localrules:
    default,
