# Patches per AOI and the balanced, spatially split dataset (training runs only).


rule patches:
    input:
        aoi=aoi_file,
        before=f"{DATA}/scenes/{{aoi}}/before.tif",
        after=f"{DATA}/scenes/{{aoi}}/after.tif",
        labels=f"{DATA}/labels/{{aoi}}.tif",
    output:
        npz=f"{DATA}/patches/{{aoi}}.npz",
        summary=f"{DATA}/patches/{{aoi}}.json",
    log:
        f"{LOGS}/patches/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/patches/{{aoi}}.tsv"
    params:
        python=PYTHON,
        size=config["patches"]["size"],
        stride=config["patches"]["stride"],
        min_damage=config["patches"]["min_damage_pixels"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("patches"),
        runtime=30,
    shell:
        "{params.python:q} -m pipeline patches {input.aoi:q} --before {input.before:q}"
        " --after {input.after:q} --labels {input.labels:q} --out {output.npz:q}"
        " --size {params.size:q} --stride {params.stride:q}"
        " --min-damage-pixels {params.min_damage:q} --memory-mb 256 > {log:q} 2>&1"


rule dataset:
    input:
        patches=expand(f"{DATA}/patches/{{aoi}}.npz", aoi=AOIS),
        nvd=expand(f"{DATA}/labels/{{aoi}}_nvd.gpkg", aoi=AOIS),
    output:
        npz=DATASET,
        summary_md=report(
            DATASET.replace(".npz", "_summary.md"),
            caption="../report/dataset.rst",
            category="1. Dataset",
        ),
        summary_json=DATASET.replace(".npz", "_summary.json"),
    log:
        f"{LOGS}/dataset.log",
    benchmark:
        f"{LOGS}/benchmarks/dataset.tsv"
    params:
        python=PYTHON,
        d=config["dataset"],
        test_aois=test_aois_option,
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("dataset"),
        runtime=30,
    shell:
        "{params.python:q} -m pipeline dataset {input.patches:q} --out {output.npz:q}"
        " --split {params.d[split]:q} --block-m {params.d[block_m]:q}"
        " --val-fraction {params.d[val_fraction]:q} --test-fraction {params.d[test_fraction]:q}"
        " --negatives-per-positive {params.d[negatives_per_positive]:q} --seed {params.seed:q}"
        " --hard-negative-share {params.d[hard_negative_share]:q} --nvd {input.nvd:q}"
        " {params.test_aois:q} > {log:q} 2>&1"
