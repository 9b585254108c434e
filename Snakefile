# War-damage mapping from Sentinel-2 and Sentinel-1: the workflow.
#
#   snakemake --cores 8                                      # real run (STAC, no account needed)
#   snakemake --cores 2 --configfile config/demo.yaml        # offline demo on synthetic scenes
#   snakemake --cores 8 --config 'aois=[bucha,irpin]'        # a subset of AOIs
#   snakemake --cores 8 --config mode=map checkpoint=models/x.pt 'aois=[newcity]'   # maps only
#   snakemake --cores 8 --config mode=map sensor=s1 'aois=[newcity]'   # radar maps, no model
#   snakemake --cores 8 --config sensor=both 'model={arch: siamese-unet}'   # both, pixel model
#   snakemake --report report.html                           # one HTML page of the results
#
# Every step is a command line of the `pipeline` or `damagenet` package; this file only wires
# them. Rules live in workflow/rules/.

from snakemake.utils import min_version, validate

min_version("8.10")


configfile: workflow.source_path("config/config.yaml")


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/scenes.smk"
include: "workflow/rules/radar.smk"
include: "workflow/rules/aggregate.smk"


# The Sentinel-2 map needs a model; a radar-only run (sensor s1) has none.
if OPTICAL:

    include: "workflow/rules/maps.smk"


# A mapping run (mode: map) has no labels, dataset or training rules at all, so nothing can
# make it download UNOSAT files or train a model.
if MODE == "train":

    include: "workflow/rules/labels.smk"
    include: "workflow/rules/dataset.smk"
    include: "workflow/rules/model.smk"


rule all:
    input:
        ALL_TARGETS,
    default_target: True


onstart:
    # Fail before any download, with instructions, when scenes must come from Sentinel Hub
    # (the one source that needs an account) and no credentials are set.
    if SCENES["source"] == "sentinelhub" and missing_scenes():
        shell("{PYTHON:q} -m pipeline credentials")
