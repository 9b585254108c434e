# War-damage mapping from Sentinel-2: the workflow.
#
#   snakemake --cores 8                                      # real run (Sentinel Hub credentials)
#   snakemake --cores 2 --configfile config/demo.yaml        # offline demo on synthetic scenes
#   snakemake --cores 8 --config 'aois=[bucha,irpin]'        # a subset of AOIs
#
# Every step is a command line of the `pipeline` or `damagenet` package; this file only wires
# them. Rules live in workflow/rules/.

from snakemake.utils import min_version, validate

min_version("8.10")


configfile: workflow.source_path("config/config.yaml")


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/scenes.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/model.smk"


rule all:
    input:
        DATASET,
        CHECKPOINT,
        f"{RESULTS}/metrics.json",
        expand(f"{RESULTS}/maps/{{aoi}}_damage_prob.tif", aoi=AOIS),
    default_target: True


onstart:
    # Fail before any download, with instructions, when scenes must come from Sentinel Hub
    # and no credentials are set.
    if config["scenes"]["source"] == "sentinelhub" and missing_scenes():
        shell(f"{PYTHON} -m pipeline credentials")
