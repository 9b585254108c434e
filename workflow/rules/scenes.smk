# Scene acquisition: one harmonised, cloud-masked 4-band scene per AOI and epoch.


rule scene:
    input:
        aoi=aoi_file,
        scene=scene_input,
    output:
        tif=f"{DATA}/scenes/{{aoi}}/{{epoch}}.tif",
        record=f"{DATA}/scenes/{{aoi}}/{{epoch}}.json",
    log:
        f"{LOGS}/scene/{{aoi}}_{{epoch}}.log",
    benchmark:
        f"{LOGS}/benchmarks/scene/{{aoi}}_{{epoch}}.tsv"
    params:
        python=PYTHON,
        source=SCENES["source"],
        options=scene_options,
        min_valid=SCENES["min_valid_fraction"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("scene"),
        runtime=60,
        sentinelhub=lambda wc: 1 if SCENES["source"] == "sentinelhub" else 0,
    shell:
        "{params.python:q} -m pipeline scene {input.aoi:q} --epoch {wildcards.epoch:q}"
        " --out {output.tif:q} --source {params.source:q} {params.options:q}"
        " --min-valid-fraction {params.min_valid:q} --seed {params.seed:q} > {log:q} 2>&1"


rule synthetic:
    # With scenes.source synthetic (the demo): the synthetic town, generated once per AOI; the
    # scene rule harmonises and masks its scenes, the labels rule reads its UNOSAT-style sites
    # and the aggregate rule its building footprints.
    input:
        aoi=aoi_file,
    output:
        multiext(
            f"{DATA}/synthetic/{{aoi}}/",
            before="before.tif",
            after="after.tif",
            before_scl="before_scl.tif",
            after_scl="after_scl.tif",
            truth="truth.tif",
            unosat="unosat.zip",
            gpkg="unosat.gpkg",
            buildings="buildings.gpkg",
        ),
    log:
        f"{LOGS}/synthetic/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/synthetic/{{aoi}}.tsv"
    params:
        python=PYTHON,
        out=lambda wc, output: str(Path(output.before).parent),
        max_size=grid_cap,
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("synthetic"),
        runtime=10,
    shell:
        "{params.python:q} -m pipeline synthetic {input.aoi:q} --out {params.out:q}"
        " --seed {params.seed:q} {params.max_size:q} > {log:q} 2>&1"
