# Scene acquisition: one harmonised, cloud-masked 4-band scene per AOI and epoch.


def local_input(wildcards):
    if SCENES["source"] == "synthetic":  # the synthetic rule's folder, generated once per AOI
        return f"{DATA}/synthetic/{wildcards.aoi}/{wildcards.epoch}.tif"
    if SCENES["source"] != "local":
        return []
    try:
        return SCENES["local"][wildcards.aoi][wildcards.epoch]
    except KeyError:
        raise ValueError(f"scenes.source is local but scenes.local.{wildcards.aoi}."
                         f"{wildcards.epoch} is not set in the config")


rule scene:
    input:
        aoi=aoi_file,
        local=local_input,
    output:
        tif=f"{DATA}/scenes/{{aoi}}/{{epoch}}.tif",
        record=f"{DATA}/scenes/{{aoi}}/{{epoch}}.json",
    log:
        f"{LOGS}/scene/{{aoi}}_{{epoch}}.log",
    benchmark:
        f"{LOGS}/benchmarks/scene/{{aoi}}_{{epoch}}.tsv"
    params:
        source=SCENES["source"],
        max_size=MAX_SIZE,
        local=lambda wc, input: (f"--input {Path(input.local).parent}"
                                 if SCENES["source"] == "synthetic" else
                                 f"--input {input.local}" if input.local else ""),
        mosaic="--mosaic" if SCENES.get("mosaic") else "",
        base_url=SCENES.get("base_url", "https://sh.dataspace.copernicus.eu"),
        min_valid=SCENES.get("min_valid_fraction", 0.3),
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("scene"),
        runtime=60,
        sentinelhub=lambda wc: 1 if SCENES["source"] == "sentinelhub" else 0,
    shell:
        "{PYTHON} -m pipeline -q scene {input.aoi} --epoch {wildcards.epoch} --out {output.tif}"
        " --source {params.source} {params.local} {params.max_size} {params.mosaic}"
        " --sh-base-url {params.base_url} --min-valid-fraction {params.min_valid}"
        " --seed {params.seed} > {log} 2>&1"


rule synthetic:
    # With scenes.source synthetic (the demo): the synthetic town, generated once per AOI; the
    # scene rule harmonises and masks its scenes, the labels rule reads its UNOSAT-style sites.
    input:
        aoi=aoi_file,
    output:
        before=f"{DATA}/synthetic/{{aoi}}/before.tif",
        after=f"{DATA}/synthetic/{{aoi}}/after.tif",
        unosat=f"{DATA}/synthetic/{{aoi}}/unosat.zip",
        gpkg=f"{DATA}/synthetic/{{aoi}}/unosat.gpkg",
    log:
        f"{LOGS}/synthetic/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/synthetic/{{aoi}}.tsv"
    params:
        out=f"{DATA}/synthetic/{{aoi}}",
        max_size=MAX_SIZE,
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("synthetic"),
        runtime=10,
    shell:
        "{PYTHON} -m pipeline -q synthetic {input.aoi} --out {params.out}"
        " --seed {params.seed} {params.max_size} > {log} 2>&1"
