# Per AOI the training pairs, and the spatially split dataset (training runs only): patches
# and the balanced patch dataset for model.arch siamese-resnet; per-pixel targets, tiles and the
# tile dataset for siamese-unet.


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


rule targets:
    # siamese-unet: per-pixel targets from the UNOSAT sites (1 damage, 0 assessed, 255 ignore).
    input:
        aoi=aoi_file,
        grid=f"{DATA}/scenes/{{aoi}}/after.tif",
        unosat=unosat_file,
    output:
        tif=f"{DATA}/targets/{{aoi}}.tif",
        summary=f"{DATA}/targets/{{aoi}}.json",
    log:
        f"{LOGS}/targets/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/targets/{{aoi}}.tsv"
    params:
        python=PYTHON,
        classes=",".join(str(c) for c in config["labels"]["classes"]),
    threads: 1
    resources:
        mem_mb=step_mem_mb("labels"),
        runtime=20,
    shell:
        "{params.python:q} -m pipeline targets {input.aoi:q} --grid {input.grid:q}"
        " --unosat {input.unosat:q} --out {output.tif:q} --classes {params.classes:q}"
        " > {log:q} 2>&1"


rule tiles:
    # siamese-unet: side-by-side tiles of both scenes and the targets.
    input:
        aoi=aoi_file,
        before=f"{DATA}/scenes/{{aoi}}/before.tif",
        after=f"{DATA}/scenes/{{aoi}}/after.tif",
        targets=f"{DATA}/targets/{{aoi}}.tif",
    output:
        npz=f"{DATA}/tiles/{{aoi}}.npz",
        summary=f"{DATA}/tiles/{{aoi}}.json",
    log:
        f"{LOGS}/tiles/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/tiles/{{aoi}}.tsv"
    params:
        python=PYTHON,
        size=config["model"]["tile_size"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("patches"),
        runtime=30,
    shell:
        "{params.python:q} -m pipeline tiles {input.aoi:q} --before {input.before:q}"
        " --after {input.after:q} --targets {input.targets:q} --out {output.npz:q}"
        " --size {params.size:q} --memory-mb 256 > {log:q} 2>&1"


rule dataset:
    input:
        pairs=expand(f"{DATA}/{'tiles' if TILES else 'patches'}/{{aoi}}.npz", aoi=AOIS),
        nvd=[] if TILES else expand(f"{DATA}/labels/{{aoi}}_nvd.gpkg", aoi=AOIS),
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
        kind=dataset_options,
        block_m=dataset_block_m(),
        test_aois=test_aois_option,
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=step_mem_mb("dataset"),
        runtime=30,
    shell:
        "{params.python:q} -m pipeline dataset {input.pairs:q} --out {output.npz:q}"
        " --split {params.d[split]:q} --block-m {params.block_m:q}"
        " --val-fraction {params.d[val_fraction]:q} --test-fraction {params.d[test_fraction]:q}"
        " --seed {params.seed:q} {params.kind:q} {params.test_aois:q} > {log:q} 2>&1"
