# UNOSAT damage sites to label rasters on each AOI's grid.


rule unosat:
    # Downloads labels.url of the AOI file, or fails saying where to get the file.
    input:
        aoi=aoi_file,
    output:
        "data/unosat/{aoi}.zip",
    log:
        f"{LOGS}/unosat/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/unosat/{{aoi}}.tsv"
    threads: 1
    resources:
        mem_mb=step_mem_mb("unosat"),
        runtime=30,
    shell:
        "{PYTHON} -m pipeline -q unosat {input.aoi} --out {output} > {log} 2>&1"


rule labels:
    input:
        aoi=aoi_file,
        grid=f"{DATA}/scenes/{{aoi}}/after.tif",
        unosat=unosat_file,
    output:
        tif=f"{DATA}/labels/{{aoi}}.tif",
        summary=f"{DATA}/labels/{{aoi}}.json",
    log:
        f"{LOGS}/labels/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/labels/{{aoi}}.tsv"
    params:
        classes=",".join(str(c) for c in config["labels"]["classes"]),
        radius=config["labels"]["radius_m"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("labels"),
        runtime=20,
    shell:
        "{PYTHON} -m pipeline -q labels {input.aoi} --grid {input.grid} --unosat {input.unosat}"
        " --out {output.tif} --classes {params.classes} --radius-m {params.radius} > {log} 2>&1"
