# UNOSAT damage sites to label rasters on each AOI's grid (training runs only).


rule unosat:
    # Downloads labels.url of the AOI file, or fails saying where to get the file.
    input:
        aoi=aoi_file,
    output:
        f"{DATA}/unosat/{{aoi}}.zip",
    log:
        f"{LOGS}/unosat/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/unosat/{{aoi}}.tsv"
    params:
        python=PYTHON,
    threads: 1
    resources:
        mem_mb=step_mem_mb("unosat"),
        runtime=30,
    shell:
        "{params.python:q} -m pipeline unosat {input.aoi:q} --out {output:q} > {log:q} 2>&1"


rule labels:
    input:
        aoi=aoi_file,
        grid=f"{DATA}/scenes/{{aoi}}/after.tif",
        unosat=unosat_file,
    output:
        tif=f"{DATA}/labels/{{aoi}}.tif",
        summary=f"{DATA}/labels/{{aoi}}.json",
        nvd=f"{DATA}/labels/{{aoi}}_nvd.gpkg",
    log:
        f"{LOGS}/labels/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/labels/{{aoi}}.tsv"
    params:
        python=PYTHON,
        classes=",".join(str(c) for c in config["labels"]["classes"]),
        radius=config["labels"]["radius_m"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("labels"),
        runtime=20,
    shell:
        "{params.python:q} -m pipeline labels {input.aoi:q} --grid {input.grid:q}"
        " --unosat {input.unosat:q} --out {output.tif:q} --classes {params.classes:q}"
        " --radius-m {params.radius:q} > {log:q} 2>&1"
