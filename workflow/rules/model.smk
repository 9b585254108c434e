# Training and evaluation on the held-out split (training runs only); model.arch picks the
# patch model (siamese-resnet, train.backbone) or the pixel model (siamese-unet).


rule train:
    input:
        DATASET,
    output:
        ckpt=CHECKPOINT,
        log_csv=report(
            f"{RESULTS}/train_log.csv",
            caption="../report/train_log.rst",
            category="2. Training",
        ),
        summary=f"{RESULTS}/train_summary.json",
    log:
        f"{LOGS}/train.log",
    benchmark:
        f"{LOGS}/benchmarks/train.tsv"
    params:
        python=PYTHON,
        t=config["train"],
        arch=ARCH,
        recipe=train_arch_options,
        out=lambda wc, output: str(Path(output.log_csv).parent),
        device=config["device"],
        seed=config["seed"],
    threads: step_threads("train")
    resources:
        mem_mb=step_mem_mb("train"),
        runtime=24 * 60,
        gpu=gpus,
    shell:
        "OMP_NUM_THREADS={threads} {params.python:q} -m damagenet train --npz {input:q}"
        " --arch {params.arch:q} --out {params.out:q} --ckpt {output.ckpt:q}"
        " --epochs {params.t[epochs]:q} {params.recipe:q} --patience {params.t[patience]:q}"
        " --weights {params.t[weights]:q}"
        " --threshold-rule {params.t[threshold_rule]:q} --device {params.device:q}"
        " --precision {params.t[precision]:q} --seed {params.seed:q} --no-evaluate"
        " > {log:q} 2>&1"


rule evaluate:
    input:
        npz=DATASET,
        ckpt=CHECKPOINT,
    output:
        metrics=report(
            f"{RESULTS}/metrics.json",
            caption="../report/metrics.rst",
            category="3. Evaluation",
        ),
        plots=report(
            multiext(f"{RESULTS}/", *EVALUATION_PLOTS),
            caption="../report/evaluation.rst",
            category="3. Evaluation",
        ),
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate.tsv"
    params:
        python=PYTHON,
        out=lambda wc, output: str(Path(output.metrics).parent),
        device=config["device"],
    threads: step_threads("evaluate")
    resources:
        mem_mb=step_mem_mb("evaluate"),
        runtime=60,
        gpu=gpus,
    shell:
        "OMP_NUM_THREADS={threads} {params.python:q} -m damagenet evaluate --npz {input.npz:q} --ckpt {input.ckpt:q}"
        " --out {params.out:q} --device {params.device:q} > {log:q} 2>&1"


rule crossval:
    # Not part of the default target: `snakemake --cores 8 crossval`. Leave-AOI-out folds for the
    # network and both baselines; the fold checkpoints form an ensemble for maps.
    input:
        DATASET,
    output:
        multiext(
            f"{RESULTS}/crossval/",
            json="crossval.json",
            md="crossval.md",
            roc="roc_models.png",
            predictions="predictions.npz",
        ),
        folds=expand(f"{RESULTS}/crossval/fold{{i}}/model.pt",
                     i=range(config["crossval"]["k"])),
    log:
        f"{LOGS}/crossval.log",
    benchmark:
        f"{LOGS}/benchmarks/crossval.tsv"
    params:
        python=PYTHON,
        c=config["crossval"],
        t=config["train"],
        recipe=crossval_arch_options,
        out=lambda wc, output: str(Path(output.json).parent),
        device=config["device"],
        seed=config["seed"],
    threads: step_threads("train")
    resources:
        mem_mb=step_mem_mb("crossval"),
        runtime=24 * 60,
        gpu=gpus,
    shell:
        "OMP_NUM_THREADS={threads} {params.python:q} -m damagenet crossval --npz {input:q}"
        " --k {params.c[k]:q} --out {params.out:q} {params.recipe:q}"
        " --epochs {params.c[epochs]:q} --patience {params.t[patience]:q}"
        " --weights {params.t[weights]:q}"
        " --device {params.device:q} --seed {params.seed:q} > {log:q} 2>&1"
