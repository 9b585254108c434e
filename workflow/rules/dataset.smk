# Patches per AOI and the balanced, spatially split dataset.


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
        size=config["patches"]["size"],
        stride=config["patches"]["stride"],
        min_damage=config["patches"]["min_damage_pixels"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("patches"),
        runtime=30,
    shell:
        "{PYTHON} -m pipeline -q patches {input.aoi} --before {input.before}"
        " --after {input.after} --labels {input.labels} --out {output.npz}"
        " --size {params.size} --stride {params.stride}"
        " --min-damage-pixels {params.min_damage} --memory-mb 256 > {log} 2>&1"


rule dataset:
    input:
        expand(f"{DATA}/patches/{{aoi}}.npz", aoi=AOIS),
    output:
        npz=DATASET,
        summary=DATASET.replace(".npz", "_summary.md"),
    log:
        f"{LOGS}/dataset.log",
    benchmark:
        f"{LOGS}/benchmarks/dataset.tsv"
    params:
        d=config["dataset"],
        test_aois=" ".join(config["dataset"].get("test_aois", [])),
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("dataset"),
        runtime=30,
    shell:
        "{PYTHON} -m pipeline -q dataset {input} --out {output.npz} --split {params.d[split]}"
        " --block-m {params.d[block_m]} --test-aois {params.test_aois}"
        " --val-fraction {params.d[val_fraction]} --test-fraction {params.d[test_fraction]}"
        " --negatives-per-positive {params.d[negatives_per_positive]} --seed {params.seed}"
        " > {log} 2>&1"
