# Per-building and per-zone aggregates of each map of the run (with aggregate.buildings set).


rule aggregate:
    # With aggregate.buildings set: damage per building footprint and per zone or grid cell, of
    # each map of the run: results/aggregate/<aoi>.gpkg (Sentinel-2), <aoi>_pwtt.gpkg (radar),
    # <aoi>_fused.gpkg (both).
    input:
        map=aggregate_map,
        buildings=buildings_file,
        zones=zones_file,
    output:
        multiext(f"{RESULTS}/aggregate/{{aoi}}{{product}}", **AGGREGATE_FILES),
    log:
        f"{LOGS}/aggregate/{{aoi}}{{product}}.log",
    benchmark:
        f"{LOGS}/benchmarks/aggregate/{{aoi}}{{product}}.tsv"
    params:
        python=PYTHON,
        options=aggregate_options,
    threads: 1
    resources:
        mem_mb=step_mem_mb("aggregate"),
        runtime=30,
    shell:
        "{params.python:q} -m damagenet aggregate --map {input.map:q} --out {output.gpkg:q}"
        " {params.options:q} > {log:q} 2>&1"
