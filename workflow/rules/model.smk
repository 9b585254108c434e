# Training, evaluation on the held-out split, and damage maps per AOI.


rule train:
    input:
        DATASET,
    output:
        ckpt=CHECKPOINT,
        log_csv=f"{RESULTS}/train_log.csv",
    log:
        f"{LOGS}/train.log",
    benchmark:
        f"{LOGS}/benchmarks/train.tsv"
    params:
        t=config["train"],
        out=RESULTS,
        device=config["device"],
        seed=config["seed"],
    threads: step_threads("train")
    resources:
        mem_mb=step_mem_mb("train"),
        runtime=24 * 60,
        gpu=gpus,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON} -m damagenet -q train --npz {input} --out {params.out}"
        " --ckpt {output.ckpt} --epochs {params.t[epochs]} --batch-size {params.t[batch_size]}"
        " --patience {params.t[patience]} --backbone {params.t[backbone]}"
        " --weights {params.t[weights]} --threshold-rule {params.t[threshold_rule]}"
        " --device {params.device} --seed {params.seed} --no-evaluate > {log} 2>&1"


rule evaluate:
    input:
        npz=DATASET,
        ckpt=CHECKPOINT,
    output:
        metrics=f"{RESULTS}/metrics.json",
        counts=f"{RESULTS}/confusion_matrix_counts.png",
        normalized=f"{RESULTS}/confusion_matrix_normalized.png",
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate.tsv"
    params:
        out=RESULTS,
        device=config["device"],
    threads: step_threads("evaluate")
    resources:
        mem_mb=step_mem_mb("evaluate"),
        runtime=60,
        gpu=gpus,
    shell:
        "{PYTHON} -m damagenet -q evaluate --npz {input.npz} --ckpt {input.ckpt}"
        " --out {params.out} --device {params.device} > {log} 2>&1"


rule damage_map:
    input:
        before=f"{DATA}/scenes/{{aoi}}/before.tif",
        after=f"{DATA}/scenes/{{aoi}}/after.tif",
        labels=f"{DATA}/labels/{{aoi}}.tif",
        ckpt=CHECKPOINT,
    output:
        prob=f"{RESULTS}/maps/{{aoi}}_damage_prob.tif",
        cls=f"{RESULTS}/maps/{{aoi}}_damage_class.tif",
        gpkg=f"{RESULTS}/maps/{{aoi}}_damage_patches.gpkg",
        summary=f"{RESULTS}/maps/{{aoi}}_damage_summary.json",
    log:
        f"{LOGS}/damage_map/{{aoi}}.log",
    benchmark:
        f"{LOGS}/benchmarks/damage_map/{{aoi}}.tsv"
    params:
        p=config["predict"],
        tta="--tta" if config["predict"].get("tta") else "",
        device=config["device"],
    threads: step_threads("damage_map")
    resources:
        mem_mb=step_mem_mb("damage_map"),
        runtime=120,
        gpu=gpus,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON} -m damagenet -q predict --before {input.before}"
        " --after {input.after} --ckpt {input.ckpt} --out {output.prob}"
        " --labels {input.labels} --stride {params.p[stride]}"
        " --batch-size {params.p[batch_size]} {params.tta} --device {params.device}"
        " > {log} 2>&1"
