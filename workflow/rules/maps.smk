# The Sentinel-2 damage map per AOI (sensor s2 or both).


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
