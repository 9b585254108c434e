# Sentinel-1 radar (issues 29, 30): each AOI's VV/VH time series on its 10 m grid, per relative
# orbit, as data/radar/<aoi>.zarr (with radar.enabled, or sensor s1 or both); with sensor s1 or
# both its PWTT map, and with both the fused map.


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


rule pwtt_map:
    # With sensor s1 or both: damage from the radar store with the pixel-wise t-test, no model.
    input:
        store=f"{DATA}/radar/{{aoi}}.zarr",
    output:
        multiext(MAP_PREFIX, **PWTT_FILES),
        summary=report(
            f"{MAP_PREFIX}{PWTT_REPORT['summary']}",
            caption="../report/radar_summary.rst",
            category="4. Maps",
            subcategory="{aoi}",
            labels={"AOI": "{aoi}", "figure": "radar (PWTT) summary"},
        ),
        quicklook=report(
            f"{MAP_PREFIX}{PWTT_REPORT['quicklook']}",
            caption="../report/radar_quicklook.rst",
            category="4. Maps",
            subcategory="{aoi}",
            labels={"AOI": "{aoi}", "figure": "radar (PWTT) quick-look"},
        ),
    log:
        f"{LOGS}/pwtt_map/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/pwtt_map/{{aoi}}.tsv"
    params:
        python=PYTHON,
        options=pwtt_options,
    threads: step_threads("pwtt_map")
    resources:
        mem_mb=step_mem_mb("pwtt_map"),
        runtime=30,
    shell:
        "{params.python:q} -m damagenet pwtt --radar {input.store:q} --out {output.t:q}"
        " {params.options:q} > {log:q} 2>&1"


rule fused_map:
    # With sensor both: the training-free fusion of the radar and the Sentinel-2 map.
    input:
        pwtt=f"{MAP_PREFIX}{PWTT_SUFFIX}",
        optical=f"{MAP_PREFIX}{PROB_SUFFIX}",
    output:
        multiext(MAP_PREFIX, **FUSED_FILES),
        summary=report(
            f"{MAP_PREFIX}{FUSED_REPORT['summary']}",
            caption="../report/radar_summary.rst",
            category="4. Maps",
            subcategory="{aoi}",
            labels={"AOI": "{aoi}", "figure": "fused summary"},
        ),
        quicklook=report(
            f"{MAP_PREFIX}{FUSED_REPORT['quicklook']}",
            caption="../report/radar_quicklook.rst",
            category="4. Maps",
            subcategory="{aoi}",
            labels={"AOI": "{aoi}", "figure": "fused quick-look"},
        ),
    log:
        f"{LOGS}/fused_map/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/fused_map/{{aoi}}.tsv"
    params:
        python=PYTHON,
        threshold=config["fuse"]["threshold"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("fused_map"),
        runtime=30,
    shell:
        "{params.python:q} -m damagenet fuse --pwtt {input.pwtt:q} --optical {input.optical:q}"
        " --out {output.fused:q} --threshold {params.threshold:q} > {log:q} 2>&1"
