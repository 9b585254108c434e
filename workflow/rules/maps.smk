# Damage maps per AOI, and per-building / per-zone aggregates of them.


rule damage_map:
    input:
        before=f"{DATA}/scenes/{{aoi}}/before.tif",
        after=f"{DATA}/scenes/{{aoi}}/after.tif",
        labels=map_labels,
        ckpt=CHECKPOINT,
    output:
        multiext(MAP_PREFIX, **MAP_FILES),
        summary=report(
            f"{MAP_PREFIX}{SUMMARY_SUFFIX}",
            caption="../report/aoi_summary.rst",
            category="4. Maps",
            subcategory="{aoi}",
            labels={"AOI": "{aoi}", "figure": "summary"},
        ),
        quicklook=report(
            f"{MAP_PREFIX}{QUICKLOOK_SUFFIX}",
            caption="../report/quicklook.rst",
            category="4. Maps",
            subcategory="{aoi}",
            labels={"AOI": "{aoi}", "figure": "quick-look"},
        ),
    log:
        f"{LOGS}/damage_map/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/damage_map/{{aoi}}.tsv"
    params:
        python=PYTHON,
        p=config["predict"],
        labels=labels_option,
        tta=tta_option,
        device=config["device"],
    threads: step_threads("damage_map")
    resources:
        mem_mb=step_mem_mb("damage_map"),
        runtime=120,
        gpu=gpus,
    shell:
        "OMP_NUM_THREADS={threads} {params.python:q} -m damagenet predict"
        " --before {input.before:q} --after {input.after:q} --ckpt {input.ckpt:q}"
        " --out {output.prob:q} {params.labels:q} --stride {params.p[stride]:q}"
        " --batch-size {params.p[batch_size]:q} {params.tta:q} --device {params.device:q}"
        " > {log:q} 2>&1"


rule aggregate:
    # With aggregate.buildings set: damage per building footprint and per zone or grid cell.
    input:
        prob=f"{MAP_PREFIX}{PROB_SUFFIX}",
        buildings=buildings_file,
        zones=zones_file,
    output:
        multiext(f"{RESULTS}/aggregate/{{aoi}}", **AGGREGATE_FILES),
    log:
        f"{LOGS}/aggregate/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/aggregate/{{aoi}}.tsv"
    params:
        python=PYTHON,
        zones=zones_option,
        grid_m=AGGREGATE["grid_m"],
        threshold=AGGREGATE["threshold"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("aggregate"),
        runtime=30,
    shell:
        "{params.python:q} -m damagenet aggregate --map {input.prob:q}"
        " --buildings {input.buildings:q} --out {output.gpkg:q} {params.zones:q}"
        " --grid-m {params.grid_m:q} --threshold {params.threshold:q} > {log:q} 2>&1"
