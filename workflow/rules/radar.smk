# Sentinel-1 radar (issue 29): with radar.enabled, each AOI's VV/VH time series on its 10 m
# grid, per relative orbit, as data/radar/<aoi>.zarr (read by `damagenet pwtt`).


rule radar:
    input:
        aoi=aoi_file,
        town=radar_input,
    output:
        store=directory(f"{DATA}/radar/{{aoi}}.zarr"),
        record=f"{DATA}/radar/{{aoi}}.items.json",
    log:
        f"{LOGS}/radar/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/radar/{{aoi}}.tsv"
    params:
        python=PYTHON,
        options=radar_options,
        seed=config["seed"],
    threads: step_threads("radar")
    resources:
        mem_mb=step_mem_mb("radar"),
        runtime=120,
    shell:
        "{params.python:q} -m pipeline radar {input.aoi:q} --out {output.store:q}"
        " {params.options:q} --workers {threads} --seed {params.seed:q} > {log:q} 2>&1"
